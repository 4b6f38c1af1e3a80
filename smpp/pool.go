package smpp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsgate/smsgate/config"
)

// PoolOptions configure a Pool.
type PoolOptions struct {
	Carrier    config.Carrier
	Handler    Handler // receives receipts and MO; required
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// ReassemblyTimeout bounds how long parts of a concatenated MO wait
	// for the rest (default 60s).
	ReassemblyTimeout time.Duration
	// Parts, when set, keeps the parts of concatenated MOs where every
	// daemon sees them (see PartStore); nil: in this pool's memory.
	Parts PartStore
}

// Pool holds the binds of one carrier and submits through the least
// loaded bound one.
type Pool struct {
	carrier string
	log     *slog.Logger
	handler Handler
	batch   ReceiptBatchHandler // handler, when it takes receipts in batches; else nil
	backlog *backlog            // deliver_sm waiting for the handler, all links
	m       *metrics

	wire  atomic.Pointer[wireOptions]
	binds atomic.Pointer[[]*bind]
	mu    sync.Mutex // serialises Update and Close
	rr    atomic.Uint32
	refs  [1024]atomic.Uint32 // concatenation references, per destination hash
	re    *reassembler
	parts PartStore // nil: parts of concatenated MOs are kept in re

	// retiring counts, by name, the binds an Update removed that are still
	// shutting down (their session may still be open).
	retMu    sync.Mutex
	retiring map[string]int

	closed atomic.Bool
	ctx    context.Context // pool lifetime: the reassembly sweeper
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type bindSpec struct {
	cfg config.Bind
	tls *tls.Config
}

func carrierSpecs(c config.Carrier) (wireOptions, []bindSpec, error) {
	if c.Name == "" {
		return wireOptions{}, nil, errors.New("smpp: carrier name is empty")
	}
	w := wireOptions{long: c.LongMessages, packed: c.GSM7Packed}
	switch w.long {
	case "":
		w.long = LongUDH
	case LongUDH, LongSAR, LongPayload:
	default:
		return w, nil, fmt.Errorf("smpp: carrier %s: long_messages %q: want udh, sar or payload", c.Name, c.LongMessages)
	}
	specs := make([]bindSpec, 0, len(c.Binds))
	names := map[string]bool{}
	for i, bc := range c.Binds {
		cfg, err := normalizeBind(c.Name, i, bc)
		if err != nil {
			return w, nil, err
		}
		if names[cfg.Name] {
			return w, nil, fmt.Errorf("smpp: carrier %s: bind name %q used twice", c.Name, cfg.Name)
		}
		names[cfg.Name] = true
		tc, err := tlsConfig(cfg)
		if err != nil {
			return w, nil, err
		}
		specs = append(specs, bindSpec{cfg: cfg, tls: tc})
	}
	return w, specs, nil
}

// NewPool validates the carrier settings and starts connecting its binds
// in the background.
func NewPool(opts PoolOptions) (*Pool, error) {
	if opts.Handler == nil {
		return nil, errors.New("smpp: pool needs a Handler")
	}
	w, specs, err := carrierSpecs(opts.Carrier)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	rt := opts.ReassemblyTimeout
	if rt <= 0 {
		rt = 60 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		carrier: opts.Carrier.Name,
		log:     log.With("component", "smpp", "carrier", opts.Carrier.Name),
		handler: opts.Handler,
		batch:   batchHandler(opts.Handler),
		backlog: newBacklog(),
		m:       m,
		re:      newReassembler(rt),
		parts:   opts.Parts,
		ctx:     ctx,
		cancel:  cancel,
	}
	p.wire.Store(&w)
	binds := make([]*bind, 0, len(specs))
	for _, s := range specs {
		binds = append(binds, p.newBind(s.cfg, s.tls))
	}
	p.binds.Store(&binds)
	for _, b := range binds {
		b.start()
	}
	p.wg.Add(1)
	go p.sweepMO()
	return p, nil
}

// Submit sends s through the least loaded bound bind and waits until every
// segment is answered or failed. It never returns with a segment silently
// lost: an unanswered segment makes the outcome Unknown.
func (p *Pool) Submit(ctx context.Context, s Submission) Result {
	if p.closed.Load() {
		return Result{Outcome: Temporary, Err: ErrClosed}
	}
	b := p.pick()
	if b == nil {
		return Result{Outcome: Temporary, Err: ErrNotBound}
	}
	frames, err := buildSubmits(s, *p.wire.Load(), p.ref(s.To))
	if err != nil {
		b.picking.Add(-1)
		return Result{Outcome: Permanent, Err: err}
	}
	return b.submit(ctx, frames)
}

// ref returns the next concatenation reference for a destination (one
// counter per destination hash bucket).
func (p *Pool) ref(to string) uint16 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(to))
	return uint16(p.refs[h.Sum32()%uint32(len(p.refs))].Add(1))
}

