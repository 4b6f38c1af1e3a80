package router

import (
	"context"
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

// op is one step of what the dispatcher tells a Settling.
type op func(s *Settling)

// track: a submission accepted with ids, its ack now in progress.
func track(ids ...string) op {
	return func(s *Settling) { s.submitStart(); s.submitEnd(ids, true) }
}

// begin: a submission starts; accept or refuse ends it.
func begin() op                           { return func(s *Settling) { s.submitStart() } }
func accept(ids ...string) op             { return func(s *Settling) { s.submitEnd(ids, true) } }
func refuse() op                          { return func(s *Settling) { s.submitEnd(nil, false) } }
func acked(ids ...string) op              { return func(s *Settling) { s.done(ackOf(ids...)) } }
func ackOf(ids ...string) []queue.AckItem { return []queue.AckItem{{CarrierIDs: ids}} }

// TestSettlingWait: WaitSettled returns at once when nothing is in
// progress, waits for the last ack naming one of its ids (compared through
// smpp.NormalizeID), gives an id not seen yet the grace while a submission
// is in progress, and gives up after MaxWait or when ctx ends.
func TestSettlingWait(t *testing.T) {
	const long = time.Minute
	tests := []struct {
		name           string
		before         []op     // before the receipts arrive
		wait           []string // carrier ids of the receipts
		during         []op     // while they wait; each but the last leaves them waiting
		cancel         bool     // ctx ends after during
		grace, maxWait time.Duration
		blocks         bool          // the receipts wait for during/cancel/grace/maxWait
		minWait        time.Duration // the receipts waited at least this long
		want           bool
	}{
		{name: "nothing in progress", wait: []string{"a1"}, want: true},
		{name: "other ids in progress, no submission", before: []op{track("a1"), track("b2")}, wait: []string{"c3"}, want: true},
		{name: "no ids", before: []op{track("a1")}, want: true},
		{name: "empty id ignored", before: []op{track("", "a1")}, wait: []string{""}, want: true},
		{name: "waits for its ack", before: []op{track("a1"), track("b2")}, wait: []string{"a1"},
			during: []op{acked("a1")}, blocks: true, want: true},
		{name: "another ack returning is not enough", before: []op{track("a1"), track("b2")}, wait: []string{"a1"},
			during: []op{acked("b2")}, maxWait: 100 * time.Millisecond, blocks: true, minWait: 100 * time.Millisecond, want: false},
		{name: "any id of the batch", before: []op{track("a1"), track("b2", "c3")}, wait: []string{"c3"},
			during: []op{acked("b2", "c3")}, blocks: true, want: true},
		{name: "every id of the batch", before: []op{track("a1"), track("b2")}, wait: []string{"a1", "b2"},
			during: []op{acked("a1"), acked("b2")}, blocks: true, want: true},
		{name: "same id twice waits for both", before: []op{track("a1"), track("a1")}, wait: []string{"a1"},
			during: []op{acked("a1"), acked("a1")}, blocks: true, want: true},
		{name: "hex in response, decimal in receipt", before: []op{track("1F")}, wait: []string{"31"},
			during: []op{acked("1F")}, blocks: true, want: true},
		{name: "NUL and spaces normalized", before: []op{track("00ab\x00")}, wait: []string{" AB "},
			during: []op{acked("00ab\x00")}, blocks: true, want: true},
		{name: "times out", before: []op{track("a1")}, wait: []string{"a1"},
			maxWait: 100 * time.Millisecond, blocks: true, minWait: 100 * time.Millisecond, want: false},
		{name: "context ends", before: []op{track("a1")}, wait: []string{"a1"}, cancel: true, blocks: true, want: false},
		{name: "receipt before the submission returned", before: []op{begin()}, wait: []string{"a1"},
			during: []op{accept("a1"), acked("a1")}, grace: long, blocks: true, want: true},
		{name: "receipt before another submission returned", before: []op{begin(), begin()}, wait: []string{"a1"},
			during: []op{accept("b2"), accept("a1"), acked("b2"), acked("a1")}, grace: long, blocks: true, want: true},
		{name: "grace ends when no submission is left", before: []op{begin()}, wait: []string{"a1"},
			during: []op{refuse()}, grace: long, blocks: true, want: true},
		{name: "grace passes for an id never submitted here", before: []op{begin()}, wait: []string{"a1"},
			grace: 50 * time.Millisecond, blocks: true, minWait: 50 * time.Millisecond, want: true},
		{name: "grace passes, then waits for the ack of one seen", before: []op{begin(), track("b2")}, wait: []string{"a1", "b2"},
			during: []op{acked("b2")}, grace: 50 * time.Millisecond, blocks: true, minWait: 50 * time.Millisecond, want: true},
		{name: "no grace once seen acked", before: []op{track("a1"), begin()}, wait: []string{"a1"},
			during: []op{acked("a1")}, grace: long, blocks: true, want: true},
		{name: "no grace for an id acked lately", before: []op{track("a1"), acked("a1"), begin()}, wait: []string{"a1"},
			grace: long, want: true},
		{name: "grace off", before: []op{begin()}, wait: []string{"a1"}, grace: -1, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxWait := tt.maxWait
			if maxWait == 0 {
				maxWait = long
			}
			s := NewSettling(SettlingOptions{Normalize: smpp.NormalizeID, MaxWait: maxWait, Grace: tt.grace})
			for _, f := range tt.before {
				f(s)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now()
			got := make(chan bool, 1)
			go func() { got <- s.WaitSettled(ctx, tt.wait) }()
			stillWaits := func(step int) {
				t.Helper()
				select {
				case r := <-got:
					t.Fatalf("WaitSettled returned %v before step %d; want it to wait", r, step)
				case <-time.After(30 * time.Millisecond):
				}
			}
			for i, f := range tt.during {
				if tt.blocks {
					stillWaits(i)
				}
				f(s)
			}
			if tt.blocks && len(tt.during) == 0 && !tt.cancel && tt.minWait == 0 {
				t.Fatal("bad case: nothing ends the wait")
			}
			if tt.cancel {
				stillWaits(len(tt.during))
				cancel()
			}
			select {
			case r := <-got:
				require.Equal(t, tt.want, r)
			case <-time.After(10 * time.Second):
				t.Fatal("WaitSettled did not return")
			}
			elapsed := time.Since(start)
			require.GreaterOrEqual(t, elapsed, tt.minWait)
			if tt.minWait == 0 && !tt.blocks {
				require.Less(t, elapsed, time.Second, "returned at once")
			}
		})
	}
}

// TestSettlingForgetsOldAcks: the ids acked lately are remembered, up to
// twice settledRecent; an older one gets the grace again.
func TestSettlingForgetsOldAcks(t *testing.T) {
	const grace = 50 * time.Millisecond
	s := NewSettling(SettlingOptions{Normalize: smpp.NormalizeID, MaxWait: time.Minute, Grace: grace})
	for i := range 2*settledRecent + 1 {
		id := fmt.Sprintf("m%d", i)
		track(id)(s)
		acked(id)(s)
	}
	begin()(s)
	start := time.Now()
	require.True(t, s.WaitSettled(context.Background(), []string{fmt.Sprintf("m%d", 2*settledRecent), fmt.Sprintf("m%d", settledRecent)}))
	require.Less(t, time.Since(start), grace, "acked lately: no grace")
	start = time.Now()
	require.True(t, s.WaitSettled(context.Background(), []string{"m0"}))
	require.GreaterOrEqual(t, time.Since(start), grace, "forgotten: the grace applies")
	require.Zero(t, s.inProgress())
}

// TestSettlingNil: a nil tracker (no Settling configured) tracks nothing.
func TestSettlingNil(t *testing.T) {
	var s *Settling
	s.submitStart()
	s.submitEnd([]string{"a1"}, true)
	s.done(ackOf("a1"))
	require.True(t, s.WaitSettled(context.Background(), []string{"a1"}))
	require.Zero(t, s.inProgress())
}

// TestSettlingConcurrent: producers submit and add batches, a settler
// removes them, and each batch's receipt waits from before its Submit
// returned, all at once, under -race. A waiter that reports settled only
// does so after its batch's ack returned, and none times out.
func TestSettlingConcurrent(t *testing.T) {
	const producers, perProducer, perBatch = 8, 200, 4
	s := NewSettling(SettlingOptions{Normalize: smpp.NormalizeID, MaxWait: time.Minute, Grace: time.Minute})
	type batch struct {
		items    []queue.AckItem
		returned atomic.Bool
	}
	toSettle := make(chan *batch, 64)
	var settler sync.WaitGroup
	settler.Go(func() {
		for b := range toSettle {
			b.returned.Store(true)
			s.done(b.items)
		}
	})
	var producersWG, waiters sync.WaitGroup
	var early, timedOut atomic.Int64
	for p := range producers {
		producersWG.Go(func() {
			for i := range perProducer {
				b := &batch{}
				var ids []string
				for k := range perBatch {
					id := fmt.Sprintf("m%d", (p*perProducer+i)*perBatch+k)
					b.items = append(b.items, queue.AckItem{CarrierIDs: []string{id}})
					ids = append(ids, id)
				}
				// The receipt may be handled before Submit returned.
				s.submitStart()
				waiters.Go(func() {
					if !s.WaitSettled(context.Background(), ids[1:2]) {
						timedOut.Add(1)
					} else if !b.returned.Load() {
						early.Add(1)
					}
				})
				s.submitEnd(ids, true)
				toSettle <- b
			}
		})
	}
	producersWG.Wait()
	close(toSettle)
	settler.Wait()
	waiters.Wait()
	require.Zero(t, early.Load(), "a waiter returned before its ack did")
	require.Zero(t, timedOut.Load())
	require.Zero(t, s.inProgress())
}

// gateQueue is a listQueue whose AckMany waits for the test to open the
// gate and then fails every item with ackErr (nil: acked).
type gateQueue struct {
	*listQueue
	entered chan struct{}
	gate    chan struct{}
	ackErr  error
}

// runGated runs d (whose queue is q) until the test ends; the returned
// function opens q's gate (idempotent), and the cleanup opens it too before
// stopping d, so a test that fails early does not leave AckMany blocked.
func runGated(t *testing.T, d *Dispatcher, q *gateQueue) (openGate func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	var open sync.Once
	openGate = func() { open.Do(func() { close(q.gate) }) }
	t.Cleanup(func() { openGate(); cancel(); <-done })
	return openGate
}

func (q *gateQueue) AckMany(ctx context.Context, items []queue.AckItem) []error {
	q.entered <- struct{}{}
	<-q.gate
	if q.ackErr == nil {
		return q.listQueue.AckMany(ctx, items)
	}
	errs := make([]error, len(items))
	for i := range errs {
		errs[i] = q.ackErr
	}
	return errs
}

// idCarrier accepts every submission with the given carrier ids, one per segment.
type idCarrier struct{ ids []string }

func (c idCarrier) Submit(context.Context, smpp.Submission) smpp.Result {
	return smpp.Result{Outcome: smpp.OK, CarrierIDs: c.ids}
}
func (idCarrier) Up() bool    { return true }
func (idCarrier) Free() int   { return 1000 }
func (idCarrier) Window() int { return 1000 }

// TestDispatcherTracksAcksInProgress: from the carrier's answer until its
// AckMany returns (acked, lease lost or failed), a message's carrier ids
// are pending in the dispatcher's Settling; then a receipt's wait ends.
func TestDispatcherTracksAcksInProgress(t *testing.T) {
	for _, ackErr := range []error{nil, queue.ErrLeaseLost, queue.ErrNotFound} {
		t.Run(fmt.Sprint(ackErr), func(t *testing.T) {
			q := &gateQueue{listQueue: &listQueue{left: []queue.Claimed{{Msg: message.Message{ID: "m1", From: "+15550001111", To: "+15557654321"}}}},
				entered: make(chan struct{}, 1), gate: make(chan struct{}), ackErr: ackErr}
			s := NewSettling(SettlingOptions{Normalize: smpp.NormalizeID, MaxWait: time.Minute})
			d, err := NewDispatcher(DispatcherOptions{Queue: q, Plan: testPlan(idCarrier{ids: []string{"1F", "2A"}}), Workers: 4,
				Idle: time.Millisecond, SettleWait: -1, Settling: s})
			require.NoError(t, err)
			openGate := runGated(t, d, q)

			select {
			case <-q.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("AckMany never called")
			}
			require.Equal(t, 2, s.inProgress())
			// The receipt of the second segment, its id in decimal.
			got := make(chan bool, 1)
			go func() { got <- s.WaitSettled(context.Background(), []string{"42"}) }()
			select {
			case <-got:
				t.Fatal("the receipt did not wait for the ack in progress")
			case <-time.After(30 * time.Millisecond):
			}
			openGate()
			select {
			case r := <-got:
				require.True(t, r)
			case <-time.After(5 * time.Second):
				t.Fatal("the receipt still waits after the ack returned")
			}
			require.Zero(t, s.inProgress())
		})
	}
}
