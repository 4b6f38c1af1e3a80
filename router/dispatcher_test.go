package router

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
)

// listQueue hands out a fixed list of messages and records acks.
type listQueue struct {
	mu       sync.Mutex
	left     []queue.Claimed
	acked    atomic.Int64
	batches  atomic.Int64 // AckMany calls
	ackIDs   []string     // acked ids, in order
	ackCIDs  [][]string   // their carrier ids
	retried  atomic.Int64
	requeued atomic.Int64
}

func (q *listQueue) Claim(_ context.Context, max int) ([]queue.Claimed, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.left))
	out := q.left[:n:n]
	q.left = q.left[n:]
	return out, nil
}

func (q *listQueue) AckMany(_ context.Context, items []queue.AckItem) []error {
	q.batches.Add(1)
	q.mu.Lock()
	for _, it := range items {
		q.ackIDs = append(q.ackIDs, it.Claimed.Msg.ID)
		q.ackCIDs = append(q.ackCIDs, it.CarrierIDs)
	}
	q.mu.Unlock()
	q.acked.Add(int64(len(items)))
	return make([]error, len(items))
}

func (q *listQueue) Retry(context.Context, queue.Claimed, time.Duration, message.Error) error {
	q.retried.Add(1)
	return nil
}
func (q *listQueue) Requeue(context.Context, queue.Claimed) error {
	q.requeued.Add(1)
	return nil
}
func (q *listQueue) Fail(context.Context, queue.Claimed, message.Error) error { return nil }
func (q *listQueue) Reap(context.Context) (int, error)                        { return 0, nil }
func (q *listQueue) SweepHeld(context.Context) (int, error)                   { return 0, nil }
func (q *listQueue) ExpireHeads(context.Context) (int, error)                 { return 0, nil }
func (q *listQueue) RenewMany(_ context.Context, cs []queue.Claimed, _ time.Duration) []error {
	return make([]error, len(cs))
}

// windowCarrier is one bind with a window: Submit holds a slot until the
// test releases it, like a carrier that has not answered yet.
type windowCarrier struct {
	sem      chan struct{}
	release  chan struct{}
	answered atomic.Int64 // submissions that returned and freed their slot
	mu       sync.Mutex
	peak     int
}

func (c *windowCarrier) Submit(ctx context.Context, _ smpp.Submission) smpp.Result {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return smpp.Result{Outcome: smpp.Temporary, Err: ctx.Err()}
	}
	c.mu.Lock()
	c.peak = max(c.peak, len(c.sem))
	c.mu.Unlock()
	defer func() { <-c.sem; c.answered.Add(1) }()
	select {
	case <-c.release:
		return smpp.Result{Outcome: smpp.OK, CarrierIDs: []string{"1"}}
	case <-ctx.Done():
		return smpp.Result{Outcome: smpp.Unknown, Err: ctx.Err()}
	}
}

func (c *windowCarrier) Up() bool    { return true }
func (c *windowCarrier) Free() int   { return cap(c.sem) - len(c.sem) }
func (c *windowCarrier) Window() int { return cap(c.sem) }

func (c *windowCarrier) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

