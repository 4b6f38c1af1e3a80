package testharness

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler runs functions after a delay on one goroutine, in deadline order
// (FIFO among equal deadlines), so delayed responses keep their order and
// no goroutine is started per delayed PDU. Callbacks must not block for long.
type scheduler struct {
	mu    sync.Mutex
	items timerHeap
	seq   uint64
	wake  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup
}

type timerItem struct {
	at  time.Time
	seq uint64
	fn  func()
}

type timerHeap []timerItem

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timerItem)) }
func (h *timerHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = timerItem{}
	*h = old[:len(old)-1]
	return it
}

func newScheduler() *scheduler {
	s := &scheduler{wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.wg.Go(s.run)
	return s
}

// after runs fn on the scheduler goroutine once d has passed. After stop, fn
// is never run.
func (s *scheduler) after(d time.Duration, fn func()) {
	s.mu.Lock()
	s.seq++
	heap.Push(&s.items, timerItem{at: time.Now().Add(d), seq: s.seq, fn: fn})
	first := s.items[0].seq == s.seq
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// stop ends the goroutine and drops pending functions; it waits for a running one.
func (s *scheduler) stop() {
	close(s.done)
	s.wg.Wait()
}

func (s *scheduler) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []func()
	for {
		s.mu.Lock()
		now := time.Now()
		due = due[:0]
		for len(s.items) > 0 && !s.items[0].at.After(now) {
			due = append(due, heap.Pop(&s.items).(timerItem).fn)
		}
		wait := time.Hour
		if len(s.items) > 0 {
			wait = s.items[0].at.Sub(now)
		}
		s.mu.Unlock()
		for _, fn := range due {
			select {
			case <-s.done:
				return
			default:
			}
			fn()
		}
		if len(due) > 0 {
			continue // time moved while running them
		}
		t.Reset(wait)
		select {
		case <-s.done:
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}
