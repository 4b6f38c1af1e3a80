package smpp

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smsgate/smsgate/message"
)

// Long message modes (config.Carrier.LongMessages).
const (
	LongUDH     = "udh"
	LongSAR     = "sar"
	LongPayload = "payload"
)

// wireOptions are the carrier settings that shape submit_sm.
type wireOptions struct {
	long   string // LongUDH, LongSAR or LongPayload
	packed bool   // GSM-7 packed on the wire
}

// SMPP field values used on the wire.
const (
	esmUDHI             = 0x40 // esm_class: UDH indicator
	esmReceiptMask      = 0x3C // esm_class bits 2-5: message type
	esmReceipt          = 0x04 // esm_class: SMSC delivery receipt
	registeredDelivery  = 0x01 // final receipt, success or failure
	dcGSM7              = 0x00
	dcIA5               = 0x01
	dcLatin1            = 0x03
	dcUCS2              = 0x08
	tagSarMsgRefNum     = pdu.TagSarMsgRefNum
	tagSarTotalSegments = pdu.TagSarTotalSegments
	tagSarSegmentSeqnum = pdu.TagSarSegmentSeqnum
	tagMessagePayload   = pdu.TagMessagePayload
)

// buildSubmits returns one marshalled submit_sm per segment of s, with
// sequence number 0 (patched when sent). ref is the concatenation reference
// (UDH uses its low 8 bits, SAR all 16).
func buildSubmits(s Submission, w wireOptions, ref uint16) ([][]byte, error) {
	src, err := wireAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("smpp: source address: %w", err)
	}
	dst, err := wireAddress(s.To)
	if err != nil {
		return nil, fmt.Errorf("smpp: destination address: %w", err)
	}
	validity := ""
	if !s.ValidUntil.IsZero() {
		validity = FormatAbsoluteTime(s.ValidUntil)
	}

	enc := s.Encoding
	if enc == "" {
		enc = message.Analyze(s.Text).Encoding
	}
	var whole []byte // the whole text in wire units (septets unpacked, or UTF-16BE)
	if enc == message.EncodingGSM7 {
		septets, ok := message.EncodeGSM7(s.Text)
		if ok {
			whole = septets
		} else {
			enc = message.EncodingUCS2 // cannot be GSM-7: never send a lossy text
		}
	}
	if enc != message.EncodingGSM7 {
		enc = message.EncodingUCS2
		whole = message.EncodeUCS2(s.Text)
	}
	coding := data.GSM7BIT
	if enc == message.EncodingUCS2 {
		coding = data.UCS2
	}
	packed := w.packed && enc == message.EncodingGSM7

	newSM := func() *pdu.SubmitSM {
		sm := pdu.NewSubmitSM().(*pdu.SubmitSM)
		sm.SequenceNumber = 0
		sm.SourceAddr = src
		sm.DestAddr = dst
		sm.ValidityPeriod = validity
		sm.RegisteredDelivery = registeredDelivery
		return sm
	}

	if w.long == LongPayload {
		payload := whole
		if packed {
			payload = message.PackGSM7(whole, 0)
		}
		sm := newSM()
		if err := sm.Message.SetMessageDataWithEncoding(nil, coding); err != nil {
			return nil, fmt.Errorf("smpp: short message: %w", err)
		}
		if len(payload) > 0 {
			sm.RegisterOptionalParam(pdu.Field{Tag: tagMessagePayload, Data: payload})
		}
		return [][]byte{marshal(sm)}, nil
	}

	parts := message.Split(s.Text, enc)
	if enc == message.EncodingGSM7 && len(parts) <= 1 {
		parts = [][]byte{whole}
	}
	if len(parts) == 0 {
		parts = [][]byte{nil}
	}
	if len(parts) > 255 {
		return nil, fmt.Errorf("smpp: %d segments: at most 255", len(parts))
	}
	frames := make([][]byte, 0, len(parts))
	for i, p := range parts {
		sm := newSM()
		var ud []byte
		switch {
		case len(parts) == 1:
			ud = p
			if packed {
				ud = message.PackGSM7(p, 0)
			}
		case w.long == LongSAR:
			ud = p
			if packed {
				ud = message.PackGSM7(p, 0)
			}
			var refb [2]byte
			binary.BigEndian.PutUint16(refb[:], ref)
			sm.RegisterOptionalParam(pdu.Field{Tag: tagSarMsgRefNum, Data: refb[:]})
			sm.RegisterOptionalParam(pdu.Field{Tag: tagSarTotalSegments, Data: []byte{byte(len(parts))}})
			sm.RegisterOptionalParam(pdu.Field{Tag: tagSarSegmentSeqnum, Data: []byte{byte(i + 1)}})
		default: // UDH
			udh := message.Concat{Ref: ref & 0xFF, Total: uint8(len(parts)), Seq: uint8(i + 1)}.UDH()
			body := p
			if packed {
				body = message.PackGSM7(p, fillBits(len(udh)))
			}
			ud = make([]byte, 0, len(udh)+len(body))
			ud = append(append(ud, udh...), body...)
			sm.EsmClass |= esmUDHI
		}
		if err := sm.Message.SetMessageDataWithEncoding(ud, coding); err != nil {
			return nil, fmt.Errorf("smpp: segment %d: %w", i+1, err)
		}
		frames = append(frames, marshal(sm))
	}
	return frames, nil
}

// fillBits is the number of padding bits after a UDH of udhLen octets so the
// first septet of packed GSM-7 starts on a septet boundary.
func fillBits(udhLen int) int {
	return (7 - (udhLen*8)%7) % 7
}

func marshal(p pdu.PDU) []byte {
	b := pdu.NewBuffer(make([]byte, 0, 64))
	p.Marshal(b)
	return b.Bytes()
}

// wireAddress turns "+15551234567" into TON 1 (international), NPI 1
// (E.164) "15551234567"; digits without "+" into TON 0 (unknown), NPI 1;
// anything else into TON 5 (alphanumeric), NPI 0.
func wireAddress(a string) (pdu.Address, error) {
	ton, npi := byte(0x05), byte(0x00)
	digits := a
	if len(a) > 1 && a[0] == '+' && allDigits(a[1:]) {
		ton, npi, digits = 0x01, 0x01, a[1:]
	} else if a != "" && allDigits(a) {
		ton, npi = 0x00, 0x01
	}
	addr := pdu.NewAddressWithTonNpi(ton, npi)
	if err := addr.SetAddress(digits); err != nil {
		return addr, fmt.Errorf("%q: %w", a, err)
	}
	return addr, nil
}

// fromWireAddress is the inverse of wireAddress for inbound addresses: "+"
// is prepended to international (TON 1) digits that lack it.
func fromWireAddress(a pdu.Address) string {
	s := a.Address()
	if a.Ton() == 0x01 && s != "" && allDigits(s) {
		return "+" + s
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// FormatAbsoluteTime renders t as an SMPP absolute time in UTC,
// "YYMMDDhhmmsstnnp" with t=0, nn=00, p='+' (e.g. "260102150405000+").
func FormatAbsoluteTime(t time.Time) string {
	return t.UTC().Format("060102150405") + "000+"
}
