package testharness

import (
	"encoding/binary"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

const wait = 2 * time.Second

func TestBind(t *testing.T) {
	sim := startSim(t, SimOptions{})
	tests := []struct {
		name             string
		bt               pdu.BindingType
		systemID, passwd string
		respID, status   uint32
	}{
		{"transmitter", pdu.Transmitter, "smsgate", "secret", 0x80000002, StatusOK},
		{"receiver", pdu.Receiver, "smsgate", "secret", 0x80000001, StatusOK},
		{"transceiver", pdu.Transceiver, "smsgate", "secret", 0x80000009, StatusOK},
		{"bad password", pdu.Transceiver, "smsgate", "wrong", 0x80000009, StatusInvPaswd},
		{"bad system id", pdu.Transmitter, "other", "secret", 0x80000002, StatusInvSysID},
		{"bad system id and password", pdu.Receiver, "other", "wrong", 0x80000001, StatusInvSysID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Eventually(t, func() bool { return sim.ActiveBinds() == 0 }, wait, 5*time.Millisecond)
			c := dialSim(t, sim.Addr())
			rx := c.bind(tt.bt, tt.systemID, tt.passwd)
			require.Equal(t, tt.respID, rx.cmdID)
			require.Equal(t, tt.status, rx.status)
			if tt.status == StatusOK {
				require.Equal(t, simSystemID, rx.p.(*pdu.BindResp).SystemID)
				require.Equal(t, StatusAlyBnd, c.bind(tt.bt, tt.systemID, tt.passwd).status, "second bind on one connection")
			}
		})
	}
	require.Eventually(t, func() bool { return sim.ActiveBinds() == 0 }, wait, 5*time.Millisecond)
	require.Equal(t, 1, sim.MaxActiveBinds())

	a, b := dialSim(t, sim.Addr()), dialSim(t, sim.Addr())
	a.mustBind(pdu.Transceiver)
	b.mustBind(pdu.Transmitter)
	require.Equal(t, 2, sim.ActiveBinds())
	require.Equal(t, 2, sim.MaxActiveBinds())
}

func TestCustomCredentials(t *testing.T) {
	sim := startSim(t, SimOptions{SystemID: "acme", Password: "pw1"})
	c := dialSim(t, sim.Addr())
	require.Equal(t, StatusInvSysID, c.bind(pdu.Transceiver, "smsgate", "secret").status)
	require.Equal(t, StatusInvPaswd, c.bind(pdu.Transceiver, "acme", "secret").status)
	require.Equal(t, StatusOK, c.bind(pdu.Transceiver, "acme", "pw1").status)
}

func TestEnquireLink(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	seq := c.send(pdu.NewEnquireLink())
	rx := c.expect(cmdEnquireLinkResp, wait)
	require.Equal(t, seq, rx.seq)
	require.Equal(t, StatusOK, rx.status)

	c.mustBind(pdu.Transceiver)
	seq = c.send(pdu.NewEnquireLink())
	require.Equal(t, seq, c.expect(cmdEnquireLinkResp, wait).seq)
}

func TestUnbind(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	seq := c.send(pdu.NewUnbind())
	rx := c.expect(cmdUnbindResp, wait)
	require.Equal(t, seq, rx.seq)
	require.Equal(t, StatusInvBndSts, rx.status, "unbind before bind")

	c.mustBind(pdu.Transceiver)
	require.Equal(t, 1, sim.ActiveBinds())
	seq = c.send(pdu.NewUnbind())
	rx = c.expect(cmdUnbindResp, wait)
	require.Equal(t, seq, rx.seq)
	require.Equal(t, StatusOK, rx.status)
	c.expectClosed(wait)
	require.Equal(t, 0, sim.ActiveBinds())
}

func TestSubmitBindState(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	require.Equal(t, StatusInvBndSts, c.submit("before bind").status)

	r := dialSim(t, sim.Addr())
	r.mustBind(pdu.Receiver)
	require.Equal(t, StatusInvBndSts, r.submit("on a receiver").status)
	require.Equal(t, 0, sim.SubmitCount())

	c.mustBind(pdu.Transmitter)
	rx := c.submit("now")
	require.Equal(t, StatusOK, rx.status)
	require.Equal(t, 1, sim.SubmitCount())
}

