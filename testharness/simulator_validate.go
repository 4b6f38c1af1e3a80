package testharness

import (
	"errors"
	"fmt"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
)

// maxOctetSM is the most short_message octets (UDH included) a single SMS
// carries in an 8-bit or UCS-2 data_coding.
const maxOctetSM = 140

// validNPI are the numbering plan indicators SMPP 3.4 §5.2.6 defines.
var validNPI = map[byte]bool{0: true, 1: true, 3: true, 4: true, 6: true, 8: true, 9: true, 10: true, 14: true, 18: true}

// checkSubmit is the validation a real SMSC does on a decoded submit_sm. It
// returns the command_status to answer (StatusOK when it passes) and whether
// the validity_period is already past: such a submit is accepted and its
// receipt says EXPIRED, as the message expires before any delivery attempt.
// rawOK tells whether raw (the undecoded fields) is usable.
func checkSubmit(sm *pdu.SubmitSM, raw smFields, rawOK bool, now time.Time) (status uint32, expired bool) {
	switch {
	case sm.DestAddr.Address() == "":
		return StatusInvDstAdr, false
	case sm.SourceAddr.Ton() > 6:
		return StatusInvSrcTON, false
	case !validNPI[sm.SourceAddr.Npi()]:
		return StatusInvSrcNPI, false
	case sm.DestAddr.Ton() > 6:
		return StatusInvDstTON, false
	case !validNPI[sm.DestAddr.Npi()]:
		return StatusInvDstNPI, false
	}
	if rawOK {
		// SMPP 3.4 §5.3.2.32: with message_payload, sm_length must be 0.
		if f, ok := sm.OptionalParameters[pdu.Tag(TagMessagePayload)]; ok && len(f.Data) > 0 && len(raw.sm) > 0 {
			return StatusInvMsgLen, false
		}
		if octetCoding(raw.dataCoding) && len(raw.sm) > maxOctetSM {
			return StatusInvMsgLen, false
		}
	}
	until, err := parseSMPPTime(sm.ValidityPeriod, now)
	if err != nil {
		return StatusInvExpiry, false
	}
	return StatusOK, !until.IsZero() && !until.After(now)
}

// octetCoding reports whether data_coding dc counts its short_message in
// octets on the air (8-bit binary 0x02 and 0x04, UCS-2 0x08, message class
// 8-bit 0xF4-0xF7), so that 140 octets is the most one SMS holds.
func octetCoding(dc byte) bool {
	return dc == 0x02 || dc == 0x04 || dc == 0x08 || dc&0xFC == 0xF4
}

var errBadTime = errors.New("not an SMPP time")

// parseSMPPTime parses an SMPP 3.4 §7.1.1 time: "" (none: zero time),
// absolute "YYMMDDhhmmsstnnp" (p '+' or '-': nn quarter hours ahead of or
// behind UTC) or relative "YYMMDDhhmmss000R" (from now).
func parseSMPPTime(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if len(v) != 16 {
		return time.Time{}, fmt.Errorf("%w: %q is %d characters, want 16", errBadTime, v, len(v))
	}
	var n [7]int // YY MM DD hh mm ss, then t nn as one number
	for i := range 15 {
		if v[i] < '0' || v[i] > '9' {
			return time.Time{}, fmt.Errorf("%w: %q", errBadTime, v)
		}
	}
	for i := range 6 {
		n[i] = int(v[2*i]-'0')*10 + int(v[2*i+1]-'0')
	}
	tenths := int(v[12] - '0')
	quarters := int(v[13]-'0')*10 + int(v[14]-'0')
	switch v[15] {
	case 'R':
		return now.AddDate(n[0], n[1], n[2]).Add(time.Duration(n[3])*time.Hour +
			time.Duration(n[4])*time.Minute + time.Duration(n[5])*time.Second), nil
	case '+', '-':
	default:
		return time.Time{}, fmt.Errorf("%w: %q ends in %q", errBadTime, v, v[15])
	}
	if n[1] < 1 || n[1] > 12 || n[2] < 1 || n[3] > 23 || n[4] > 59 || n[5] > 59 || quarters > 48 {
		return time.Time{}, fmt.Errorf("%w: %q out of range", errBadTime, v)
	}
	t := time.Date(2000+n[0], time.Month(n[1]), n[2], n[3], n[4], n[5], tenths*int(100*time.Millisecond), time.UTC)
	if t.Day() != n[2] { // 31 April and the like roll over
		return time.Time{}, fmt.Errorf("%w: %q has no such day", errBadTime, v)
	}
	offset := time.Duration(quarters) * 15 * time.Minute
	if v[15] == '+' { // local time ahead of UTC
		offset = -offset
	}
	return t.Add(offset), nil
}

// undecodable is how a real SMSC answers a submit_sm the codec could not
// parse (body is the PDU body, raw and rawErr what scanSM made of it): a body
// that ends inside the mandatory fields is a command_length error
// (generic_nack ESME_RINVCMDLEN); a malformed optional part is
// ESME_RINVOPTPARSTREAM; a UDH that does not fit with UDHI set is
// ESME_RINVESMCLASS (both in a submit_sm_resp).
func undecodable(body []byte, raw smFields, rawErr error) (cmdID, status uint32) {
	switch {
	case rawErr != nil:
		return cmdGenericNack, StatusInvCmdLen
	case !tlvStreamOK(body[raw.end:]):
		return cmdSubmitSMResp, StatusInvOptParStream
	case raw.esmClass&0x40 != 0:
		return cmdSubmitSMResp, StatusInvEsmClass
	}
	return cmdGenericNack, StatusInvCmdLen
}

// tlvStreamOK reports whether b is a whole number of TLVs (tag, length, value).
func tlvStreamOK(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		n := int(b[2])<<8 | int(b[3])
		if 4+n > len(b) {
			return false
		}
		b = b[4+n:]
	}
	return true
}

// bindUndecodable is how a real SMSC answers a bind the codec could not
// parse: mandatory fields cut short is a command_length error (generic_nack
// ESME_RINVCMDLEN); octets after them that are not TLVs is
// ESME_RINVOPTPARSTREAM in the bind response (nack false).
func bindUndecodable(body []byte) (nack bool, status uint32) {
	i := 0
	for range 3 { // system_id, password, system_type
		for i < len(body) && body[i] != 0 {
			i++
		}
		if i == len(body) {
			return true, StatusInvCmdLen
		}
		i++
	}
	i += 3 // interface_version, addr_ton, addr_npi
	for i < len(body) && body[i] != 0 {
		i++
	}
	if i >= len(body) {
		return true, StatusInvCmdLen
	}
	if !tlvStreamOK(body[i+1:]) {
		return false, StatusInvOptParStream
	}
	return true, StatusInvCmdLen
}
