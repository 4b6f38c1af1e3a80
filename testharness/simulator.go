// Package testharness holds what tests and `smsgate simulate` use in place of
// the outside world: an SMPP 3.4 SMSC simulator (in-process on 127.0.0.1:0,
// shaped like httptest), a webhook sink, and Redis helpers.
//
// The simulator speaks SMPP through gosmpp's pdu codec only. It checks bind
// credentials (ESME_RINVSYSID, ESME_RINVPASWD), answers enquire_link, unbind
// and submit_sm (unique message ids, hex or decimal) after the checks a real
// SMSC makes (address TON/NPI, validity_period, message length), emits
// delivery receipts as deliver_sm to receiver or transceiver binds, injects MO
// messages (plain, UDH or SAR concatenated), redelivers what the client
// refuses on a backoff schedule until it gives up (see Dropped), records
// every PDU it receives, answers what it does not know with generic_nack, and
// plays scripted faults and limits (see Faults).
package testharness

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linxGnu/gosmpp/pdu"
)

// SMPP command_status values the simulator answers with.
const (
	StatusOK              uint32 = 0x00 // ESME_ROK
	StatusInvMsgLen       uint32 = 0x01 // ESME_RINVMSGLEN
	StatusInvCmdLen       uint32 = 0x02 // ESME_RINVCMDLEN
	StatusInvCmdID        uint32 = 0x03 // ESME_RINVCMDID
	StatusInvBndSts       uint32 = 0x04 // ESME_RINVBNDSTS
	StatusAlyBnd          uint32 = 0x05 // ESME_RALYBND
	StatusSysErr          uint32 = 0x08 // ESME_RSYSERR
	StatusInvDstAdr       uint32 = 0x0B // ESME_RINVDSTADR
	StatusBindFail        uint32 = 0x0D // ESME_RBINDFAIL
	StatusInvPaswd        uint32 = 0x0E // ESME_RINVPASWD
	StatusInvSysID        uint32 = 0x0F // ESME_RINVSYSID
	StatusMsgQFul         uint32 = 0x14 // ESME_RMSGQFUL
	StatusInvEsmClass     uint32 = 0x43 // ESME_RINVESMCLASS
	StatusSubmitFail      uint32 = 0x45 // ESME_RSUBMITFAIL
	StatusInvSrcTON       uint32 = 0x48 // ESME_RINVSRCTON
	StatusInvSrcNPI       uint32 = 0x49 // ESME_RINVSRCNPI
	StatusInvDstTON       uint32 = 0x50 // ESME_RINVDSTTON
	StatusInvDstNPI       uint32 = 0x51 // ESME_RINVDSTNPI
	StatusThrottled       uint32 = 0x58 // ESME_RTHROTTLED
	StatusInvExpiry       uint32 = 0x62 // ESME_RINVEXPIRY
	StatusXTAppn          uint32 = 0x64 // ESME_RX_T_APPN
	StatusXPAppn          uint32 = 0x65 // ESME_RX_P_APPN
	StatusXRAppn          uint32 = 0x66 // ESME_RX_R_APPN
	StatusInvOptParStream uint32 = 0xC0 // ESME_RINVOPTPARSTREAM
)

// Defaults of SimOptions.
const (
	DefaultSimAddr        = "127.0.0.1:0"
	DefaultSystemID       = "smsgate"
	DefaultPassword       = "secret"
	DefaultRecordLimit    = 100000
	DefaultRedeliverDelay = 200 * time.Millisecond
	// DefaultRedeliverMaxDelay caps the growing delay between deliveries
	// of a deliver_sm the client keeps refusing.
	DefaultRedeliverMaxDelay = 5 * time.Second
	// DefaultDeliverAttempts is how many failed attempts (refused or
	// unanswered) a deliver_sm gets before the simulator drops it.
	DefaultDeliverAttempts = 50
	DefaultDeliverTimeout  = 10 * time.Second
)