// pick returns the usable bind with the most free window slots, starting
// the scan at a rotating position so equal binds share the load. Submits
// that picked a bind but have not taken their slot yet count as taken, so
// concurrent submits do not all pick the bind that looked freest (and then
// wait for its slots while another bind has room); the caller must pass
// the bind to bind.submit, or undo the count (picking.Add(-1)).
func (p *Pool) pick() *bind {
	binds := *p.binds.Load()
	n := len(binds)
	if n == 0 {
		return nil
	}
	start := int(p.rr.Add(1))
	var best *bind
	bestFree := math.MinInt // with pending picks a bind may look over-full; any usable one will do
	for i := range n {
		b := binds[(start+i)%n]
		if !b.usable() {
			continue
		}
		if free := cap(b.sem) - len(b.sem) - int(b.picking.Load()); free > bestFree {
			best, bestFree = b, free
		}
	}
	if best != nil {
		best.picking.Add(1)
	}
	return best
}

// Up reports whether at least one bind is bound.
func (p *Pool) Up() bool {
	for _, b := range *p.binds.Load() {
		if b.usable() {
			return true
		}
	}
	return false
}

// Free is the number of free window slots on bound binds: how many
// submit_sm the pool can take now without waiting. It is 0 while submits
// wait for the Handler to catch up with the receipts received.
func (p *Pool) Free() int {
	if p.backlog.full() {
		return 0
	}
	n := 0
	for _, b := range *p.binds.Load() {
		if b.usable() {
			n += cap(b.sem) - len(b.sem)
		}
	}
	return n
}

// Window is the window of the usable binds: how many submit_sm they may
// have in flight at once, taken or free.
func (p *Pool) Window() int {
	n := 0
	for _, b := range *p.binds.Load() {
		if b.usable() {
			n += cap(b.sem)
		}
	}
	return n
}

// States reports every bind's state.
func (p *Pool) States() []BindState {
	binds := *p.binds.Load()
	out := make([]BindState, 0, len(binds))
	for _, b := range binds {
		out = append(out, BindState{Name: b.name, State: b.State(), InFlight: len(b.sem)})
	}
	return out
}

// Update applies new carrier settings: binds whose settings are unchanged
// stay connected, removed or changed ones are drained and unbound in the
// background, new ones start connecting. The carrier name cannot change.
// On error nothing changes.
func (p *Pool) Update(c config.Carrier) error {
	if c.Name != p.carrier {
		return fmt.Errorf("smpp: update: carrier name %q, pool is %q", c.Name, p.carrier)
	}
	w, specs, err := carrierSpecs(c)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() {
		return ErrClosed
	}
	old := map[string]*bind{}
	for _, b := range *p.binds.Load() {
		old[b.name] = b
	}
	next := make([]*bind, 0, len(specs))
	var started, retired []*bind
	for _, s := range specs {
		if ob := old[s.cfg.Name]; ob != nil && ob.cfg == s.cfg {
			next = append(next, ob)
			delete(old, s.cfg.Name)
			continue
		}
		nb := p.newBind(s.cfg, s.tls)
		next = append(next, nb)
		started = append(started, nb)
	}
	for _, ob := range old {
		retired = append(retired, ob)
	}
	p.retMu.Lock()
	for _, ob := range retired {
		ob.detached.Store(true)
		if p.retiring == nil {
			p.retiring = map[string]int{}
		}
		p.retiring[ob.name]++ // before it leaves binds: Open never misses it
	}
	p.retMu.Unlock()
	p.wire.Store(&w)
	p.binds.Store(&next)
	for _, nb := range started {
		nb.start()
	}
	current := map[string]bool{}
	for _, b := range next {
		current[b.name] = true
	}
	for _, ob := range retired {
		keepSeries := current[ob.name]
		p.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), ob.cfg.ResponseTimeout+5*time.Second)
			defer cancel()
			if err := ob.shutdown(ctx); err != nil {
				p.log.Warn("smpp retired bind closed with requests in flight", "bind", ob.name, "err", err)
			}
			p.retMu.Lock()
			if p.retiring[ob.name]--; p.retiring[ob.name] <= 0 {
				delete(p.retiring, ob.name)
			}
			p.retMu.Unlock()
			if !keepSeries {
				ob.m.forget()
			}
		})
	}
	level := slog.LevelInfo
	if len(started) == 0 && len(retired) == 0 {
		level = slog.LevelDebug // a reload or lease round that changed nothing here
	}
	p.log.Log(context.Background(), level, "smpp carrier updated", "binds", len(next), "started", len(started), "retired", len(retired))
	return nil
}

