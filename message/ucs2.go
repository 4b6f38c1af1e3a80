package message

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ucs2Units is the number of UTF-16 code units of r: 2 outside the BMP.
func ucs2Units(r rune) int {
	if r > 0xFFFF {
		return 2
	}
	return 1
}

// appendUCS2 appends r to dst as big-endian UTF-16 (a surrogate pair outside
// the BMP).
func appendUCS2(dst []byte, r rune) []byte {
	if r > 0xFFFF {
		hi, lo := utf16.EncodeRune(r)
		return append(dst, byte(hi>>8), byte(hi), byte(lo>>8), byte(lo))
	}
	return append(dst, byte(r>>8), byte(r))
}

// EncodeUCS2 returns text as big-endian UTF-16 ("UCS-2" as SMS uses it, with
// surrogate pairs for characters outside the BMP). Each invalid UTF-8 byte is
// encoded as U+FFFD.
func EncodeUCS2(text string) []byte {
	n := 0
	for _, r := range text {
		n += 2 * ucs2Units(r)
	}
	out := make([]byte, 0, n)
	for _, r := range text {
		out = appendUCS2(out, r)
	}
	return out
}

// DecodeUCS2 returns the text of big-endian UTF-16 bytes. An odd trailing byte
// is ignored; a lone or misordered surrogate decodes as U+FFFD.
func DecodeUCS2(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) / 2 * 3)
	for i := 0; i+1 < len(b); i += 2 {
		u := rune(b[i])<<8 | rune(b[i+1])
		switch {
		case u < 0xD800 || u > 0xDFFF:
			sb.WriteRune(u)
		case u <= 0xDBFF && i+3 < len(b):
			lo := rune(b[i+2])<<8 | rune(b[i+3])
			if r := utf16.DecodeRune(u, lo); r != utf8.RuneError {
				sb.WriteRune(r)
				i += 2
				continue
			}
			sb.WriteRune(utf8.RuneError)
		default:
			sb.WriteRune(utf8.RuneError)
		}
	}
	return sb.String()
}

// DecodeLatin1 returns the text of ISO-8859-1 bytes (SMPP data_coding 3):
// each byte is the code point of the same value.
func DecodeLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) * 2)
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}
