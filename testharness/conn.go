package testharness

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

const (
	bindNone int32 = iota
	bindTX
	bindRX
	bindTRX
)

// SMPP 3.4 command_id values (gosmpp declares them as negative int32).
const (
	cmdBindReceiver    uint32 = 0x00000001
	cmdBindTransmitter uint32 = 0x00000002
	cmdSubmitSM        uint32 = 0x00000004
	cmdSubmitSMResp    uint32 = 0x80000004
	cmdDeliverSM       uint32 = 0x00000005
	cmdDeliverSMResp   uint32 = 0x80000005
	cmdDataSMResp      uint32 = 0x80000103
	cmdUnbind          uint32 = 0x00000006
	cmdUnbindResp      uint32 = 0x80000006
	cmdBindTransceiver uint32 = 0x00000009
	cmdEnquireLink     uint32 = 0x00000015
	cmdEnquireLinkResp uint32 = 0x80000015
	cmdGenericNack     uint32 = 0x80000000
	cmdResponseBit     uint32 = 0x80000000
)

var bindModes = map[int32]string{bindTX: "transmitter", bindRX: "receiver", bindTRX: "transceiver"}

// simSystemID is the system_id the simulator names itself in bind_resp.
const simSystemID = "smsgate-sim"

// conn is one ESME connection: one reader goroutine (parses and answers),
// one writer goroutine (buffered, flushed when nothing more is queued).
type conn struct {
	sim *Simulator
	id  int
	nc  net.Conn

	out       chan []byte // frames to write; nil frame = flush and close
	done      chan struct{}
	closeOnce sync.Once

	bindType atomic.Int32
	systemID atomic.Pointer[string]
	gone     atomic.Bool // set first thing in close

	held atomic.Int32 // submit_sm_resp held back by Latency, not yet queued (Faults.MaxWindow)

	// reader goroutine only
	npdu int

	mu       sync.Mutex
	closed   bool
	seq      int32
	inflight map[int32]*delivery // deliver_sm awaiting deliver_sm_resp
}

func newConn(s *Simulator, nc net.Conn, id int) *conn {
	return &conn{
		sim:      s,
		id:       id,
		nc:       nc,
		out:      make(chan []byte, 1024),
		done:     make(chan struct{}),
		inflight: make(map[int32]*delivery),
	}
}

// close tears the connection down once; deliveries awaiting a response are
// delivered again after RedeliverDelay.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.gone.Store(true)
		c.sim.unbound(c)
		c.mu.Lock()
		c.closed = true
		pending := make([]*delivery, 0, len(c.inflight))
		for seq, d := range c.inflight {
			pending = append(pending, d)
			delete(c.inflight, seq)
		}
		c.mu.Unlock()
		close(c.done)
		_ = c.nc.Close()
		c.sim.forget(c)
		for _, d := range pending {
			c.sim.sched.after(c.sim.opts.RedeliverDelay, func() { c.sim.dispatch(d) })
		}
		c.sim.log.Info("connection closed", "conn", c.id)
	})
}

// send queues a frame for writing; dropped when the connection is closed.
func (c *conn) send(frame []byte) {
	select {
	case c.out <- frame:
	case <-c.done:
	}
}

func (c *conn) writeLoop() {
	w := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		select {
		case <-c.done:
			return
		case f := <-c.out:
			for {
				if f == nil { // flush and close (after unbind_resp)
					_ = w.Flush()
					c.close()
					return
				}
				if _, err := w.Write(f); err != nil {
					c.close()
					return
				}
				if len(c.out) == 0 {
					break
				}
				f = <-c.out
			}
			if err := w.Flush(); err != nil {
				c.close()
				return
			}
		}
	}
}

func (c *conn) readLoop() {
	defer c.close()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		h := pdu.ParseHeader(hdr)
		if h.CommandLength < 16 || h.CommandLength > data.MAX_PDU_LEN {
			// Where the next PDU starts is unknown: say why, then hang up.
			c.sim.log.Warn("framing lost, closing", "conn", c.id, "command_length", h.CommandLength)
			c.sim.record(c, h, bytes.Clone(hdr[:]))
			c.respond(cmdGenericNack, StatusInvCmdLen, uint32(h.SequenceNumber), nil)
			c.send(nil) // flush, then close
			select {
			case <-c.done:
			case <-time.After(time.Second):
			}
			return
		}
		frame := make([]byte, h.CommandLength)
		copy(frame, hdr[:])
		if _, err := io.ReadFull(r, frame[16:]); err != nil {
			return
		}
		if !c.handle(h, frame) {
			return
		}
	}
}

