package message

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

type packVector struct {
	Name    string `json:"name"`
	Septets string `json:"septets"`
	Fill    int    `json:"fill"`
	Packed  string `json:"packed"`
	Text    string `json:"text"`
}

type tpudVector struct {
	Name string `json:"name"`
	UDH  string `json:"udh"`
	Text string `json:"text"`
	Fill int    `json:"fill"`
	UDL  int    `json:"udl"`
	UD   string `json:"ud"`
}

func loadGSM7Vectors(t *testing.T) (pack []packVector, tpud []tpudVector) {
	t.Helper()
	raw, err := os.ReadFile("testdata/gsm7_vectors.json")
	require.NoError(t, err)
	var v struct {
		Pack []packVector `json:"pack"`
		TPUD []tpudVector `json:"tp_ud"`
	}
	require.NoError(t, json.Unmarshal(raw, &v))
	require.NotEmpty(t, v.Pack)
	require.NotEmpty(t, v.TPUD)
	return v.Pack, v.TPUD
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// TestGSM7TablesAgree checks the encoder switch against the decode tables in
// both directions, over every Unicode code point.
func TestGSM7TablesAgree(t *testing.T) {
	want := map[rune][2]int{} // rune -> code, ext
	for c, r := range gsm7Basic {
		if c == gsm7Escape {
			continue
		}
		_, dup := want[r]
		require.False(t, dup, "basic table repeats %q", r)
		want[r] = [2]int{c, 0}
	}
	for c, r := range gsm7Ext {
		if r == 0 {
			continue
		}
		_, dup := want[r]
		require.False(t, dup, "extension table repeats %q", r)
		want[r] = [2]int{c, 1}
	}
	require.Len(t, want, 127+10)

	for r := rune(0); r <= utf8.MaxRune; r++ {
		code, ext, ok := gsm7Code(r)
		w, in := want[r]
		require.Equal(t, in, ok, "rune %U", r)
		if !in {
			continue
		}
		require.Equal(t, w[0], int(code), "rune %U", r)
		require.Equal(t, w[1] == 1, ext, "rune %U", r)
	}
}

func TestEncodeGSM7(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // hex septets; "" with ok=false
		ok   bool
	}{
		{"empty", "", "", true},
		{"ascii", "Hello, world!", "48656C6C6F2C20776F726C6421", true},
		{"at dollar underscore", "@$_", "000211", true},
		{"cr lf", "a\r\nb", "610D0A62", true},
		{"whole extension table", "\f^{}\\[~]|€", "1B0A1B141B281B291B2F1B3C1B3D1B3E1B401B65", true},
		{"non-ascii in default alphabet", "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà",
			"0103040506070809" + "0B0C0E0F10121314" + "15161718191A1C1D" + "1E1F24405B5C5D5E" + "5F607B7C7D7E7F", true},
		{"small c cedilla is not gsm7", "ç", "", false},
		{"backtick", "`", "", false},
		{"tab", "a\tb", "", false},
		{"escape control char", "\x1b", "", false},
		{"no-break space", "a\u00a0b", "", false},
		{"cyrillic", "Привет", "", false},
		{"emoji", "hi 😀", "", false},
		{"invalid utf-8", "a\xffb", "", false},
		{"replacement char", "\ufffd", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := EncodeGSM7(tt.text)
			require.Equal(t, tt.ok, ok)
			if !tt.ok {
				require.Nil(t, got)
				return
			}
			want := mustHex(t, tt.want)
			require.Equal(t, want, append([]byte{}, got...))
			require.Equal(t, tt.text, DecodeGSM7(got))
		})
	}
}

func TestDecodeGSM7(t *testing.T) {
	tests := []struct {
		name    string
		septets string
		want    string
	}{
		{"empty", "", ""},
		{"basic", "48690021", "Hi@!"},
		{"euro", "1B65", "€"},
		{"form feed", "1B0A", "\f"},
		{"unknown escape decodes as base char", "1B41", "A"},
		{"unknown escape of special char", "1B00", "@"},
		{"double escape is a space", "1B1B41", " A"},
		{"lone trailing escape dropped", "411B", "A"},
		{"high bit ignored", "C8E9", "Hi"},
		{"escaped high bit", "9BE5", "€"},
		{"greek", "101213", "ΔΦΓ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, DecodeGSM7(mustHex(t, tt.septets)))
		})
	}
}

func TestPackGSM7Vectors(t *testing.T) {
	pack, _ := loadGSM7Vectors(t)
	for _, v := range pack {
		t.Run(v.Name, func(t *testing.T) {
			septets := mustHex(t, v.Septets)
			want := mustHex(t, v.Packed)
			got := PackGSM7(septets, v.Fill)
			require.Equal(t, want, got)
			require.Equal(t, septets, UnpackGSM7(got, v.Fill, len(septets)))

			enc, ok := EncodeGSM7(v.Text)
			require.True(t, ok)
			require.Equal(t, septets, append([]byte{}, enc...))
			require.Equal(t, v.Text, DecodeGSM7(septets))
		})
	}
}