func TestSubmitMessageIDs(t *testing.T) {
	for _, decimal := range []bool{false, true} {
		t.Run("decimal="+strconv.FormatBool(decimal), func(t *testing.T) {
			sim := startSim(t, SimOptions{DecimalIDs: decimal})
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transmitter)
			pattern := regexp.MustCompile(`^[0-9a-f]+$`)
			if decimal {
				pattern = regexp.MustCompile(`^[0-9]+$`)
			}
			seen := map[string]bool{}
			for i := range 50 {
				rx := c.submit("hello " + strconv.Itoa(i))
				require.Equal(t, StatusOK, rx.status)
				id := messageID(t, rx)
				require.Regexp(t, pattern, id)
				require.False(t, seen[id], "duplicate id %s", id)
				seen[id] = true
			}
			subs := sim.Submits()
			require.Len(t, subs, 50)
			for _, s := range subs {
				require.True(t, seen[s.MessageID])
			}
		})
	}
}

func TestSubmitRecorded(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	udh := []byte{0x05, 0x00, 0x03, 0x2A, 0x02, 0x01}
	sm := append(append([]byte(nil), udh...), []byte("part one")...)
	rx := c.submit("", withRawUDH(sm), withRegDelivery(0), withTLV(0x1403, []byte("vendor")))
	require.Equal(t, StatusOK, rx.status)

	subs := sim.Submits()
	require.Len(t, subs, 1)
	s := subs[0]
	require.Equal(t, messageID(t, rx), s.MessageID)
	require.Equal(t, "smsgate", s.SystemID)
	require.Equal(t, "15550001111", s.Source)
	require.Equal(t, "15557654321", s.Dest)
	require.Equal(t, byte(0x40), s.ESMClass)
	require.Equal(t, byte(0), s.DataCoding)
	require.Equal(t, sm, s.ShortMessage, "raw short message keeps its UDH")
	require.Equal(t, []byte("vendor"), s.TLVs[0x1403])
	require.True(t, s.Answered)
	require.Equal(t, 1, s.Conn)
	require.WithinDuration(t, time.Now(), s.At, wait)

	recs := sim.Received()
	require.Len(t, recs, 2)
	require.Equal(t, cmdBindTransceiver, recs[0].CommandID)
	require.Equal(t, cmdSubmitSM, recs[1].CommandID)
	p, err := recs[1].Decode()
	require.NoError(t, err)
	require.Equal(t, "15557654321", p.(*pdu.SubmitSM).DestAddr.Address())
}

func TestSubmitValidation(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transmitter)

	seq := c.send(newSubmit(t, "15550001111", "", "no destination"))
	rx := c.expect(cmdSubmitSMResp, wait)
	require.Equal(t, seq, rx.seq)
	require.Equal(t, StatusInvDstAdr, rx.status)
	require.Len(t, rx.raw, 16, "error responses carry no body")

	// UDHI set but the UDH claims more octets than there are.
	rx = c.submit("", withRawUDH([]byte{0x20, 0x00, 0x03}))
	require.Equal(t, StatusInvEsmClass, rx.status)
}

func TestRecordLimit(t *testing.T) {
	sim := startSim(t, SimOptions{RecordLimit: 3})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transmitter)
	for range 5 {
		require.Equal(t, StatusOK, c.submit("x").status)
	}
	require.Len(t, sim.Received(), 3)
	require.Equal(t, 6, sim.ReceivedCount())
	require.Len(t, sim.Submits(), 3)
	require.Equal(t, 5, sim.SubmitCount())
}

var receiptRE = regexp.MustCompile(`^id:(\S+) sub:001 dlvrd:(\d{3}) submit date:(\d{10}) done date:(\d{10}) stat:(\w+) err:(\d{3}) text:(.*)$`)

