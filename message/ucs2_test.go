package message

import (
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestEncodeUCS2(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string
	}{
		{"empty", "", ""},
		{"ascii", "Hi", "00480069"},
		{"cyrillic", "Привет", "041F04400438043204350442"},
		{"euro", "€", "20AC"},
		{"emoji surrogate pair", "😀", "D83DDE00"},
		{"highest code point", "\U0010FFFF", "DBFFDFFF"},
		{"first non-bmp", "\U00010000", "D800DC00"},
		{"bmp edge", "\uFFFF", "FFFF"},
		{"invalid utf-8 becomes U+FFFD", "a\xffb", "0061FFFD0062"},
		{"utf-8 encoded surrogate is invalid", "\xed\xa0\x80", "FFFDFFFDFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncodeUCS2(tt.text)
			require.Equal(t, mustHex(t, tt.want), append([]byte{}, got...))
			require.Equal(t, string([]rune(tt.text)), DecodeUCS2(got))
		})
	}
}

func TestDecodeUCS2(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"odd trailing byte ignored", "004800", "H"},
		{"single byte", "41", ""},
		{"pair", "D83DDE00", "😀"},
		{"lone high surrogate at end", "0041D83D", "A\uFFFD"},
		{"lone high surrogate before bmp", "D83D0041", "\uFFFDA"},
		{"lone low surrogate", "DE000041", "\uFFFDA"},
		{"reversed pair", "DE00D83D", "\uFFFD\uFFFD"},
		{"two highs then low", "D83DD83DDE00", "\uFFFD😀"},
		{"high then odd byte", "D83DDE", "\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, DecodeUCS2(mustHex(t, tt.in)))
		})
	}
}

func TestDecodeLatin1(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", ""},
		{"ascii", "48692021", "Hi !"},
		{"accents", "E9E8E7FF", "éèçÿ"},
		{"c1 controls and nbsp", "80A0", "\u0080\u00a0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, DecodeLatin1(mustHex(t, tt.in)))
		})
	}
}

func FuzzDecodeUCS2(f *testing.F) {
	f.Add([]byte{0xD8, 0x3D, 0xDE, 0x00})
	f.Add([]byte{0xDE, 0x00, 0xD8})
	f.Add([]byte{0x00, 0x41})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := DecodeUCS2(b)
		if !utf8.ValidString(s) {
			t.Fatalf("invalid utf-8 from %x", b)
		}
		// Decoded text re-encodes to at most as many units and decodes to itself.
		enc := EncodeUCS2(s)
		if len(enc) > len(b)-len(b)%2 {
			t.Fatalf("%d bytes re-encoded to %d", len(b), len(enc))
		}
		if got := DecodeUCS2(enc); got != s {
			t.Fatalf("re-decode: got %q want %q", got, s)
		}
	})
}
