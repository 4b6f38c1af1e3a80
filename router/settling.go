package router

import (
	"context"
	"sync"
	"time"

	"github.com/smsgate/smsgate/queue"
)

// Settling defaults.
const (
	// DefaultSettleMaxWait bounds how long WaitSettled waits for acks in
	// progress.
	DefaultSettleMaxWait = 2 * time.Second
	// DefaultSettleGrace is how long WaitSettled gives a carrier id it has
	// not seen to show up, while submissions are in progress.
	DefaultSettleGrace = 5 * time.Millisecond
	// settledRecent is how many carrier ids whose ack returned are
	// remembered (twice that at most), so their late receipts need no grace.
	settledRecent = 4096
)

// SettlingOptions configure a Settling.
type SettlingOptions struct {
	// Normalize maps a carrier message id to the form in which ids from
	// submit_sm_resp and from receipts compare equal: smpp.NormalizeID, as
	// queue.Options.NormalizeID. Nil: ids compare as they are.
	Normalize func(string) string
	// MaxWait bounds one WaitSettled. Default DefaultSettleMaxWait.
	MaxWait time.Duration
	// Grace is how long WaitSettled waits for a carrier id it has not seen
	// while a submission is in progress (see Settling). Default
	// DefaultSettleGrace; negative: no grace.
	Grace time.Duration
}

// Settling tracks the carrier ids of submissions this daemon has had
// accepted (submit_sm_resp ESME_ROK) whose ack (Queue.AckMany, which indexes
// the carrier ids) has not returned yet. Carriers and the simulator send a
// delivery receipt right after the submit_sm_resp, usually before the ack
// batch ran; applying it then finds the carrier id not indexed and holds it
// in Redis, for the ack to apply (several extra scripts per message). The
// receipt handler calls WaitSettled first, so the receipt takes the direct
// path.
//
// The receipt can even be handled before the dispatcher has learnt its
// carrier id: the SMPP reader reads the submit_sm_resp, wakes the
// submitting goroutine, reads the deliver_sm right behind it and wakes an
// inbound worker, which the scheduler tends to run first. So while some
// submission is in progress here, WaitSettled also gives a carrier id it
// has not seen a short grace (SettlingOptions.Grace) to be added. Ids
// whose ack returned lately (the last few thousand) are known and need no
// grace; receipts for ids acked long ago (slower carriers) wait at most
// that grace, and only on a busy daemon; the rest do not wait at all.
//
// The wait is an optimisation, never needed for correctness: a receipt
// that is applied before its ack (it waited too little, came from another
// daemon's submission or before its submit_sm_resp) is held as before.
//
// The wait cannot deadlock: receipts are handled by each SMPP link's
// inbound workers (smpp/link.go worker), not by its reader, which reads the
// submit_sm_resp and never waits for those workers (a full inbound queue
// answers ESME_RX_T_APPN). From the submit_sm_resp on, the path to
// AckMany's return (Submit returning, the dispatcher worker, the acks
// channel, settleLoop, ackBatch, Redis) waits on nothing the receipt
// handler holds; the only coupling, the pool's receipt backlog, holds back
// new submit_sm before they are sent, not the acks of submissions already
// answered. The wait is bounded besides (MaxWait, and the caller's context).
//
// One Settling serves the daemon (a reload swaps plans, not the tracker):
// the dispatcher adds and removes, the receipt handler waits. It is safe
// for concurrent use; a nil *Settling tracks nothing.
type Settling struct {
	opts SettlingOptions

	mu sync.Mutex
	n  map[string]int // normalized carrier id -> acks in progress naming it
	// recent and older hold carrier ids whose ack returned lately: when
	// recent is full it becomes older.
	recent, older map[string]struct{}
	// submitting is how many Submit calls are in progress.
	submitting int
	// watchers is how many waiters are in their grace: while there are,
	// every Submit that returns also closes gen.
	watchers int
	// gen is closed (and replaced) when ids are removed, and when a Submit
	// returns while a waiter is in its grace: waiters then look again.
	gen chan struct{}
}

// NewSettling returns an empty tracker.
func NewSettling(opts SettlingOptions) *Settling {
	if opts.Normalize == nil {
		opts.Normalize = func(s string) string { return s }
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultSettleMaxWait
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultSettleGrace
	}
	return &Settling{opts: opts, n: make(map[string]int), recent: make(map[string]struct{}), gen: make(chan struct{})}
}