func TestReceiptPerSegment(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)

	texts := []string{"first segment of a long message!!", "second"}
	var ids []string
	for i, text := range texts {
		udh := []byte{0x05, 0x00, 0x03, 0x07, 0x02, byte(i + 1)}
		rx := c.submit("", withRawUDH(append(udh, []byte(text)...)), withRegDelivery(1))
		require.Equal(t, StatusOK, rx.status)
		ids = append(ids, messageID(t, rx))
	}
	for i, id := range ids {
		rx := c.expect(cmdDeliverSM, wait)
		d, raw := deliverSM(t, rx)
		require.Equal(t, byte(0x04), d.EsmClass)
		require.Equal(t, "15557654321", d.SourceAddr.Address(), "receipt comes from the handset")
		require.Equal(t, "15550001111", d.DestAddr.Address())
		m := receiptRE.FindStringSubmatch(string(raw.sm))
		require.NotNil(t, m, "receipt text %q", raw.sm)
		require.Equal(t, id, m[1])
		require.Equal(t, "001", m[2])
		require.Equal(t, time.Now().UTC().Format("0601021504")[:8], m[3][:8])
		require.Equal(t, "DELIVRD", m[5])
		require.Equal(t, "000", m[6])
		want := texts[i]
		if len(want) > 20 {
			want = want[:20]
		}
		require.Equal(t, want, m[7])

		v, ok := tlv(d, TagReceiptedMessageID)
		require.True(t, ok)
		require.Equal(t, append([]byte(id), 0), v)
		v, ok = tlv(d, TagMessageState)
		require.True(t, ok)
		require.Equal(t, []byte{2}, v)
		v, ok = tlv(d, TagNetworkErrorCode)
		require.True(t, ok)
		require.Equal(t, []byte{3, 0, 0}, v)
		c.ack(rx, StatusOK)
	}
	require.Eventually(t, func() bool { return sim.DeliveredCount() == 2 }, wait, 5*time.Millisecond)
}

func TestReceiptStatusAndRequest(t *testing.T) {
	tests := []struct {
		name    string
		faults  Faults
		regDel  byte
		want    bool
		stat    string
		state   byte
		errCode string
		netErr  []byte
	}{
		{"no receipt asked", Faults{}, 0, false, "", 0, "", nil},
		{"failure-only, delivered", Faults{}, 2, false, "", 0, "", nil},
		{"failure-only, undeliverable", Faults{ReceiptStat: "UNDELIV", ReceiptErr: "012"}, 2, true, "UNDELIV", 5, "012", []byte{3, 0, 12}},
		{"rejected", Faults{ReceiptStat: "REJECTD", ReceiptErr: "300"}, 1, true, "REJECTD", 8, "300", []byte{3, 1, 44}},
		{"expired", Faults{ReceiptStat: "EXPIRED"}, 1, true, "EXPIRED", 3, "000", []byte{3, 0, 0}},
		{"receipts off", Faults{NoReceipts: true}, 1, false, "", 0, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := startSim(t, SimOptions{Faults: tt.faults})
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transceiver)
			rx := c.submit("hello", withRegDelivery(tt.regDel))
			require.Equal(t, StatusOK, rx.status)
			if !tt.want {
				// A receipt is queued before the next response on this connection.
				seq := c.send(pdu.NewEnquireLink())
				require.Equal(t, seq, c.expect(cmdEnquireLinkResp, wait).seq)
				c.expectNone(cmdDeliverSM, 50*time.Millisecond)
				return
			}
			d, raw := deliverSM(t, c.expect(cmdDeliverSM, wait))
			m := receiptRE.FindStringSubmatch(string(raw.sm))
			require.NotNil(t, m)
			require.Equal(t, "000", m[2])
			require.Equal(t, tt.stat, m[5])
			require.Equal(t, tt.errCode, m[6])
			v, _ := tlv(d, TagMessageState)
			require.Equal(t, []byte{tt.state}, v)
			v, _ = tlv(d, TagNetworkErrorCode)
			require.Equal(t, tt.netErr, v)
		})
	}
}