// Open reports whether the bind named name may have a session open: it is
// one of the pool's binds, or an Update removed it and it is still shutting
// down (draining its window, unbinding).
func (p *Pool) Open(name string) bool {
	for _, b := range *p.binds.Load() {
		if b.name == name {
			return true
		}
	}
	p.retMu.Lock()
	defer p.retMu.Unlock()
	return p.retiring[name] > 0
}

// Close stops accepting submissions, waits for the windows to drain
// (bounded by ctx; what is still unanswered then comes back Unknown),
// unbinds, hands incomplete multipart MOs to the Handler, and stops every
// goroutine.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed.Swap(true) {
		p.mu.Unlock()
		return nil
	}
	binds := *p.binds.Load()
	p.mu.Unlock()

	errs := make([]error, len(binds))
	var wg sync.WaitGroup
	for i, b := range binds {
		wg.Go(func() { errs[i] = b.shutdown(ctx) })
	}
	wg.Wait()
	p.cancel()
	p.wg.Wait()
	for _, a := range p.re.expired(time.Now(), true) {
		p.deliverPartial(ctx, a)
	}
	return errors.Join(errs...)
}

// batchHandler is h as a ReceiptBatchHandler, or nil.
func batchHandler(h Handler) ReceiptBatchHandler {
	if bh, ok := h.(ReceiptBatchHandler); ok {
		return bh
	}
	return nil
}

// inboundBatch is a worker's scratch space for deliver_sm taken from its
// link's queue together.
type inboundBatch struct {
	ins    []inboundPDU
	status []uint32 // deliver_sm_resp command_status of ins[i]
	rs     []Receipt
	at     []int // rs[j] came from ins[at[j]]
	mos    []int // indexes of MOs in ins
}

func newInboundBatch() *inboundBatch {
	return &inboundBatch{
		ins:    make([]inboundPDU, 0, MaxReceiptBatch),
		status: make([]uint32, 0, MaxReceiptBatch),
		rs:     make([]Receipt, 0, MaxReceiptBatch),
		at:     make([]int, 0, MaxReceiptBatch),
	}
}

// receipts is how many of ib.ins are receipts.
func (ib *inboundBatch) receipts() int {
	n := 0
	for _, in := range ib.ins {
		if in.receipt {
			n++
		}
	}
	return n
}

func (ib *inboundBatch) reset() {
	clear(ib.ins)
	clear(ib.rs)
	ib.ins, ib.status, ib.rs, ib.at, ib.mos = ib.ins[:0], ib.status[:0], ib.rs[:0], ib.at[:0], ib.mos[:0]
}

// handleInbound handles the deliver_sm in ib.ins and fills ib.status. With
// a ReceiptBatchHandler the receipts among them go to it in one call, then
// the MOs one by one; without, each deliver_sm is handled on its own.
func (p *Pool) handleInbound(ctx context.Context, b *bind, ib *inboundBatch) {
	ib.status = ib.status[:len(ib.ins)]
	if p.batch == nil {
		for i, in := range ib.ins {
			ib.status[i] = p.inbound(ctx, b, in)
		}
		return
	}
	now := time.Now()
	for i, in := range ib.ins {
		if !in.receipt {
			ib.mos = append(ib.mos, i)
			continue
		}
		r, ok := p.receipt(b, in, now)
		if !ok {
			ib.status[i] = StatusOK
			continue
		}
		ib.rs = append(ib.rs, r)
		ib.at = append(ib.at, i)
	}
	if len(ib.rs) > 0 {
		p.receiptBatch(ctx, b, ib)
	}
	for _, i := range ib.mos {
		ib.status[i] = p.inbound(ctx, b, ib.ins[i])
	}
}

// receiptBatch passes ib.rs to the batch handler and sets the status of
// each receipt's deliver_sm.
func (p *Pool) receiptBatch(ctx context.Context, b *bind, ib *inboundBatch) {
	hctx, cancel := context.WithTimeout(ctx, b.cfg.ResponseTimeout)
	errs := p.batch.HandleReceipts(hctx, ib.rs)
	cancel()
	if len(errs) != len(ib.rs) {
		b.log.Error("smpp receipt batch handler returned a result count unlike the receipt count, ESME_RX_T_APPN sent for the batch",
			"receipts", len(ib.rs), "results", len(errs))
		for _, i := range ib.at {
			ib.status[i] = StatusXTAppn
		}
		return
	}
	failed := 0
	var first error
	for j, err := range errs {
		i := ib.at[j]
		if err != nil {
			if failed == 0 {
				first = err
			}
			failed++
			ib.status[i] = StatusXTAppn
			continue
		}
		ib.status[i] = StatusOK
		p.m.receipts.WithLabelValues(p.carrier, receiptStateLabel(ib.rs[j].State)).Inc()
	}
	if failed > 0 {
		b.log.Warn("smpp receipt handler failed, ESME_RX_T_APPN sent", "err", first, "failed", failed, "batch", len(ib.rs))
	}
}

