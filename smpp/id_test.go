package smpp

import (
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
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
		// A receipt id rewritten into the other base and back is the same
		// number.
		if h := IDFormatRespHexReceiptDecimal.ReceiptID(s); h != s {
			var n big.Int
			n.SetString(strings.TrimSpace(strings.TrimRight(s, "\x00")), 10)
			if back := IDFormatRespDecimalReceiptHex.ReceiptID(h); back != n.Text(10) {
				t.Fatalf("%q -> %q -> %q, want %q", s, h, back, n.Text(10))
			}
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

// A carrier that writes an id in hex in submit_sm_resp and in decimal in
// receipts (or the reverse) matches with its format named, also for hex ids
// made only of digits, which IDFormatAuto reads as decimal.
func TestIDFormatReceiptID(t *testing.T) {
	tests := []struct {
		name          string
		format        IDFormat
		resp, receipt string
		autoMatches   bool // whether IDFormatAuto already matches them
	}{
		{"hex resp without letters", IDFormatRespHexReceiptDecimal, "123456", "1193046", false},
		{"hex resp 10 is 16", IDFormatRespHexReceiptDecimal, "10", "16", false},
		{"hex resp, 8 digits", IDFormatRespHexReceiptDecimal, "99999999", "2576980377", false},
		{"hex resp with letters", IDFormatRespHexReceiptDecimal, "1E240", "123456", true},
		{"hex resp, leading zeros", IDFormatRespHexReceiptDecimal, "00123456", "1193046", false},
		{"decimal resp, hex receipt without letters", IDFormatRespDecimalReceiptHex, "12345", "3039", false},
		{"decimal resp, hex receipt with letters", IDFormatRespDecimalReceiptHex, "2748", "ABC", true},
		{"decimal resp, NUL-terminated receipt", IDFormatRespDecimalReceiptHex, "12345", "3039\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, NormalizeID(tc.resp), NormalizeID(tc.format.ReceiptID(tc.receipt)))
			require.Equal(t, tc.autoMatches, NormalizeID(tc.resp) == NormalizeID(IDFormatAuto.ReceiptID(tc.receipt)))
		})
	}
	// The configuration offers exactly these formats.
	require.Equal(t, config.MessageIDFormats(), []string{string(IDFormatAuto),
		string(IDFormatRespHexReceiptDecimal), string(IDFormatRespDecimalReceiptHex)})
	// Not a number in the receipt's base: unchanged.
	unchanged := map[IDFormat][]string{
		IDFormatAuto:                  {"", "123", "abc", "msg 1"},
		IDFormatRespHexReceiptDecimal: {"", "abc", "msg 1", "+12", "-1"},
		IDFormatRespDecimalReceiptHex: {"", "xyz", "msg 1", "+12", "0x1f"},
	}
	for f, ids := range unchanged {
		for _, id := range ids {
			require.Equal(t, id, f.ReceiptID(id), "%s %q", f, id)
		}
	}
}
