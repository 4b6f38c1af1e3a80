package smpp

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

// rawFrame builds a PDU by hand: header and body as given, command_length
// set from the body unless length is not 0.
func rawFrame(cmd, status, seq uint32, body []byte, length uint32) []byte {
	b := make([]byte, 16+len(body))
	if length == 0 {
		length = uint32(len(b))
	}
	binary.BigEndian.PutUint32(b[0:], length)
	binary.BigEndian.PutUint32(b[4:], cmd)
	binary.BigEndian.PutUint32(b[8:], status)
	binary.BigEndian.PutUint32(b[12:], seq)
	copy(b[16:], body)
	return b
}

// sent returns the header of the PDU the client sent with command id cmd
// and sequence number seq, or nil.
func (f *fakeSMSC) sent(cmd data.CommandIDType, seq uint32) *pdu.Header {
	for _, h := range f.headers() {
		if h.CommandID == cmd && uint32(h.SequenceNumber) == seq {
			return &h
		}
	}
	return nil
}

// metricSum adds up the samples of the counter name whose labels include want.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestClassifySessionStatuses(t *testing.T) {
	for _, tt := range []struct {
		status uint32
		want   Outcome
	}{
		{0x00, OK},
		{0x04, Temporary}, // ESME_RINVBNDSTS: the SMSC lost our session
		{0x05, Temporary}, // ESME_RALYBND
		{0x08, Temporary},
		{0x58, Temporary},
		{0x0B, Permanent},
		{0x45, Permanent},
	} {
		t.Run(StatusName(tt.status), func(t *testing.T) {
			require.Equal(t, tt.want, Classify(tt.status))
		})
	}
}

// An SMSC that lost the session (TCP up, enquire_link answered) refuses
// submits with ESME_RINVBNDSTS or ESME_RALYBND: the message is not sent
// (Temporary) and the link is closed so the bind rebinds.
func TestBindStatusRefusalRebinds(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cmd    uint32
		status uint32
	}{
		{"submit_sm_resp ESME_RINVBNDSTS", 0x80000004, 0x04},
		{"generic_nack ESME_RINVBNDSTS", 0x80000000, 0x04},
		{"submit_sm_resp ESME_RALYBND", 0x80000004, 0x05},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSMSC(t, nil)
			var first atomic.Pointer[fakeConn]
			f.onSubmit = func(c *fakeConn, h pdu.Header) {
				first.CompareAndSwap(nil, c)
				if first.Load() == c {
					c.sendRaw(rawFrame(tt.cmd, tt.status, uint32(h.SequenceNumber), nil, 0))
					return
				}
				f.answer(c, h, 0, 0)
			}
			p := fakePool(t, f, nil)
			accepts := f.accepts.Load()
			res := p.Submit(context.Background(), sub("x"))
			require.Equal(t, Temporary, res.Outcome)
			require.Equal(t, tt.status, res.Status)
			var se *StatusError
			require.ErrorAs(t, res.Err, &se)
			waitFor(t, 2*time.Second, "rebind on a new connection", func() bool { return f.accepts.Load() > accepts && p.Up() })
			res = p.Submit(context.Background(), sub("x"))
			require.Equal(t, OK, res.Outcome)
			require.NotEmpty(t, res.CarrierIDs[0])
		})
	}
}

// The link of a lost session is not closed under the submits still in
// flight: their ESME_RINVBNDSTS answers make them Temporary too (not
// Unknown, which would mark them possible duplicates), and nothing new is
// written to it meanwhile.
func TestBindStatusRefusalDrainsWindow(t *testing.T) {
	f := newFakeSMSC(t, nil)
	var first atomic.Pointer[fakeConn]
	var onFirst atomic.Int32
	var mu sync.Mutex
	var held []uint32
	f.onSubmit = func(c *fakeConn, h pdu.Header) {
		first.CompareAndSwap(nil, c)
		if first.Load() != c {
			f.answer(c, h, 0, 0)
			return
		}
		onFirst.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if held = append(held, uint32(h.SequenceNumber)); len(held) == 3 {
			// The window is full: refuse all three, one after the other.
			for _, seq := range held {
				c.sendRaw(rawFrame(0x80000004, 0x04, seq, nil, 0))
			}
		}
	}
	p := fakePool(t, f, func(b *config.Bind) { b.Window = 3 })
	var wg sync.WaitGroup
	results := make([]Result, 3)
	for i := range results {
		wg.Go(func() { results[i] = p.Submit(context.Background(), sub("x")) })
	}
	wg.Wait()
	for i, res := range results {
		require.Equal(t, Temporary, res.Outcome, "submit %d: %v", i, res.Err)
		require.Equal(t, uint32(0x04), res.Status)
	}
	waitFor(t, 2*time.Second, "rebound", p.Up)
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
	require.Equal(t, int32(3), onFirst.Load(), "nothing more written to the lost session")
}