func TestReceiptDelay(t *testing.T) {
	sim := startSim(t, SimOptions{ReceiptDelay: 150 * time.Millisecond})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	start := time.Now()
	rx := c.submit("later", withRegDelivery(1))
	require.Equal(t, StatusOK, rx.status)
	respAt := time.Now()
	d := c.expect(cmdDeliverSM, wait)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	require.GreaterOrEqual(t, time.Since(respAt), 100*time.Millisecond, "the delay runs after the response")
	_, raw := deliverSM(t, d)
	require.Contains(t, string(raw.sm), "id:"+messageID(t, rx)+" ")
}

func TestReceiptsGoToReceivers(t *testing.T) {
	sim := startSim(t, SimOptions{})
	tx := dialSim(t, sim.Addr())
	tx.mustBind(pdu.Transmitter)
	rx := tx.submit("queued receipt", withRegDelivery(1))
	require.Equal(t, StatusOK, rx.status)
	require.Eventually(t, func() bool { return sim.PendingDeliveries() == 1 }, wait, 5*time.Millisecond)

	r := dialSim(t, sim.Addr())
	r.mustBind(pdu.Receiver)
	d := r.expect(cmdDeliverSM, wait)
	_, raw := deliverSM(t, d)
	require.Contains(t, string(raw.sm), "id:"+messageID(t, rx)+" ")
	r.ack(d, StatusOK)
	require.Eventually(t, func() bool { return sim.DeliveredCount() == 1 }, wait, 5*time.Millisecond)
	require.Equal(t, 0, sim.PendingDeliveries())

	// More receipts go to the receiver, never to the transmitter.
	for range 3 {
		require.Equal(t, StatusOK, tx.submit("more", withRegDelivery(1)).status)
	}
	for range 3 {
		r.ack(r.expect(cmdDeliverSM, wait), StatusOK)
	}
	tx.expectNone(cmdDeliverSM, 50*time.Millisecond)
}

func TestRedelivery(t *testing.T) {
	t.Run("refused with ESME_RX_T_APPN", func(t *testing.T) {
		sim := startSim(t, SimOptions{RedeliverDelay: 50 * time.Millisecond})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		require.NoError(t, sim.InjectMO(MO{From: "15557654321", To: "15550001111", Text: "STOP"}))
		first := c.expect(cmdDeliverSM, wait)
		refusedAt := time.Now()
		c.ack(first, StatusXTAppn)
		again := c.expect(cmdDeliverSM, wait)
		require.GreaterOrEqual(t, time.Since(refusedAt), 40*time.Millisecond)
		require.NotEqual(t, first.seq, again.seq)
		require.Equal(t, first.raw[16:], again.raw[16:], "same message again")
		require.Equal(t, 0, sim.DeliveredCount())
		c.ack(again, StatusOK)
		require.Eventually(t, func() bool { return sim.DeliveredCount() == 1 }, wait, 5*time.Millisecond)
		require.Equal(t, 2, sim.DeliverSentCount())
	})
	t.Run("unanswered", func(t *testing.T) {
		sim := startSim(t, SimOptions{DeliverTimeout: 100 * time.Millisecond})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "hi"}))
		first := c.expect(cmdDeliverSM, wait)
		again := c.expect(cmdDeliverSM, wait)
		require.Equal(t, first.raw[16:], again.raw[16:])
		c.ack(again, StatusOK)
		c.ack(first, StatusOK) // late answer to a given-up attempt: ignored
		require.Eventually(t, func() bool { return sim.DeliveredCount() == 1 }, wait, 5*time.Millisecond)
	})
	t.Run("connection lost", func(t *testing.T) {
		sim := startSim(t, SimOptions{RedeliverDelay: 20 * time.Millisecond})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "hi"}))
		first := c.expect(cmdDeliverSM, wait)
		c.close()
		c2 := dialSim(t, sim.Addr())
		c2.mustBind(pdu.Receiver)
		again := c2.expect(cmdDeliverSM, wait)
		require.Equal(t, first.raw[16:], again.raw[16:])
	})
}

