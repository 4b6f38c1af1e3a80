package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
)

// errStorage is a Redis outage as the fake queue reports it.
var errStorage = errors.New("queue: ack: dial tcp 127.0.0.1:6379: connection refused")

// leaseQueue is a queue fake with real leases: a claimed message's lease
// expires Lease after the claim or its last renewal, and settling it after
// that fails with queue.ErrLeaseLost. The first failAcks AckMany calls and
// failRetries Retry calls fail with a storage error.
type leaseQueue struct {
	lease time.Duration

	mu        sync.Mutex
	left      []queue.Claimed
	expiry    map[string]time.Time
	acked     []string
	ackCalls  []int // batch size of every AckMany call
	requeued  []string
	retried   []string
	retryErrs []message.Error
	lost      []string // settles refused because the lease had expired

	failAcks, failRetries int
	renewals              atomic.Int64
}

func newLeaseQueue(lease time.Duration, n int) *leaseQueue {
	q := &leaseQueue{lease: lease, expiry: map[string]time.Time{}}
	for i := range n {
		q.left = append(q.left, queue.Claimed{Attempt: 1, Msg: message.Message{ID: fmt.Sprintf("m%03d", i), From: "+15550001111", To: "+15557654321"}})
	}
	return q
}

func (q *leaseQueue) Claim(_ context.Context, max int) ([]queue.Claimed, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(max, len(q.left))
	out := q.left[:n:n]
	q.left = q.left[n:]
	for _, c := range out {
		q.expiry[c.Msg.ID] = time.Now().Add(q.lease)
	}
	return out, nil
}

// settleLocked ends id's lease, or reports it lost.
func (q *leaseQueue) settleLocked(id string) error {
	exp, ok := q.expiry[id]
	if !ok || time.Now().After(exp) {
		q.lost = append(q.lost, id)
		return fmt.Errorf("fake: %s: %w", id, queue.ErrLeaseLost)
	}
	delete(q.expiry, id)
	return nil
}

func (q *leaseQueue) AckMany(_ context.Context, items []queue.AckItem) []error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ackCalls = append(q.ackCalls, len(items))
	errs := make([]error, len(items))
	if q.failAcks > 0 {
		q.failAcks--
		for i := range errs {
			errs[i] = errStorage
		}
		return errs
	}
	for i, it := range items {
		if errs[i] = q.settleLocked(it.Claimed.Msg.ID); errs[i] == nil {
			q.acked = append(q.acked, it.Claimed.Msg.ID)
		}
	}
	return errs
}

func (q *leaseQueue) Retry(_ context.Context, c queue.Claimed, _ time.Duration, e message.Error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failRetries > 0 {
		q.failRetries--
		return errStorage
	}
	if err := q.settleLocked(c.Msg.ID); err != nil {
		return err
	}
	q.retried = append(q.retried, c.Msg.ID)
	q.retryErrs = append(q.retryErrs, e)
	return nil
}

func (q *leaseQueue) Requeue(_ context.Context, c queue.Claimed) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.settleLocked(c.Msg.ID); err != nil {
		return err
	}
	q.requeued = append(q.requeued, c.Msg.ID)
	return nil
}

func (q *leaseQueue) Fail(_ context.Context, c queue.Claimed, _ message.Error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.settleLocked(c.Msg.ID)
}

func (q *leaseQueue) Reap(context.Context) (int, error)        { return 0, nil }
func (q *leaseQueue) SweepHeld(context.Context) (int, error)   { return 0, nil }
func (q *leaseQueue) ExpireHeads(context.Context) (int, error) { return 0, nil }

func (q *leaseQueue) RenewMany(_ context.Context, cs []queue.Claimed, d time.Duration) []error {
	q.renewals.Add(1)
	q.mu.Lock()
	defer q.mu.Unlock()
	errs := make([]error, len(cs))
	for i, c := range cs {
		exp, ok := q.expiry[c.Msg.ID]
		if !ok || time.Now().After(exp) {
			errs[i] = queue.ErrLeaseLost
			continue
		}
		q.expiry[c.Msg.ID] = time.Now().Add(d)
	}
	return errs
}

