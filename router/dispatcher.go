package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
)

// Queue is what the dispatcher needs from the message queue.
type Queue interface {
	Claim(ctx context.Context, max int) ([]queue.Claimed, error)
	// AckMany acks several messages in one round trip, one error per item.
	AckMany(ctx context.Context, items []queue.AckItem) []error
	Retry(ctx context.Context, c queue.Claimed, delay time.Duration, e message.Error) error
	Requeue(ctx context.Context, c queue.Claimed) error
	Fail(ctx context.Context, c queue.Claimed, e message.Error) error
	Reap(ctx context.Context) (int, error)
	// RenewMany extends several leases to d from now in one round trip,
	// one error per message (queue.ErrLeaseLost when that lease is gone).
	RenewMany(ctx context.Context, cs []queue.Claimed, d time.Duration) []error
	// SweepHeld applies delivery receipts left held by a daemon that died.
	SweepHeld(ctx context.Context) (int, error)
	// ExpireHeads ends the expired messages at the head of their queues,
	// as Claim does; for when no carrier is up and nothing is claimed.
	ExpireHeads(ctx context.Context) (int, error)
}

// Carrier is one carrier's bind pool as the dispatcher uses it.
type Carrier interface {
	Submit(ctx context.Context, s smpp.Submission) smpp.Result
	Up() bool
	Free() int
	// Window is how many submit_sm the usable binds may have in flight at
	// once, taken or not.
	Window() int
}

// Plan is what a configuration says about sending: the routing table and the
// carriers by name. A reload swaps in a new plan.
type Plan struct {
	Table    *Table
	Carriers map[string]Carrier
}

func (p *Plan) up(name string) bool {
	c, ok := p.Carriers[name]
	return ok && c.Up()
}

func (p *Plan) free() int {
	n := 0
	for _, c := range p.Carriers {
		if c.Up() {
			n += c.Free()
		}
	}
	return n
}

// window is the window of every carrier that is up.
func (p *Plan) window() int {
	n := 0
	for _, c := range p.Carriers {
		if c.Up() {
			n += c.Window()
		}
	}
	return n
}

// Error codes the dispatcher writes into failed and retried messages.
const (
	CodeMMSRouteUnavailable = "mms_route_unavailable"
	CodeNoRoute             = "no_route"
	CodeCarrierUnavailable  = "carrier_unavailable"
	CodeCarrierRejected     = "carrier_rejected"
	CodeCarrierTemporary    = "carrier_temporary_error"
)

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	Queue Queue
	Plan  *Plan
	// Workers is how many submissions may be in progress at once; it should
	// cover the sum of all bind windows. Default 256.
	Workers int
	// Batch is the most messages one claim asks for. Default 64.
	Batch int
	// Lease is the queue's lease. The dispatcher renews the lease of every
	// message it holds once a third of it has passed (one pipelined batch),
	// reaps expired leases and sweeps held receipts every Lease/3, and keeps
	// retrying a failed settle (ack, retry, fail) for up to Lease/2.
	Lease time.Duration
	// SubmitTimeout bounds one submission, mostly its wait for the bind's
	// window and throughput (the wait for the answer is bounded by the bind's
	// response timeout; keep this much longer). A submission abandoned before
	// it was sent is retried without the possible-duplicate flag. Leases are
	// renewed meanwhile. Default max(2 × Lease, 1 minute).
	SubmitTimeout time.Duration
	// RetryBackoff and MaxRetryBackoff bound the delay after a temporary error.
	RetryBackoff, MaxRetryBackoff time.Duration
	// Idle is the pause after a claim that found nothing, or when the binds
	// have no free slot. Default 5ms. Each further such pause doubles it,
	// up to idleFactor times Idle, until a claim gets a message: an idle
	// daemon wakes less often, and a sender whose next-allowed time comes
	// meanwhile is claimed at most that late (4×5 ms = 20 ms, which the
	// queue's rate accounting lets it catch up). A freed slot ends a pause
	// at once.
	Idle time.Duration
	// DrainTimeout bounds how long submissions in flight may take to finish
	// once Run's context is done. Default 10s.
	DrainTimeout time.Duration
	// SettleBatch and SettleWait: successful submissions are acked by one
	// settler in batches (Queue.AckMany) of at most SettleBatch (default 64),
	// waiting at most SettleWait (default 1ms; negative: not at all) after the
	// first for more to join.
	SettleBatch int
	SettleWait  time.Duration
	// Settling, when set, tracks the carrier ids of accepted submissions
	// until their ack returns, for the receipt handler to wait on (see
	// Settling). One tracker serves the daemon.
	Settling   *Settling
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Dispatcher claims messages the queue says may go now, as many as the binds
// have credit for, and submits each through the carrier the routing table
// picks. It acks, retries, requeues or fails each one by its outcome.
type Dispatcher struct {
	opts    DispatcherOptions
	log     *slog.Logger
	plan    atomic.Pointer[Plan]
	freed   chan struct{}
	leases  leases
	metrics dispatchMetrics
}