func TestInjectMO(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)

	// collect reads n deliver_sm, acks them and returns them decoded.
	collect := func(n int) ([]*pdu.DeliverSM, []smFields) {
		var ds []*pdu.DeliverSM
		var fs []smFields
		for range n {
			rx := c.expect(cmdDeliverSM, wait)
			d, f := deliverSM(t, rx)
			c.ack(rx, StatusOK)
			ds, fs = append(ds, d), append(fs, f)
		}
		return ds, fs
	}

	t.Run("plain gsm", func(t *testing.T) {
		require.NoError(t, sim.InjectMO(MO{From: "15557654321", To: "15550001111", Text: "Price 5€ {ok}"}))
		ds, fs := collect(1)
		require.Equal(t, "15557654321", ds[0].SourceAddr.Address())
		require.Equal(t, "15550001111", ds[0].DestAddr.Address())
		require.Equal(t, byte(0), ds[0].EsmClass)
		require.Equal(t, byte(0), fs[0].dataCoding)
		text, err := data.GSM7BIT.Decode(fs[0].sm)
		require.NoError(t, err)
		require.Equal(t, "Price 5€ {ok}", text)
		require.Len(t, fs[0].sm, 16, "€ { } take an escape each")
	})
	t.Run("ucs2", func(t *testing.T) {
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "Привет 👋", UCS2: true}))
		_, fs := collect(1)
		require.Equal(t, byte(8), fs[0].dataCoding)
		text, err := data.UCS2.Decode(fs[0].sm)
		require.NoError(t, err)
		require.Equal(t, "Привет 👋", text)
	})
	t.Run("not gsm without ucs2", func(t *testing.T) {
		require.Error(t, sim.InjectMO(MO{From: "1", To: "2", Text: "Привет"}))
	})
	t.Run("udh", func(t *testing.T) {
		text := "abcdefghij€klmnopqr" // € (2 septets) must not straddle a part
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: text, Concat: "udh", PartLen: 11}))
		_, fs := collect(2)
		var ref byte
		var got []byte
		for i, f := range fs {
			require.Equal(t, byte(0x40), f.esmClass)
			require.Equal(t, []byte{0x05, 0x00, 0x03}, f.sm[:3])
			if i == 0 {
				ref = f.sm[3]
			}
			require.Equal(t, []byte{ref, 2, byte(i + 1)}, f.sm[3:6])
			got = append(got, f.sm[6:]...)
		}
		require.Len(t, fs[0].sm[6:], 10, "the escape pair moved to part two")
		s, err := data.GSM7BIT.Decode(got)
		require.NoError(t, err)
		require.Equal(t, text, s)
	})
	t.Run("sar ucs2", func(t *testing.T) {
		text := "ab😀😀c" // surrogate pairs must not straddle a part
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: text, UCS2: true, Concat: "sar", PartLen: 3}))
		ds, fs := collect(3)
		var got string
		var ref []byte
		for i, d := range ds {
			require.Equal(t, byte(0), d.EsmClass)
			r, ok := tlv(d, TagSarMsgRefNum)
			require.True(t, ok)
			require.Len(t, r, 2)
			if i == 0 {
				ref = r
			}
			require.Equal(t, ref, r)
			v, _ := tlv(d, TagSarTotalSegments)
			require.Equal(t, []byte{3}, v)
			v, _ = tlv(d, TagSarSegmentSeqnum)
			require.Equal(t, []byte{byte(i + 1)}, v)
			part, err := data.UCS2.Decode(fs[i].sm) // each part decodes on its own
			require.NoError(t, err)
			require.NotContains(t, part, "\uFFFD")
			got += part
		}
		require.Equal(t, text, got)
	})
	t.Run("long without concat uses message_payload", func(t *testing.T) {
		long := strings.Repeat("a", 300)
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: long}))
		ds, fs := collect(1)
		require.Empty(t, fs[0].sm)
		v, ok := tlv(ds[0], TagMessagePayload)
		require.True(t, ok)
		require.Len(t, v, 300)
	})
	t.Run("unknown concat", func(t *testing.T) {
		require.Error(t, sim.InjectMO(MO{Text: "x", Concat: "bogus"}))
	})
}