// handle processes one PDU; false closes the connection.
func (c *conn) handle(h pdu.Header, frame []byte) bool {
	c.sim.record(c, h, frame)
	f := c.sim.faults.Load()
	c.npdu++
	if f.DropAfterPDUs > 0 && c.npdu >= f.DropAfterPDUs {
		c.sim.log.Info("dropping connection (fault)", "conn", c.id, "pdus", c.npdu)
		return false
	}
	seq := uint32(h.SequenceNumber)
	switch uint32(h.CommandID) {
	case cmdBindTransmitter, cmdBindReceiver, cmdBindTransceiver:
		c.handleBind(f, seq, frame)
	case cmdUnbind:
		if c.bindType.Load() == bindNone {
			c.respond(cmdUnbindResp, StatusInvBndSts, seq, nil)
			return true
		}
		c.sim.unbound(c)
		c.respond(cmdUnbindResp, StatusOK, seq, nil)
		c.send(nil) // flush, then close: the ESME is expected to hang up now
	case cmdEnquireLink:
		c.respond(cmdEnquireLinkResp, StatusOK, seq, nil)
	case cmdSubmitSM:
		c.handleSubmit(f, seq, frame)
	case cmdDeliverSMResp, cmdDataSMResp:
		c.deliverResponse(int32(seq), uint32(h.CommandID), uint32(h.CommandStatus))
	case cmdGenericNack:
		status := uint32(h.CommandStatus)
		if status == StatusOK {
			status = StatusInvCmdID
		}
		c.deliverResponse(int32(seq), cmdGenericNack, status) // a nacked deliver_sm counts as refused
	case cmdUnbindResp, cmdEnquireLinkResp:
		// the simulator sends neither; nothing to do
	default:
		if uint32(h.CommandID)&cmdResponseBit != 0 {
			return true // a response we never asked for: ignore
		}
		c.respond(cmdGenericNack, StatusInvCmdID, seq, nil)
	}
	return true
}

func (c *conn) handleBind(f *Faults, seq uint32, frame []byte) {
	p, err := decodeFrame(frame)
	if err != nil {
		nack, status := bindUndecodable(frame[16:])
		if nack {
			c.respond(cmdGenericNack, status, seq, nil)
		} else {
			c.respond(binary.BigEndian.Uint32(frame[4:])|cmdResponseBit, status, seq, nil)
		}
		return
	}
	req := p.(*pdu.BindRequest)
	if f.SilentBind {
		return
	}
	resp := req.GetResponse().(*pdu.BindResp)
	resp.SystemID = simSystemID
	switch {
	case c.bindType.Load() != bindNone:
		resp.CommandStatus = data.CommandStatusType(StatusAlyBnd)
	case f.RefuseBinds:
		resp.CommandStatus = data.CommandStatusType(StatusBindFail)
	case req.SystemID != c.sim.opts.SystemID:
		resp.CommandStatus = data.CommandStatusType(StatusInvSysID)
	case req.Password != c.sim.opts.Password:
		resp.CommandStatus = data.CommandStatusType(StatusInvPaswd)
	}
	if resp.CommandStatus != 0 {
		c.send(marshal(resp))
		c.sim.log.Info("bind refused", "conn", c.id, "system_id", req.SystemID, "status", uint32(resp.CommandStatus))
		return
	}
	bt := map[pdu.BindingType]int32{pdu.Transmitter: bindTX, pdu.Receiver: bindRX, pdu.Transceiver: bindTRX}[req.BindingType]
	sysID := req.SystemID
	c.systemID.Store(&sysID)
	c.sim.bound(c, bt) // counted before the client can see bind_resp
	c.send(marshal(resp))
	c.sim.log.Info("bound", "conn", c.id, "system_id", sysID, "mode", bindModes[bt])
	if bt != bindTX {
		c.sim.addReceiver(c) // after bind_resp: queued deliveries follow it
	}
}