type dispatchMetrics struct {
	outcomes *prometheus.CounterVec
	latency  prometheus.Histogram
	claimErr prometheus.Counter
	inFlight prometheus.Gauge
}

// NewDispatcher validates the options and returns a Dispatcher; Run starts it.
func NewDispatcher(opts DispatcherOptions) (*Dispatcher, error) {
	if opts.Queue == nil {
		return nil, errors.New("router: dispatcher needs a queue")
	}
	if opts.Plan == nil || opts.Plan.Table == nil {
		return nil, errors.New("router: dispatcher needs a plan with a routing table")
	}
	if opts.Workers <= 0 {
		opts.Workers = 256
	}
	if opts.Batch <= 0 {
		opts.Batch = 64
	}
	if opts.Lease <= 0 {
		opts.Lease = 30 * time.Second
	}
	if opts.SubmitTimeout <= 0 {
		opts.SubmitTimeout = max(2*opts.Lease, time.Minute)
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = time.Second
	}
	if opts.MaxRetryBackoff < opts.RetryBackoff {
		opts.MaxRetryBackoff = max(5*time.Minute, opts.RetryBackoff)
	}
	if opts.Idle <= 0 {
		opts.Idle = 5 * time.Millisecond
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.SettleBatch <= 0 {
		opts.SettleBatch = 64
	}
	if opts.SettleWait == 0 {
		opts.SettleWait = time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(opts.Registerer)
	d := &Dispatcher{
		opts:   opts,
		log:    opts.Logger.With("component", "dispatcher"),
		freed:  make(chan struct{}, 1),
		leases: leases{m: make(map[string]*held)},
		metrics: dispatchMetrics{
			outcomes: f.NewCounterVec(prometheus.CounterOpts{
				Name: "smsgate_dispatch_submissions_total",
				Help: "Messages the dispatcher handed to a carrier, by carrier and outcome (ok, temporary, permanent, unknown, no_route, carrier_down, mms_unavailable).",
			}, []string{"carrier", "outcome"}),
			latency: f.NewHistogram(prometheus.HistogramOpts{
				Name:    "smsgate_dispatch_submit_duration_seconds",
				Help:    "Time from claim to the carrier's last submit_sm_resp for one message.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
			}),
			claimErr: f.NewCounter(prometheus.CounterOpts{
				Name: "smsgate_dispatch_claim_errors_total",
				Help: "Claims from the queue that failed (Redis unreachable or a script error).",
			}),
			inFlight: f.NewGauge(prometheus.GaugeOpts{
				Name: "smsgate_dispatch_in_flight",
				Help: "Messages claimed and not yet settled.",
			}),
		},
	}
	d.plan.Store(opts.Plan)
	return d, nil
}

// SetPlan swaps in the routing of a reloaded configuration. Submissions in
// progress finish on the carrier they started on.
func (d *Dispatcher) SetPlan(p *Plan) { d.plan.Store(p) }

// Run claims and submits until ctx is done, then stops claiming, lets the
// workers submit what was claimed and the outcomes be recorded (bounded by
// DrainTimeout), puts the claimed messages not submitted by then back at the
// head of their queues, and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	jobs := make(chan queue.Claimed, d.opts.Workers)
	acks := make(chan queue.AckItem, d.opts.Workers)
	// settle is the context for settling outcomes: it outlives ctx so that
	// what was submitted is recorded, bounded by the drain timeout.
	settleCtx, cancelSettle := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSettle()

	// pending: claimed and not yet settled. waiting: claimed and not yet
	// picked up by a worker, so not yet holding a window slot. unacked:
	// answered by the carrier (its window slot is free again) but not yet
	// acked in Redis. Those two are the parts of pending the binds' free
	// window does not count; claiming subtracts both, so what a SIGKILL can
	// leave sent-but-unrecorded (sent again after the lease, flagged possible
	// duplicate) never exceeds the binds' windows.
	var pending, waiting, unacked atomic.Int64
	settled := func(n int) {
		pending.Add(-int64(n))
		d.metrics.inFlight.Sub(float64(n))
		select {
		case d.freed <- struct{}{}:
		default:
		}
	}
	var wg, settler sync.WaitGroup
	for range d.opts.Workers {
		wg.Go(func() {
			for c := range jobs {
				waiting.Add(-1)
				if ack, ok := d.handle(settleCtx, c); ok {
					unacked.Add(1)
					acks <- ack // the settler counts it settled
					continue
				}
				settled(1)
			}
		})
	}
	settler.Go(func() {
		d.settleLoop(settleCtx, acks, func(n int) {
			unacked.Add(-int64(n))
			settled(n)
		})
	})
	wg.Go(func() { d.reapLoop(ctx) })
	// The renewer runs until every claimed message is settled.
	renewStop := make(chan struct{})
	var renewer sync.WaitGroup
	renewer.Go(func() { d.renewLoop(settleCtx, renewStop) })
	defer func() { close(renewStop); renewer.Wait() }()

	d.claimLoop(ctx, jobs, &pending, &waiting, &unacked)
	close(jobs)

	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(acks) // every worker is done: the settler flushes what it has and returns
		settler.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d.opts.DrainTimeout):
		d.log.Warn("submissions still in flight after the drain timeout; their leases will expire and another claim will retry them", "in_flight", pending.Load())
		cancelSettle()
		<-done
	}
	return nil
}

