package smpp

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalizeID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"12345", "3039"},      // decimal
		{"3039", "bdf"},        // all digits: read as decimal
		{"0x3039", "0x3039"},   // not numeric: lower-cased string
		{"00003039", "bdf"},    // leading zeros
		{"1A2B", "1a2b"},       // hex, case folded
		{"0001a2b", "1a2b"},    // hex leading zeros
		{"  1a2b\x00", "1a2b"}, // trimmed, NUL stripped
		{"0", "0"},             //
		{"000", "0"},           //
		{"", ""},               //
		{"abc-123", "abc-123"}, // other characters
		{"MSG-ÄB", "msg-äb"},   // not numeric: lower-cased string
		{"18446744073709551615", "ffffffffffffffff"},
		{"18446744073709551616", "10000000000000000"}, // beyond 64 bits
		{"ffffffffffffffffff", "ffffffffffffffffff"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			require.Equal(t, tt.want, NormalizeID(tt.in))
		})
	}
	// The decimal and hex forms of one id compare equal.
	require.Equal(t, NormalizeID("255"), NormalizeID("FF"))
	require.Equal(t, NormalizeID("3735928559"), NormalizeID("deadbeef"))
}

func FuzzNormalizeID(f *testing.F) {
	for _, s := range []string{"12345", "1a2b", "", "0x10", "000", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeID(s)
		if n != strings.TrimSpace(n) {
			t.Fatalf("untrimmed %q", n)
		}
		if NormalizeID(strings.ToUpper(s)) != NormalizeID(s) && strings.ToUpper(s) == asciiUpper(s) {
			t.Fatalf("case sensitive: %q", s)
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}