// submitStart records a Submit call starting; submitEnd must follow.
func (s *Settling) submitStart() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.submitting++
	s.mu.Unlock()
}

// submitEnd records a Submit call's return and, when it was accepted
// (accepted true), its carrier ids (as the carrier sent them; "" skipped)
// until done removes them: the caller hands the ack to the settle loop.
func (s *Settling) submitEnd(ids []string, accepted bool) {
	if s == nil {
		return
	}
	var keys []string
	if accepted {
		keys = s.keys(ids, nil)
	}
	s.mu.Lock()
	s.submitting--
	for _, k := range keys {
		s.n[k]++
	}
	if s.watchers > 0 {
		s.wake()
	}
	s.mu.Unlock()
}

// done removes the carrier ids of a batch whose AckMany returned (whatever
// the outcome: acked, lease lost, failed) and wakes the waiters.
func (s *Settling) done(batch []queue.AckItem) {
	if s == nil || len(batch) == 0 {
		return
	}
	var keys []string
	for _, it := range batch {
		keys = s.keys(it.CarrierIDs, keys)
	}
	s.mu.Lock()
	for _, k := range keys {
		if c := s.n[k]; c > 1 {
			s.n[k] = c - 1
			continue
		}
		delete(s.n, k)
		if len(s.recent) >= settledRecent {
			s.older, s.recent = s.recent, make(map[string]struct{}, settledRecent)
		}
		s.recent[k] = struct{}{}
	}
	s.wake()
	s.mu.Unlock()
}

// wake wakes every waiter; s.mu is held.
func (s *Settling) wake() {
	close(s.gen)
	s.gen = make(chan struct{})
}

// keys appends the normalized non-empty ids to dst.
func (s *Settling) keys(ids []string, dst []string) []string {
	for _, id := range ids {
		if id == "" {
			continue
		}
		if k := s.opts.Normalize(id); k != "" {
			dst = append(dst, k)
		}
	}
	return dst
}

// WaitSettled waits until no ack naming one of ids (carrier message ids as
// received in receipts) is in progress, and reports true; false when
// MaxWait passed or ctx ended first. While a submission is in progress, an
// id neither being acked nor acked lately gets the grace to show up first.
// It returns at once when nothing is in progress.
func (s *Settling) WaitSettled(ctx context.Context, ids []string) bool {
	if s == nil || len(ids) == 0 {
		return true
	}
	s.mu.Lock()
	idle := len(s.n) == 0 && s.submitting == 0
	s.mu.Unlock()
	if idle {
		return true
	}
	start := time.Now()
	keys := s.keys(ids, make([]string, 0, len(ids)))
	seen := make([]bool, len(keys)) // seen being acked: no grace needed
	watching := false
	defer func() {
		if watching {
			s.mu.Lock()
			s.watchers--
			s.mu.Unlock()
		}
	}()
	var timer *time.Timer
	for {
		pending, unseen := false, false
		s.mu.Lock()
		for i, k := range keys {
			switch {
			case s.n[k] > 0:
				seen[i], pending = true, true
			case seen[i]:
			case s.settledLately(k):
				seen[i] = true
			default:
				unseen = true
			}
		}
		grace := !pending && unseen && s.submitting > 0 && s.opts.Grace > 0
		if grace && !watching {
			s.watchers++
			watching = true
		}
		gen := s.gen
		s.mu.Unlock()

		var wait time.Duration
		switch {
		case pending:
			if wait = s.opts.MaxWait - time.Since(start); wait <= 0 {
				return false
			}
		case grace:
			if wait = s.opts.Grace - time.Since(start); wait <= 0 {
				return true
			}
		default:
			return true
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait) // no stale tick: Go 1.23 timers
		}
		select {
		case <-gen:
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
}

// settledLately reports whether an ack naming k returned lately; s.mu is
// held.
func (s *Settling) settledLately(k string) bool {
	if _, ok := s.recent[k]; ok {
		return true
	}
	_, ok := s.older[k]
	return ok
}

// inProgress is how many distinct carrier ids have an ack in progress.
func (s *Settling) inProgress() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.n)
}
