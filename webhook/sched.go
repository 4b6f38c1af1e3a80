package webhook

import (
	"context"
	"sync"
	"time"
)

// job is one event held in memory: a fresh stream entry, or a retry leased
// from an endpoint's set in Redis.
type job struct {
	rec    record    // rec.Body may be empty while body holds the bytes (fresh events)
	body   []byte    // the exact bytes POSTed; built once, from the stream entry or rec.Body
	first  time.Time // first attempt; zero when never attempted
	stream string    // fresh: stream and entry to XACK once the event is safe
	entry  string
	home   string   // retry: endpoint id whose Redis set holds the event
	target Endpoint // where to POST (resolved from the org)
	ep     string   // endpointID(target.URL); "" when the org has no endpoint
	tgt    *target  // cached per-URL state of target; nil when the org has no endpoint

	// When the job is spilled (put in Redis without an attempt):
	deadReason string    // non-empty: dead-letter with this reason
	due        time.Time // else: schedule at this time
}

func (j *job) fresh() bool { return j.stream != "" }

// payload returns the bytes to POST.
func (j *job) payload() []byte {
	if j.body == nil {
		j.body = []byte(j.rec.Body)
	}
	return j.body
}

// record returns the job's record with its body, for storing in Redis.
func (j *job) record() record {
	r := j.rec
	if r.Body == "" {
		r.Body = string(j.body)
	}
	return r
}

// heldKey names a fresh job's stream entry (a struct: no string built per event).
type heldKey struct{ stream, entry string }

func (j *job) heldKey() heldKey { return heldKey{j.stream, j.entry} }

// epState is what one dispatcher knows of an endpoint: its queue of jobs, how
// many requests it has in flight, and its circuit.
type epState struct {
	id        string
	q         []*job
	inflight  int
	retries   int // retry jobs queued or in flight
	streak    int // consecutive failed attempts
	openUntil time.Time
}

// sched hands jobs to workers, round-robin over endpoints, at most perEp
// requests in flight per healthy endpoint and one (a probe) per failing one.
// Spills (writes to Redis without an attempt) go first.
type sched struct {
	perEp    int
	qCap     int // fresh jobs queued per endpoint before spilling
	maxFresh int // fresh jobs in memory before the reader waits
	// openFor is how long a circuit opens after streak consecutive
	// failures (jittered).
	openFor func(streak int) time.Duration

	mu    sync.Mutex
	eps   map[string]*epState
	order []*epState
	rr    int
	spill []*job
	fresh int
	held  map[heldKey]struct{}

	work  chan struct{} // a worker may find something to do
	freed chan struct{} // the reader may find room
	kick  chan struct{} // the poller may find something to claim
}

