package smpp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// Errors that end a link.
var (
	errDeadLink     = errors.New("smpp: dead link: no enquire_link_resp in time")
	errFraming      = errors.New("smpp: framing lost: bad command_length")
	errUnbound      = errors.New("smpp: unbound by the SMSC")
	errLocalClose   = errors.New("smpp: closed locally")
	errWriteTimeout = errors.New("smpp: write timeout")
	errSessionLost  = errors.New("smpp: the SMSC does not hold the session as bound (ESME_RINVBNDSTS or ESME_RALYBND)")
	errStale        = errors.New("smpp: link closing: the SMSC lost the session")
	errTooLarge     = errors.New("smpp: PDU larger than 64 KiB")
)

// maxPDULen is the largest command_length read. A PDU up to it whose body
// cannot be decoded (gosmpp decodes up to data.MAX_PDU_LEN, 64 KiB) is
// read past and answered; a command_length above it, or under 16, means
// framing is lost and the link is closed.
const maxPDULen = 1 << 20

type reqKind uint8

const (
	kindSubmit reqKind = iota
	kindBind
	kindEnquire
	kindUnbind
)

// request is one PDU we sent and await a response for. Exactly one party
// finishes it: whoever removes it from the link's in-flight map.
type request struct {
	kind     reqKind
	seq      uint32
	resp     data.CommandIDType // the response command id that answers it (or generic_nack)
	sent     time.Time
	deadline time.Time
	done     chan struct{} // capacity 1: finish never blocks

	status uint32
	msgID  string
	err    error // ErrTimeout, ErrLinkLost

	b *bind // submit: the bind whose window slot this holds
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

func getRequest(kind reqKind, b *bind) *request {
	r := requestPool.Get().(*request)
	r.kind, r.b = kind, b
	return r
}

// putRequest recycles a request whose done signal has been received.
func putRequest(r *request) {
	r.status, r.msgID, r.err, r.b = 0, "", nil, nil
	requestPool.Put(r)
}

func (r *request) finish(status uint32, msgID string, err error) {
	r.status, r.msgID, r.err = status, msgID, err
	if r.kind == kindSubmit && r.b != nil {
		r.b.answered(r)
	}
	r.done <- struct{}{}
}

// inboundPDU is a deliver_sm handed from the reader to the inbound workers.
// Its deliver_sm_resp is sent when the handler has returned.
type inboundPDU struct {
	d   *pdu.DeliverSM
	esm byte // esm_class as received (the UDHI bit is cleared in d)
	dc  byte // data_coding as received

	receipt bool // isReceipt, set by parseDeliverSM
	dataSM  bool // it came as data_sm (carried in d), so it is answered with data_sm_resp
}

// link is one SMPP connection: one reader, one buffered writer, one keeper
// (enquire_link and response timeouts) and a few inbound workers.
//
// The reader never waits for a handler: it queues each deliver_sm (up to
// inboundQueueLen) and answers one that does not fit at once with
// ESME_RX_T_APPN, so the carrier delivers it again later while
// submit_sm_resp keep being read.
type link struct {
	b    *bind
	role string // trx, tx or rx
	conn net.Conn
	log  *slog.Logger

	out     chan []byte // frames to write; nil = flush, then close (after unbind_resp)
	inbound chan inboundPDU
	seq     atomic.Uint32
	bound   atomic.Bool
	// suspect is set when a submit_sm went unanswered: until an
	// enquire_link_resp proves the link alive (or its absence kills it), no
	// new submit_sm is written, so a blackholed link does not swallow a
	// whole new window of messages that would all be sent again.
	suspect atomic.Bool
	probing atomic.Bool // an enquire_link probe is in flight
	// stale is set when the SMSC answers ESME_RINVBNDSTS or ESME_RALYBND
	// (see sessionLost): no new submit_sm is sent, and the link closes
	// (the bind rebinds) once the submit_sm in flight are finished, so
	// their own answers (most likely the same refusal: not sent) reach
	// the callers instead of ErrLinkLost (possible duplicates).
	stale atomic.Bool

	mu       sync.Mutex
	inflight map[uint32]*request
	closed   bool
	cause    error

	// reader only: deliver_sm refused since the last warning
	deferred     int
	deferredWarn time.Time

	ctx    context.Context // cancelled when the link closes (handlers)
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// inboundWorkers is how many goroutines of a link handle deliver_sm: a
// few when receipts go to the Handler in batches, more when each takes a
// call (and storage round trips) of its own.
func inboundWorkers(batch bool) int {
	if batch {
		return 4
	}
	return 16
}

// inboundQueueLen is how many deliver_sm a link holds for its workers: far
// more than arrive between two batches, so that refusing one is rare.
func inboundQueueLen(window int) int { return max(1024, 8*window) }

func newLink(b *bind, role string, conn net.Conn) *link {
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{
		b:        b,
		role:     role,
		conn:     conn,
		log:      b.log.With("link", role),
		out:      make(chan []byte, b.cfg.Window+256),
		inbound:  make(chan inboundPDU, inboundQueueLen(b.cfg.Window)),
		inflight: make(map[uint32]*request, b.cfg.Window+4),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	return l
}

func (l *link) start() {
	workers := inboundWorkers(l.b.p.batch != nil)
	l.wg.Add(3 + workers)
	go l.reader()
	go l.writer()
	go l.keeper()
	for range workers {
		go l.worker()
	}
}

// close ends the link once; every unanswered request finishes with
// ErrLinkLost. It does not wait for the goroutines (see wait).
func (l *link) close(cause error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.cause = cause
	pending := l.inflight
	l.inflight = nil
	l.mu.Unlock()

	l.cancel()
	close(l.done)
	_ = l.conn.Close()
	for _, r := range pending {
		r.finish(0, "", ErrLinkLost)
	}
}

// wait blocks until every goroutine of the link has returned, then drops
// the deliver_sm still queued (unanswered: the carrier delivers them again).
func (l *link) wait() {
	l.wg.Wait()
	for {
		select {
		case in := <-l.inbound:
			if in.receipt {
				l.b.p.backlog.add(-1)
			}
		default:
			return
		}
	}
}

func (l *link) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cause
}

func (l *link) nextSeq() uint32 {
	for {
		if v := l.seq.Add(1) & 0x7FFFFFFF; v != 0 {
			return v
		}
	}
}

// send registers r under a fresh sequence number, patched into frame, and
// queues frame for writing. After a nil return r is finished exactly once
// (response, timeout or link loss); on error r was not registered.
func (l *link) send(r *request, frame []byte, timeout time.Duration) error {
	seq := l.nextSeq()
	binary.BigEndian.PutUint32(frame[12:16], seq)
	r.seq = seq
	r.resp = data.CommandIDType(binary.BigEndian.Uint32(frame[4:8]) | 0x80000000)
	r.sent = time.Now()
	r.deadline = r.sent.Add(timeout)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrLinkLost
	}
	if r.kind == kindSubmit && l.stale.Load() { // read under mu: see closeIfDrained
		l.mu.Unlock()
		return errStale
	}
	l.inflight[seq] = r
	l.mu.Unlock()
	select {
	case l.out <- frame:
	case <-l.done: // close finished r
	}
	return nil
}

// write queues a frame that needs no response.
func (l *link) write(frame []byte) {
	select {
	case l.out <- frame:
	case <-l.done:
	}
}

func (l *link) writeTimeout() time.Duration {
	return l.b.cfg.ResponseTimeout
}

func (l *link) writer() {
	defer l.wg.Done()
	bw := bufio.NewWriterSize(l.conn, 32<<10)
	for {
		var f []byte
		select {
		case f = <-l.out:
		case <-l.done:
			return
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(l.writeTimeout()))
		closeAfter := false
		for {
			if f == nil {
				closeAfter = true
				break
			}
			if _, err := bw.Write(f); err != nil {
				l.close(fmt.Errorf("smpp: write: %w", err))
				return
			}
			select {
			case f = <-l.out:
				continue
			default:
			}
			break
		}
		if err := bw.Flush(); err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				err = errWriteTimeout
			}
			l.close(fmt.Errorf("smpp: write: %w", err))
			return
		}
		if closeAfter {
			l.close(errUnbound)
			return
		}
	}
}

