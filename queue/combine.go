package queue

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// maxEnqueuePipelines is how many enqueue pipelines may be in flight at
// once; callers that arrive meanwhile wait and go out together in the next.
const maxEnqueuePipelines = 2

// combiner batches concurrent Enqueue calls into pipelines without a
// goroutine of its own: the first caller to find a free pipeline slot leads,
// sending every call waiting at that moment in one round trip; the others
// wait for their reply. A leader that finishes while calls are still waiting
// hands its slot to the first of them, which then leads the next pipeline.
// One caller alone pays no wait; under load a round trip carries many
// enqueues (fewer system calls on both sides and fewer wake-ups in Redis).
type combiner struct {
	mu      sync.Mutex
	pending []*enqueueCall
	running int // pipeline slots held by leaders
}

// enqueueCall is one Enqueue waiting for its pipeline. wake receives false
// when res and err are set, or true when the call must lead the next pipeline.
type enqueueCall struct {
	b        int
	args     []any
	deadline time.Time // zero: none
	res      []any
	err      error
	wake     chan bool
}

// enqueueGrace is how long before a batch's earliest deadline its calls must
// run in Redis (the deadline they carry): a call that ran in time has at
// least this long for its reply to arrive before the pipeline stops waiting
// at that deadline. A quarter of the time left, at most a second.
func enqueueGrace(left time.Duration) time.Duration { return min(time.Second, left/4) }

// enqueue runs the enqueue script on bucket b with args, batched with
// concurrent calls, and returns its reply. With a deadline, the reply or an
// error comes by then (see EnqueueRequest.Deadline).
func (q *Queue) enqueue(ctx context.Context, b int, args []any, deadline time.Time) ([]any, error) {
	c := &enqueueCall{b: b, args: args, deadline: deadline, wake: make(chan bool, 1)}
	e := &q.comb
	e.mu.Lock()
	if e.running >= maxEnqueuePipelines {
		e.pending = append(e.pending, c)
		e.mu.Unlock()
		lead, ok := q.waitTurn(c)
		if !ok {
			return nil, fmt.Errorf("waited for a pipeline until its deadline: %w", ErrDeadline)
		}
		if !lead {
			return c.res, c.err
		}
		// Handed a slot: c was taken out of pending to lead.
		e.mu.Lock()
	} else {
		e.running++
	}
	batch := append(e.pending, c)
	e.pending = nil
	e.mu.Unlock()

	// The pipeline serves every caller in it, so it does not stop when the
	// leader's context ends; the client's timeouts bound it.
	q.execEnqueues(context.WithoutCancel(ctx), batch)

	e.mu.Lock()
	var next *enqueueCall
	if len(e.pending) > 0 {
		next = e.pending[0]
		e.pending = e.pending[1:]
	} else {
		e.running--
	}
	e.mu.Unlock()
	if next != nil {
		next.wake <- true // next leads with this slot
	}
	return c.res, c.err
}

// waitTurn waits, for a call in the pending line, until its reply is set
// (lead false) or it is handed a pipeline slot to lead (lead true). A call
// whose deadline passes while it is still in the line leaves it (ok false):
// it was never sent. One already taken into a pipeline waits for that
// pipeline, which its deadline bounds.
func (q *Queue) waitTurn(c *enqueueCall) (lead, ok bool) {
	if c.deadline.IsZero() {
		return <-c.wake, true
	}
	t := time.NewTimer(time.Until(c.deadline))
	defer t.Stop()
	select {
	case lead := <-c.wake:
		return lead, true
	case <-t.C:
	}
	e := &q.comb
	e.mu.Lock()
	if i := slices.Index(e.pending, c); i >= 0 {
		e.pending = slices.Delete(e.pending, i, i+1)
		e.mu.Unlock()
		return false, false
	}
	e.mu.Unlock()
	return <-c.wake, true
}

// execEnqueues sends the calls' scripts and sets every call's reply, waking
// those that wait. Calls whose deadline passed while they waited are not
// sent. Calls with a deadline and calls without go in separate pipelines,
// so that a call without one is never cut short by another's.
func (q *Queue) execEnqueues(ctx context.Context, batch []*enqueueCall) {
	now := time.Now()
	var timed, untimed []*enqueueCall
	for _, c := range batch {
		switch {
		case c.deadline.IsZero():
			untimed = append(untimed, c)
		case !now.Before(c.deadline):
			c.err = fmt.Errorf("waited for a pipeline until its deadline: %w", ErrDeadline)
			c.wake <- false
		default:
			timed = append(timed, c)
		}
	}
	if len(timed) > 0 {
		q.execPipeline(ctx, timed, now)
	}
	if len(untimed) > 0 {
		q.execPipeline(ctx, untimed, now)
	}
}

// execPipeline sends the calls' scripts in one pipeline. When they have
// deadlines, the pipeline waits until the earliest, and every call carries
// that deadline less enqueueGrace, in Redis's clock, for the script to
// refuse if it runs later.
func (q *Queue) execPipeline(ctx context.Context, send []*enqueueCall, now time.Time) {
	var first time.Time
	for _, c := range send {
		if !c.deadline.IsZero() && (first.IsZero() || c.deadline.Before(first)) {
			first = c.deadline
		}
	}
	var scriptDeadline int64 // µs in Redis's clock; 0: none
	if !first.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, first)
		defer cancel()
		// Until this host's clock has been compared with Redis's, only the
		// pipeline's wait bounds the calls.
		if q.offsetKnown.Load() {
			scriptDeadline = first.Add(-enqueueGrace(first.Sub(now))).UnixMicro() + q.offset.Load()
		}
	}
	pipe := q.rdb.Pipeline()
	calls := make([]*call, len(send))
	for i, c := range send {
		calls[i] = q.bucketCall(ctx, pipe, scriptEnqueue, c.b, append(c.args, scriptDeadline)...)
	}
	sent := time.Now()
	_, _ = pipe.Exec(ctx)
	rtt := time.Since(sent)
	clock := false
	for i, c := range send {
		c.res, c.err = calls[i].result(ctx, q).Slice()
		if !clock && c.err == nil && len(c.res) > 0 && (c.res[0] == "ok" || c.res[0] == "late") {
			// These replies end with Redis's time: the first keeps this
			// host's estimate of Redis's clock current.
			if t, ok := c.res[len(c.res)-1].(int64); ok {
				q.noteRedisTime(t, sent, rtt)
				clock = true
			}
		}
		c.wake <- false
	}
}
