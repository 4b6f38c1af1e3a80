package smpp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp/pdu"

	"github.com/smsgate/smsgate/message"
)

// Why an inbound deliver_sm or data_sm cannot be decoded; refusalStatus
// maps each to the permanent status of its response.
var (
	errShortPDU  = errors.New("smpp: mandatory parameters cut short")
	errTLVStream = errors.New("smpp: TLV stream cut inside a TLV header")
	errTLVLen    = errors.New("smpp: TLV length past the end of the PDU")
	// gosmpp reads a TLV length as a signed 16-bit number: a value of 32 KiB
	// or more would be misread (the value taken as empty, its bytes as more
	// TLVs), so such a PDU is refused rather than decoded wrong.
	errTLVTooLong = errors.New("smpp: TLV of 32 KiB or more (not decodable)")
)

// refusalStatus is the command_status answering a deliver_sm or data_sm
// that cannot be decoded: permanent, so the carrier does not deliver it
// again and again (SMPP 3.4 §5.1.3). A TLV whose length runs past the end
// of the PDU is ESME_RINVTLVLEN, a TLV stream cut inside a TLV header
// ESME_RINVTLVSTREAM, anything else (mandatory part malformed, PDU too
// large) ESME_RX_P_APPN.
func refusalStatus(err error) uint32 {
	switch {
	case errors.Is(err, errTLVLen):
		return StatusInvTLVLen
	case errors.Is(err, errTLVStream):
		return StatusInvTLVs
	}
	return StatusXPAppn
}

// checkTLVs walks a TLV stream (tag, 16-bit length, value) to its end.
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errTLVStream
		}
		l := binary.BigEndian.Uint16(b[2:4])
		if l >= 0x8000 {
			return errTLVTooLong
		}
		n := 4 + int(l)
		if n > len(b) {
			return errTLVLen
		}
		b = b[n:]
	}
	return nil
}

// skipCString returns the index after the NUL-terminated string at i.
func skipCString(frame []byte, i int) (int, bool) {
	if i > len(frame) {
		return 0, false
	}
	j := bytes.IndexByte(frame[i:], 0)
	if j < 0 {
		return 0, false
	}
	return i + j + 1, true
}

// dataSMTLVs returns where the TLVs of a data_sm frame begin: after
// service_type, source and destination addresses, esm_class,
// registered_delivery and data_coding.
func dataSMTLVs(frame []byte) (int, error) {
	i, ok := skipCString(frame, 16) // service_type
	if ok {
		i, ok = skipCString(frame, i+2) // source ton, npi, addr
	}
	if ok {
		i, ok = skipCString(frame, i+2) // dest ton, npi, addr
	}
	if !ok || i+3 > len(frame) {
		return 0, errShortPDU
	}
	return i + 3, nil
}

// deliverOffsets finds esm_class and data_coding in a deliver_sm frame
// (header included): after service_type, source and destination addresses;
// data_coding after protocol_id, priority_flag, schedule_delivery_time,
// validity_period, registered_delivery and replace_if_present_flag.
func deliverOffsets(frame []byte) (esm, dc int, err error) {
	i := 16
	cstr := func() bool {
		var ok bool
		i, ok = skipCString(frame, i)
		return ok
	}
	if !cstr() { // service_type
		return 0, 0, errShortPDU
	}
	i += 2 // source ton, npi
	if !cstr() {
		return 0, 0, errShortPDU
	}
	i += 2 // dest ton, npi
	if !cstr() {
		return 0, 0, errShortPDU
	}
	esm = i
	i += 3 // esm_class, protocol_id, priority_flag
	if !cstr() || !cstr() {
		return 0, 0, errShortPDU
	}
	dc = i + 2
	if dc >= len(frame) {
		return 0, 0, errShortPDU
	}
	return esm, dc, nil
}

