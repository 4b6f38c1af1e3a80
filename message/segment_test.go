package message

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

var (
	rep   = strings.Repeat
	emoji = "😀" // U+1F600: 2 UTF-16 units
)

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name string
		text string
		want TextInfo
	}{
		{"empty: nothing to send", "", TextInfo{EncodingGSM7, 0, 0, 0}},
		{"one char", "a", TextInfo{EncodingGSM7, 1, 1, 1}},
		{"160 ascii fits one", rep("a", 160), TextInfo{EncodingGSM7, 160, 160, 1}},
		{"161 ascii needs two", rep("a", 161), TextInfo{EncodingGSM7, 161, 161, 2}},
		{"306 ascii is two full parts", rep("a", 306), TextInfo{EncodingGSM7, 306, 306, 2}},
		{"307 ascii needs three", rep("a", 307), TextInfo{EncodingGSM7, 307, 307, 3}},
		{"1599 ascii", rep("a", 1599), TextInfo{EncodingGSM7, 1599, 1599, 11}},
		{"euro counts two septets", "€", TextInfo{EncodingGSM7, 1, 2, 1}},
		{"158 + euro = 160 septets fits one", rep("a", 158) + "€", TextInfo{EncodingGSM7, 159, 160, 1}},
		{"159 + euro = 161 septets needs two", rep("a", 159) + "€", TextInfo{EncodingGSM7, 160, 161, 2}},
		{"80 extension chars = 160 septets", rep("{", 80), TextInfo{EncodingGSM7, 80, 160, 1}},
		{"81 extension chars: 76 + 5", rep("{", 81), TextInfo{EncodingGSM7, 81, 162, 2}},
		{"153 extension chars: 76 per part, not 2 parts", rep("{", 153), TextInfo{EncodingGSM7, 153, 306, 3}},
		{"152 + euro = 154 septets still fits one", rep("a", 152) + "€", TextInfo{EncodingGSM7, 153, 154, 1}},
		{"152 + euro + 10: escape not split", rep("a", 152) + "€" + rep("b", 10), TextInfo{EncodingGSM7, 163, 164, 2}},
		{"152 + euro + 151: second part exactly 153", rep("a", 152) + "€" + rep("a", 151), TextInfo{EncodingGSM7, 304, 305, 2}},
		{"152 + euro + 152: escape pushes a third part", rep("a", 152) + "€" + rep("a", 152), TextInfo{EncodingGSM7, 305, 306, 3}},
		{"153 + euro + 10: escape starts part two", rep("a", 153) + "€" + rep("b", 10), TextInfo{EncodingGSM7, 164, 165, 2}},
		{"gsm7 non-ascii letters stay gsm7", "ÄÖÜäöüßéèñÑΔΦΩ£¥§¿¡", TextInfo{EncodingGSM7, 19, 19, 1}},
		{"capital C cedilla is gsm7", "Ça va", TextInfo{EncodingGSM7, 5, 5, 1}},
		{"small c cedilla is ucs2", "ça va", TextInfo{EncodingUCS2, 5, 5, 1}},
		{"cr lf are gsm7", "a\r\nb", TextInfo{EncodingGSM7, 4, 4, 1}},
		{"tab is ucs2", "a\tb", TextInfo{EncodingUCS2, 3, 3, 1}},
		{"70 cyrillic fits one", rep("ж", 70), TextInfo{EncodingUCS2, 70, 70, 1}},
		{"71 cyrillic needs two", rep("ж", 71), TextInfo{EncodingUCS2, 71, 71, 2}},
		{"134 cyrillic two full parts", rep("ж", 134), TextInfo{EncodingUCS2, 134, 134, 2}},
		{"135 cyrillic needs three", rep("ж", 135), TextInfo{EncodingUCS2, 135, 135, 3}},
		{"emoji counts two units", emoji, TextInfo{EncodingUCS2, 1, 2, 1}},
		{"35 emoji = 70 units fits one", rep(emoji, 35), TextInfo{EncodingUCS2, 35, 70, 1}},
		{"36 emoji = 72 units: 33 + 3 per part", rep(emoji, 36), TextInfo{EncodingUCS2, 36, 72, 2}},
		{"68 emoji: 33+33+2", rep(emoji, 68), TextInfo{EncodingUCS2, 68, 136, 3}},
		{"66 + emoji = 68 units still fits one", rep("ж", 66) + emoji, TextInfo{EncodingUCS2, 67, 68, 1}},
		{"66 + emoji + 5: pair not split", rep("ж", 66) + emoji + rep("ж", 5), TextInfo{EncodingUCS2, 72, 73, 2}},
		{"66 + emoji + 65: second part exactly 67", rep("ж", 66) + emoji + rep("ж", 65), TextInfo{EncodingUCS2, 132, 133, 2}},
		{"66 + emoji + 66: pair pushes a third part", rep("ж", 66) + emoji + rep("ж", 66), TextInfo{EncodingUCS2, 133, 134, 3}},
		{"68 + emoji = 70 units fits one", rep("ж", 68) + emoji, TextInfo{EncodingUCS2, 69, 70, 1}},
		{"69 + emoji = 71 units needs two", rep("ж", 69) + emoji, TextInfo{EncodingUCS2, 70, 71, 2}},
		{"gsm7 text with one emoji turns ucs2", rep("a", 159) + emoji, TextInfo{EncodingUCS2, 160, 161, 3}},
		{"one cyrillic char at the end turns 160 ascii ucs2", rep("a", 159) + "ж", TextInfo{EncodingUCS2, 160, 160, 3}},
		{"euro in ucs2 is one unit", rep("ж", 69) + "€", TextInfo{EncodingUCS2, 70, 70, 1}},
		{"invalid utf-8 byte is one U+FFFD", "\xff", TextInfo{EncodingUCS2, 1, 1, 1}},
		{"each invalid byte is a character", "a\xff\xfeb", TextInfo{EncodingUCS2, 4, 4, 1}},
		{"1599 cyrillic", rep("ж", 1599), TextInfo{EncodingUCS2, 1599, 1599, 24}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Analyze(tt.text)
			require.Equal(t, tt.want, got)
			checkSplit(t, tt.text, got)
		})
	}
}