func (q *leaseQueue) snapshot() (acked, requeued, retried, lost []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.acked...), append([]string(nil), q.requeued...),
		append([]string(nil), q.retried...), append([]string(nil), q.lost...)
}

// slowCarrier is a throttled carrier: a submission first waits wait for the
// bind's throughput (abandoned then: Temporary, smpp.ErrNotSent), then is
// sent and answered after flight (abandoned then: Unknown).
type slowCarrier struct {
	wait, flight time.Duration
	sent         atomic.Int64
}

func (c *slowCarrier) Submit(ctx context.Context, _ smpp.Submission) smpp.Result {
	select {
	case <-time.After(c.wait):
	case <-ctx.Done():
		return smpp.Result{Outcome: smpp.Temporary, Err: fmt.Errorf("%w: waiting for throughput: %w", smpp.ErrNotSent, ctx.Err())}
	}
	c.sent.Add(1)
	select {
	case <-time.After(c.flight):
		return smpp.Result{Outcome: smpp.OK, CarrierIDs: []string{"c1"}}
	case <-ctx.Done():
		return smpp.Result{Outcome: smpp.Unknown, Err: ctx.Err()}
	}
}
func (c *slowCarrier) Up() bool    { return true }
func (c *slowCarrier) Free() int   { return 10 }
func (c *slowCarrier) Window() int { return 10 }

