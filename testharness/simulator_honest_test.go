package testharness

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

// withExtra appends extra octets to a marshalled PDU and fixes its command_length.
func withExtra(frame, extra []byte) []byte {
	out := append(append([]byte(nil), frame...), extra...)
	binary.BigEndian.PutUint32(out, uint32(len(out)))
	return out
}

func TestBindUndecodable(t *testing.T) {
	sim := startSim(t, SimOptions{})
	bind := pdu.NewBindRequest(pdu.Transceiver)
	bind.SystemID, bind.Password = DefaultSystemID, DefaultPassword
	bind.SetSequenceNumber(7)
	whole := marshal(bind)
	tests := []struct {
		name          string
		frame         []byte
		cmdID, status uint32
	}{
		{"body cut in the password", append(encodePDU(cmdBindTransceiver, 0, 7, nil)[:16:16], "smsgate\x00sec"...), cmdGenericNack, StatusInvCmdLen},
		{"octets after the mandatory fields are not TLVs", withExtra(whole, []byte{0x00, 0x10, 0x00}), 0x80000009, StatusInvOptParStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := append([]byte(nil), tt.frame...)
			binary.BigEndian.PutUint32(frame, uint32(len(frame)))
			c := dialSim(t, sim.Addr())
			c.writeRaw(frame)
			rx := c.expect(tt.cmdID, wait)
			require.Equal(t, tt.status, rx.status)
			require.Equal(t, uint32(7), rx.seq)
			require.Len(t, rx.raw, 16)
			c.mustBind(pdu.Transceiver) // the connection is still usable
		})
	}
}

func TestSubmitUndecodable(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transmitter)
	sm := newSubmit(t, "15550001111", "15557654321", "hi")
	sm.SetSequenceNumber(90)
	c.writeRaw(withExtra(marshal(sm), []byte{0x04, 0x24, 0x00, 0x09, 'x'})) // TLV longer than the PDU
	rx := c.expect(cmdSubmitSMResp, wait)
	require.Equal(t, uint32(90), rx.seq)
	require.Equal(t, StatusInvOptParStream, rx.status)
	require.Equal(t, StatusOK, c.submit("still bound").status)
}

func withSource(ton, npi byte) submitOpt {
	return func(s *pdu.SubmitSM) { s.SourceAddr, _ = pdu.NewAddressWithTonNpiAddr(ton, npi, "15550001111") }
}

func withDest(ton, npi byte) submitOpt {
	return func(s *pdu.SubmitSM) { s.DestAddr, _ = pdu.NewAddressWithTonNpiAddr(ton, npi, "15557654321") }
}

func withValidity(v string) submitOpt {
	return func(s *pdu.SubmitSM) { s.ValidityPeriod = v }
}

func withOctets(sm []byte, enc data.Encoding) submitOpt {
	return func(s *pdu.SubmitSM) { s.Message, _ = pdu.NewBinaryShortMessageWithEncoding(sm, enc) }
}

