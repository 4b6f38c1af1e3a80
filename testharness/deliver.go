package testharness

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// SMPP optional parameter tags the simulator reads or writes.
const (
	TagReceiptedMessageID uint16 = 0x001E
	TagSarMsgRefNum       uint16 = 0x020C
	TagSarTotalSegments   uint16 = 0x020E
	TagSarSegmentSeqnum   uint16 = 0x020F
	TagNetworkErrorCode   uint16 = 0x0423
	TagMessagePayload     uint16 = 0x0424
	TagMessageState       uint16 = 0x0427
)

// delivery is one deliver_sm on its way to a receiver bind; it is owned by
// exactly one place at a time (queue, a connection's in-flight map, a timer).
type delivery struct {
	pdu      *pdu.DeliverSM
	dataSM   bool // last sent as a data_sm (SimOptions.DataSM)
	failures int  // failed attempts: refused or unanswered (see Simulator.deliverFailed)
}

// asDataSM is the data_sm carrying what d carries: the same addresses,
// esm_class, registered_delivery, data_coding and TLVs, and the short
// message (UDH included) as the message_payload TLV, as SMSCs that deliver
// MO messages and receipts by data_sm send them.
func asDataSM(d *pdu.DeliverSM) *pdu.DataSM {
	ds := pdu.NewDataSM().(*pdu.DataSM)
	ds.SetSequenceNumber(d.SequenceNumber)
	ds.ServiceType = d.ServiceType
	ds.SourceAddr, ds.DestAddr = d.SourceAddr, d.DestAddr
	ds.EsmClass, ds.RegisteredDelivery = d.EsmClass, d.RegisteredDelivery
	if enc := d.Message.Encoding(); enc != nil {
		ds.DataCoding = enc.DataCoding()
	}
	for _, f := range d.OptionalParameters {
		ds.RegisterOptionalParam(f)
	}
	if sm, _ := d.Message.GetMessageData(); len(sm) > 0 {
		if _, ok := d.OptionalParameters[pdu.Tag(TagMessagePayload)]; !ok {
			ds.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagMessagePayload), Data: sm})
		}
	}
	return ds
}

// smFields are the raw submit_sm / deliver_sm fields gosmpp decodes lossily
// (it strips the UDH and maps data_coding to an encoding).
type smFields struct {
	esmClass    byte
	regDelivery byte
	dataCoding  byte
	sm          []byte // short_message octets, UDH included
	end         int    // offset in the body just past short_message, where the TLVs start
}

var errTruncated = errors.New("truncated body")

// scanSM walks the mandatory part of a submit_sm or deliver_sm body.
func scanSM(body []byte) (smFields, error) {
	var f smFields
	i := 0
	cstr := func() error {
		for ; i < len(body); i++ {
			if body[i] == 0 {
				i++
				return nil
			}
		}
		return errTruncated
	}
	skip := func(n int) error {
		if i+n > len(body) {
			return errTruncated
		}
		i += n
		return nil
	}
	if err := cstr(); err != nil { // service_type
		return f, err
	}
	for range 2 { // source, destination: ton, npi, address
		if err := skip(2); err != nil {
			return f, err
		}
		if err := cstr(); err != nil {
			return f, err
		}
	}
	if err := skip(3); err != nil { // esm_class, protocol_id, priority_flag
		return f, err
	}
	f.esmClass = body[i-3]
	if err := cstr(); err != nil { // schedule_delivery_time
		return f, err
	}
	if err := cstr(); err != nil { // validity_period
		return f, err
	}
	if err := skip(5); err != nil { // registered_delivery, replace_if_present, data_coding, sm_default_msg_id, sm_length
		return f, err
	}
	f.regDelivery = body[i-5]
	f.dataCoding = body[i-3]
	n := int(body[i-1])
	if err := skip(n); err != nil {
		return f, err
	}
	f.sm = body[i-n : i : i]
	f.end = i
	return f, nil
}

// receiptStates maps the stat: word of a receipt to the message_state TLV.
var receiptStates = map[string]byte{
	"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4,
	"UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8,
}

// receipt is a delivery receipt waiting to be emitted.
type receipt struct {
	id            string
	source, dest  pdu.Address // of the receipt: the submit's destination and source
	submittedAt   time.Time
	stat, errCode string
	text          string
	idForm        string // Faults.ReceiptID
	decimalID     bool   // id is decimal (SimOptions.DecimalIDs), else hex
}

