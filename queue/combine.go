package queue

import (
	"context"
	"fmt"
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
		if !<-c.wake {
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

// execEnqueues sends the calls' scripts in one pipeline and sets every
// call's reply, waking those that wait. Calls whose deadline passed while
// they waited are not sent. When calls have deadlines, the pipeline waits
// until the earliest, and every call carries that deadline less
// enqueueGrace, in Redis's clock, for the script to refuse if it runs later
// (calls without one share it: they are in the same round trip).
func (q *Queue) execEnqueues(ctx context.Context, batch []*enqueueCall) {
	now := time.Now()
	var first time.Time
	send := make([]*enqueueCall, 0, len(batch))
	for _, c := range batch {
		if !c.deadline.IsZero() {
			if !now.Before(c.deadline) {
				c.err = fmt.Errorf("waited for a pipeline until its deadline: %w", ErrDeadline)
				c.wake <- false
				continue
			}
			if first.IsZero() || c.deadline.Before(first) {
				first = c.deadline
			}
		}
		send = append(send, c)
	}
	if len(send) == 0 {
		return
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