// An enquire_link_resp ESME_RINVBNDSTS also means the session is gone.
func TestEnquireLinkBindStatusRebinds(t *testing.T) {
	f := newFakeSMSC(t, nil)
	p := fakePool(t, f, func(b *config.Bind) { b.EnquireLink = 50 * time.Millisecond })
	accepts := f.accepts.Load()
	f.enquireStatus.Store(0x04)
	waitFor(t, 2*time.Second, "a new connection", func() bool { return f.accepts.Load() > accepts })
	f.enquireStatus.Store(0)
	waitUp(t, p)
}

// A PDU longer than gosmpp decodes (64 KiB) but under the hard cap is read
// past and answered; the link stays up. Only an absurd length closes it.
func TestOversizePDUAnsweredLinkKept(t *testing.T) {
	deliver := func(seq int32) []byte {
		d := pdu.NewDeliverSM().(*pdu.DeliverSM)
		d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "15550002222")
		d.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "15550001111")
		d.Message, _ = pdu.NewBinaryShortMessageWithEncoding(nil, data.LATIN1)
		d.RegisterOptionalParam(pdu.Field{Tag: pdu.TagMessagePayload, Data: make([]byte, 65530)})
		d.SetSequenceNumber(seq)
		return marshal(d)
	}
	dataSM := func(seq int32) []byte {
		d := pdu.NewDataSM().(*pdu.DataSM)
		d.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "15550002222")
		d.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(1, 1, "15550001111")
		d.RegisterOptionalParam(pdu.Field{Tag: pdu.TagMessagePayload, Data: make([]byte, 65530)})
		d.SetSequenceNumber(seq)
		return marshal(d)
	}
	for _, tt := range []struct {
		name    string
		frame   []byte
		resp    data.CommandIDType
		status  data.CommandStatusType
		command string
	}{
		{"deliver_sm", deliver(5000), data.DELIVER_SM_RESP, 0x65, "deliver_sm"},
		{"data_sm", dataSM(5001), data.DATA_SM_RESP, 0x65, "data_sm"},
		{"enquire_link", rawFrame(0x15, 0, 5002, make([]byte, 70000), 0), data.GENERIC_NACK, data.ESME_RINVCMDLEN, "other"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSMSC(t, nil)
			p := fakePool(t, f, nil)
			require.Greater(t, len(tt.frame), data.MAX_PDU_LEN)
			accepts := f.accepts.Load()
			seq := binary.BigEndian.Uint32(tt.frame[12:])
			f.last().sendRaw(tt.frame)
			waitFor(t, 2*time.Second, "the answer", func() bool { return f.sent(tt.resp, seq) != nil })
			require.Equal(t, tt.status, f.sent(tt.resp, seq).CommandStatus)
			require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
			require.Equal(t, accepts, f.accepts.Load(), "same connection")
			require.True(t, p.Up())
			require.Empty(t, p.h.MOs())
			require.Equal(t, 1.0, metricSum(t, p.reg, "smsgate_smpp_undecodable_pdus_total", map[string]string{"carrier": "f", "command": tt.command}))
		})
	}
}

// A command_length over the hard cap (or under 16) loses framing: the link
// closes and the bind rebinds.
func TestAbsurdLengthCloses(t *testing.T) {
	f := newFakeSMSC(t, nil)
	p := fakePool(t, f, nil)
	accepts := f.accepts.Load()
	f.last().sendRaw(rawFrame(0x05, 0, 77, nil, maxPDULen+1))
	waitFor(t, 2*time.Second, "reconnect", func() bool { return f.accepts.Load() > accepts && p.Up() })
}