// SimOptions configures a Simulator. Zero values take the documented defaults.
type SimOptions struct {
	Addr     string // listen address, default "127.0.0.1:0"
	SystemID string // the one accepted system_id, default "smsgate"
	Password string // its password, default "secret"

	// ReceiptDelay is the time between submit_sm_resp and its delivery receipt
	// (default 0: right after the response).
	ReceiptDelay time.Duration
	// DecimalIDs makes message ids decimal instead of lowercase hex.
	DecimalIDs bool
	// RedeliverDelay is how long a deliver_sm lost with its connection, or
	// refused by the client for the first time, waits before it is
	// delivered again. Default 200ms. Each further refusal doubles the
	// delay, up to RedeliverMaxDelay. A refusal with ESME_RX_P_APPN or
	// ESME_RX_R_APPN is final: the deliver_sm is dropped at once (see
	// Dropped). Any other non-zero status, a generic_nack or a wrong
	// response type is transient.
	RedeliverDelay time.Duration
	// RedeliverMaxDelay caps the growing delay between refusals. Default
	// DefaultRedeliverMaxDelay (5s); never below RedeliverDelay.
	RedeliverMaxDelay time.Duration
	// DeliverAttempts is how many failed attempts (refused or unanswered
	// within DeliverTimeout) a deliver_sm gets before it is dropped.
	// Deliveries lost with their connection do not count. 0 means
	// DefaultDeliverAttempts (50); negative never gives up.
	DeliverAttempts int
	// DeliverTimeout is how long the simulator waits for deliver_sm_resp
	// before it delivers again. Default 10s.
	DeliverTimeout time.Duration
	// DataSM makes the simulator deliver MO messages and delivery receipts
	// as data_sm (text in message_payload, receipt fields in TLVs and the
	// payload) instead of deliver_sm, as some SMSCs do; it expects
	// data_sm_resp back.
	DataSM bool
	// RecordLimit caps how many PDUs Received, how many submits Submits and
	// how many deliveries Dropped keep (counts go on). 0 means DefaultRecordLimit; negative records none.
	RecordLimit int
	// Faults is the initial fault script (see SetFaults).
	Faults Faults
	// Logger receives connection-level events; nil discards.
	Logger *slog.Logger
}

// Faults scripts misbehaviour. The zero value is a well-behaved SMSC.
type Faults struct {
	Latency     time.Duration // delay before each submit_sm_resp
	ErrorRate   float64       // fraction of submit_sm answered with ErrorStatus
	ErrorStatus uint32        // e.g. 0x58 ESME_RTHROTTLED, 0x14 ESME_RMSGQFUL, 0x45 ESME_RSUBMITFAIL (0 = 0x45)
	// NoResponseRate is the fraction of submit_sm swallowed: never
	// answered and never processed (no message id, no receipt), as an SMSC
	// that hangs on a request would.
	NoResponseRate float64
	// LostResponseRate is the fraction of submit_sm accepted and processed
	// (message id, delivery receipt as usual) whose submit_sm_resp is lost
	// on the way back: the client sees no response, then a receipt for an
	// id it never learnt. This is what a lost response usually means on
	// real links. Applied after NoResponseRate and ErrorRate decided
	// nothing else.
	LostResponseRate float64
	// DropAfterPDUs closes a connection when it has received N PDUs: the N-th
	// is recorded but not answered (0 = never).
	DropAfterPDUs int
	RefuseBinds   bool // answer binds with ESME_RBINDFAIL
	SilentBind    bool // accept TCP, never answer the bind
	// MaxTPS is the submit_sm/s per account (system_id, across all its
	// binds) above which ESME_RTHROTTLED is answered: a token bucket with a
	// burst of max(1, MaxTPS) that a reconnect does not refill.
	MaxTPS float64
	// MaxWindow is how many submit_sm a bind may have waiting for their
	// response (held back by Latency); beyond it a submit_sm is answered at
	// once with WindowStatus. 0 = no limit.
	MaxWindow int
	// WindowStatus is the command_status for a submit_sm over MaxWindow;
	// 0 means 0x58 ESME_RTHROTTLED (0x14 ESME_RMSGQFUL is the other usual one).
	WindowStatus uint32
	ReceiptStat  string // stat of receipts: "" = DELIVRD; UNDELIV, REJECTD, EXPIRED, DELETED, UNKNOWN, ACCEPTD
	ReceiptErr   string // err: field, default "000"; also sent as network_error_code
	NoReceipts   bool   // never send delivery receipts
	// ReceiptFirst sends each receipt before its submit_sm_resp, as some
	// SMSCs do under load (ReceiptDelay is then ignored).
	ReceiptFirst bool
	// ReceiptID plays carrier quirks in how receipts carry the message id:
	// "" in the text and in receipted_message_id (NUL-terminated, as SMPP 3.4
	// says); "text" in the text only; "decimal" or "hex" in the text only,
	// converted to that base; "nul" in the text only, followed by a NUL octet.
	ReceiptID string
}