func (l *link) reader() {
	defer l.wg.Done()
	br := bufio.NewReaderSize(l.conn, 32<<10)
	var hdr [16]byte
	buf := make([]byte, 0, 1024)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			l.close(fmt.Errorf("smpp: read: %w", err))
			return
		}
		h := pdu.ParseHeader(hdr)
		n := int(uint32(h.CommandLength))
		if n < 16 || n > maxPDULen {
			l.log.Warn("smpp framing lost, closing", "command_length", uint32(h.CommandLength), "command_id", fmt.Sprintf("0x%08X", uint32(h.CommandID)))
			l.close(errFraming)
			return
		}
		if n > data.MAX_PDU_LEN {
			if _, err := io.CopyN(io.Discard, br, int64(n-16)); err != nil {
				l.close(fmt.Errorf("smpp: read: %w", err))
				return
			}
			l.tooLarge(h)
			continue
		}
		if cap(buf) < n {
			buf = make([]byte, 0, n)
		}
		frame := buf[:n]
		copy(frame, hdr[:])
		if _, err := io.ReadFull(br, frame[16:]); err != nil {
			l.close(fmt.Errorf("smpp: read: %w", err))
			return
		}
		l.dispatch(h, frame)
	}
}

// dispatch handles one PDU. frame is reused after it returns.
func (l *link) dispatch(h pdu.Header, frame []byte) {
	id := h.CommandID
	seq := h.SequenceNumber
	if id == data.GENERIC_NACK || uint32(id)&0x80000000 != 0 {
		l.response(h, frame)
		return
	}
	switch id {
	case data.ENQUIRE_LINK:
		resp := pdu.NewEnquireLinkResp()
		resp.SetSequenceNumber(seq)
		l.write(marshal(resp))
	case data.UNBIND:
		resp := pdu.NewUnbindResp()
		resp.SetSequenceNumber(seq)
		l.log.Info("smpp unbind received from the SMSC")
		l.write(marshal(resp))
		l.write(nil) // flush, then close
	case data.DELIVER_SM, data.DATA_SM:
		parse, name := parseDeliverSM, "deliver_sm"
		if id == data.DATA_SM {
			parse, name = parseDataSM, "data_sm"
		}
		in, err := parse(frame)
		if err != nil {
			st := refusalStatus(err)
			l.undecodable(h, name, st, err)
			l.respond(seq, id == data.DATA_SM, st)
			return
		}
		if in.receipt {
			l.b.p.backlog.add(1)
		}
		select {
		case l.inbound <- in:
		default:
			if in.receipt {
				l.b.p.backlog.add(-1)
			}
			l.deferDeliver(in)
		}
	case data.ALERT_NOTIFICATION:
		// no response defined; nothing to do
	default:
		l.log.Warn("smpp unsupported command from the SMSC, generic_nack sent", "command_id", fmt.Sprintf("0x%08X", uint32(id)))
		l.nack(seq, StatusInvCmdID)
	}
}

