package webhook

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestOpenForBounds: a circuit opens for backoff(streak) with equal jitter,
// from half (rounded up) to all of it, at both ends of the random source.
func TestOpenForBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		randN    func(time.Duration) time.Duration
		want     func(b time.Duration) time.Duration
	}{
		{"lowest", time.Second, 4 * time.Second, func(time.Duration) time.Duration { return 0 },
			func(b time.Duration) time.Duration { return b - b/2 }},
		{"highest", time.Second, 4 * time.Second, func(n time.Duration) time.Duration { return n - 1 },
			func(b time.Duration) time.Duration { return b }},
		{"odd nanoseconds lowest", 3, 7, func(time.Duration) time.Duration { return 0 },
			func(b time.Duration) time.Duration { return b - b/2 }},
		{"one nanosecond", 1, 1, func(n time.Duration) time.Duration { return n - 1 },
			func(time.Duration) time.Duration { return 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Dispatcher{opts: Options{MinBackoff: tc.min, MaxBackoff: tc.max}, randN: tc.randN}
			for streak := 1; streak <= 6; streak++ {
				b := d.backoff(streak)
				got := d.openFor(streak)
				require.Equal(t, tc.want(b), got, "streak %d", streak)
				require.GreaterOrEqual(t, 2*got, b)
				require.LessOrEqual(t, got, b)
			}
		})
	}
}

// TestCircuitOpenJitter: each failure of a failing endpoint opens its circuit
// for a time within [backoff/2, backoff] of its failure streak that varies
// from one opening to the next. The audit saw retries to a failing endpoint
// exactly 1, 2, 4, 4, 4 s apart (min_backoff 1s, max_backoff 4s): the circuit
// opened for exactly backoff(streak), hiding the per-event jitter.
func TestCircuitOpenJitter(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}) // not used: New does not connect
	t.Cleanup(func() { _ = c.Close() })
	for _, tc := range []struct {
		name  string
		randN func(time.Duration) time.Duration // nil: the dispatcher's own
	}{
		{"seeded", seededRandN(1, 2)},
		{"default", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Options{Client: c, Streams: []string{"{b0}:events"}, Resolver: &orgs{},
				MinBackoff: time.Second, MaxBackoff: 4 * time.Second, PerEndpoint: 1})
			require.NoError(t, err)
			if tc.randN != nil {
				d.randN = tc.randN
			}
			const endpoints, streaks = 40, 6
			opens := make([][]time.Duration, streaks+1) // by streak
			now := time.Unix(1_700_000_000, 0)
			for k := range endpoints {
				ep := fmt.Sprintf("ep%d", k)
				for streak := 1; streak <= streaks; streak++ {
					j := &job{ep: ep, stream: "s", entry: fmt.Sprintf("%d-%d", k, streak)}
					added, _ := d.s.addFresh(j, now, false)
					require.True(t, added)
					_, got := d.s.next(context.Background())
					require.Same(t, j, got)
					d.s.finishAttempt(j, false, now)
					d.s.forget(j)
					gotStreak, until := d.s.circuit(ep)
					require.Equal(t, streak, gotStreak)
					open, b := until.Sub(now), d.backoff(streak)
					require.GreaterOrEqual(t, open, b/2, "streak %d", streak)
					require.LessOrEqual(t, open, b, "streak %d", streak)
					opens[streak] = append(opens[streak], open)
					now = until // the next probe, when the circuit closes
				}
			}
			for streak := 1; streak <= streaks; streak++ {
				distinct := map[time.Duration]bool{}
				lo, hi := opens[streak][0], opens[streak][0]
				for _, o := range opens[streak] {
					distinct[o] = true
					lo, hi = min(lo, o), max(hi, o)
				}
				require.Greater(t, len(distinct), endpoints*9/10, "streak %d: open times must vary: %v", streak, opens[streak])
				require.Greater(t, hi-lo, d.backoff(streak)/4, "streak %d: open times spread over the range", streak)
			}
			// At the cap, successive openings of one endpoint differ too.
			var capped []time.Duration
			for streak := 3; streak <= streaks; streak++ {
				capped = append(capped, opens[streak][0])
			}
			require.NotEqual(t, capped[0], capped[1], "openings at max_backoff: %v", capped)
		})
	}
}

// seededRandN is a deterministic jitter source for one goroutine.
func seededRandN(s1, s2 uint64) func(time.Duration) time.Duration {
	r := rand.New(rand.NewPCG(s1, s2))
	return func(n time.Duration) time.Duration { return time.Duration(r.Int64N(int64(n))) }
}