// TestTPUDVectors builds complete TP-UD fields (UDH, fill bits, packed
// septets) and parses them back, as an SMSC would see a concatenated part.
func TestTPUDVectors(t *testing.T) {
	_, tpud := loadGSM7Vectors(t)
	for _, v := range tpud {
		t.Run(v.Name, func(t *testing.T) {
			udh := mustHex(t, v.UDH)
			septets, ok := EncodeGSM7(v.Text)
			require.True(t, ok)
			// The UDH occupies whole septets, fill included.
			udhSeptets := (len(udh)*8 + v.Fill) / 7
			require.Zero(t, (len(udh)*8+v.Fill)%7)
			require.Equal(t, v.UDL, udhSeptets+len(septets))

			ud := append(append([]byte{}, udh...), PackGSM7(septets, v.Fill)...)
			require.Equal(t, mustHex(t, v.UD), ud)

			c, ok, payload, err := ParseConcatUDH(ud)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, udh, c.UDH())
			require.Equal(t, v.Text, DecodeGSM7(UnpackGSM7(payload, v.Fill, v.UDL-udhSeptets)))
		})
	}
}

func TestUnpackGSM7Bounds(t *testing.T) {
	packed := mustHex(t, "E8329BFD4697D9EC37") // "hellohello"
	tests := []struct {
		name    string
		packed  []byte
		fill    int
		septets int
		want    string
	}{
		{"exact", packed, 0, 10, "hellohello"},
		{"fewer asked", packed, 0, 3, "hel"},
		{"more asked than present", packed, 0, 100, "hellohello"},
		{"truncated input", packed[:4], 0, 10, "hell"},
		{"negative count", packed, 0, -1, ""},
		{"nil input", nil, 0, 5, ""},
		{"fill larger than input", []byte{0xFF}, 6, 1, ""},
		{"negative fill clamps to 0", packed, -3, 5, "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, string(UnpackGSM7(tt.packed, tt.fill, tt.septets)))
		})
	}
}

func TestPackGSM7Length(t *testing.T) {
	for n := range 20 {
		for fill := range 7 {
			s := make([]byte, n)
			for i := range s {
				s[i] = 0x7F
			}
			got := PackGSM7(s, fill)
			require.Len(t, got, (fill+7*n+7)/8, "n=%d fill=%d", n, fill)
			if n > 0 {
				require.Zero(t, got[0]&(1<<fill-1), "fill bits must be zero")
			}
			require.Equal(t, s, UnpackGSM7(got, fill, n))
		}
	}
}

func FuzzGSM7Pack(f *testing.F) {
	f.Add([]byte("hellohello"), 0)
	f.Add([]byte("hello"), 1)
	f.Add([]byte{0x00, 0x7F, 0x1B, 0x65}, 6)
	f.Add([]byte{}, 3)
	f.Fuzz(func(t *testing.T, data []byte, fill int) {
		fill = ((fill % 7) + 7) % 7
		septets := make([]byte, len(data))
		for i, b := range data {
			septets[i] = b & 0x7F
		}
		packed := PackGSM7(septets, fill)
		if want := (fill + 7*len(septets) + 7) / 8; len(packed) != want {
			t.Fatalf("packed %d septets with fill %d into %d octets, want %d", len(septets), fill, len(packed), want)
		}
		// Unmasked input packs the same: the high bit is ignored.
		if got := PackGSM7(data, fill); string(got) != string(packed) {
			t.Fatalf("high bit changed packing: %x vs %x", got, packed)
		}
		if got := UnpackGSM7(packed, fill, len(septets)); string(got) != string(septets) {
			t.Fatalf("round trip: got %x want %x", got, septets)
		}
	})
}

func FuzzDecodeGSM7(f *testing.F) {
	f.Add([]byte("hello"))
	f.Add([]byte{0x1B, 0x65, 0x1B})
	f.Add([]byte{0x1B, 0x1B, 0x1B, 0x41})
	f.Fuzz(func(t *testing.T, septets []byte) {
		s := DecodeGSM7(septets)
		if !utf8.ValidString(s) {
			t.Fatalf("invalid utf-8 from %x", septets)
		}
		if utf8.RuneCountInString(s) > len(septets) {
			t.Fatalf("%d septets decoded to %d characters", len(septets), utf8.RuneCountInString(s))
		}
		// Every decoded character is GSM-7, so the text re-encodes and decodes to itself.
		enc, ok := EncodeGSM7(s)
		if !ok {
			t.Fatalf("decoded text %q is not gsm7", s)
		}
		if got := DecodeGSM7(enc); got != s {
			t.Fatalf("re-decode: got %q want %q", got, s)
		}
	})
}
