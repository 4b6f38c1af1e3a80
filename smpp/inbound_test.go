package smpp

import (
	"context"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

// batchRecorder is a recorder that also takes receipts in batches. The
// first attempt of a receipt whose id hashes to 0 mod 3 fails; shortOnce
// makes the first call return no results at all.
type batchRecorder struct {
	*recorder
	shortOnce atomic.Bool

	mu       sync.Mutex
	sizes    []int
	attempts map[string]int
	failed   int
}

func newBatchRecorder(gate chan struct{}) *batchRecorder {
	return &batchRecorder{recorder: &recorder{gate: gate}, attempts: map[string]int{}}
}

func failsFirst(id string) bool {
	h := fnv.New32a()
	_, _ = h.Write([]byte(NormalizeID(id)))
	return h.Sum32()%3 == 0
}

func (b *batchRecorder) HandleReceipts(ctx context.Context, rs []Receipt) []error {
	if err := b.wait(ctx); err != nil {
		errs := make([]error, len(rs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	if b.shortOnce.CompareAndSwap(true, false) {
		return nil
	}
	errs := make([]error, len(rs))
	b.mu.Lock()
	b.sizes = append(b.sizes, len(rs))
	var ok []Receipt
	for i, r := range rs {
		id := NormalizeID(r.CarrierMessageID)
		b.attempts[id]++
		if b.attempts[id] == 1 && failsFirst(id) {
			b.failed++
			errs[i] = context.DeadlineExceeded // any error
			continue
		}
		ok = append(ok, r)
	}
	b.mu.Unlock()
	b.recorder.mu.Lock()
	b.receipts = append(b.receipts, ok...)
	b.recorder.mu.Unlock()
	return errs
}

func (b *batchRecorder) stats() (sizes []int, failed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.sizes...), b.failed
}

// deliverResps counts the deliver_sm_resp the simulator received, by status.
func deliverResps(sim *testharness.Simulator) map[uint32]int {
	n := map[uint32]int{}
	for _, r := range sim.Received() {
		if r.CommandID == 0x80000005 {
			n[r.CommandStatus]++
		}
	}
	return n
}

func submitN(t *testing.T, p *testPool, n, workers int) []string {
	t.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				res := p.Submit(context.Background(), sub("m"))
				if res.Outcome != OK {
					t.Errorf("submit %d: %v %v", i, res.Outcome, res.Err)
					return
				}
				ids[i] = NormalizeID(res.CarrierIDs[0])
			}
		})
	}
	wg.Wait()
	return ids
}

// requireEachOnce checks that every id was handed over exactly once.
func requireEachOnce(t *testing.T, ids []string, got []Receipt) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, r := range got {
		seen[NormalizeID(r.CarrierMessageID)]++
	}
	require.Len(t, seen, len(ids))
	for _, id := range ids {
		require.Equal(t, 1, seen[id], "receipt %s", id)
	}
}

// Receipts waiting on a connection go to a ReceiptBatchHandler together
// (at most MaxReceiptBatch); each deliver_sm is answered by its own result,
// so only the failed ones are delivered again.
func TestReceiptBatches(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.ResponseTimeout = 5 * time.Second
	gate := make(chan struct{})
	h := newBatchRecorder(gate)
	p := newPoolWith(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}}, h.recorder, h)
	waitUp(t, p)

	const n = 200
	ids := submitN(t, p, n, bc.Window)
	waitFor(t, 3*time.Second, "every receipt sent", func() bool { return sim.DeliverSentCount() >= n })
	time.Sleep(50 * time.Millisecond) // let the reader queue them
	close(gate)
	waitFor(t, 5*time.Second, "every receipt recorded", func() bool { return len(h.Receipts()) == n })
	requireEachOnce(t, ids, h.Receipts())

	sizes, failed := h.stats()
	require.Positive(t, failed, "some first attempts fail")
	total := 0
	for _, s := range sizes {
		require.LessOrEqual(t, s, MaxReceiptBatch)
		total += s
	}
	require.Equal(t, n+failed, total, "each failed receipt came again")
	require.Contains(t, sizes, MaxReceiptBatch, "queued receipts are taken together")
	require.Less(t, len(sizes), n/4)
	require.Zero(t, h.calls.Load(), "HandleReceipt is not used")
	waitFor(t, 2*time.Second, "every deliver_sm answered", func() bool { return deliverResps(sim)[StatusOK] == n })
	require.Equal(t, failed, deliverResps(sim)[StatusXTAppn])
	require.Equal(t, float64(n), value(p.m.receipts.WithLabelValues("ca", "DELIVRD")))
}