// receipt decodes the receipt in a deliver_sm; ok is false (and the
// deliver_sm should be acknowledged and dropped) when it has no message id.
func (p *Pool) receipt(b *bind, in inboundPDU, now time.Time) (Receipt, bool) {
	r, ok := decodeReceipt(in, now)
	if !ok {
		b.log.Warn("smpp receipt without a message id, acknowledged and dropped")
		return r, false
	}
	r.Carrier, r.Bind = p.carrier, b.name
	return r, true
}

// inbound handles one deliver_sm and returns the deliver_sm_resp status.
func (p *Pool) inbound(ctx context.Context, b *bind, in inboundPDU) uint32 {
	now := time.Now()
	hctx, cancel := context.WithTimeout(ctx, b.cfg.ResponseTimeout)
	defer cancel()
	if in.receipt {
		r, ok := p.receipt(b, in, now)
		if !ok {
			return StatusOK
		}
		if err := p.handler.HandleReceipt(hctx, r); err != nil {
			b.log.Warn("smpp receipt handler failed, ESME_RX_T_APPN sent", "err", err)
			return StatusXTAppn
		}
		p.m.receipts.WithLabelValues(p.carrier, receiptStateLabel(r.State)).Inc()
		return StatusOK
	}
	part, ci, concat := decodeMOPart(in, p.wire.Load().packed)
	mo := MO{
		From:       fromWireAddress(in.d.SourceAddr),
		To:         fromWireAddress(in.d.DestAddr),
		Segments:   1,
		ReceivedAt: now,
		Carrier:    p.carrier,
		Bind:       b.name,
	}
	if !concat {
		mo.Text = part.text()
		return p.deliverMO(hctx, b.log, mo)
	}
	k := assemblyKey{from: mo.From, to: mo.To, ref: ci.ref, ref16: ci.ref16, sar: ci.sar, total: ci.total}
	if p.parts != nil {
		return p.addStoredPart(hctx, b, k, ci.seq, part, mo)
	}
	a := p.re.add(k, ci.seq, part, b.name, now)
	if a == nil {
		return StatusOK // kept in memory; see reassembler for the loss window
	}
	mo.Text = joinParts(a.parts)
	mo.Segments = int(ci.total)
	st := p.deliverMO(hctx, b.log, mo)
	if st != StatusOK {
		p.re.restore(a, ci.seq)
	}
	return st
}

func (p *Pool) deliverMO(ctx context.Context, log *slog.Logger, mo MO) uint32 {
	if err := p.handler.HandleMO(ctx, mo); err != nil {
		log.Warn("smpp MO handler failed, ESME_RX_T_APPN sent", "err", err)
		return StatusXTAppn
	}
	p.m.mo.WithLabelValues(p.carrier).Inc()
	return StatusOK
}

// sweepMO hands multipart MOs still incomplete after the reassembly
// timeout to the Handler.
func (p *Pool) sweepMO() {
	defer p.wg.Done()
	tick := max(10*time.Millisecond, min(p.re.timeout/4, time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			if p.parts != nil {
				p.sweepStoredMOs(p.ctx)
				continue
			}
			for _, a := range p.re.expired(now, false) {
				p.deliverPartial(p.ctx, a)
			}
		}
	}
}

const maxPartialAttempts = 5

// deliverPartial hands the parts received of an incomplete MO to the
// Handler, joined in order; on failure it is retried on later sweeps.
func (p *Pool) deliverPartial(ctx context.Context, a *assembly) {
	parts := a.received()
	p.log.Warn("smpp multipart MO incomplete after the reassembly timeout, delivering the parts received",
		"received", len(parts), "total", a.key.total, "bind", a.bind)
	mo := MO{
		From:       a.key.from,
		To:         a.key.to,
		Text:       joinParts(parts),
		Segments:   len(parts),
		ReceivedAt: a.first,
		Carrier:    p.carrier,
		Bind:       a.bind,
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.handler.HandleMO(hctx, mo); err != nil {
		a.attempts++
		if a.attempts < maxPartialAttempts && ctx.Err() == nil {
			p.log.Warn("smpp MO handler failed for an incomplete MO, will retry", "err", err, "attempt", a.attempts)
			p.re.putBack(a)
			return
		}
		p.log.Error("smpp incomplete MO lost: handler kept failing", "err", err, "attempts", a.attempts)
		return
	}
	p.m.mo.WithLabelValues(p.carrier).Inc()
}