// parseDeliverSM decodes a deliver_sm frame with gosmpp's codec. The UDHI
// bit is cleared in frame first, so the short message stays raw (UDH
// included) for ParseConcatUDH; the original esm_class is kept in the result,
// and whether it is a receipt.
func parseDeliverSM(frame []byte) (inboundPDU, error) {
	esmOff, dcOff, err := deliverOffsets(frame)
	if err != nil {
		return inboundPDU{}, fmt.Errorf("smpp: deliver_sm: %w", err)
	}
	// sm_default_msg_id, sm_length and short_message follow data_coding.
	tlvs := dcOff + 3
	if tlvs > len(frame) {
		return inboundPDU{}, fmt.Errorf("smpp: deliver_sm: %w", errShortPDU)
	}
	if tlvs += int(frame[dcOff+2]); tlvs > len(frame) {
		return inboundPDU{}, fmt.Errorf("smpp: deliver_sm: sm_length: %w", errShortPDU)
	}
	if err := checkTLVs(frame[tlvs:]); err != nil {
		return inboundPDU{}, fmt.Errorf("smpp: deliver_sm: %w", err)
	}
	in := inboundPDU{esm: frame[esmOff], dc: frame[dcOff]}
	frame[esmOff] &^= esmUDHI
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	if err := d.Unmarshal(pdu.NewBuffer(frame)); err != nil {
		return inboundPDU{}, fmt.Errorf("smpp: deliver_sm: %w", err)
	}
	in.d = d
	in.receipt = isReceipt(in)
	return in, nil
}

// parseDataSM decodes a data_sm (SMPP 3.4 §4.7), which some SMSCs use
// instead of deliver_sm for MO messages and delivery receipts. It has no
// short_message: the text is the message_payload TLV, a receipt's fields
// are TLVs (receipted_message_id, message_state, network_error_code) and
// esm_class flags it as for deliver_sm. It is carried as the equivalent
// deliver_sm, so MO and receipt handling are the same; the result is
// marked to be answered with data_sm_resp.
func parseDataSM(frame []byte) (inboundPDU, error) {
	tlvs, err := dataSMTLVs(frame)
	if err != nil {
		return inboundPDU{}, fmt.Errorf("smpp: data_sm: %w", err)
	}
	if err := checkTLVs(frame[tlvs:]); err != nil {
		return inboundPDU{}, fmt.Errorf("smpp: data_sm: %w", err)
	}
	ds := pdu.NewDataSM().(*pdu.DataSM)
	if err := ds.Unmarshal(pdu.NewBuffer(frame)); err != nil {
		return inboundPDU{}, fmt.Errorf("smpp: data_sm: %w", err)
	}
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.SequenceNumber = ds.SequenceNumber
	d.ServiceType = ds.ServiceType
	d.SourceAddr, d.DestAddr = ds.SourceAddr, ds.DestAddr
	d.EsmClass, d.RegisteredDelivery = ds.EsmClass, ds.RegisteredDelivery
	d.OptionalParameters = ds.OptionalParameters
	in := inboundPDU{d: d, esm: ds.EsmClass, dc: ds.DataCoding, dataSM: true}
	in.receipt = isReceipt(in)
	return in, nil
}

func tlv(d *pdu.DeliverSM, tag pdu.Tag) ([]byte, bool) {
	f, ok := d.OptionalParameters[tag]
	return f.Data, ok
}

// userData is the short message, or message_payload when it is empty.
func userData(d *pdu.DeliverSM) []byte {
	ud, _ := d.Message.GetMessageData()
	if len(ud) == 0 {
		if p, ok := tlv(d, tagMessagePayload); ok {
			return p
		}
	}
	return ud
}

// isReceipt: esm_class says so (bit 0x04), a receipted_message_id TLV is
// present, or the text has the receipt form.
func isReceipt(in inboundPDU) bool {
	if in.esm&esmReceipt != 0 {
		return true
	}
	if _, ok := tlv(in.d, pdu.TagReceiptedMessageID); ok {
		return true
	}
	if in.esm&esmUDHI == 0 && (in.dc == dcGSM7 || in.dc == dcIA5 || in.dc == dcLatin1) {
		return looksLikeReceipt(string(userData(in.d)))
	}
	return false
}