func (c *conn) handleSubmit(f *Faults, seq uint32, frame []byte) {
	bt := c.bindType.Load()
	if bt != bindTX && bt != bindTRX {
		c.respond(cmdSubmitSMResp, StatusInvBndSts, seq, nil)
		return
	}
	raw, rawErr := scanSM(frame[16:])
	p, err := decodeFrame(frame)
	if err != nil {
		cmd, status := undecodable(frame[16:], raw, rawErr)
		c.respond(cmd, status, seq, nil)
		return
	}
	sm := p.(*pdu.SubmitSM)
	now := time.Now()
	sysID := *c.systemID.Load()

	valid, expired := checkSubmit(sm, raw, rawErr == nil, now)
	status, answer, lost, overWindow := StatusOK, true, false, false
	switch {
	case f.MaxWindow > 0 && int(c.held.Load()) >= f.MaxWindow:
		overWindow = true // answered at once, not held back by Latency
		status = f.WindowStatus
		if status == 0 {
			status = StatusThrottled
		}
	case valid != StatusOK:
		status = valid
	case f.MaxTPS > 0 && !c.sim.takeToken(sysID, f.MaxTPS, now):
		status = StatusThrottled
	case f.NoResponseRate > 0 && rand.Float64() < f.NoResponseRate:
		answer = false
	case f.ErrorRate > 0 && rand.Float64() < f.ErrorRate:
		status = f.ErrorStatus
		if status == 0 {
			status = StatusSubmitFail
		}
	case f.LostResponseRate > 0 && rand.Float64() < f.LostResponseRate:
		answer, lost = false, true
	}
	latency := f.Latency
	if overWindow || lost {
		latency = 0
	}
	var id string
	if status == StatusOK && (answer || lost) { // a swallowed submit is never processed
		id = c.sim.newMessageID()
	}
	if c.sim.countSubmit() {
		sub := Submit{
			MessageID:          id,
			SystemID:           sysID,
			Source:             sm.SourceAddr.Address(),
			Dest:               sm.DestAddr.Address(),
			ESMClass:           sm.EsmClass,
			RegisteredDelivery: sm.RegisteredDelivery,
			ValidityPeriod:     sm.ValidityPeriod,
			At:                 now,
			Status:             status,
			Answered:           answer,
			Latency:            latency,
			Conn:               c.id,
		}
		if rawErr == nil {
			sub.DataCoding = raw.dataCoding
			sub.ShortMessage = bytes.Clone(raw.sm)
		}
		if len(sm.OptionalParameters) > 0 {
			sub.TLVs = make(map[uint16][]byte, len(sm.OptionalParameters))
			for tag, fld := range sm.OptionalParameters {
				sub.TLVs[uint16(tag)] = fld.Data
			}
		}
		c.sim.recordSubmit(sub)
	}
	if !answer && !lost {
		return // swallowed: never processed
	}
	var body []byte
	if status == StatusOK {
		body = append([]byte(id), 0)
	}
	// SMPP 3.4 4.4.2: no body in a submit_sm_resp with a non-zero status.
	resp := encodePDU(cmdSubmitSMResp, status, seq, body)

	var rcpt *receipt
	if status == StatusOK && !f.NoReceipts && rawErr == nil {
		rf := f
		if expired { // validity_period already past: it expires undelivered
			rf = &Faults{ReceiptStat: "EXPIRED", ReceiptErr: f.ReceiptErr, ReceiptID: f.ReceiptID}
		}
		rcpt = newReceipt(sm, raw, id, c.sim.opts.DecimalIDs, now, rf)
	}
	if rcpt != nil && f.ReceiptFirst {
		// Dispatched before the response is queued: on a transceiver bind
		// the receipt is written first.
		c.sim.dispatch(rcpt.build(now))
		rcpt = nil
	}
	if lost { // processed, but the response never reaches the client
		c.sim.scheduleReceipt(rcpt)
		return
	}
	if latency > 0 {
		c.held.Add(1)
		c.sim.sched.after(f.Latency, func() {
			c.send(resp)
			c.held.Add(-1)
			c.sim.scheduleReceipt(rcpt)
		})
		return
	}
	c.send(resp)
	c.sim.scheduleReceipt(rcpt)
}