// MO is a mobile-originated message to inject with InjectMO.
type MO struct {
	From, To, Text string
	UCS2           bool   // data_coding 8 (UCS-2) instead of 0 (GSM 03.38, unpacked)
	Concat         string // "" (one deliver_sm; message_payload when over 254 octets), "udh" or "sar"
	// PartLen is the most septets (GSM) or UTF-16 units (UCS-2) per part when
	// Concat is set; default 153 / 67. Escapes and surrogate pairs are not split.
	PartLen int
}

// Submit is one submit_sm the simulator received on a transmitter or
// transceiver bind, whatever it answered.
type Submit struct {
	MessageID          string // "" unless accepted
	SystemID           string
	Source, Dest       string
	ESMClass           byte
	DataCoding         byte
	RegisteredDelivery byte
	ShortMessage       []byte            // raw short_message octets, UDH included
	TLVs               map[uint16][]byte // optional parameters
	ValidityPeriod     string
	At                 time.Time
	Status             uint32        // command_status decided for the response
	Answered           bool          // false when NoResponseRate swallowed it (MessageID "") or LostResponseRate lost its response (MessageID set)
	Latency            time.Duration // how long the response was held back (the Latency fault in force when it arrived)
	Conn               int           // connection number (1-based, accept order)
}

// DroppedDelivery is a deliver_sm (MO part or delivery receipt) the
// simulator gave up on.
type DroppedDelivery struct {
	Source, Dest string
	Receipt      bool   // a delivery receipt (esm_class 0x04), else an MO part
	MessageID    string // the receipted message id of a receipt, else ""
	Status       uint32 // command_status of the last refusal; 0 when the last attempt was unanswered
	Attempts     int    // failed attempts, the last included
	Reason       string // "permanent" (ESME_RX_P_APPN or ESME_RX_R_APPN) or "attempts" (DeliverAttempts reached)
	At           time.Time
}

// RecordedPDU is one PDU as received, including ones that did not parse.
type RecordedPDU struct {
	Conn           int // connection number (1-based, accept order)
	CommandID      uint32
	CommandStatus  uint32
	SequenceNumber uint32
	Raw            []byte // the whole PDU, header included; shared, do not modify
	At             time.Time
}

// Decode parses Raw with the gosmpp codec.
func (r RecordedPDU) Decode() (pdu.PDU, error) {
	return decodeFrame(r.Raw)
}

// Simulator is an SMPP 3.4 SMSC listening on a loopback port. Safe for
// concurrent use.
type Simulator struct {
	opts   SimOptions
	log    *slog.Logger
	ln     net.Listener
	sched  *scheduler
	faults atomic.Pointer[Faults]
	nextID atomic.Uint64
	ref    atomic.Uint32
	wg     sync.WaitGroup

	mu          sync.Mutex
	closed      bool
	conns       map[*conn]struct{}
	connSeq     int
	receivers   []*conn // bound receiver/transceiver connections
	rr          int
	queued      []*delivery // deliveries waiting for a receiver bind
	active      int
	maxActive   int
	received    []RecordedPDU
	receivedN   int
	submits     []Submit
	submitN     int
	delivered   int
	deliverSent int
	dropped     []DroppedDelivery
	droppedN    int
	buckets     map[string]*tokenBucket // MaxTPS per system_id
}