func TestInjectMOQueuedUntilBind(t *testing.T) {
	sim := startSim(t, SimOptions{})
	require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "early", Concat: "udh", PartLen: 3}))
	require.Equal(t, 2, sim.PendingDeliveries())
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	c.expect(cmdDeliverSM, wait)
	c.expect(cmdDeliverSM, wait)
}

func TestUnknownCommandAndBadBodies(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)

	c.writeRaw(encodePDU(0x00000099, 0, 77, []byte{1, 2, 3}))
	rx := c.expect(cmdGenericNack, wait)
	require.Equal(t, uint32(77), rx.seq)
	require.Equal(t, StatusInvCmdID, rx.status)

	// A submit_sm whose body stops in the middle of the source address.
	c.writeRaw(encodePDU(cmdSubmitSM, 0, 78, []byte{0, 1, 1, '1', '2'}))
	rx = c.expect(cmdGenericNack, wait)
	require.Equal(t, uint32(78), rx.seq)
	require.Equal(t, StatusInvCmdLen, rx.status)

	// query_sm is valid SMPP the simulator does not implement.
	c.writeRaw(encodePDU(0x00000003, 0, 79, []byte("1\x00\x01\x011\x00")))
	rx = c.expect(cmdGenericNack, wait)
	require.Equal(t, uint32(79), rx.seq)
	require.Equal(t, StatusInvCmdID, rx.status)

	// A stray response is ignored.
	c.writeRaw(encodePDU(cmdSubmitSMResp, 0, 80, []byte("x\x00")))

	// The connection is still usable.
	require.Equal(t, StatusOK, c.submit("still here").status)
	require.Equal(t, 1, sim.ActiveBinds())
}

func TestFramingLostClosesConnection(t *testing.T) {
	for _, n := range []uint32{8, 1<<16 + 1} {
		sim := startSim(t, SimOptions{})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		var hdr [16]byte
		binary.BigEndian.PutUint32(hdr[:], n)
		binary.BigEndian.PutUint32(hdr[4:], cmdEnquireLink)
		binary.BigEndian.PutUint32(hdr[12:], 42)
		c.writeRaw(hdr[:])
		rx := c.expect(cmdGenericNack, wait)
		require.Equal(t, StatusInvCmdLen, rx.status, "command_length %d", n)
		require.Equal(t, uint32(42), rx.seq)
		c.expectClosed(wait)
		require.Eventually(t, func() bool { return sim.ActiveBinds() == 0 }, wait, 5*time.Millisecond)
	}
}