// newReceipt returns the receipt a submit asks for, or nil (registered_delivery
// bit 0 = receipt on success and failure, bit 1 = on failure only).
func newReceipt(sm *pdu.SubmitSM, raw smFields, id string, decimalID bool, at time.Time, f *Faults) *receipt {
	stat := f.ReceiptStat
	if stat == "" {
		stat = "DELIVRD"
	}
	switch raw.regDelivery & 0x03 {
	case 1:
	case 2:
		if stat == "DELIVRD" {
			return nil
		}
	default:
		return nil
	}
	errCode := f.ReceiptErr
	if errCode == "" {
		errCode = "000"
	}
	payload := raw.sm
	if raw.esmClass&0x40 != 0 && len(payload) > 0 && int(payload[0])+1 <= len(payload) {
		payload = payload[int(payload[0])+1:]
	}
	if len(payload) == 0 {
		if fld, ok := sm.OptionalParameters[pdu.Tag(TagMessagePayload)]; ok {
			payload = fld.Data
		}
	}
	return &receipt{
		id:          id,
		source:      sm.DestAddr,
		dest:        sm.SourceAddr,
		submittedAt: at,
		stat:        stat,
		errCode:     errCode,
		text:        receiptText(payload, raw.dataCoding),
		idForm:      f.ReceiptID,
		decimalID:   decimalID,
	}
}

// SendReceipt delivers a receipt for an accepted submit now, with stat
// ("" = DELIVRD) and errCode ("" = "000"), whatever the faults say about
// receipts except ReceiptID. Tests use it with NoReceipts to decide when each
// segment's receipt arrives and what it says.
func (s *Simulator) SendReceipt(sub Submit, stat, errCode string) error {
	if sub.MessageID == "" {
		return errors.New("send receipt: the submit was not accepted")
	}
	if stat == "" {
		stat = "DELIVRD"
	}
	if errCode == "" {
		errCode = "000"
	}
	src, err := pdu.NewAddressWithTonNpiAddr(1, 1, sub.Dest)
	if err != nil {
		return fmt.Errorf("send receipt: %w", err)
	}
	dst, err := pdu.NewAddressWithTonNpiAddr(1, 1, sub.Source)
	if err != nil {
		return fmt.Errorf("send receipt: %w", err)
	}
	payload := sub.ShortMessage
	if sub.ESMClass&0x40 != 0 && len(payload) > 0 && int(payload[0])+1 <= len(payload) {
		payload = payload[int(payload[0])+1:]
	}
	r := &receipt{
		id:          sub.MessageID,
		source:      src,
		dest:        dst,
		submittedAt: sub.At,
		stat:        stat,
		errCode:     errCode,
		text:        receiptText(payload, sub.DataCoding),
		idForm:      s.Faults().ReceiptID,
		decimalID:   s.opts.DecimalIDs,
	}
	s.dispatch(r.build(time.Now()))
	return nil
}

// wireID is the id as the receipt carries it (Faults.ReceiptID), and
// whether receipted_message_id is sent.
func (r *receipt) wireID() (id string, tlv bool) {
	base := 16
	if r.decimalID {
		base = 10
	}
	switch r.idForm {
	case "text":
		return r.id, false
	case "decimal", "hex":
		to := 10
		if r.idForm == "hex" {
			to = 16
		}
		n, err := strconv.ParseUint(r.id, base, 64)
		if err != nil {
			return r.id, false
		}
		return strconv.FormatUint(n, to), false
	case "nul":
		return r.id + "\x00", false
	}
	return r.id, true
}

// receiptText is the first 20 characters of the message, as printable ASCII.
func receiptText(payload []byte, dataCoding byte) string {
	var s string
	switch dataCoding {
	case 0:
		s, _ = data.GSM7BIT.Decode(payload)
	case 8:
		s, _ = data.UCS2.Decode(payload)
	default:
		s, _ = data.LATIN1.Decode(payload)
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == 20 {
			break
		}
		if r < 0x20 || r > 0x7E {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// build materialises the receipt as a deliver_sm done at done.
func (r *receipt) build(done time.Time) *delivery {
	dlvrd := "000"
	if r.stat == "DELIVRD" {
		dlvrd = "001"
	}
	const layout = "0601021504"
	id, withTLV := r.wireID()
	text := fmt.Sprintf("id:%s sub:001 dlvrd:%s submit date:%s done date:%s stat:%s err:%s text:%s",
		id, dlvrd, r.submittedAt.UTC().Format(layout), done.UTC().Format(layout), r.stat, r.errCode, r.text)
	d := pdu.NewDeliverSM().(*pdu.DeliverSM)
	d.SourceAddr = r.source
	d.DestAddr = r.dest
	d.EsmClass = data.SM_SMSC_DLV_RCPT_TYPE
	d.Message, _ = pdu.NewBinaryShortMessageWithEncoding([]byte(text), data.GSM7BIT)
	state, ok := receiptStates[r.stat]
	if !ok {
		state = receiptStates["UNKNOWN"]
	}
	code, _ := strconv.Atoi(r.errCode)
	if withTLV {
		d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagReceiptedMessageID), Data: append([]byte(r.id), 0)})
	}
	d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagMessageState), Data: []byte{state}})
	// network_error_code: network type 3 (GSM), then the error as 2 octets.
	d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagNetworkErrorCode), Data: []byte{3, byte(code >> 8), byte(code)}})
	return &delivery{pdu: d}
}

// scheduleReceipt emits r after ReceiptDelay (nil r: nothing).
func (s *Simulator) scheduleReceipt(r *receipt) {
	if r == nil {
		return
	}
	if s.opts.ReceiptDelay > 0 {
		s.sched.after(s.opts.ReceiptDelay, func() { s.dispatch(r.build(time.Now())) })
		return
	}
	s.dispatch(r.build(time.Now()))
}