// deferWarnEvery spaces the warnings about a full inbound queue.
const deferWarnEvery = 10 * time.Second

// deferDeliver answers a deliver_sm (or data_sm) that did not fit in the
// inbound queue with ESME_RX_T_APPN, so the carrier delivers it again later.
func (l *link) deferDeliver(in inboundPDU) {
	l.deliverResp(in, StatusXTAppn)
	l.deferred++
	if now := time.Now(); now.Sub(l.deferredWarn) >= deferWarnEvery {
		l.log.Warn("smpp inbound queue full: deliver_sm answered ESME_RX_T_APPN for the carrier to deliver again (handler slower than the carrier)",
			"refused", l.deferred, "queue", cap(l.inbound))
		l.deferred, l.deferredWarn = 0, now
	}
}

// tooLarge handles a PDU whose body (over data.MAX_PDU_LEN) was skipped:
// a deliver_sm or data_sm is refused for good with ESME_RX_P_APPN (the
// carrier would deliver it again and again otherwise), another request
// gets generic_nack ESME_RINVCMDLEN, and a response is taken by its header
// alone (a submit_sm_resp then has no message_id). The link stays up.
func (l *link) tooLarge(h pdu.Header) {
	seq := h.SequenceNumber
	switch id := h.CommandID; {
	case id == data.DELIVER_SM || id == data.DATA_SM:
		name := "deliver_sm"
		if id == data.DATA_SM {
			name = "data_sm"
		}
		l.undecodable(h, name, StatusXPAppn, errTooLarge)
		l.respond(seq, id == data.DATA_SM, StatusXPAppn)
	case id == data.GENERIC_NACK || uint32(id)&0x80000000 != 0:
		l.undecodable(h, "other", 0, errTooLarge)
		var frame [16]byte
		hh := h
		hh.CommandLength = 16
		b := pdu.NewBuffer(frame[:0])
		hh.Marshal(b)
		l.response(h, b.Bytes())
	default:
		l.undecodable(h, "other", StatusInvCmdLen, errTooLarge)
		l.nack(seq, StatusInvCmdLen)
	}
}

