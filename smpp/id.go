package smpp

import (
	"math/big"
	"strings"
)

// NormalizeID returns the canonical form of a carrier message id, so the
// hex form (often in submit_sm_resp) and the decimal form (often in receipt
// text) of one id compare equal. The rule, applied to the id with spaces and
// trailing NULs trimmed and letters lower-cased:
//
//   - only decimal digits: read as a decimal number;
//   - else only hex digits (0-9a-f): read as a hex number;
//   - the canonical form is then the number in lower-case hex without
//     leading zeros ("0" for zero), for numbers of any size;
//   - anything else (empty, other characters, a "0x" prefix included) is
//     returned as the trimmed lower-case string.
//
// Consequence: a hex id made only of decimal digits ("12345" meaning
// 0x12345) is read as decimal, so it matches the decimal form of 12345 and
// not of 0x12345. Carriers that send such ids in both forms cannot be told
// apart from those that do not; compare both sides through NormalizeID.
// NormalizeID is not idempotent (its output may itself look decimal): apply
// it once to each raw id.
func NormalizeID(id string) string {
	s := strings.ToLower(strings.TrimSpace(strings.TrimRight(id, "\x00")))
	if s == "" {
		return s
	}
	dec, hex := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'f':
			dec = false
		default:
			return s
		}
	}
	base := 16
	if dec {
		base = 10
	} else if !hex {
		return s
	}
	// Fast path: fits in 64 bits.
	if (base == 10 && len(s) <= 19) || (base == 16 && len(s) <= 16) {
		var n uint64
		for i := 0; i < len(s); i++ {
			n = n*uint64(base) + uint64(hexVal(s[i]))
		}
		return formatHex(n)
	}
	var n big.Int
	if _, ok := n.SetString(s, base); !ok {
		return s
	}
	return n.Text(16)
}

func hexVal(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

func formatHex(n uint64) string {
	if n == 0 {
		return "0"
	}
	var buf [16]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = "0123456789abcdef"[n&0xF]
		n >>= 4
	}
	return string(buf[i:])
}

// IDFormat says how a carrier writes one message id in submit_sm_resp and in
// its receipts, as Kannel's msg-id-type does. IDFormatAuto suits carriers
// that use one base on both sides, and those whose hex ids carry a letter;
// a carrier that writes an id in hex on one side and in decimal on the other
// needs its mixed format named, since a hex id made only of digits cannot
// be told from a decimal one (NormalizeID reads it as decimal).
type IDFormat string

// The carrier id formats ([[carrier]] message_id_format).
const (
	IDFormatAuto                  IDFormat = "auto"
	IDFormatRespHexReceiptDecimal IDFormat = "resp_hex_receipt_decimal"
	IDFormatRespDecimalReceiptHex IDFormat = "resp_decimal_receipt_hex"
)

// ReceiptID rewrites a receipt's carrier id into the base the carrier uses
// in submit_sm_resp, so both sides are the same string and compare equal
// through NormalizeID whatever digits they hold. IDFormatAuto (or "") and
// an id that is not a number in the receipt's base are returned unchanged.
func (f IDFormat) ReceiptID(id string) string {
	var from, to int
	switch f {
	case IDFormatRespHexReceiptDecimal:
		from, to = 10, 16
	case IDFormatRespDecimalReceiptHex:
		from, to = 16, 10
	default:
		return id
	}
	s := strings.ToLower(strings.TrimSpace(strings.TrimRight(id, "\x00")))
	var n big.Int
	if s == "" || strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		return id
	}
	if _, ok := n.SetString(s, from); !ok {
		return id
	}
	return n.Text(to)
}