func TestFaults(t *testing.T) {
	t.Run("latency", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{Latency: 300 * time.Millisecond}})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transmitter)
		start := time.Now()
		s1 := c.send(newSubmit(t, "1", "2", "a"))
		s2 := c.send(newSubmit(t, "1", "2", "b"))
		require.Equal(t, s1, c.expect(cmdSubmitSMResp, wait).seq, "order kept")
		require.Equal(t, s2, c.expect(cmdSubmitSMResp, wait).seq)
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)

		sim.SetFaults(Faults{})
		start = time.Now()
		c.submit("fast again")
		require.Less(t, time.Since(start), 300*time.Millisecond)
		var lat []time.Duration
		for _, s := range sim.Submits() {
			lat = append(lat, s.Latency)
		}
		require.Equal(t, []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, 0}, lat, "each submit records the latency it got")
	})
	t.Run("error status", func(t *testing.T) {
		sim := startSim(t, SimOptions{})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		for _, st := range []uint32{StatusThrottled, StatusMsgQFul, StatusSubmitFail} {
			sim.SetFaults(Faults{ErrorRate: 1, ErrorStatus: st})
			rx := c.submit("x", withRegDelivery(1))
			require.Equal(t, st, rx.status)
			require.Len(t, rx.raw, 16)
		}
		require.Equal(t, Faults{ErrorRate: 1, ErrorStatus: StatusSubmitFail}, sim.Faults())
		subs := sim.Submits()
		require.Len(t, subs, 3)
		require.Empty(t, subs[0].MessageID)
		require.Equal(t, StatusThrottled, subs[0].Status)
		c.expectNone(cmdDeliverSM, 50*time.Millisecond) // no receipt for a refused submit
	})
	t.Run("error rate", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{ErrorRate: 0.5, ErrorStatus: StatusMsgQFul}})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transmitter)
		const n = 200
		for range n {
			c.send(newSubmit(t, "1", "2", "x"))
		}
		failed := 0
		for range n {
			rx := c.expect(cmdSubmitSMResp, wait)
			if rx.status == StatusMsgQFul {
				failed++
			} else {
				require.Equal(t, StatusOK, rx.status)
			}
		}
		require.InDelta(t, n/2, failed, n*0.2) // binomial sd is 7; 40 is ~5.6 sd
	})
	t.Run("no response", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{NoResponseRate: 1}})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transmitter)
		c.send(newSubmit(t, "1", "2", "lost"))
		seq := c.send(pdu.NewEnquireLink())
		require.Equal(t, seq, c.expect(cmdEnquireLinkResp, wait).seq)
		c.expectNone(cmdSubmitSMResp, 50*time.Millisecond)
		subs := sim.Submits()
		require.Len(t, subs, 1)
		require.False(t, subs[0].Answered)
	})
	t.Run("drop after N PDUs", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{DropAfterPDUs: 3}})
		for range 2 { // every connection
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transmitter)
			require.Equal(t, StatusOK, c.submit("one").status)
			c.send(newSubmit(t, "1", "2", "two"))
			c.expectClosed(wait)
			_, answered := c.tryExpect(cmdSubmitSMResp, 0)
			require.False(t, answered, "the N-th PDU is not answered")
		}
		require.Equal(t, 6, sim.ReceivedCount())
	})
	t.Run("refuse binds", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{RefuseBinds: true}})
		c := dialSim(t, sim.Addr())
		require.Equal(t, StatusBindFail, c.bind(pdu.Transceiver, "smsgate", "secret").status)
		require.Equal(t, 0, sim.ActiveBinds())
		sim.SetFaults(Faults{})
		require.Equal(t, StatusOK, c.bind(pdu.Transceiver, "smsgate", "secret").status)
	})
	t.Run("silent bind", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{SilentBind: true}})
		c := dialSim(t, sim.Addr())
		b := pdu.NewBindRequest(pdu.Transceiver)
		b.SystemID, b.Password = "smsgate", "secret"
		c.send(b)
		c.expectNone(0x80000009, 150*time.Millisecond)
		require.Equal(t, 0, sim.ActiveBinds())
		require.Len(t, sim.Received(), 1, "the bind was received")
	})
	t.Run("max tps", func(t *testing.T) {
		sim := startSim(t, SimOptions{Faults: Faults{MaxTPS: 5}})
		a, b := dialSim(t, sim.Addr()), dialSim(t, sim.Addr())
		a.mustBind(pdu.Transmitter)
		b.mustBind(pdu.Transmitter)
		// count pipelines n submits; slack is how many tokens may have been
		// refilled while they were in flight.
		count := func(c *rawClient, n int) (ok, throttled, slack int) {
			start := time.Now()
			for range n {
				c.send(newSubmit(t, "1", "2", "x"))
			}
			for range n {
				switch c.expect(cmdSubmitSMResp, wait).status {
				case StatusOK:
					ok++
				case StatusThrottled:
					throttled++
				}
			}
			return ok, throttled, int(time.Since(start).Seconds()*5) + 1
		}
		ok, thr, slack := count(a, 20)
		require.Equal(t, 20, ok+thr)
		require.GreaterOrEqual(t, ok, 5, "a burst of MaxTPS is allowed")
		require.LessOrEqual(t, ok, 5+slack, "then it throttles")
		ok, _, slack = count(b, 5)
		require.LessOrEqual(t, ok, slack, "the limit is per account: the second bind shares the bucket")
		time.Sleep(400 * time.Millisecond) // refills ~2 tokens
		ok, _, slack = count(a, 5)
		require.GreaterOrEqual(t, ok, 2)
		require.LessOrEqual(t, ok, 2+slack)

		// A reconnect does not refill the account's bucket.
		a.close()
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transmitter)
		ok, _, slack = count(c, 5)
		require.LessOrEqual(t, ok, slack, "a new bind of the same account starts with what is left")
	})
}

