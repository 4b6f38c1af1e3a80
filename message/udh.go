package message

import (
	"errors"
	"fmt"
)

// Information element identifiers of the concatenation IEs (3GPP TS 23.040
// 9.2.3.24.1 and 9.2.3.24.8).
const (
	ieiConcat8  = 0x00 // reference, total, sequence: 3 octets
	ieiConcat16 = 0x08 // 16-bit reference, total, sequence: 4 octets
)

// ErrMalformedUDH is wrapped by ParseConcatUDH errors.
var ErrMalformedUDH = errors.New("malformed udh")

// Concat identifies one part of a concatenated SMS.
type Concat struct {
	Ref   uint16 // reference shared by all parts; only the low 8 bits unless Ref16
	Total uint8  // number of parts, 1..255
	Seq   uint8  // this part, 1..Total
	Ref16 bool   // 16-bit reference IE (0x08) instead of 8-bit (0x00)
}

// UDH returns the complete user data header carrying c, including the UDHL
// octet: 05 00 03 rr tt ss with an 8-bit reference (Ref truncated to its low
// byte), or 06 08 04 rrrr tt ss with a 16-bit reference (big-endian).
func (c Concat) UDH() []byte {
	if c.Ref16 {
		return []byte{0x06, ieiConcat16, 0x04, byte(c.Ref >> 8), byte(c.Ref), c.Total, c.Seq}
	}
	return []byte{0x05, ieiConcat8, 0x03, byte(c.Ref), c.Total, c.Seq}
}

// ParseConcatUDH parses the user data header at the start of ud (UDHL first)
// and returns the concatenation IE it carries and the payload after the UDH.
// Other IEs, before or after, are skipped. ok is false when there is no
// usable concatenation IE; following 23.040, an IE with Total 0, Seq 0 or
// Seq > Total is ignored, and when the IE is repeated the last one counts.
// A UDH or IE whose length runs past ud, or a concatenation IE of the wrong
// length, is an error wrapping ErrMalformedUDH. It never reads past ud.
func ParseConcatUDH(ud []byte) (c Concat, ok bool, payload []byte, err error) {
	if len(ud) == 0 {
		return Concat{}, false, nil, fmt.Errorf("parse udh: %w: empty user data", ErrMalformedUDH)
	}
	udhl := int(ud[0])
	if 1+udhl > len(ud) {
		return Concat{}, false, nil, fmt.Errorf("parse udh: %w: length %d exceeds %d octets of user data", ErrMalformedUDH, udhl, len(ud)-1)
	}
	h := ud[1 : 1+udhl]
	for i := 0; i < len(h); {
		if i+2 > len(h) {
			return Concat{}, false, nil, fmt.Errorf("parse udh: %w: truncated ie header at offset %d", ErrMalformedUDH, i)
		}
		iei, iedl := h[i], int(h[i+1])
		data := h[i+2:]
		if iedl > len(data) {
			return Concat{}, false, nil, fmt.Errorf("parse udh: %w: ie 0x%02x length %d exceeds header", ErrMalformedUDH, iei, iedl)
		}
		data = data[:iedl]
		i += 2 + iedl

		var cand Concat
		switch iei {
		case ieiConcat8:
			if iedl != 3 {
				return Concat{}, false, nil, fmt.Errorf("parse udh: %w: concat ie length %d, want 3", ErrMalformedUDH, iedl)
			}
			cand = Concat{Ref: uint16(data[0]), Total: data[1], Seq: data[2]}
		case ieiConcat16:
			if iedl != 4 {
				return Concat{}, false, nil, fmt.Errorf("parse udh: %w: concat ie length %d, want 4", ErrMalformedUDH, iedl)
			}
			cand = Concat{Ref: uint16(data[0])<<8 | uint16(data[1]), Total: data[2], Seq: data[3], Ref16: true}
		default:
			continue
		}
		if cand.Total == 0 || cand.Seq == 0 || cand.Seq > cand.Total {
			continue
		}
		c, ok = cand, true
	}
	return c, ok, ud[1+udhl:], nil
}