// A deliver_sm or data_sm that cannot be decoded is answered with its own
// response and a permanent status, so the carrier does not deliver it again
// and again; the link stays up.
func TestUndecodableDeliverRefusedPermanently(t *testing.T) {
	good := deliverFrame(t, 0, 0, []byte("hi"), nil)
	withTail := func(frame []byte, tail ...byte) []byte {
		b := append(append([]byte(nil), frame...), tail...)
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		return b
	}
	setSeq := func(b []byte, seq uint32) []byte {
		binary.BigEndian.PutUint32(b[12:], seq)
		return b
	}
	smLenPastEnd := append([]byte(nil), good...)
	smLenPastEnd[len(smLenPastEnd)-3] = 200 // sm_length past the end ("hi" is the last 2 bytes)
	ds := dataFrame(t, 0, 0, map[pdu.Tag][]byte{tagMessagePayload: []byte("hello")})
	for _, tt := range []struct {
		name   string
		frame  []byte
		resp   data.CommandIDType
		status data.CommandStatusType
	}{
		{"tlv length past the end", withTail(good, 0x14, 0x01, 0x00, 0x09, 1), data.DELIVER_SM_RESP, 0xC2},
		{"truncated tlv header", withTail(good, 0x14, 0x01, 0x00), data.DELIVER_SM_RESP, 0xC0},
		{"sm_length past the end", smLenPastEnd, data.DELIVER_SM_RESP, 0x65},
		{"mandatory part cut", withTail(good[:20]), data.DELIVER_SM_RESP, 0x65},
		{"data_sm tlv length past the end", withTail(ds, 0x04, 0x24, 0x00, 0x09, 'x'), data.DATA_SM_RESP, 0xC2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSMSC(t, nil)
			p := fakePool(t, f, nil)
			accepts := f.accepts.Load()
			f.last().sendRaw(setSeq(tt.frame, 6000))
			waitFor(t, 2*time.Second, "an answer", func() bool {
				return f.sent(tt.resp, 6000) != nil || f.sent(data.GENERIC_NACK, 6000) != nil
			})
			h := f.sent(tt.resp, 6000)
			require.NotNil(t, h, "answered with its own response, not generic_nack")
			require.Equal(t, tt.status, h.CommandStatus)
			require.Equal(t, Permanent, Classify(uint32(h.CommandStatus)))
			require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
			require.Equal(t, accepts, f.accepts.Load(), "same connection")
			require.Empty(t, p.h.MOs())
		})
	}
}

// A submit is completed only by a submit_sm_resp (or generic_nack) with its
// sequence number: a response of another command with that number is
// logged and ignored.
func TestSubmitCompletedOnlyByItsResponse(t *testing.T) {
	f := newFakeSMSC(t, nil)
	f.onSubmit = func(c *fakeConn, h pdu.Header) {
		seq := uint32(h.SequenceNumber)
		c.sendRaw(rawFrame(0x80000015, 0, seq, nil, 0)) // enquire_link_resp
		c.sendRaw(rawFrame(0x80000002, 0, seq, nil, 0)) // bind_transmitter_resp
		time.AfterFunc(30*time.Millisecond, func() { f.answer(c, h, 0, 0) })
	}
	p := fakePool(t, f, nil)
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, OK, res.Outcome)
	require.Len(t, res.CarrierIDs, 1)
	require.Regexp(t, `^id\d+$`, res.CarrierIDs[0])

	// Only a foreign response: the submit times out as Unknown.
	f.onSubmit = func(c *fakeConn, h pdu.Header) {
		c.sendRaw(rawFrame(0x80000015, 0, uint32(h.SequenceNumber), nil, 0))
	}
	p2 := fakePool(t, f, func(b *config.Bind) { b.Name = "f-1"; b.ResponseTimeout = 100 * time.Millisecond })
	res = p2.Submit(context.Background(), sub("x"))
	require.Equal(t, Unknown, res.Outcome)
	require.ErrorIs(t, res.Err, ErrTimeout)
}

// An ESME_ROK submit_sm_resp without a message_id: the segment was
// accepted (OK, not to be sent again) but has no carrier id; it is counted
// and reported in MissingIDs, and its CarrierIDs entry is "".
func TestOKWithoutMessageID(t *testing.T) {
	for _, tt := range []struct {
		name string
		body []byte
	}{
		{"no body", nil},
		{"empty message_id", []byte{0}},
		{"blank message_id", []byte("  \x00")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSMSC(t, nil)
			f.onSubmit = func(c *fakeConn, h pdu.Header) {
				c.sendRaw(rawFrame(0x80000004, 0, uint32(h.SequenceNumber), tt.body, 0))
			}
			p := fakePool(t, f, nil)
			res := p.Submit(context.Background(), sub("x"))
			require.Equal(t, OK, res.Outcome)
			require.NoError(t, res.Err)
			require.Equal(t, []string{""}, res.CarrierIDs)
			require.Equal(t, 1, res.MissingIDs)
			require.Equal(t, 1.0, metricSum(t, p.reg, "smsgate_smpp_submit_sm_missing_id_total", map[string]string{"carrier": "f"}))
		})
	}
	// Two parts, the second without an id.
	f := newFakeSMSC(t, nil)
	var n atomic.Int32
	f.onSubmit = func(c *fakeConn, h pdu.Header) {
		seq := uint32(h.SequenceNumber)
		if n.Add(1) == 2 {
			c.sendRaw(rawFrame(0x80000004, 0, seq, nil, 0))
			return
		}
		c.sendRaw(rawFrame(0x80000004, 0, seq, []byte("id"+strconv.Itoa(int(seq))+"\x00"), 0))
	}
	p := fakePool(t, f, nil)
	res := p.Submit(context.Background(), sub(strings.Repeat("a", 200)))
	require.Equal(t, OK, res.Outcome)
	require.Len(t, res.CarrierIDs, 2)
	require.NotEmpty(t, res.CarrierIDs[0])
	require.Empty(t, res.CarrierIDs[1])
	require.Equal(t, 1, res.MissingIDs)
}