func TestSubmitChecks(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transmitter)
	future := time.Now().Add(time.Hour).UTC().Format("060102150405") + "000+"
	octets := func(n int) []byte { return []byte(strings.Repeat("a", n)) }
	tests := []struct {
		name string
		opts []submitOpt
		want uint32
	}{
		{"well formed", nil, StatusOK},
		{"alphanumeric sender", []submitOpt{withSource(5, 0)}, StatusOK},
		{"source TON 7", []submitOpt{withSource(7, 1)}, StatusInvSrcTON},
		{"source NPI 2", []submitOpt{withSource(1, 2)}, StatusInvSrcNPI},
		{"destination TON 9", []submitOpt{withDest(9, 1)}, StatusInvDstTON},
		{"destination NPI 5", []submitOpt{withDest(1, 5)}, StatusInvDstNPI},
		{"NPI 18 (WAP client id) is defined", []submitOpt{withDest(1, 18)}, StatusOK},
		{"absolute validity ahead", []submitOpt{withValidity(future)}, StatusOK},
		{"relative validity", []submitOpt{withValidity("000001000000000R")}, StatusOK},
		{"validity too short", []submitOpt{withValidity("2601011200")}, StatusInvExpiry},
		{"validity month 13", []submitOpt{withValidity("261301120000000+")}, StatusInvExpiry},
		{"validity 31 April", []submitOpt{withValidity("260431120000000+")}, StatusInvExpiry},
		{"validity bad suffix", []submitOpt{withValidity("260401120000000X")}, StatusInvExpiry},
		{"validity letters", []submitOpt{withValidity("26o401120000000+")}, StatusInvExpiry},
		{"short_message and message_payload", []submitOpt{withTLV(TagMessagePayload, []byte("payload"))}, StatusInvMsgLen},
		{"message_payload alone", []submitOpt{withOctets(nil, data.UCS2), withTLV(TagMessagePayload, octets(300))}, StatusOK},
		{"empty message_payload beside short_message", []submitOpt{withTLV(TagMessagePayload, nil)}, StatusOK},
		{"UCS-2 140 octets", []submitOpt{withOctets(octets(140), data.UCS2)}, StatusOK},
		{"UCS-2 141 octets", []submitOpt{withOctets(octets(141), data.UCS2)}, StatusInvMsgLen},
		{"8-bit 141 octets", []submitOpt{withOctets(octets(141), data.BINARY8BIT2)}, StatusInvMsgLen},
		{"GSM 7-bit unpacked 160 septets", []submitOpt{withOctets(octets(160), data.GSM7BIT)}, StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rx := c.submit("hello", tt.opts...)
			require.Equal(t, tt.want, rx.status, "got 0x%02X", rx.status)
			if tt.want != StatusOK {
				require.Len(t, rx.raw, 16, "error responses carry no body")
			}
		})
	}
}

func TestPastValidityExpires(t *testing.T) {
	sim := startSim(t, SimOptions{})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	past := time.Now().Add(-time.Hour).UTC().Format("060102150405") + "000+"
	rx := c.submit("too late", withValidity(past), withRegDelivery(1))
	require.Equal(t, StatusOK, rx.status, "accepted, as an SMSC does")
	id := messageID(t, rx)
	d, raw := deliverSM(t, c.expect(cmdDeliverSM, wait))
	m := receiptRE.FindStringSubmatch(string(raw.sm))
	require.NotNil(t, m, "receipt text %q", raw.sm)
	require.Equal(t, id, m[1])
	require.Equal(t, "EXPIRED", m[5])
	require.Equal(t, "000", m[2])
	v, ok := tlv(d, TagMessageState)
	require.True(t, ok)
	require.Equal(t, []byte{3}, v)

	// registered_delivery 2 (failure only) gets it too: expiry is a failure.
	rx = c.submit("too late", withValidity(past), withRegDelivery(2))
	require.Equal(t, StatusOK, rx.status)
	_, raw = deliverSM(t, c.expect(cmdDeliverSM, wait))
	require.Contains(t, string(raw.sm), "stat:EXPIRED")
}

func TestParseSMPPTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"260301120000000+", now, false},
		{"260301130000004+", now, false}, // 13:00 local, 1 h ahead of UTC
		{"260301110000004-", now, false}, // 11:00 local, 1 h behind UTC
		{"260301120000500+", now.Add(500 * time.Millisecond), false},
		{"000002030000000R", now.AddDate(0, 0, 2).Add(3 * time.Hour), false},
		{"260229120000000+", time.Time{}, true}, // 2026 is no leap year
		{"260301240000000+", time.Time{}, true},
		{"260301120000049+", time.Time{}, true}, // offset over 12 h
		{"260301120000000", time.Time{}, true},
		{"260301120000000Z", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSMPPTime(tt.in, now)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, tt.want.Equal(got), "got %v want %v", got, tt.want)
		})
	}
}

// refuseMO injects one MO and refuses every deliver_sm of it with status,
// returning when each was received; it stops after n deliveries.
func refuseMO(t *testing.T, sim *Simulator, c *rawClient, status uint32, n int) []time.Time {
	t.Helper()
	require.NoError(t, sim.InjectMO(MO{From: "15557654321", To: "15550001111", Text: "STOP"}))
	var at []time.Time
	for range n {
		rx := c.expect(cmdDeliverSM, wait)
		at = append(at, time.Now())
		c.ack(rx, status)
	}
	return at
}