// undecodable logs and counts an inbound PDU that could not be decoded,
// by its header only (never its content); status is what answered it, 0
// for none.
func (l *link) undecodable(h pdu.Header, command string, status uint32, err error) {
	answer := "none (a response)"
	if status != 0 {
		answer = StatusName(status)
	}
	l.log.Warn("smpp PDU from the SMSC cannot be decoded, answered and dropped",
		"command_id", fmt.Sprintf("0x%08X", uint32(h.CommandID)), "command_length", uint32(h.CommandLength),
		"sequence", uint32(h.SequenceNumber), "answer", answer, "err", err)
	p := l.b.p
	p.m.undecoded.WithLabelValues(p.carrier, command).Inc()
}

func (l *link) nack(seq int32, status uint32) {
	n := pdu.NewGenericNack()
	n.SetSequenceNumber(seq)
	n.(*pdu.GenericNack).CommandStatus = data.CommandStatusType(status)
	l.write(marshal(n))
}

// response finishes the request a response answers: the one with its
// sequence number, when the response is that request's own response
// command or generic_nack. A response of another command carrying that
// sequence number (an enquire_link_resp for a submit_sm, say) is an SMSC
// error: it is logged and ignored, and the request waits for its own
// response or its timeout (then Unknown).
func (l *link) response(h pdu.Header, frame []byte) {
	seq := uint32(h.SequenceNumber)
	l.mu.Lock()
	r := l.inflight[seq]
	foreign := r != nil && h.CommandID != r.resp && h.CommandID != data.GENERIC_NACK
	if r != nil && !foreign {
		delete(l.inflight, seq)
	}
	var want data.CommandIDType
	if foreign {
		want = r.resp // read under mu: r may be finished and recycled after
	}
	l.mu.Unlock()
	if r == nil {
		l.log.Debug("smpp response for no pending request (late or unknown)", "sequence", seq, "command_id", fmt.Sprintf("0x%08X", uint32(h.CommandID)))
		return
	}
	if foreign {
		l.log.Warn("smpp response of another command for a pending request's sequence number, ignored",
			"sequence", seq, "command_id", fmt.Sprintf("0x%08X", uint32(h.CommandID)), "expected", fmt.Sprintf("0x%08X", uint32(want)))
		return
	}
	status := uint32(h.CommandStatus)
	if h.CommandID == data.GENERIC_NACK && status == StatusOK {
		status = StatusSysErr // a nack always refuses the request
	}
	var msgID string
	if r.kind == kindSubmit && h.CommandID == data.SUBMIT_SM_RESP && status == StatusOK {
		p := pdu.NewSubmitSMResp()
		if err := p.Unmarshal(pdu.NewBuffer(frame)); err != nil {
			l.log.Warn("smpp submit_sm_resp body unreadable", "err", err)
		} else {
			msgID = p.(*pdu.SubmitSMResp).MessageID
		}
		if strings.TrimSpace(strings.TrimRight(msgID, "\x00")) == "" {
			msgID = "" // no carrier id (see Result.MissingIDs)
		}
	}
	if r.kind == kindEnquire {
		l.suspect.Store(false)
		l.probing.Store(false)
		putRequest(r) // nobody waits for enquire_link
		if sessionLost(status) {
			l.retire(status)
		}
		return
	}
	kind := r.kind
	r.finish(status, msgID, nil)
	if kind == kindSubmit {
		if sessionLost(status) {
			l.retire(status)
		}
		l.closeIfDrained()
	}
}

// retire marks the link stale after the SMSC answered status (see
// sessionLost): no new submit_sm, and close once none is in flight.
func (l *link) retire(status uint32) {
	if l.stale.CompareAndSwap(false, true) {
		l.log.Warn("smpp SMSC says the session is not bound: no new submit_sm on this link, rebinding once those in flight are answered",
			"status", StatusName(status))
	}
	l.closeIfDrained()
}

// closeIfDrained closes a stale link that has no submit_sm in flight.
func (l *link) closeIfDrained() {
	if !l.stale.Load() {
		return
	}
	l.mu.Lock()
	for _, r := range l.inflight {
		if r.kind == kindSubmit {
			l.mu.Unlock()
			return
		}
	}
	l.mu.Unlock()
	l.close(errSessionLost)
}