func (c *conn) respond(cmdID, status, seq uint32, body []byte) {
	c.send(encodePDU(cmdID, status, seq, body))
}

// sendDeliver writes d as a deliver_sm (as a data_sm with SimOptions.DataSM)
// and tracks it until its response.
func (c *conn) sendDeliver(d *delivery) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.sim.dispatch(d)
		return
	}
	c.seq++
	if c.seq <= 0 || c.seq > 0x7FFFFFFF-1 {
		c.seq = 1
	}
	seq := c.seq
	c.mu.Unlock()

	d.pdu.SetSequenceNumber(seq)
	var frame []byte
	if d.dataSM = c.sim.opts.DataSM; d.dataSM {
		frame = marshal(asDataSM(d.pdu))
	} else {
		frame = marshal(d.pdu)
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.sim.dispatch(d)
		return
	}
	c.inflight[seq] = d
	c.mu.Unlock()
	c.sim.countDeliverSent()
	c.send(frame)
	c.sim.sched.after(c.sim.opts.DeliverTimeout, func() { c.deliverTimeout(seq, d) })
}

// deliverResponse finishes the delivery seq with the response cmd (or a
// generic_nack). A response of the other kind (deliver_sm_resp to a data_sm
// or the reverse) counts as a refusal, as a strict SMSC would see it.
func (c *conn) deliverResponse(seq int32, cmd, status uint32) {
	c.mu.Lock()
	d := c.inflight[seq]
	delete(c.inflight, seq)
	c.mu.Unlock()
	if d == nil {
		return
	}
	if want := cmdDeliverSMResp; cmd != cmdGenericNack {
		if d.dataSM {
			want = cmdDataSMResp
		}
		if cmd != want {
			c.sim.log.Warn("wrong response type to an inbound message, counted as refused", "conn", c.id,
				"got", fmt.Sprintf("0x%08X", cmd), "want", fmt.Sprintf("0x%08X", want))
			status = StatusInvCmdID
		}
	}
	if status == StatusOK {
		c.sim.deliverResult(true)
		return
	}
	c.sim.log.Debug("deliver_sm refused", "conn", c.id, "status", status)
	c.sim.deliverFailed(d, status)
}

func (c *conn) deliverTimeout(seq int32, d *delivery) {
	c.mu.Lock()
	if c.inflight[seq] != d {
		c.mu.Unlock()
		return
	}
	delete(c.inflight, seq)
	c.mu.Unlock()
	c.sim.log.Debug("deliver_sm unanswered", "conn", c.id)
	c.sim.deliverFailed(d, StatusOK)
}

// encodePDU builds a PDU with the given header and body bytes.
func encodePDU(cmdID, status, seq uint32, body []byte) []byte {
	h := pdu.Header{
		CommandLength:  int32(16 + len(body)),
		CommandID:      data.CommandIDType(cmdID),
		CommandStatus:  data.CommandStatusType(status),
		SequenceNumber: int32(seq),
	}
	b := pdu.NewBuffer(make([]byte, 0, 16+len(body)))
	h.Marshal(b)
	_, _ = b.Write(body)
	return b.Bytes()
}

func marshal(p pdu.PDU) []byte {
	b := pdu.NewBuffer(nil)
	p.Marshal(b)
	return b.Bytes()
}

var errShortFrame = errors.New("pdu shorter than its header")

// decodeFrame parses a whole PDU (header included) with the gosmpp codec.
// A panic inside the codec is turned into an error.
func decodeFrame(frame []byte) (p pdu.PDU, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("pdu codec panic: %v", r)
		}
	}()
	if len(frame) < 16 {
		return nil, errShortFrame
	}
	var hdr [16]byte
	copy(hdr[:], frame)
	h := pdu.ParseHeader(hdr)
	p, err = pdu.CreatePDUFromCmdID(h.CommandID)
	if err != nil {
		return nil, err
	}
	if err := p.Unmarshal(pdu.NewBuffer(frame)); err != nil {
		return nil, err
	}
	return p, nil
}