func newSched(perEp, qCap, maxFresh int, openFor func(int) time.Duration) *sched {
	return &sched{
		perEp: perEp, qCap: qCap, maxFresh: maxFresh, openFor: openFor,
		eps:  map[string]*epState{},
		held: map[heldKey]struct{}{},
		work: make(chan struct{}, 1), freed: make(chan struct{}, 1), kick: make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (s *sched) get(id string) *epState {
	e, ok := s.eps[id]
	if !ok {
		e = &epState{id: id}
		s.eps[id] = e
		s.order = append(s.order, e)
	}
	return e
}

func (s *sched) limit(e *epState) int {
	if e.streak > 0 {
		return 1
	}
	return s.perEp
}

// room is how many more fresh jobs the reader may take.
func (s *sched) room() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxFresh - s.fresh
}

// addFresh takes a fresh job. It returns added=false when the job's endpoint
// queue is full and force is false (the caller may wait on freed and retry),
// and dup=true when the entry is already held (re-claimed from the stream).
func (s *sched) addFresh(j *job, now time.Time, force bool) (added, dup bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.held[j.heldKey()]; ok {
		return false, true
	}
	switch {
	case j.ep == "":
		s.spill = append(s.spill, j)
	default:
		e := s.get(j.ep)
		switch {
		case now.Before(e.openUntil):
			j.due = e.openUntil
			s.spill = append(s.spill, j)
		case len(e.q) < s.qCap:
			e.q = append(e.q, j)
		case force:
			j.due = now
			s.spill = append(s.spill, j)
		default:
			return false, false
		}
	}
	s.held[j.heldKey()] = struct{}{}
	s.fresh++
	signal(s.work)
	return true, false
}

// claimable is how many retries the poller may lease for endpoint id now.
func (s *sched) claimable(id string, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(id)
	if now.Before(e.openUntil) {
		return 0
	}
	return max(0, 4*s.limit(e)-e.retries)
}

// addRetries queues leased retries (already resolved) for their endpoints.
func (s *sched) addRetries(jobs []*job, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range jobs {
		if j.ep == "" {
			s.spill = append(s.spill, j)
			continue
		}
		e := s.get(j.ep)
		if now.Before(e.openUntil) {
			j.due = e.openUntil
			s.spill = append(s.spill, j)
			continue
		}
		e.q = append(e.q, j)
		e.retries++
	}
	signal(s.work)
}

// next blocks until there is work: either a batch of spills or one job to
// attempt (its endpoint's in-flight count is then already raised). It returns
// nil, nil when ctx is done.
func (s *sched) next(ctx context.Context) (spills []*job, attempt *job) {
	for {
		s.mu.Lock()
		if len(s.spill) > 0 {
			spills, s.spill = s.spill, nil
		} else if n := len(s.order); n > 0 {
			for i := range n {
				idx := (s.rr + i) % n
				e := s.order[idx]
				if len(e.q) > 0 && e.inflight < s.limit(e) {
					attempt = e.q[0]
					e.q[0] = nil
					e.q = e.q[1:]
					e.inflight++
					s.rr = idx + 1
					break
				}
			}
		}
		more := len(s.spill) > 0 || s.runnable()
		s.mu.Unlock()
		if more {
			signal(s.work)
		}
		if spills != nil || attempt != nil {
			return spills, attempt
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-s.work:
		}
	}
}

// runnable reports whether some endpoint has a job it may start. mu held.
func (s *sched) runnable() bool {
	for _, e := range s.order {
		if len(e.q) > 0 && e.inflight < s.limit(e) {
			return true
		}
	}
	return false
}

// finishAttempt updates the endpoint after an attempt: a success closes its
// circuit; a failure opens it for openFor(streak) and moves the endpoint's
// queue to the spill list, to wait in Redis.
func (s *sched) finishAttempt(j *job, ok bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(j.ep)
	e.inflight--
	if !j.fresh() {
		e.retries--
	}
	if ok {
		e.streak, e.openUntil = 0, time.Time{}
		if !j.fresh() {
			signal(s.kick)
		}
	} else if !now.Before(e.openUntil) {
		e.streak++
		e.openUntil = now.Add(s.openFor(e.streak))
		for _, q := range e.q {
			q.due = e.openUntil
			if !q.fresh() {
				e.retries--
			}
		}
		s.spill = append(s.spill, e.q...)
		e.q = nil
	}
	signal(s.work)
}

// forget drops a fresh job from memory once it is acknowledged, safely in
// Redis, or abandoned to the stream's pending list.
func (s *sched) forget(j *job) {
	if !j.fresh() {
		return
	}
	s.mu.Lock()
	delete(s.held, j.heldKey())
	s.fresh--
	s.mu.Unlock()
	signal(s.freed)
}

// circuit reports the state of endpoint id (for tests and logs).
func (s *sched) circuit(id string) (streak int, openUntil time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.get(id)
	return e.streak, e.openUntil
}

// prune forgets idle, healthy endpoints so the round-robin stays short.
func (s *sched) prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.order[:0]
	for _, e := range s.order {
		if len(e.q) == 0 && e.inflight == 0 && e.retries == 0 && e.streak == 0 {
			delete(s.eps, e.id)
			continue
		}
		keep = append(keep, e)
	}
	clear(s.order[len(keep):])
	s.order = keep
	s.rr = 0
}

// leftovers empties the queues at shutdown, once no worker runs, and returns
// the retry jobs, whose leases the caller releases.
func (s *sched) leftovers() []*job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*job
	take := func(js []*job) {
		for _, j := range js {
			if !j.fresh() {
				out = append(out, j)
			}
		}
	}
	take(s.spill)
	s.spill = nil
	for _, e := range s.order {
		take(e.q)
		e.q = nil
		e.inflight, e.retries = 0, 0
	}
	clear(s.held) // fresh entries stay pending in their streams; a later Run reads them again
	s.fresh = 0
	return out
}