func TestDisconnectAll(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	sim.DisconnectAll()
	c.expectClosed(wait)
	require.Equal(t, 0, sim.ActiveBinds())
	c2 := dialSim(t, sim.Addr())
	c2.mustBind(pdu.Transceiver)
}

func TestCloseWithQueuedWork(t *testing.T) {
	sim, err := NewSimulator(SimOptions{ReceiptDelay: time.Hour, Faults: Faults{Latency: time.Hour}})
	require.NoError(t, err)
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	c.send(newSubmit(t, "1", "2", "x", withRegDelivery(1)))
	require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "y"}))
	require.Eventually(t, func() bool { return sim.SubmitCount() == 1 }, wait, 5*time.Millisecond)
	done := make(chan error)
	go func() { done <- sim.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	c.expectClosed(wait)
	require.NoError(t, sim.Close(), "second Close")
}

// TestDataSMDelivery: with DataSM, MO messages and receipts go out as
// data_sm (text in message_payload, fields as for deliver_sm) and are
// finished only by a data_sm_resp; a deliver_sm_resp to one is a refusal
// and the data_sm comes again.
func TestDataSMDelivery(t *testing.T) {
	sim := startSim(t, SimOptions{DataSM: true, RedeliverDelay: 20 * time.Millisecond})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	const cmdDataSM = 0x00000103

	require.NoError(t, sim.InjectMO(MO{From: "15557654321", To: "15550001111", Text: "STOP"}))
	rx := c.expect(cmdDataSM, wait)
	ds, ok := rx.p.(*pdu.DataSM)
	require.True(t, ok, "not a parsed data_sm")
	require.Equal(t, "15557654321", ds.SourceAddr.Address())
	require.Equal(t, "15550001111", ds.DestAddr.Address())
	require.Equal(t, []byte("STOP"), ds.OptionalParameters[pdu.Tag(TagMessagePayload)].Data)

	c.ack(rx, StatusOK) // a deliver_sm_resp: the wrong response
	again := c.expect(cmdDataSM, wait)
	require.Equal(t, rx.raw[16:], again.raw[16:], "delivered again, unchanged")
	require.Zero(t, sim.DeliveredCount())
	c.writeRaw(encodePDU(cmdDataSMResp, StatusOK, again.seq, []byte{0}))
	require.Eventually(t, func() bool { return sim.DeliveredCount() == 1 }, wait, 5*time.Millisecond)

	sub := c.submit("hello", withRegDelivery(1))
	id := messageID(t, sub)
	rc := c.expect(cmdDataSM, wait)
	ds, ok = rc.p.(*pdu.DataSM)
	require.True(t, ok)
	require.Equal(t, byte(0x04), ds.EsmClass&0x3C, "an SMSC delivery receipt")
	require.Equal(t, append([]byte(id), 0), ds.OptionalParameters[pdu.Tag(TagReceiptedMessageID)].Data)
	require.Contains(t, string(ds.OptionalParameters[pdu.Tag(TagMessagePayload)].Data), "id:"+id+" ")
	c.writeRaw(encodePDU(cmdDataSMResp, StatusOK, rc.seq, []byte{0}))
	require.Eventually(t, func() bool { return sim.DeliveredCount() == 2 }, wait, 5*time.Millisecond)
}