// NewSimulator starts a simulator; it is listening when NewSimulator returns.
func NewSimulator(opts SimOptions) (*Simulator, error) {
	if opts.Addr == "" {
		opts.Addr = DefaultSimAddr
	}
	if opts.SystemID == "" {
		opts.SystemID = DefaultSystemID
	}
	if opts.Password == "" {
		opts.Password = DefaultPassword
	}
	if opts.RedeliverDelay <= 0 {
		opts.RedeliverDelay = DefaultRedeliverDelay
	}
	if opts.RedeliverMaxDelay <= 0 {
		opts.RedeliverMaxDelay = DefaultRedeliverMaxDelay
	}
	opts.RedeliverMaxDelay = max(opts.RedeliverMaxDelay, opts.RedeliverDelay)
	if opts.DeliverAttempts == 0 {
		opts.DeliverAttempts = DefaultDeliverAttempts
	}
	if opts.DeliverTimeout <= 0 {
		opts.DeliverTimeout = DefaultDeliverTimeout
	}
	if opts.RecordLimit == 0 {
		opts.RecordLimit = DefaultRecordLimit
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("simulator: listen: %w", err)
	}
	s := &Simulator{
		opts:    opts,
		log:     log.With("component", "smsc-simulator"),
		ln:      ln,
		sched:   newScheduler(),
		conns:   make(map[*conn]struct{}),
		buckets: make(map[string]*tokenBucket),
	}
	f := opts.Faults
	s.faults.Store(&f)
	// Ids start at a random point so two simulator runs do not reuse them.
	// The leading 0xa keeps a letter in every hex id, so no hex id reads as
	// a decimal number (see smpp.NormalizeID).
	s.nextID.Store(uint64(rand.Uint32())<<8 | 0xa<<40)
	s.ref.Store(rand.Uint32())
	s.wg.Go(s.acceptLoop)
	return s, nil
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Simulator) Addr() string { return s.ln.Addr().String() }

// Close stops listening, closes every connection and waits for all the
// simulator's goroutines. Queued deliveries are dropped.
func (s *Simulator) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.close()
	}
	s.sched.stop()
	s.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("simulator: close: %w", err)
	}
	return nil
}

// SetFaults replaces the fault script; it takes effect for later PDUs.
func (s *Simulator) SetFaults(f Faults) { s.faults.Store(&f) }

// Faults returns the current fault script.
func (s *Simulator) Faults() Faults { return *s.faults.Load() }

// DisconnectAll closes every open connection (the listener stays up), as an
// SMSC restart or network cut would.
func (s *Simulator) DisconnectAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Submits returns the recorded submit_sm (at most RecordLimit), in arrival order.
func (s *Simulator) Submits() []Submit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Submit(nil), s.submits...)
}

// SubmitCount returns how many submit_sm arrived on bound transmitter or
// transceiver connections, recorded or not.
func (s *Simulator) SubmitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.submitN
}

// Received returns the recorded PDUs (at most RecordLimit), in arrival order.
func (s *Simulator) Received() []RecordedPDU {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RecordedPDU(nil), s.received...)
}

// ReceivedCount returns how many PDUs arrived, recorded or not.
func (s *Simulator) ReceivedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.receivedN
}

// ActiveBinds returns how many connections are bound now.
func (s *Simulator) ActiveBinds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// MaxActiveBinds returns the most connections that were bound at once.
func (s *Simulator) MaxActiveBinds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxActive
}

// DeliveredCount returns how many deliver_sm (receipts and MO parts) the
// client acknowledged with status 0.
func (s *Simulator) DeliveredCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// DeliverSentCount returns how many deliver_sm were written, redeliveries included.
func (s *Simulator) DeliverSentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deliverSent
}