// checkSplit verifies Split against Analyze: the part count, the limits,
// no escape or surrogate pair across parts, and that the parts decode and
// join back to the text. It returns the parts.
func checkSplit(t testing.TB, text string, info TextInfo) [][]byte {
	t.Helper()
	parts := Split(text, info.Encoding)
	if len(parts) != info.Segments {
		t.Fatalf("Split gave %d parts, Analyze %d segments", len(parts), info.Segments)
	}
	single, part := gsm7Single, gsm7Part
	if info.Encoding == EncodingUCS2 {
		single, part = 2*ucs2Single, 2*ucs2Part
	}
	var sb strings.Builder
	units := 0
	for i, p := range parts {
		limit := part
		if len(parts) == 1 {
			limit = single
		}
		if len(p) == 0 || len(p) > limit {
			t.Fatalf("part %d has %d bytes, limit %d", i, len(p), limit)
		}
		if info.Encoding == EncodingGSM7 {
			if p[len(p)-1] == gsm7Escape {
				t.Fatalf("part %d ends with an escape", i)
			}
			sb.WriteString(DecodeGSM7(p))
			units += len(p)
		} else {
			if len(p)%2 != 0 {
				t.Fatalf("part %d has odd length %d", i, len(p))
			}
			if u := p[len(p)-2]; u >= 0xD8 && u <= 0xDB {
				t.Fatalf("part %d ends with a high surrogate", i)
			}
			if u := p[0]; u >= 0xDC && u <= 0xDF {
				t.Fatalf("part %d starts with a low surrogate", i)
			}
			sb.WriteString(DecodeUCS2(p))
			units += len(p) / 2
		}
		// Greedy: the next part's first character did not fit in this one.
		if i+1 < len(parts) {
			next := 1
			if info.Encoding == EncodingGSM7 && parts[i+1][0] == gsm7Escape {
				next = 2
			}
			if info.Encoding == EncodingUCS2 && parts[i+1][0] >= 0xD8 && parts[i+1][0] <= 0xDB {
				next = 4
			}
			if len(p)+next <= limit {
				t.Fatalf("part %d (%d bytes) could have held the next character", i, len(p))
			}
		}
	}
	if units != info.Units {
		t.Fatalf("parts hold %d units, Analyze says %d", units, info.Units)
	}
	if want := string([]rune(text)); sb.String() != want {
		t.Fatalf("parts decode to %q, want %q", sb.String(), want)
	}
	return parts
}