func TestRedeliveryPolicy(t *testing.T) {
	t.Run("permanent refusals drop at once", func(t *testing.T) {
		for _, st := range []uint32{StatusXPAppn, StatusXRAppn} {
			sim := startSim(t, SimOptions{RedeliverDelay: 10 * time.Millisecond})
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transceiver)
			refuseMO(t, sim, c, st, 1)
			c.expectNone(cmdDeliverSM, 100*time.Millisecond)
			require.Eventually(t, func() bool { return sim.DroppedCount() == 1 }, wait, 5*time.Millisecond)
			got := sim.Dropped()
			require.Len(t, got, 1)
			require.Equal(t, DroppedDelivery{
				Source: "15557654321", Dest: "15550001111", Status: st, Attempts: 1, Reason: "permanent", At: got[0].At,
			}, got[0])
			require.Equal(t, 1, sim.DeliverSentCount())
			require.Equal(t, 0, sim.PendingDeliveries())
		}
	})
	t.Run("transient refusals back off, then give up", func(t *testing.T) {
		sim := startSim(t, SimOptions{RedeliverDelay: 40 * time.Millisecond, RedeliverMaxDelay: 100 * time.Millisecond, DeliverAttempts: 4})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		at := refuseMO(t, sim, c, StatusXTAppn, 4)
		for i, min := range []time.Duration{40, 80, 100} { // doubling, capped
			gap := at[i+1].Sub(at[i])
			require.GreaterOrEqual(t, gap, min*time.Millisecond-5*time.Millisecond, "gap %d", i)
		}
		require.Less(t, at[3].Sub(at[2]), 190*time.Millisecond, "capped at RedeliverMaxDelay")
		c.expectNone(cmdDeliverSM, 250*time.Millisecond)
		require.Eventually(t, func() bool { return sim.DroppedCount() == 1 }, wait, 5*time.Millisecond)
		d := sim.Dropped()[0]
		require.Equal(t, "attempts", d.Reason)
		require.Equal(t, 4, d.Attempts)
		require.Equal(t, StatusXTAppn, d.Status)
	})
	t.Run("other errors and generic_nack are transient", func(t *testing.T) {
		sim := startSim(t, SimOptions{RedeliverDelay: 10 * time.Millisecond})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "hi"}))
		c.ack(c.expect(cmdDeliverSM, wait), 0x08) // ESME_RSYSERR
		rx := c.expect(cmdDeliverSM, wait)
		c.writeRaw(encodePDU(cmdGenericNack, StatusInvCmdID, rx.seq, nil))
		c.ack(c.expect(cmdDeliverSM, wait), StatusOK)
		require.Eventually(t, func() bool { return sim.DeliveredCount() == 1 }, wait, 5*time.Millisecond)
		require.Zero(t, sim.DroppedCount())
	})
	t.Run("unanswered attempts count", func(t *testing.T) {
		sim := startSim(t, SimOptions{DeliverTimeout: 50 * time.Millisecond, DeliverAttempts: 2})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "hi"}))
		c.expect(cmdDeliverSM, wait)
		c.expect(cmdDeliverSM, wait)
		require.Eventually(t, func() bool { return sim.DroppedCount() == 1 }, wait, 5*time.Millisecond)
		d := sim.Dropped()[0]
		require.Equal(t, "attempts", d.Reason)
		require.Equal(t, StatusOK, d.Status, "0: the last attempt went unanswered")
		c.expectNone(cmdDeliverSM, 100*time.Millisecond)
	})
	t.Run("dropped receipts name their message", func(t *testing.T) {
		sim := startSim(t, SimOptions{})
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		id := messageID(t, c.submit("x", withRegDelivery(1)))
		c.ack(c.expect(cmdDeliverSM, wait), StatusXPAppn)
		require.Eventually(t, func() bool { return sim.DroppedCount() == 1 }, wait, 5*time.Millisecond)
		d := sim.Dropped()[0]
		require.True(t, d.Receipt)
		require.Equal(t, id, d.MessageID)
	})
	t.Run("connection loss does not count", func(t *testing.T) {
		sim := startSim(t, SimOptions{RedeliverDelay: 10 * time.Millisecond, DeliverAttempts: 1})
		require.NoError(t, sim.InjectMO(MO{From: "1", To: "2", Text: "hi"}))
		for range 3 {
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transceiver)
			c.expect(cmdDeliverSM, wait)
			c.close()
		}
		c := dialSim(t, sim.Addr())
		c.mustBind(pdu.Transceiver)
		c.ack(c.expect(cmdDeliverSM, wait), StatusOK)
		require.Eventually(t, func() bool { return sim.DeliveredCount() == 1 }, wait, 5*time.Millisecond)
		require.Zero(t, sim.DroppedCount())
	})
}