// idleFactor bounds how far the pause after empty claims grows (see Idle).
const idleFactor = 4

func (d *Dispatcher) claimLoop(ctx context.Context, jobs chan<- queue.Claimed, pending, waiting, unacked *atomic.Int64) {
	idle := time.NewTimer(0)
	defer idle.Stop()
	var lastErr string
	pause := d.opts.Idle // after an empty claim; grows while claims find nothing
	for {
		select {
		case <-ctx.Done():
			return
		default:
		}
		plan := d.plan.Load()
		// A message being submitted already holds a window slot (free()
		// excludes it), so only the waiting and the answered-but-unacked
		// ones are subtracted from the free slots; subtracting all of
		// pending would keep half of the window idle. And every claimed
		// message not settled yet counts against the window itself: a
		// message whose slot the carrier's answer has just freed, and
		// which is not counted as unacked yet, is still one of them, so
		// claimed-but-unsettled messages (what a SIGKILL could leave to
		// be sent again) never exceed the window.
		credit := min(plan.free()-int(waiting.Load())-int(unacked.Load()), plan.window()-int(pending.Load()),
			d.opts.Workers-int(pending.Load()), d.opts.Batch)
		if credit <= 0 {
			// No window slot: a freed slot ends the wait at once; with
			// no carrier up nothing does, and the pause grows.
			d.wait(ctx, idle, pause)
			pause = min(2*pause, idleFactor*d.opts.Idle)
			continue
		}
		claimed, err := d.opts.Queue.Claim(ctx, credit)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.metrics.claimErr.Inc()
			if msg := err.Error(); msg != lastErr {
				d.log.Error("claim from the queue failed; retrying", "err", err)
				lastErr = msg
			}
			d.wait(ctx, idle, 100*time.Millisecond)
			continue
		}
		lastErr = ""
		if len(claimed) == 0 {
			d.wait(ctx, idle, pause)
			pause = min(2*pause, idleFactor*d.opts.Idle)
			continue
		}
		pause = d.opts.Idle
		for _, c := range claimed {
			d.leases.add(c)
			pending.Add(1)
			waiting.Add(1)
			d.metrics.inFlight.Inc()
			jobs <- c // never blocks: pending ≤ Workers = cap(jobs) + busy workers
		}
	}
}