// TestDispatcherFillsWindow: messages being submitted already hold window
// slots, so the dispatcher must keep claiming until the whole window is in
// flight, not stop at half of it.
func TestDispatcherFillsWindow(t *testing.T) {
	const window, n = 20, 60
	q := &listQueue{}
	for i := range n {
		q.left = append(q.left, queue.Claimed{Msg: message.Message{ID: "m" + string(rune('A'+i)), From: "+15550001111", To: "+15557654321"}})
	}
	carrier := &windowCarrier{sem: make(chan struct{}, window), release: make(chan struct{})}
	cfg := &config.Config{Routes: []config.Route{{Prefix: "+", Carrier: "sim"}}}
	runDispatcher(t, DispatcherOptions{
		Queue:        q,
		Plan:         &Plan{Table: NewTable(cfg), Carriers: map[string]Carrier{"sim": carrier}},
		Workers:      2 * window,
		Idle:         time.Millisecond,
		DrainTimeout: 100 * time.Millisecond,
	})

	full := func() bool { return len(carrier.sem) == window }
	require.Eventually(t, full, 5*time.Second, time.Millisecond, "the window never filled")
	// Answer a quarter of the window: the dispatcher must claim again and
	// fill it, not wait until half of it is free.
	for range window / 4 {
		carrier.release <- struct{}{}
	}
	require.Eventually(t, func() bool { return carrier.answered.Load() == window/4 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, full, 5*time.Second, time.Millisecond,
		"the window was not refilled after answers: %d of %d in flight", len(carrier.sem), window)
	// Release every submission; all messages are sent and acked.
	go func() {
		for range n - window/4 {
			carrier.release <- struct{}{}
		}
	}()
	require.Eventually(t, func() bool { return q.acked.Load() == n }, 5*time.Second, time.Millisecond)
	require.LessOrEqual(t, carrier.inFlight(), window)
}

// instantCarrier accepts every submission at once.
type instantCarrier struct{}

func (instantCarrier) Submit(context.Context, smpp.Submission) smpp.Result {
	return smpp.Result{Outcome: smpp.OK, CarrierIDs: []string{"1"}}
}
func (instantCarrier) Up() bool    { return true }
func (instantCarrier) Free() int   { return 1000 }
func (instantCarrier) Window() int { return 1000 }

func listOf(n int) *listQueue {
	q := &listQueue{}
	for i := range n {
		q.left = append(q.left, queue.Claimed{Msg: message.Message{ID: fmt.Sprintf("m%04d", i), From: "+15550001111", To: "+15557654321"}})
	}
	return q
}

func testPlan(c Carrier) *Plan {
	cfg := &config.Config{Routes: []config.Route{{Prefix: "+", Carrier: "sim"}}}
	return &Plan{Table: NewTable(cfg), Carriers: map[string]Carrier{"sim": c}}
}

// TestDispatcherBatchesAcks: successful submissions are acked in batches
// by the settler, each message exactly once.
func TestDispatcherBatchesAcks(t *testing.T) {
	const n = 500
	q := listOf(n)
	d, err := NewDispatcher(DispatcherOptions{Queue: q, Plan: testPlan(instantCarrier{}), Workers: 64, Idle: time.Millisecond, SettleWait: 5 * time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	require.Eventually(t, func() bool { return q.acked.Load() == n }, 10*time.Second, time.Millisecond)
	cancel()
	<-done
	q.mu.Lock()
	defer q.mu.Unlock()
	slices.Sort(q.ackIDs)
	require.Len(t, slices.Compact(q.ackIDs), n, "each message acked once")
	require.Less(t, q.batches.Load(), int64(n/2), "acks were not batched")
}

// TestDispatcherFlushesAcksOnStop: submissions that succeed while the
// dispatcher stops are still acked before Run returns.
func TestDispatcherFlushesAcksOnStop(t *testing.T) {
	const window = 10
	q := listOf(window)
	carrier := &windowCarrier{sem: make(chan struct{}, window), release: make(chan struct{})}
	d, err := NewDispatcher(DispatcherOptions{
		Queue: q, Plan: testPlan(carrier), Workers: window, Idle: time.Millisecond,
		DrainTimeout: 5 * time.Second, SettleWait: time.Hour, // only a full batch or the stop flushes
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	require.Eventually(t, func() bool { return len(carrier.sem) == window }, 5*time.Second, time.Millisecond)
	cancel()
	for range window {
		carrier.release <- struct{}{}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	require.Equal(t, int64(window), q.acked.Load(), "acks lost on stop")
}

// answeringCarrier answers every submission at once, from a window of
// `window` slots (always free again after the answer), and counts them.
type answeringCarrier struct {
	window    int
	submitted atomic.Int64
}

func (c *answeringCarrier) Submit(context.Context, smpp.Submission) smpp.Result {
	c.submitted.Add(1)
	return smpp.Result{Outcome: smpp.OK, CarrierIDs: []string{"1"}}
}
func (c *answeringCarrier) Up() bool    { return true }
func (c *answeringCarrier) Free() int   { return c.window }
func (c *answeringCarrier) Window() int { return c.window }

// TestDispatcherUnackedHoldWindow: messages the carrier answered but Redis
// has not acked yet count against the window, so what a SIGKILL can leave
// sent but unrecorded (resent later as possible duplicates) never exceeds
// the binds' windows, however slow the acks are.
func TestDispatcherUnackedHoldWindow(t *testing.T) {
	const window = 5
	q := &gateQueue{listQueue: listOf(100), entered: make(chan struct{}, 100), gate: make(chan struct{})}
	c := &answeringCarrier{window: window}
	d, err := NewDispatcher(DispatcherOptions{Queue: q, Plan: testPlan(c), Workers: 32, Idle: time.Millisecond, SettleWait: -1})
	require.NoError(t, err)
	openGate := runGated(t, d, q)

	require.Eventually(t, func() bool { return c.submitted.Load() == window }, 5*time.Second, time.Millisecond)
	time.Sleep(100 * time.Millisecond) // many claim rounds (Idle 1 ms)
	require.EqualValues(t, window, c.submitted.Load(), "no submission beyond the window while its acks are pending")
	openGate()
	require.Eventually(t, func() bool { return q.acked.Load() == 100 }, 10*time.Second, time.Millisecond)
}

// expiryQueue is a listQueue that counts ExpireHeads calls.
type expiryQueue struct {
	listQueue
	expireCalls atomic.Int64
}

func (q *expiryQueue) ExpireHeads(context.Context) (int, error) {
	q.expireCalls.Add(1)
	return 0, nil
}

// switchCarrier is a carrier that is up or down as the test says and takes
// nothing.
type switchCarrier struct{ up atomic.Bool }

func (c *switchCarrier) Submit(context.Context, smpp.Submission) smpp.Result {
	return smpp.Result{Outcome: smpp.Temporary}
}
func (c *switchCarrier) Up() bool    { return c.up.Load() }
func (c *switchCarrier) Free() int   { return 0 }
func (c *switchCarrier) Window() int { return 10 }

// While no carrier is up nothing is claimed, so the dispatcher has the
// queue end expired heads itself, at every reap; while one is up, claims
// do that and it does not.
func TestDispatcherExpiresHeadsOnlyWhileNoCarrierIsUp(t *testing.T) {
	q := &expiryQueue{}
	carrier := &switchCarrier{}
	carrier.up.Store(true)
	cfg := &config.Config{Routes: []config.Route{{Prefix: "+", Carrier: "sim"}}}
	runDispatcher(t, DispatcherOptions{
		Queue:        q,
		Plan:         &Plan{Table: NewTable(cfg), Carriers: map[string]Carrier{"sim": carrier}},
		Lease:        30 * time.Millisecond, // reaps every 10 ms
		Idle:         time.Millisecond,
		DrainTimeout: 100 * time.Millisecond,
	})

	time.Sleep(100 * time.Millisecond) // about 10 reaps
	require.Zero(t, q.expireCalls.Load(), "a carrier is up: claims see expired heads")
	carrier.up.Store(false)
	require.Eventually(t, func() bool { return q.expireCalls.Load() >= 3 }, 5*time.Second, time.Millisecond)
	carrier.up.Store(true)
	time.Sleep(200 * time.Millisecond) // a reap in progress may still call it
	n := q.expireCalls.Load()
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, n, q.expireCalls.Load(), "the carrier is up again")
}

// countingQueue is a listQueue that counts Claim calls.
type countingQueue struct {
	listQueue
	claims atomic.Int64
}

func (q *countingQueue) Claim(ctx context.Context, max int) ([]queue.Claimed, error) {
	q.claims.Add(1)
	return q.listQueue.Claim(ctx, max)
}

// An idle dispatcher claims less and less often, down to one claim per
// idleFactor × Idle, and a message is still claimed and sent.
func TestDispatcherIdleBacksOff(t *testing.T) {
	q := &countingQueue{}
	carrier := &windowCarrier{sem: make(chan struct{}, 10), release: make(chan struct{})}
	close(carrier.release) // answer at once
	cfg := &config.Config{Routes: []config.Route{{Prefix: "+", Carrier: "sim"}}}
	runDispatcher(t, DispatcherOptions{
		Queue:        q,
		Plan:         &Plan{Table: NewTable(cfg), Carriers: map[string]Carrier{"sim": carrier}},
		Idle:         5 * time.Millisecond,
		DrainTimeout: 100 * time.Millisecond,
	})

	time.Sleep(400 * time.Millisecond)
	// 5+10+20+20+…: about 22 claims in 400 ms, where a fixed 5 ms pause
	// would make about 80.
	n := q.claims.Load()
	require.GreaterOrEqual(t, n, int64(5), "it still claims")
	require.LessOrEqual(t, n, int64(40), "claims while idle")

	q.mu.Lock()
	q.left = append(q.left, queue.Claimed{Msg: message.Message{ID: "m1", From: "+15550001111", To: "+15557654321"}})
	q.mu.Unlock()
	require.Eventually(t, func() bool { return q.acked.Load() == 1 }, 5*time.Second, time.Millisecond)
}

// resultCarrier answers every submission with res.
type resultCarrier struct{ res smpp.Result }

func (c resultCarrier) Submit(context.Context, smpp.Submission) smpp.Result { return c.res }
func (resultCarrier) Up() bool                                              { return true }
func (resultCarrier) Free() int                                             { return 10 }
func (resultCarrier) Window() int                                           { return 10 }

// A segment the carrier accepted without a message_id is not indexed (no
// receipt can name it), and a refusal after it is an unknown outcome, not a
// plain retry that would send the accepted segment again.
func TestDispatcherMissingMessageIDs(t *testing.T) {
	for _, tc := range []struct {
		name              string
		res               smpp.Result
		ackCIDs           []string
		retried, requeued int64
	}{
		{"ok, one segment without id", smpp.Result{Outcome: smpp.OK, CarrierIDs: []string{"", "c2"}, MissingIDs: 1}, []string{"c2"}, 0, 0},
		{"ok, no id at all", smpp.Result{Outcome: smpp.OK, CarrierIDs: []string{""}, MissingIDs: 1}, []string{}, 0, 0},
		{"refused after a segment accepted without id", smpp.Result{Outcome: smpp.Temporary, CarrierIDs: []string{""}, MissingIDs: 1}, nil, 0, 1},
		{"refused, nothing accepted", smpp.Result{Outcome: smpp.Temporary}, nil, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &listQueue{left: []queue.Claimed{{Msg: message.Message{ID: "m1", From: "+15550001111", To: "+15557654321"}}}}
			cfg := &config.Config{Routes: []config.Route{{Prefix: "+", Carrier: "sim"}}}
			runDispatcher(t, DispatcherOptions{
				Queue: q,
				Plan:  &Plan{Table: NewTable(cfg), Carriers: map[string]Carrier{"sim": resultCarrier{tc.res}}},
			})
			require.Eventually(t, func() bool { return q.acked.Load()+q.retried.Load()+q.requeued.Load() == 1 }, 5*time.Second, time.Millisecond)
			require.Equal(t, tc.retried, q.retried.Load())
			require.Equal(t, tc.requeued, q.requeued.Load())
			if tc.ackCIDs != nil {
				q.mu.Lock()
				defer q.mu.Unlock()
				require.Equal(t, [][]string{tc.ackCIDs}, q.ackCIDs)
			}
		})
	}
}
