package queue

import (
	"context"
	"sync"
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
	b    int
	args []any
	res  []any
	err  error
	wake chan bool
}

// enqueue runs the enqueue script on bucket b with args, batched with
// concurrent calls, and returns its reply.
func (q *Queue) enqueue(ctx context.Context, b int, args []any) ([]any, error) {
	c := &enqueueCall{b: b, args: args, wake: make(chan bool, 1)}
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
// call's reply, waking those that wait.
func (q *Queue) execEnqueues(ctx context.Context, batch []*enqueueCall) {
	pipe := q.rdb.Pipeline()
	calls := make([]*call, len(batch))
	for i, c := range batch {
		calls[i] = q.bucketCall(ctx, pipe, scriptEnqueue, c.b, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range batch {
		c.res, c.err = calls[i].result(ctx, q).Slice()
		c.wake <- false
	}
}