// InjectMO delivers mo as deliver_sm to a bound receiver or transceiver (one
// per part when concatenated); with none bound, the parts wait until one binds.
// It fails when the text cannot be encoded as asked.
func (s *Simulator) InjectMO(mo MO) error {
	units, err := encodeUnits(mo.Text, mo.UCS2)
	if err != nil {
		return fmt.Errorf("inject mo: %w", err)
	}
	enc := data.GSM7BIT
	if mo.UCS2 {
		enc = data.UCS2
	}
	src, err := pdu.NewAddressWithTonNpiAddr(1, 1, mo.From)
	if err != nil {
		return fmt.Errorf("inject mo: from: %w", err)
	}
	dst, err := pdu.NewAddressWithTonNpiAddr(1, 1, mo.To)
	if err != nil {
		return fmt.Errorf("inject mo: to: %w", err)
	}
	newPart := func(esm byte, sm []byte) (*pdu.DeliverSM, error) {
		d := pdu.NewDeliverSM().(*pdu.DeliverSM)
		d.SourceAddr, d.DestAddr, d.EsmClass = src, dst, esm
		if len(sm) > data.SM_MSG_LEN {
			return nil, fmt.Errorf("inject mo: part of %d octets exceeds %d", len(sm), data.SM_MSG_LEN)
		}
		d.Message, _ = pdu.NewBinaryShortMessageWithEncoding(sm, enc)
		return d, nil
	}

	var parts []*pdu.DeliverSM
	switch mo.Concat {
	case "":
		whole := joinUnits(units)
		if len(whole) > data.SM_MSG_LEN {
			d, _ := newPart(0, nil)
			d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagMessagePayload), Data: whole})
			parts = append(parts, d)
			break
		}
		d, _ := newPart(0, whole)
		parts = append(parts, d)
	case "udh", "sar":
		limit := mo.PartLen
		if limit <= 0 {
			limit = 153
			if mo.UCS2 {
				limit = 67
			}
		}
		chunks, err := groupUnits(units, limit, mo.UCS2)
		if err != nil {
			return fmt.Errorf("inject mo: %w", err)
		}
		if len(chunks) > 255 {
			return fmt.Errorf("inject mo: %d parts exceed 255", len(chunks))
		}
		ref := uint16(s.ref.Add(1))
		total := byte(len(chunks))
		for i, chunk := range chunks {
			seq := byte(i + 1)
			var d *pdu.DeliverSM
			if mo.Concat == "udh" {
				udh := []byte{0x05, 0x00, 0x03, byte(ref), total, seq}
				if d, err = newPart(data.SM_UDH_GSM, append(udh, chunk...)); err != nil {
					return err
				}
			} else {
				if d, err = newPart(0, chunk); err != nil {
					return err
				}
				d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagSarMsgRefNum), Data: []byte{byte(ref >> 8), byte(ref)}})
				d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagSarTotalSegments), Data: []byte{total}})
				d.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(TagSarSegmentSeqnum), Data: []byte{seq}})
			}
			parts = append(parts, d)
		}
	default:
		return fmt.Errorf("inject mo: unknown concat %q (want \"\", \"udh\" or \"sar\")", mo.Concat)
	}
	for _, d := range parts {
		s.dispatch(&delivery{pdu: d})
	}
	return nil
}

// encodeUnits encodes text one character at a time: GSM 03.38 unpacked
// septets (an extension character is escape + char) or UTF-16BE.
func encodeUnits(text string, ucs2 bool) ([][]byte, error) {
	units := make([][]byte, 0, len(text))
	for _, r := range text {
		if ucs2 {
			var b []byte
			for _, u := range utf16.Encode([]rune{r}) {
				b = append(b, byte(u>>8), byte(u))
			}
			units = append(units, b)
			continue
		}
		b, err := data.GSM7BIT.Encode(string(r))
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("character %q is not in GSM 03.38 (set UCS2)", r)
		}
		units = append(units, b)
	}
	return units, nil
}

func joinUnits(units [][]byte) []byte {
	var out []byte
	for _, u := range units {
		out = append(out, u...)
	}
	return out
}

// groupUnits packs characters into parts of at most limit septets / UTF-16 units.
func groupUnits(units [][]byte, limit int, ucs2 bool) ([][]byte, error) {
	size := func(u []byte) int {
		if ucs2 {
			return len(u) / 2
		}
		return len(u)
	}
	var parts [][]byte
	var cur []byte
	n := 0
	for _, u := range units {
		if size(u) > limit {
			return nil, fmt.Errorf("part length %d cannot hold a character", limit)
		}
		if n+size(u) > limit {
			parts = append(parts, cur)
			cur, n = nil, 0
		}
		cur = append(cur, u...)
		n += size(u)
	}
	if cur != nil || len(parts) == 0 {
		parts = append(parts, cur)
	}
	return parts, nil
}