// decodeReceipt reads a receipt: the TLVs receipted_message_id,
// message_state and network_error_code first, the text form for what they
// do not give. ok is false without a message id.
func decodeReceipt(in inboundPDU, now time.Time) (Receipt, bool) {
	rt, _ := ParseReceiptText(string(userData(in.d)))
	r := Receipt{CarrierMessageID: rt.ID, State: rt.Stat, Err: rt.Err, DoneAt: now}
	if v, ok := tlv(in.d, pdu.TagReceiptedMessageID); ok {
		if id := strings.TrimSpace(strings.TrimRight(string(v), "\x00")); id != "" {
			r.CarrierMessageID = id
		}
	}
	if v, ok := tlv(in.d, pdu.TagMessageStateOption); ok && len(v) == 1 {
		if s := messageStateName(v[0]); s != "" {
			r.State = s
		}
	}
	if v, ok := tlv(in.d, pdu.TagNetworkErrorCode); ok && len(v) == 3 {
		r.Err = fmt.Sprintf("%03d", binary.BigEndian.Uint16(v[1:]))
	}
	if t, ok := parseReceiptDate(rt.DoneDate); ok {
		r.DoneAt = t
	}
	r.CarrierMessageID = strings.TrimSpace(strings.TrimRight(r.CarrierMessageID, "\x00"))
	return r, r.CarrierMessageID != ""
}

// alphabet of a data_coding.
type alphabet uint8

const (
	alphaGSM7 alphabet = iota
	alphaLatin1
	alphaUCS2
)

// alphabetOf maps data_coding: 0 GSM-7; 1 (IA5) and 3 Latin-1; 8 UCS-2;
// 0xF0-0xFF by bit 2 (8-bit data, read as Latin-1, or GSM-7); the GSM
// general data coding groups 0x10-0x3F by bits 3-2; anything else Latin-1.
func alphabetOf(dc byte) alphabet {
	switch {
	case dc == dcGSM7:
		return alphaGSM7
	case dc == dcUCS2:
		return alphaUCS2
	case dc >= 0xF0:
		if dc&0x04 != 0 {
			return alphaLatin1
		}
		return alphaGSM7
	case dc >= 0x10 && dc <= 0x3F:
		switch dc & 0x0C {
		case 0x00:
			return alphaGSM7
		case 0x08:
			return alphaUCS2
		}
	}
	return alphaLatin1
}

// moPart is one received part, reduced to wire units: septets (one per
// byte) for GSM-7, bytes for Latin-1, UTF-16BE for UCS-2.
type moPart struct {
	alpha alphabet
	units []byte
}

func (p moPart) text() string {
	switch p.alpha {
	case alphaGSM7:
		return message.DecodeGSM7(p.units)
	case alphaUCS2:
		return message.DecodeUCS2(p.units)
	}
	return message.DecodeLatin1(p.units)
}

// concatInfo identifies a part of a concatenated MO.
type concatInfo struct {
	ref   uint16
	ref16 bool // 16-bit reference (UDH IE 08 or SAR)
	sar   bool
	total uint8
	seq   uint8
}

// decodeMOPart extracts the text units and concatenation info of one MO
// deliver_sm. packed says GSM-7 arrives packed (carrier setting).
func decodeMOPart(in inboundPDU, packed bool) (moPart, concatInfo, bool) {
	ud := userData(in.d)
	p := moPart{alpha: alphabetOf(in.dc)}
	var ci concatInfo
	concat := false
	udhLen := 0
	if in.esm&esmUDHI != 0 && len(ud) > 0 {
		c, ok, payload, err := message.ParseConcatUDH(ud)
		if err == nil {
			udhLen = len(ud) - len(payload)
			ud = payload
			if ok && c.Total > 1 && c.Seq >= 1 && c.Seq <= c.Total {
				concat = true
				ci = concatInfo{ref: c.Ref, ref16: c.Ref16, total: c.Total, seq: c.Seq}
			}
		}
		// malformed UDH: the whole user data is read as text
	}
	if !concat {
		ref, ok1 := tlv(in.d, tagSarMsgRefNum)
		tot, ok2 := tlv(in.d, tagSarTotalSegments)
		sq, ok3 := tlv(in.d, tagSarSegmentSeqnum)
		if ok1 && ok2 && ok3 && len(ref) == 2 && len(tot) == 1 && len(sq) == 1 && tot[0] > 1 && sq[0] >= 1 && sq[0] <= tot[0] {
			concat = true
			ci = concatInfo{ref: binary.BigEndian.Uint16(ref), ref16: true, sar: true, total: tot[0], seq: sq[0]}
		}
	}
	if p.alpha == alphaGSM7 && packed {
		fill := 0
		if udhLen > 0 {
			fill = fillBits(udhLen)
		}
		septets := (len(ud)*8 - fill) / 7
		units := message.UnpackGSM7(ud, fill, septets)
		// When the bits fill whole septets, the last one may be the CR that
		// 03.38 puts in 7 spare bits; a text's own trailing CR is lost.
		if (len(ud)*8-fill)%7 == 0 && len(units) > 0 && units[len(units)-1] == 0x0D {
			units = units[:len(units)-1]
		}
		p.units = units
	} else {
		p.units = append([]byte(nil), ud...)
	}
	return p, ci, concat
}