// A batch result of the wrong length fails the whole batch.
func TestReceiptBatchWrongResultCount(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond})
	h := newBatchRecorder(nil)
	h.shortOnce.Store(true)
	p := newPoolWith(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}}, h.recorder, h)
	waitUp(t, p)
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, OK, res.Outcome)
	waitFor(t, 3*time.Second, "receipt after redelivery", func() bool { return len(h.Receipts()) == 1 })
	_, failed := h.stats() // per-receipt failures after the short result
	require.Equal(t, 1+failed, deliverResps(sim)[StatusXTAppn])
}

// A handler that does not return does not stop the reader: submit_sm_resp
// keep being read while receipts wait; once backlogHigh deliver_sm wait,
// new submits wait too (not fail), and all go on when the handler is back.
func TestReaderNotBlockedByHandler(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.Window = 50
	bc.ResponseTimeout = 5 * time.Second
	h := &recorder{gate: make(chan struct{})}
	p := newPoolWith(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}}, h, nil)
	waitUp(t, p)

	first := submitN(t, p, backlogHigh-bc.Window, bc.Window)
	require.Empty(t, h.Receipts(), "the handler is still blocked")
	waitFor(t, 2*time.Second, "receipts queued", func() bool { return sim.DeliverSentCount() == len(first) })
	require.Equal(t, bc.Window, p.Free())

	var more []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		more = submitN(t, p, 4*bc.Window, bc.Window) // at most about a window gets past the check before it closes
	}()
	waitFor(t, 2*time.Second, "submits held back", func() bool { return p.Free() == 0 && p.States()[0].InFlight == 0 })
	select {
	case <-done:
		t.Fatal("submits went on with the handler stuck")
	default:
	}
	close(h.gate)
	<-done
	waitFor(t, 5*time.Second, "every receipt recorded", func() bool { return len(h.Receipts()) == len(first)+len(more) })
	requireEachOnce(t, append(first, more...), h.Receipts())
	require.Zero(t, deliverResps(sim)[StatusXTAppn])
	waitFor(t, 2*time.Second, "backlog drained", func() bool { return p.Free() == bc.Window })
}

// deliver_sm that do not fit in a link's queue are refused for now
// (ESME_RX_T_APPN) without stopping the reader, and delivered again.
func TestInboundQueueFullRefuses(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.ResponseTimeout = 5 * time.Second
	h := &recorder{gate: make(chan struct{})}
	p := newPoolWith(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}}, h, nil)
	waitUp(t, p)

	n := inboundQueueLen(bc.Window) + inboundWorkers(false) + 50
	for i := range n {
		require.NoError(t, sim.InjectMO(testharness.MO{From: "15550002222", To: "15550001111", Text: strconv.Itoa(i)}))
	}
	waitFor(t, 3*time.Second, "deliver_sm refused for now", func() bool { return deliverResps(sim)[StatusXTAppn] >= 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := p.Submit(ctx, sub("still reading"))
	require.Equal(t, OK, res.Outcome, "%v", res.Err)
	close(h.gate)
	waitFor(t, 10*time.Second, "every MO recorded", func() bool { return len(h.MOs()) == n })
	seen := map[string]bool{}
	for _, m := range h.MOs() {
		require.False(t, seen[m.Text], "MO %s twice", m.Text)
		seen[m.Text] = true
	}
}

func TestBacklog(t *testing.T) {
	b := newBacklog()
	require.False(t, b.full())
	b.add(backlogHigh - 1)
	require.False(t, b.full())
	b.add(1)
	require.True(t, b.full())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, b.wait(ctx), context.DeadlineExceeded)
	b.add(-(backlogHigh - backlogLow - 1))
	require.True(t, b.full(), "hysteresis: still held above the low mark")
	waited := make(chan error)
	go func() { waited <- b.wait(context.Background()) }()
	b.add(-1)
	require.NoError(t, <-waited)
	require.False(t, b.full())
}