// keeper sends enquire_link every EnquireLink once bound, and expires
// requests past their deadline. An expired enquire_link kills the link.
func (l *link) keeper() {
	defer l.wg.Done()
	cfg := l.b.cfg
	tick := min(cfg.ResponseTimeout, cfg.BindTimeout, cfg.EnquireLink) / 4
	tick = max(5*time.Millisecond, min(tick, 500*time.Millisecond))
	t := time.NewTicker(tick)
	defer t.Stop()
	lastEnquire := time.Now()
	for {
		select {
		case <-l.done:
			return
		case now := <-t.C:
			if l.sweep(now) {
				return
			}
			probe := l.suspect.Load() && l.probing.CompareAndSwap(false, true)
			if l.bound.Load() && (probe || now.Sub(lastEnquire) >= cfg.EnquireLink) {
				lastEnquire = now
				r := getRequest(kindEnquire, nil)
				el := pdu.NewEnquireLink()
				if err := l.send(r, marshal(el), cfg.ResponseTimeout); err != nil {
					putRequest(r)
				}
			}
		}
	}
}

// sweep finishes requests past their deadline; true when the link died.
func (l *link) sweep(now time.Time) bool {
	var expired []*request
	l.mu.Lock()
	for seq, r := range l.inflight {
		if now.After(r.deadline) {
			delete(l.inflight, seq)
			expired = append(expired, r)
		}
	}
	l.mu.Unlock()
	dead := false
	for _, r := range expired {
		if r.kind == kindEnquire {
			dead = true
			putRequest(r)
			continue
		}
		if r.kind == kindSubmit {
			l.suspect.Store(true)
		}
		r.finish(0, "", ErrTimeout)
	}
	if dead {
		l.log.Warn("smpp link dead: enquire_link unanswered", "timeout", l.b.cfg.ResponseTimeout)
		l.close(errDeadLink)
		return true
	}
	if len(expired) > 0 {
		l.closeIfDrained()
	}
	return false
}

// request sends a PDU and waits for its response (bind, unbind).
func (l *link) request(ctx context.Context, kind reqKind, p pdu.PDU, timeout time.Duration) (uint32, error) {
	r := &request{kind: kind, done: make(chan struct{}, 1)}
	if err := l.send(r, marshal(p), timeout); err != nil {
		return 0, err
	}
	select {
	case <-r.done:
		return r.status, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// worker handles queued deliver_sm. When the Handler takes receipts in
// batches it takes, besides the first, whatever else is queued at that
// moment (at most MaxReceiptBatch in all) without waiting for more.
func (l *link) worker() {
	defer l.wg.Done()
	p := l.b.p
	ib := newInboundBatch()
	for {
		select {
		case <-l.done:
			return
		case in := <-l.inbound:
			ib.ins = append(ib.ins, in)
			if p.batch != nil {
				l.drain(ib)
			}
			p.handleInbound(l.ctx, l.b, ib)
			for i, in := range ib.ins {
				l.deliverResp(in, ib.status[i])
			}
			p.backlog.add(-ib.receipts())
			ib.reset()
		}
	}
}

// drain adds the deliver_sm queued now to ib, up to MaxReceiptBatch.
func (l *link) drain(ib *inboundBatch) {
	for len(ib.ins) < MaxReceiptBatch {
		select {
		case in := <-l.inbound:
			ib.ins = append(ib.ins, in)
		default:
			return
		}
	}
}

// deliverResp answers an inbound deliver_sm, or data_sm, with status.
func (l *link) deliverResp(in inboundPDU, status uint32) {
	l.respond(in.d.SequenceNumber, in.dataSM, status)
}

// respond sends a deliver_sm_resp, or data_sm_resp, with status.
func (l *link) respond(seq int32, dataSM bool, status uint32) {
	var resp pdu.PDU
	if dataSM {
		resp = pdu.NewDataSMResp()
		resp.(*pdu.DataSMResp).CommandStatus = data.CommandStatusType(status)
	} else {
		resp = pdu.NewDeliverSMResp()
		resp.(*pdu.DeliverSMResp).CommandStatus = data.CommandStatusType(status)
	}
	resp.SetSequenceNumber(seq)
	l.write(marshal(resp))
}