// runDispatcher runs a dispatcher with opts (Idle 1 ms unless set) until
// the test ends.
func runDispatcher(t *testing.T, opts DispatcherOptions) {
	t.Helper()
	if opts.Idle == 0 {
		opts.Idle = time.Millisecond
	}
	d, err := NewDispatcher(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestDispatcherRenewsLeaseWhileThrottled: a submission that waits for the
// carrier's throughput past half the lease and is answered after the lease
// would have run out is sent once and acked, not abandoned and resent as a
// possible duplicate: the lease is renewed while it waits.
func TestDispatcherRenewsLeaseWhileThrottled(t *testing.T) {
	const lease = 300 * time.Millisecond
	q := newLeaseQueue(lease, 3)
	carrier := &slowCarrier{wait: lease * 2 / 3, flight: lease * 2 / 3}
	runDispatcher(t, DispatcherOptions{Queue: q, Plan: testPlan(carrier), Lease: lease})
	require.Eventually(t, func() bool { a, _, _, _ := q.snapshot(); return len(a) == 3 }, 5*time.Second, 5*time.Millisecond)
	acked, requeued, retried, lost := q.snapshot()
	require.Len(t, acked, 3)
	require.Empty(t, requeued, "nothing abandoned as outcome unknown")
	require.Empty(t, retried)
	require.Empty(t, lost, "no lease ran out")
	require.Equal(t, int64(3), carrier.sent.Load(), "each message sent once")
	require.Positive(t, q.renewals.Load())
}

// TestDispatcherNotSentIsNoDuplicate: a submission abandoned before it was
// sent (the bind's throughput never came within SubmitTimeout) is retried
// without the possible-duplicate flag, and its lease was kept meanwhile.
func TestDispatcherNotSentIsNoDuplicate(t *testing.T) {
	const lease = 150 * time.Millisecond
	q := newLeaseQueue(lease, 1)
	carrier := &slowCarrier{wait: time.Hour}
	runDispatcher(t, DispatcherOptions{Queue: q, Plan: testPlan(carrier), Lease: lease, SubmitTimeout: 2 * lease})
	require.Eventually(t, func() bool { _, _, r, _ := q.snapshot(); return len(r) == 1 }, 5*time.Second, 5*time.Millisecond)
	_, requeued, _, lost := q.snapshot()
	require.Empty(t, requeued, "not sent: no possible duplicate")
	require.Empty(t, lost, "the lease outlived the wait")
	q.mu.Lock()
	defer q.mu.Unlock()
	require.Contains(t, q.retryErrs[0].Message, "was not sent")
}

// TestDispatcherAbandonsOnLostLease: when the lease is lost anyway (another
// daemon reaped it), a submission still waiting for throughput is abandoned
// unsent instead of sending a second copy.
func TestDispatcherAbandonsOnLostLease(t *testing.T) {
	const lease = 150 * time.Millisecond
	q := newLeaseQueue(lease, 1)
	carrier := &slowCarrier{wait: time.Hour}
	runDispatcher(t, DispatcherOptions{Queue: q, Plan: testPlan(carrier), Lease: lease})
	require.Eventually(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return len(q.expiry) == 1 }, 5*time.Second, time.Millisecond)
	q.mu.Lock()
	for id := range q.expiry {
		q.expiry[id] = time.Now().Add(-time.Second) // reaped elsewhere
	}
	q.mu.Unlock()
	require.Eventually(t, func() bool { _, _, _, l := q.snapshot(); return len(l) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Zero(t, carrier.sent.Load(), "never sent")
}

// TestDispatcherRetriesAckThroughOutage: the carrier accepted the messages
// but Redis failed the first acks; the settler repeats the ack (the failed
// items as one batch) until it succeeds, so nothing is resent.
func TestDispatcherRetriesAckThroughOutage(t *testing.T) {
	const lease, n = 2 * time.Second, 20
	q := newLeaseQueue(lease, n)
	q.failAcks = 3
	runDispatcher(t, DispatcherOptions{Queue: q, Plan: testPlan(instantCarrier{}), Lease: lease, Workers: n, SettleWait: 20 * time.Millisecond})
	require.Eventually(t, func() bool { a, _, _, _ := q.snapshot(); return len(a) == n }, 5*time.Second, 5*time.Millisecond)
	_, requeued, _, lost := q.snapshot()
	require.Empty(t, requeued)
	require.Empty(t, lost)
	q.mu.Lock()
	defer q.mu.Unlock()
	require.GreaterOrEqual(t, len(q.ackCalls), 4, "three failed acks, then success")
	require.Less(t, len(q.ackCalls), n, "acks retried as batches, not one by one")
}

// TestDispatcherRetriesRetryThroughOutage: the other settle operations are
// repeated too.
func TestDispatcherRetriesRetryThroughOutage(t *testing.T) {
	const lease = 2 * time.Second
	q := newLeaseQueue(lease, 1)
	q.failRetries = 2
	runDispatcher(t, DispatcherOptions{Queue: q, Plan: testPlan(&slowCarrier{wait: time.Hour}), Lease: lease, SubmitTimeout: 50 * time.Millisecond})
	require.Eventually(t, func() bool { _, _, r, _ := q.snapshot(); return len(r) == 1 }, 5*time.Second, 5*time.Millisecond)
}

// TestDispatcherGivesUpSettleAfterHalfLease: an outage longer than half the
// lease is not waited out forever: the settle gives up and the lease expires.
func TestDispatcherGivesUpSettleAfterHalfLease(t *testing.T) {
	const lease = 400 * time.Millisecond
	q := newLeaseQueue(lease, 1)
	q.failAcks = 1 << 30
	runDispatcher(t, DispatcherOptions{Queue: q, Plan: testPlan(instantCarrier{}), Lease: lease})
	time.Sleep(lease)
	q.mu.Lock()
	calls := len(q.ackCalls)
	q.mu.Unlock()
	require.GreaterOrEqual(t, calls, 2, "retried")
	time.Sleep(lease / 2)
	q.mu.Lock()
	defer q.mu.Unlock()
	require.Equal(t, calls, len(q.ackCalls), "gave up after about half the lease")
}