func TestRedeliverDelay(t *testing.T) {
	sim := startSim(t, SimOptions{RedeliverDelay: 100 * time.Millisecond, RedeliverMaxDelay: time.Second})
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{60, time.Second},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, sim.redeliverDelay(tt.failures), "failures %d", tt.failures)
	}
	// Defaults: a max delay below RedeliverDelay is raised to it.
	small := startSim(t, SimOptions{RedeliverDelay: 10 * time.Second})
	require.Equal(t, 10*time.Second, small.redeliverDelay(3))
}

func TestLostResponse(t *testing.T) {
	sim := startSim(t, SimOptions{Faults: Faults{LostResponseRate: 1}})
	c := dialSim(t, sim.Addr())
	c.mustBind(pdu.Transceiver)
	c.send(newSubmit(t, "15550001111", "15557654321", "lost answer", withRegDelivery(1)))
	c.expectNone(cmdSubmitSMResp, 100*time.Millisecond)

	// The SMSC processed it: the receipt names an id the client never saw.
	_, raw := deliverSM(t, c.expect(cmdDeliverSM, wait))
	m := receiptRE.FindStringSubmatch(string(raw.sm))
	require.NotNil(t, m, "receipt text %q", raw.sm)
	subs := sim.Submits()
	require.Len(t, subs, 1)
	require.False(t, subs[0].Answered)
	require.NotEmpty(t, subs[0].MessageID)
	require.Equal(t, StatusOK, subs[0].Status)
	require.Equal(t, subs[0].MessageID, m[1])

	// NoResponseRate keeps its meaning: nothing processed, no receipt.
	sim.SetFaults(Faults{NoResponseRate: 1})
	c.send(newSubmit(t, "15550001111", "15557654321", "swallowed", withRegDelivery(1)))
	c.expectNone(cmdSubmitSMResp, 100*time.Millisecond)
	c.expectNone(cmdDeliverSM, 50*time.Millisecond)
	subs = sim.Submits()
	require.Len(t, subs, 2)
	require.False(t, subs[1].Answered)
	require.Empty(t, subs[1].MessageID)
}

func TestMaxWindow(t *testing.T) {
	tests := []struct {
		name         string
		windowStatus uint32
		want         uint32
	}{
		{"default ESME_RTHROTTLED", 0, StatusThrottled},
		{"ESME_RMSGQFUL", StatusMsgQFul, StatusMsgQFul},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const hold = 300 * time.Millisecond
			sim := startSim(t, SimOptions{Faults: Faults{Latency: hold, MaxWindow: 2, WindowStatus: tt.windowStatus}})
			c := dialSim(t, sim.Addr())
			c.mustBind(pdu.Transmitter)
			start := time.Now()
			var seqs []uint32
			for range 4 {
				seqs = append(seqs, c.send(newSubmit(t, "1", "2", "x")))
			}
			got := map[uint32]uint32{}
			for range 4 {
				rx := c.expect(cmdSubmitSMResp, wait)
				got[rx.seq] = rx.status
				if rx.status == tt.want {
					require.Less(t, time.Since(start), hold, "beyond the window: answered at once")
				}
			}
			require.Equal(t, map[uint32]uint32{seqs[0]: StatusOK, seqs[1]: StatusOK, seqs[2]: tt.want, seqs[3]: tt.want}, got)

			// Answered: the window is free again.
			require.Equal(t, StatusOK, c.submit("again").status)
			// The window is per bind.
			other := dialSim(t, sim.Addr())
			other.mustBind(pdu.Transmitter)
			c.send(newSubmit(t, "1", "2", "x"))
			c.send(newSubmit(t, "1", "2", "x"))
			require.Equal(t, StatusOK, other.submit("own window").status)
		})
	}
}