// Dropped returns the deliver_sm the simulator gave up on (refused for good
// or out of attempts; at most RecordLimit), in the order it gave up.
func (s *Simulator) Dropped() []DroppedDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DroppedDelivery(nil), s.dropped...)
}

// DroppedCount returns how many deliver_sm the simulator gave up on, recorded or not.
func (s *Simulator) DroppedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.droppedN
}

// PendingDeliveries returns how many deliver_sm wait for a receiver bind.
func (s *Simulator) PendingDeliveries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queued)
}

func (s *Simulator) acceptLoop() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("accept failed", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.connSeq++
		c := newConn(s, nc, s.connSeq)
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.log.Info("connection accepted", "conn", c.id, "remote", nc.RemoteAddr().String())
		s.wg.Go(c.readLoop)
		s.wg.Go(c.writeLoop)
	}
}

func (s *Simulator) record(c *conn, h pdu.Header, frame []byte) {
	s.mu.Lock()
	s.receivedN++
	if s.opts.RecordLimit > 0 && len(s.received) < s.opts.RecordLimit {
		s.received = append(s.received, RecordedPDU{
			Conn:           c.id,
			CommandID:      uint32(h.CommandID),
			CommandStatus:  uint32(h.CommandStatus),
			SequenceNumber: uint32(h.SequenceNumber),
			Raw:            frame,
			At:             time.Now(),
		})
	}
	s.mu.Unlock()
}

// countSubmit counts a submit and reports whether it should be recorded.
func (s *Simulator) countSubmit() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.submitN++
	return s.opts.RecordLimit > 0 && len(s.submits) < s.opts.RecordLimit
}

func (s *Simulator) recordSubmit(sub Submit) {
	s.mu.Lock()
	if len(s.submits) < s.opts.RecordLimit {
		s.submits = append(s.submits, sub)
	}
	s.mu.Unlock()
}

func (s *Simulator) newMessageID() string {
	n := s.nextID.Add(1)
	if s.opts.DecimalIDs {
		return fmt.Sprintf("%d", n)
	}
	return fmt.Sprintf("%x", n)
}

// bound counts c as bound with bind type bt.
func (s *Simulator) bound(c *conn, bt int32) {
	s.mu.Lock()
	if c.gone.Load() { // close already ran unbound
		s.mu.Unlock()
		return
	}
	c.bindType.Store(bt)
	s.active++
	s.maxActive = max(s.maxActive, s.active)
	s.mu.Unlock()
}

// addReceiver makes c eligible for deliver_sm and hands it what was queued.
func (s *Simulator) addReceiver(c *conn) {
	s.mu.Lock()
	if c.bindType.Load() == bindNone { // closed meanwhile
		s.mu.Unlock()
		return
	}
	s.receivers = append(s.receivers, c)
	queued := s.queued
	s.queued = nil
	s.mu.Unlock()
	for _, d := range queued {
		s.dispatch(d)
	}
}

// unbound removes c from the bound set (no-op when it was not bound).
func (s *Simulator) unbound(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.receivers {
		if r == c {
			s.receivers = append(s.receivers[:i], s.receivers[i+1:]...)
			break
		}
	}
	if c.bindType.Swap(bindNone) != bindNone {
		s.active--
	}
}

func (s *Simulator) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// dispatch sends d to a bound receiver (round robin) or queues it until one binds.
func (s *Simulator) dispatch(d *delivery) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.receivers) == 0 {
		s.queued = append(s.queued, d)
		s.mu.Unlock()
		return
	}
	s.rr++
	c := s.receivers[s.rr%len(s.receivers)]
	s.mu.Unlock()
	c.sendDeliver(d)
}

func (s *Simulator) countDeliverSent() {
	s.mu.Lock()
	s.deliverSent++
	s.mu.Unlock()
}

func (s *Simulator) deliverResult(ok bool) {
	s.mu.Lock()
	if ok {
		s.delivered++
	}
	s.mu.Unlock()
}
