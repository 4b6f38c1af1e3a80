package smpp

import (
	"context"
	"sync"
	"time"
)

// limiter paces one bind's submit_sm: a token bucket holding at most one
// token (strict pacing at 1/rate; never a burst above one second's worth),
// whose rate adapts to carrier back-pressure like TCP congestion control
// (AIMD): each throttling answer halves the rate (at most once per
// holdoff, since a whole window of answers arrives together), then the rate
// grows back linearly, reaching the ceiling after about recoverTime.
//
// With no configured throughput (ceiling 0) the limiter does nothing until
// the first throttling answer; it then starts from the rate observed over
// the last second, and returns to unlimited once it has recovered to twice
// that rate.
type limiter struct {
	mu          sync.Mutex
	ceiling     float64       // configured submit_sm/s; 0 = unlimited
	rate        float64       // effective limit; 0 = unlimited
	tokens      float64       // at most 1
	last        time.Time     // last refill
	holdoff     time.Duration // minimum time between two decreases
	recoverTime time.Duration // time to grow from 0 to the target
	target      float64       // rate recovered to (ceiling, or 2× observed)
	lastDec     time.Time
	lastInc     time.Time

	obsStart time.Time // observation window for the unlimited case
	obsCount int
	observed float64

	onRate func(rate float64) // reports effective rate changes (0 = unlimited)
}

func newLimiter(ceiling float64, onRate func(float64)) *limiter {
	if ceiling < 0 {
		ceiling = 0
	}
	now := time.Now()
	l := &limiter{
		ceiling:     ceiling,
		rate:        ceiling,
		tokens:      1,
		last:        now,
		holdoff:     200 * time.Millisecond,
		recoverTime: 5 * time.Second,
		target:      ceiling,
		obsStart:    now,
		onRate:      onRate,
	}
	if onRate != nil {
		onRate(l.rate)
	}
	return l
}

// wait blocks until the bind may send one submit_sm. Waiters do not
// reserve ahead: each re-checks at most every maxNap, so a rate that
// recovers takes effect at once for those already waiting.
func (l *limiter) wait(ctx context.Context) error {
	var t *time.Timer
	for {
		l.mu.Lock()
		now := time.Now()
		if l.rate == 0 {
			l.observe(now)
			l.mu.Unlock()
			return nil
		}
		l.recover(now)
		l.refill(now)
		if l.tokens >= 1 || l.rate == 0 {
			if l.rate != 0 {
				l.tokens--
			}
			l.observe(now)
			l.mu.Unlock()
			if t != nil {
				t.Stop()
			}
			return nil
		}
		d := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
		l.mu.Unlock()
		d = max(min(d, maxNap), time.Microsecond)
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

const maxNap = 50 * time.Millisecond

// throttled records one throttling answer (ESME_RTHROTTLED, ESME_RMSGQFUL).
// It reports whether the rate was lowered.
func (l *limiter) throttled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.lastDec.IsZero() && now.Sub(l.lastDec) < l.holdoff {
		return false
	}
	if l.rate == 0 {
		obs := l.observed
		if el := now.Sub(l.obsStart).Seconds(); el > 0.05 && (obs == 0 || el >= 1) {
			obs = float64(l.obsCount) / el
		}
		if obs < 1 {
			obs = 1
		}
		l.rate = obs
		l.target = 2 * obs
		l.tokens = 0
		l.last = now
	}
	l.refill(now)
	l.rate /= 2
	if floor := l.floor(); l.rate < floor {
		l.rate = floor
	}
	if l.tokens > 0 {
		l.tokens = 0
	}
	l.lastDec, l.lastInc = now, now
	l.report()
	return true
}

// floor is the lowest rate AIMD goes down to.
func (l *limiter) floor() float64 {
	if l.target > 0 && l.target < 1 {
		return l.target
	}
	return 1
}

// recover grows the rate linearly once holdoff has passed since the last
// decrease (the holdoff itself does not count): under a continuous storm
// the rate keeps falling to the floor; when throttling stops it climbs back.
func (l *limiter) recover(now time.Time) {
	if l.lastDec.IsZero() {
		return
	}
	from := l.lastDec.Add(l.holdoff)
	if l.lastInc.After(from) {
		from = l.lastInc
	}
	el := now.Sub(from).Seconds()
	if el <= 0 {
		return
	}
	l.lastInc = now
	l.rate += l.target / l.recoverTime.Seconds() * el
	if l.rate >= l.target {
		l.rate = l.ceiling // back to the configured rate (or unlimited)
		l.target = l.ceiling
		l.lastDec = time.Time{}
	}
	l.report()
}

func (l *limiter) refill(now time.Time) {
	if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens += el * l.rate
		if l.tokens > 1 {
			l.tokens = 1
		}
	}
	l.last = now
}

// observe counts sends per second while unlimited.
func (l *limiter) observe(now time.Time) {
	l.obsCount++
	if el := now.Sub(l.obsStart); el >= time.Second {
		l.observed = float64(l.obsCount) / el.Seconds()
		l.obsCount = 0
		l.obsStart = now
	}
}

func (l *limiter) report() {
	if l.onRate != nil {
		l.onRate(l.rate)
	}
}

// effective returns the current limit (0 = unlimited).
func (l *limiter) effective() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recover(time.Now())
	return l.rate
}