func TestSplitBytes(t *testing.T) {
	tests := []struct {
		name string
		text string
		enc  Encoding
		want []string // hex of each part
	}{
		{"empty gsm7", "", EncodingGSM7, nil},
		{"empty ucs2", "", EncodingUCS2, nil},
		{"gsm7 with escape", "a€", EncodingGSM7, []string{"611B65"}},
		{"gsm7 forced on non-gsm text gives ?", "aж😀", EncodingGSM7, []string{"613F3F"}},
		{"ucs2 forced on gsm text", "a€", EncodingUCS2, []string{"006120AC"}},
		{"unknown encoding is ucs2", "a", Encoding("other"), []string{"0061"}},
		{"ucs2 emoji", "h" + emoji, EncodingUCS2, []string{"0068D83DDE00"}},
		{"escape moves to part two", rep("a", 152) + "€" + rep("b", 10), EncodingGSM7, []string{rep("61", 152), "1B65" + rep("62", 10)}},
		{"escape ends part one", rep("a", 151) + "€" + "b" + rep("c", 7), EncodingGSM7, []string{rep("61", 151) + "1B65", "62" + rep("63", 7)}},
		{"surrogate pair moves to part two", rep("ж", 66) + emoji + "ab" + rep("c", 3), EncodingUCS2, []string{rep("0436", 66), "D83DDE00" + "00610062" + rep("0063", 3)}},
		{"surrogate pair ends part one", rep("ж", 65) + emoji + "ab" + rep("c", 3), EncodingUCS2, []string{rep("0436", 65) + "D83DDE00", "00610062" + rep("0063", 3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts := Split(tt.text, tt.enc)
			if tt.want == nil {
				require.Nil(t, parts)
				return
			}
			got := make([]string, len(parts))
			for i, p := range parts {
				got[i] = strings.ToUpper(hexString(p))
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func hexString(b []byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xF])
	}
	return string(out)
}

// TestSplitPartsIndependent checks that appending to one part (e.g. the
// caller adding bytes) cannot overwrite the next part.
func TestSplitPartsIndependent(t *testing.T) {
	parts := Split(rep("a", 200), EncodingGSM7)
	require.Len(t, parts, 2)
	_ = append(parts[0], 'X')
	require.Equal(t, byte('a'), parts[1][0])
}

func TestAnalyzeDoesNotAllocate(t *testing.T) {
	texts := []string{rep("a", 160), rep("a", 152) + "€" + rep("b", 500), rep("ж", 300) + emoji, "a\xff"}
	for _, s := range texts {
		allocs := testing.AllocsPerRun(100, func() { _ = Analyze(s) })
		require.Zero(t, allocs)
	}
}

func FuzzSplitRoundTrip(f *testing.F) {
	for _, s := range []string{"", "hello", rep("a", 152) + "€" + rep("a", 152), rep("ж", 66) + emoji + rep("ж", 66), "a\xffb", "Ça ç", rep("{", 81), rep(emoji, 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		info := Analyze(text)
		if info.Characters != utf8.RuneCountInString(text) {
			t.Fatalf("Characters %d, want %d", info.Characters, utf8.RuneCountInString(text))
		}
		if _, ok := EncodeGSM7(text); ok != (info.Encoding == EncodingGSM7) {
			t.Fatalf("encoding %s but EncodeGSM7 ok=%v", info.Encoding, ok)
		}
		checkSplit(t, text, info)
		// UCS-2 carries any text.
		u := info
		if info.Encoding == EncodingGSM7 {
			units := len(EncodeUCS2(text)) / 2
			u = TextInfo{Encoding: EncodingUCS2, Characters: info.Characters, Units: units}
			u.Segments = len(Split(text, EncodingUCS2))
		}
		checkSplit(t, text, u)
	})
}

func BenchmarkAnalyze160(b *testing.B) {
	text := rep("Hello world, ", 12) + "ab€" // 160 septets with one escape
	if info := Analyze(text); info.Units != 160 || info.Segments != 1 {
		b.Fatalf("fixture: %+v", info)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Analyze(text)
	}
}

func BenchmarkAnalyzeUCS2(b *testing.B) {
	text := rep("Привет, мир! ", 12) + emoji
	b.ReportAllocs()
	for b.Loop() {
		_ = Analyze(text)
	}
}

func BenchmarkSplitLong(b *testing.B) {
	text := rep("The quick brown fox jumps over the lazy dog {€} ", 33)[:1599]
	info := Analyze(text)
	if info.Encoding != EncodingGSM7 || info.Segments < 10 {
		b.Fatalf("fixture: %+v", info)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Split(text, info.Encoding)
	}
}

func BenchmarkSplitLongUCS2(b *testing.B) {
	text := rep("Привет, мир! "+emoji, 110)
	info := Analyze(text)
	b.ReportAllocs()
	for b.Loop() {
		_ = Split(text, info.Encoding)
	}
}