// wait pauses until a worker frees a slot, the timeout passes or ctx ends.
func (d *Dispatcher) wait(ctx context.Context, t *time.Timer, timeout time.Duration) {
	t.Reset(timeout)
	select {
	case <-ctx.Done():
	case <-d.freed:
	case <-t.C:
		return
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
}

func (d *Dispatcher) reapLoop(ctx context.Context) {
	t := time.NewTicker(max(d.opts.Lease/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := d.opts.Queue.Reap(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("reaping expired leases failed", "err", err)
			} else if n > 0 {
				d.log.Warn("reaped messages whose lease expired; they will be sent again flagged possible duplicate", "count", n)
			}
			n, err = d.opts.Queue.SweepHeld(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("sweeping held receipts failed", "err", err)
			} else if n > 0 {
				d.log.Info("applied delivery receipts left held (a daemon stopped before applying them)", "count", n)
			}
			if d.plan.Load().window() == 0 {
				// No carrier is up, so nothing is claimed and claims do not
				// see expired heads: end them here, so their validity still
				// holds.
				n, err = d.opts.Queue.ExpireHeads(ctx)
				if err != nil && ctx.Err() == nil {
					d.log.Warn("expiring queued messages failed", "err", err)
				} else if n > 0 {
					d.log.Info("messages expired in the queue while no carrier was up", "count", n)
				}
			}
		}
	}
}

// settleLoop acks successful submissions in batches until acks is closed
// and drained: it takes what is queued, waits up to SettleWait for more
// while the batch is not full, and records the batch with one AckMany.
func (d *Dispatcher) settleLoop(ctx context.Context, acks <-chan queue.AckItem, settled func(n int)) {
	batch := make([]queue.AckItem, 0, d.opts.SettleBatch)
	var timer *time.Timer
	for first := range acks {
		batch = append(batch[:0], first)
		open := d.collect(&batch, acks)
		if open && len(batch) < d.opts.SettleBatch && d.opts.SettleWait > 0 {
			if timer == nil {
				timer = time.NewTimer(d.opts.SettleWait)
			} else {
				timer.Reset(d.opts.SettleWait)
			}
		wait:
			for len(batch) < d.opts.SettleBatch {
				select {
				case it, ok := <-acks:
					if !ok {
						break wait
					}
					batch = append(batch, it)
				case <-timer.C:
					break wait
				}
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
		d.ackBatch(ctx, batch)
		d.opts.Settling.done(batch)
		settled(len(batch))
	}
}

// collect appends the acks already queued to batch, up to SettleBatch; it
// reports false when acks is closed.
func (d *Dispatcher) collect(batch *[]queue.AckItem, acks <-chan queue.AckItem) bool {
	for len(*batch) < d.opts.SettleBatch {
		select {
		case it, ok := <-acks:
			if !ok {
				return false
			}
			*batch = append(*batch, it)
		default:
			return true
		}
	}
	return true
}

// handle submits one claimed message and records its outcome; a successful
// submission is returned for the settler to ack instead (ok true).
func (d *Dispatcher) handle(ctx context.Context, c queue.Claimed) (ack queue.AckItem, ok bool) {
	start := time.Now()
	plan := d.plan.Load()
	if ctx.Err() != nil {
		// Shutting down before this message was submitted: back to the head,
		// not a possible duplicate since nothing reached the carrier.
		d.settle("retry", d.opts.Queue.Retry(context.WithoutCancel(ctx), c, 0, message.Error{Code: "shutdown", Message: "The daemon stopped before sending; the message will be sent after restart."}), c)
		return ack, false
	}
	if len(c.Msg.Media) > 0 {
		d.metrics.outcomes.WithLabelValues("", "mms_unavailable").Inc()
		d.record(ctx, "fail", c, func(ctx context.Context) error {
			return d.opts.Queue.Fail(ctx, c, message.Error{
				Code:    CodeMMSRouteUnavailable,
				Message: "No MMS route is configured for this carrier, so the message was not sent; send the media as a link in an SMS, or ask the operator to configure an MMS route.",
			})
		})
		return ack, false
	}
	name, ok := plan.Table.Carrier(c.Msg.From, plan.up)
	if !ok {
		if name == "" {
			d.metrics.outcomes.WithLabelValues("", "no_route").Inc()
			d.record(ctx, "fail", c, func(ctx context.Context) error {
				return d.opts.Queue.Fail(ctx, c, message.Error{
					Code:    CodeNoRoute,
					Message: fmt.Sprintf("No carrier route covers the sender number %s; add a [[route]] or set the number's carrier in the configuration.", c.Msg.From),
				})
			})
			return ack, false
		}
		d.metrics.outcomes.WithLabelValues(name, "carrier_down").Inc()
		delay := d.backoff(c.Attempt)
		d.record(ctx, "retry", c, func(ctx context.Context) error {
			return d.opts.Queue.Retry(ctx, c, delay, message.Error{
				Code:    CodeCarrierUnavailable,
				Message: fmt.Sprintf("No bind of carrier %q is up; the message stays queued and is retried.", name),
			})
		})
		return ack, false
	}
	carrier := plan.Carriers[name]
	// The deadline mostly bounds the wait for the bind's window and
	// throughput; the lease is renewed meanwhile (renewLoop), which cancels
	// the submission should the lease be lost anyway.
	subCtx, cancel := context.WithTimeout(ctx, d.opts.SubmitTimeout)
	d.leases.watch(c.Msg.ID, cancel)
	d.opts.Settling.submitStart()
	res := carrier.Submit(subCtx, smpp.Submission{
		ID:         c.Msg.ID,
		From:       c.Msg.From,
		To:         c.Msg.To,
		Text:       c.Msg.Text,
		Encoding:   c.Msg.Encoding,
		ValidUntil: c.Msg.ExpiresAt,
	})
	// As early as possible: the receipt may be handled already. The OK
	// case below always hands the ack to the settler, which removes the
	// ids once AckMany returned.
	d.opts.Settling.submitEnd(res.CarrierIDs, res.Outcome == smpp.OK)
	cancel()
	d.metrics.latency.Observe(time.Since(start).Seconds())
	outcome := res.Outcome
	if outcome == smpp.Temporary && (res.MissingIDs > 0 || slices.ContainsFunc(res.CarrierIDs, func(id string) bool { return id != "" })) {
		// Some segments were accepted (with or without a message_id) before
		// one was refused or not sent: sending again repeats them.
		outcome = smpp.Unknown
	}
	switch outcome {
	case smpp.OK:
		d.metrics.outcomes.WithLabelValues(name, "ok").Inc()
		// A segment accepted without a message_id can get no receipt: it is
		// not indexed, and the message is delivered on the others' receipts.
		ids := slices.DeleteFunc(slices.Clone(res.CarrierIDs), func(id string) bool { return id == "" })
		return queue.AckItem{Claimed: c, CarrierIDs: ids}, true
	case smpp.Temporary:
		d.metrics.outcomes.WithLabelValues(name, "temporary").Inc()
		why := fmt.Sprintf("Carrier %q asked to retry later (%s); the message stays queued.", name, describe(res))
		if errors.Is(res.Err, smpp.ErrNotSent) {
			why = fmt.Sprintf("Carrier %q had no window or throughput free in time; the message was not sent and stays queued.", name)
		}
		delay := d.backoff(c.Attempt)
		d.record(ctx, "retry", c, func(ctx context.Context) error {
			return d.opts.Queue.Retry(ctx, c, delay, message.Error{Code: CodeCarrierTemporary, Message: why})
		})
	case smpp.Permanent:
		d.metrics.outcomes.WithLabelValues(name, "permanent").Inc()
		d.record(ctx, "fail", c, func(ctx context.Context) error {
			return d.opts.Queue.Fail(ctx, c, message.Error{
				Code:    CodeCarrierRejected,
				Message: fmt.Sprintf("Carrier %q rejected the message (%s).", name, describe(res)),
			})
		})
	default: // smpp.Unknown: may or may not have reached the carrier
		d.metrics.outcomes.WithLabelValues(name, "unknown").Inc()
		d.record(ctx, "requeue", c, func(ctx context.Context) error { return d.opts.Queue.Requeue(ctx, c) })
	}
	return ack, false
}

// record runs op, a queue operation recording c's outcome, repeating it
// with backoff while it fails with a storage error (see retryable) for up
// to Lease/2, then logs what still failed.
func (d *Dispatcher) record(ctx context.Context, name string, c queue.Claimed, op func(context.Context) error) {
	deadline := time.Now().Add(d.opts.Lease / 2)
	pause := d.settlePause()
	for {
		err := op(ctx)
		if err == nil || !retryable(err) || !pause(ctx, deadline) {
			d.settle(name, err, c)
			return
		}
	}
}

// ackBatch acks a batch with AckMany, repeating it for the items that failed
// with a storage error (as one smaller batch) for up to Lease/2.
func (d *Dispatcher) ackBatch(ctx context.Context, batch []queue.AckItem) {
	deadline := time.Now().Add(d.opts.Lease / 2)
	pause := d.settlePause()
	items := batch
	for {
		errs := d.opts.Queue.AckMany(ctx, items)
		var again []queue.AckItem
		var againErrs []error
		for i, err := range errs {
			if err != nil && retryable(err) {
				again = append(again, items[i])
				againErrs = append(againErrs, err)
				continue
			}
			d.settle("ack", err, items[i].Claimed)
		}
		if len(again) == 0 {
			return
		}
		if !pause(ctx, deadline) {
			for i, it := range again {
				d.settle("ack", againErrs[i], it.Claimed)
			}
			return
		}
		items = again
	}
}

// settlePause returns a function that waits before the next attempt of a
// settle (50 ms, doubling, at most 1 s) and reports false instead when the
// deadline would pass first or ctx ends.
func (d *Dispatcher) settlePause() func(ctx context.Context, deadline time.Time) bool {
	wait := 50 * time.Millisecond
	return func(ctx context.Context, deadline time.Time) bool {
		w := wait
		wait = min(2*wait, time.Second)
		if time.Until(deadline) < w || ctx.Err() != nil {
			return false
		}
		t := time.NewTimer(w)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// retryable reports whether a failed queue operation may succeed when
// repeated: a storage error, not a lost lease or an unknown message.
func retryable(err error) bool {
	return !errors.Is(err, queue.ErrLeaseLost) && !errors.Is(err, queue.ErrBadID) &&
		!errors.Is(err, queue.ErrNotFound) && !errors.Is(err, context.Canceled)
}

func describe(res smpp.Result) string {
	if res.Err != nil {
		return res.Err.Error()
	}
	return fmt.Sprintf("command_status 0x%08X", res.Status)
}

// settle ends the dispatcher's hold on c (its lease is no longer renewed)
// and logs a queue operation that failed. The message is not lost: its
// lease expires and the reaper puts it back at the head of its queue.
func (d *Dispatcher) settle(op string, err error, c queue.Claimed) {
	d.leases.remove(c.Msg.ID)
	if errors.Is(err, queue.ErrLeaseLost) {
		d.log.Debug("recording a submission outcome found the lease lost; another claim owns the message", "op", op, "id", c.Msg.ID)
		return
	}
	if err != nil {
		d.log.Warn("recording a submission outcome failed; the lease will expire and the message will be retried", "op", op, "id", c.Msg.ID, "err", err)
	}
}

// backoff is the delay before the attempt after a temporary error:
// exponential from RetryBackoff, capped, with jitter of up to a half.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.opts.RetryBackoff
	for i := 1; i < attempt && b < d.opts.MaxRetryBackoff; i++ {
		b *= 2
	}
	b = min(b, d.opts.MaxRetryBackoff)
	return b/2 + rand.N(b/2+1)
}

// leases are the messages the dispatcher holds (claimed, not yet settled),
// with when each lease was last extended.
type leases struct {
	mu sync.Mutex
	m  map[string]*held
}

type held struct {
	c       queue.Claimed
	renewed time.Time          // claim or last successful renewal
	cancel  context.CancelFunc // abandons its submission (nil before it starts)
}

func (l *leases) add(c queue.Claimed) {
	l.mu.Lock()
	l.m[c.Msg.ID] = &held{c: c, renewed: time.Now()}
	l.mu.Unlock()
}

// watch sets the function that abandons id's submission when its lease is lost.
func (l *leases) watch(id string, cancel context.CancelFunc) {
	l.mu.Lock()
	if h := l.m[id]; h != nil {
		h.cancel = cancel
	}
	l.mu.Unlock()
}

func (l *leases) remove(id string) {
	l.mu.Lock()
	delete(l.m, id)
	l.mu.Unlock()
}

// due returns the held messages whose lease was last extended before t.
func (l *leases) due(t time.Time) []queue.Claimed {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []queue.Claimed
	for _, h := range l.m {
		if h.renewed.Before(t) {
			out = append(out, h.c)
		}
	}
	return out
}

// renewed records a renewal of id at t (if it is still held).
func (l *leases) renewed(id string, t time.Time) {
	l.mu.Lock()
	if h := l.m[id]; h != nil {
		h.renewed = t
	}
	l.mu.Unlock()
}

// lost abandons the submission of id, whose lease another daemon may now
// own: a submission still waiting for the window is then not sent at all.
func (l *leases) lost(id string) {
	l.mu.Lock()
	h := l.m[id]
	l.mu.Unlock()
	if h != nil && h.cancel != nil {
		h.cancel()
	}
}

// renewLoop extends, in one pipelined batch every Lease/6, the lease of
// every held message whose lease is a third or more used, so a submission
// waiting for the carrier's window or answer keeps its message. A message
// whose lease is lost, or that could not be renewed until its lease nearly
// ran out, has its submission abandoned.
func (d *Dispatcher) renewLoop(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(max(d.opts.Lease/6, 5*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		cs := d.leases.due(now.Add(-d.opts.Lease / 3))
		if len(cs) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, d.opts.Lease/6)
		errs := d.opts.Queue.RenewMany(rctx, cs, d.opts.Lease)
		cancel()
		for i, err := range errs {
			switch {
			case err == nil:
				d.leases.renewed(cs[i].Msg.ID, now)
			case errors.Is(err, queue.ErrLeaseLost):
				d.log.Warn("lease of a message being submitted was lost; abandoning its submission", "id", cs[i].Msg.ID)
				d.leases.lost(cs[i].Msg.ID)
			default:
				if d.leases.expiring(cs[i].Msg.ID, now, d.opts.Lease) {
					d.log.Warn("lease of a message being submitted could not be renewed before it expires; abandoning its submission", "id", cs[i].Msg.ID, "err", err)
					d.leases.lost(cs[i].Msg.ID)
				}
			}
		}
	}
}

// expiring reports whether id's lease, last extended by lease, runs out
// within a sixth of it from now.
func (l *leases) expiring(id string, now time.Time, lease time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.m[id]
	return h != nil && now.Sub(h.renewed) >= lease-lease/6
}
