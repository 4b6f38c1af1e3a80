package testharness

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/stretchr/testify/require"
)

// rawClient is a minimal SMPP ESME for driving the simulator in tests: it
// writes PDUs with the gosmpp codec and collects everything it reads.
type rawClient struct {
	t    testing.TB
	nc   net.Conn
	wmu  sync.Mutex
	seq  atomic.Int32
	in   chan rxPDU
	wg   sync.WaitGroup
	held []rxPDU // read but not yet expected
}

type rxPDU struct {
	cmdID  uint32
	status uint32
	seq    uint32
	raw    []byte
	p      pdu.PDU // nil when the codec could not parse it
}

func dialSim(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.NoError(t, err)
	c := &rawClient{t: t, nc: nc, in: make(chan rxPDU, 8192)}
	c.wg.Go(c.readLoop)
	t.Cleanup(c.close)
	return c
}

func (c *rawClient) close() {
	_ = c.nc.Close()
	c.wg.Wait()
}

func (c *rawClient) readLoop() {
	defer close(c.in)
	r := bufio.NewReader(c.nc)
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < 16 || n > 1<<16 {
			return
		}
		raw := make([]byte, n)
		copy(raw, hdr[:])
		if _, err := io.ReadFull(r, raw[16:]); err != nil {
			return
		}
		rx := rxPDU{
			cmdID:  binary.BigEndian.Uint32(raw[4:]),
			status: binary.BigEndian.Uint32(raw[8:]),
			seq:    binary.BigEndian.Uint32(raw[12:]),
			raw:    raw,
		}
		rx.p, _ = decodeFrame(raw)
		c.in <- rx
	}
}

// send writes p with the next sequence number and returns it.
func (c *rawClient) send(p pdu.PDU) uint32 {
	seq := c.seq.Add(1)
	p.SetSequenceNumber(seq)
	c.writeRaw(marshal(p))
	return uint32(seq)
}

func (c *rawClient) writeRaw(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	require.NoError(c.t, err)
}

// expect returns the next PDU with cmdID (others are held for later expects).
func (c *rawClient) expect(cmdID uint32, timeout time.Duration) rxPDU {
	c.t.Helper()
	rx, ok := c.tryExpect(cmdID, timeout)
	require.Truef(c.t, ok, "no PDU 0x%08x within %v", cmdID, timeout)
	return rx
}

func (c *rawClient) tryExpect(cmdID uint32, timeout time.Duration) (rxPDU, bool) {
	for i, rx := range c.held {
		if rx.cmdID == cmdID {
			c.held = append(c.held[:i], c.held[i+1:]...)
			return rx, true
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case rx, ok := <-c.in:
			if !ok {
				return rxPDU{}, false
			}
			if rx.cmdID == cmdID {
				return rx, true
			}
			c.held = append(c.held, rx)
		case <-deadline.C:
			return rxPDU{}, false
		}
	}
}

// expectNone fails if a PDU with cmdID arrives within d.
func (c *rawClient) expectNone(cmdID uint32, d time.Duration) {
	c.t.Helper()
	rx, ok := c.tryExpect(cmdID, d)
	require.Falsef(c.t, ok, "unexpected PDU 0x%08x seq %d", rx.cmdID, rx.seq)
}

// expectClosed waits until the simulator closes the connection.
func (c *rawClient) expectClosed(timeout time.Duration) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				return
			}
		case <-deadline.C:
			c.t.Fatalf("connection still open after %v", timeout)
		}
	}
}

func (c *rawClient) bind(bt pdu.BindingType, systemID, password string) rxPDU {
	c.t.Helper()
	b := pdu.NewBindRequest(bt)
	b.SystemID, b.Password = systemID, password
	seq := c.send(b)
	respID := map[pdu.BindingType]uint32{pdu.Transmitter: 0x80000002, pdu.Receiver: 0x80000001, pdu.Transceiver: 0x80000009}[bt]
	rx := c.expect(respID, 2*time.Second)
	require.Equal(c.t, seq, rx.seq)
	return rx
}

func (c *rawClient) mustBind(bt pdu.BindingType) {
	c.t.Helper()
	rx := c.bind(bt, DefaultSystemID, DefaultPassword)
	require.Equal(c.t, StatusOK, rx.status)
}

type submitOpt func(*pdu.SubmitSM)

func withRegDelivery(v byte) submitOpt {
	return func(s *pdu.SubmitSM) { s.RegisteredDelivery = v }
}

// withRawUDH sends sm as raw octets with the UDHI bit set.
func withRawUDH(sm []byte) submitOpt {
	return func(s *pdu.SubmitSM) {
		s.EsmClass |= data.SM_UDH_GSM
		s.Message, _ = pdu.NewBinaryShortMessageWithEncoding(sm, data.GSM7BIT)
	}
}

func withTLV(tag uint16, v []byte) submitOpt {
	return func(s *pdu.SubmitSM) { s.RegisterOptionalParam(pdu.Field{Tag: pdu.Tag(tag), Data: v}) }
}

func newSubmit(t testing.TB, src, dst, text string, opts ...submitOpt) *pdu.SubmitSM {
	s := pdu.NewSubmitSM().(*pdu.SubmitSM)
	var err error
	s.SourceAddr, err = pdu.NewAddressWithTonNpiAddr(1, 1, src)
	require.NoError(t, err)
	s.DestAddr, err = pdu.NewAddressWithTonNpiAddr(1, 1, dst)
	require.NoError(t, err)
	s.Message, err = pdu.NewShortMessageWithEncoding(text, data.GSM7BIT)
	require.NoError(t, err)
	for _, o := range opts {
		o(s)
	}
	return s
}

// submit sends one submit_sm and returns its response.
func (c *rawClient) submit(text string, opts ...submitOpt) rxPDU {
	c.t.Helper()
	seq := c.send(newSubmit(c.t, "15550001111", "15557654321", text, opts...))
	rx := c.expect(cmdSubmitSMResp, 2*time.Second)
	require.Equal(c.t, seq, rx.seq)
	return rx
}

// ack answers a deliver_sm with status.
func (c *rawClient) ack(rx rxPDU, status uint32) {
	c.writeRaw(encodePDU(cmdDeliverSMResp, status, rx.seq, []byte{0}))
}

// messageID is the message_id of a submit_sm_resp.
func messageID(t testing.TB, rx rxPDU) string {
	t.Helper()
	r, ok := rx.p.(*pdu.SubmitSMResp)
	require.True(t, ok, "not a parsed submit_sm_resp")
	return r.MessageID
}

// deliverSM decodes a received deliver_sm, with its raw short message.
func deliverSM(t testing.TB, rx rxPDU) (*pdu.DeliverSM, smFields) {
	t.Helper()
	d, ok := rx.p.(*pdu.DeliverSM)
	require.True(t, ok, "not a parsed deliver_sm")
	f, err := scanSM(rx.raw[16:])
	require.NoError(t, err)
	return d, f
}

func tlv(d *pdu.DeliverSM, tag uint16) ([]byte, bool) {
	f, ok := d.OptionalParameters[pdu.Tag(tag)]
	return f.Data, ok
}

func startSim(t testing.TB, opts SimOptions) *Simulator {
	t.Helper()
	s, err := NewSimulator(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}