// joinParts decodes parts in order: units of one alphabet are concatenated
// before decoding (an escape or surrogate pair split across parts survives).
func joinParts(parts []moPart) string {
	var sb strings.Builder
	for i := 0; i < len(parts); {
		j := i
		var units []byte
		for j < len(parts) && parts[j].alpha == parts[i].alpha {
			units = append(units, parts[j].units...)
			j++
		}
		sb.WriteString(moPart{alpha: parts[i].alpha, units: units}.text())
		i = j
	}
	return sb.String()
}

// reassembler collects the parts of concatenated MOs of one carrier.
//
// Acknowledgement policy: a part that does not complete its message is
// answered ESME_ROK at once and kept in memory; the part that completes it
// is answered only after the Handler returned (ESME_RX_T_APPN on error, the
// other parts are then kept so the redelivered part completes the message
// again). Loss window: a crash between the acknowledgement of an earlier
// part and the handler's success for the last part loses the message (the
// carrier will not redeliver the acknowledged parts). Holding every part's
// response instead would deadlock SMSCs whose window is smaller than the
// number of parts.
//
// Parts still incomplete after the timeout (default 60s) are handed to the
// Handler as they are: the parts received, in order, joined without a
// marker, Segments = the number received; this is logged at warn.
type reassembler struct {
	mu      sync.Mutex
	timeout time.Duration
	m       map[assemblyKey]*assembly
}

type assemblyKey struct {
	from, to string
	ref      uint16
	ref16    bool
	sar      bool
	total    uint8
}

type assembly struct {
	key      assemblyKey
	parts    []moPart // by seq-1; units == nil when missing
	have     []bool
	got      int
	first    time.Time
	bind     string
	attempts int // handler attempts after timeout
}

func newReassembler(timeout time.Duration) *reassembler {
	return &reassembler{timeout: timeout, m: make(map[assemblyKey]*assembly)}
}

// add stores a part; it returns the complete assembly (removed from the
// set) when this part completed it.
func (r *reassembler) add(k assemblyKey, seq uint8, p moPart, bind string, now time.Time) *assembly {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.m[k]
	if a == nil {
		a = &assembly{key: k, parts: make([]moPart, k.total), have: make([]bool, k.total), first: now, bind: bind}
		r.m[k] = a
	}
	i := int(seq) - 1
	if !a.have[i] {
		a.have[i] = true
		a.got++
	}
	a.parts[i] = p
	if a.got < int(k.total) {
		return nil
	}
	delete(r.m, k)
	return a
}

// restore puts an assembly back without part seq (its handler failed: the
// carrier redelivers that part).
func (r *reassembler) restore(a *assembly, seq uint8) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, exists := r.m[a.key]; exists {
		return
	}
	i := int(seq) - 1
	if a.have[i] {
		a.have[i] = false
		a.got--
		a.parts[i] = moPart{}
	}
	if a.got > 0 {
		r.m[a.key] = a
	}
}

// expired removes and returns assemblies older than the timeout (all of
// them when all is true).
func (r *reassembler) expired(now time.Time, all bool) []*assembly {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*assembly
	for k, a := range r.m {
		if all || now.Sub(a.first) >= r.timeout {
			delete(r.m, k)
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first.Before(out[j].first) })
	return out
}

// putBack re-inserts an expired assembly whose handler failed.
func (r *reassembler) putBack(a *assembly) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, exists := r.m[a.key]; !exists {
		r.m[a.key] = a
	}
}

func (r *reassembler) pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// received returns the parts present, in order.
func (a *assembly) received() []moPart {
	out := make([]moPart, 0, a.got)
	for i, p := range a.parts {
		if a.have[i] {
			out = append(out, p)
		}
	}
	return out
}
