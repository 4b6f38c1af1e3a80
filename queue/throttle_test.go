package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type claimRecord struct {
	from   string
	seq    int
	segs   int
	at     time.Time // when Claim returned
	called time.Time // when Claim was called
}

// runClaimers runs claimers (one goroutine per queue) that claim and ack at
// once until stop is closed, recording every claim.
func runClaimers(t *testing.T, qs []*Queue, max int, stop <-chan struct{}) func() []claimRecord {
	var mu sync.Mutex
	var recs []claimRecord
	var wg sync.WaitGroup
	for _, q := range qs {
		wg.Go(func() {
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				before := time.Now()
				got, err := q.Claim(ctx, max)
				if err != nil {
					t.Error(err)
					return
				}
				now := time.Now()
				mu.Lock()
				for _, c := range got {
					seq, _ := strconv.Atoi(c.Msg.Text)
					recs = append(recs, claimRecord{c.Msg.From, seq, c.Msg.Segments, now, before})
				}
				mu.Unlock()
				for _, c := range got {
					if err := q.Ack(ctx, c, nil); err != nil {
						t.Error(err)
						return
					}
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	return func() []claimRecord {
		wg.Wait()
		return recs
	}
}

func TestThrottleAccuracy(t *testing.T) {
	c := realClient(t)
	prefix := testPrefix(t, c)
	qs := []*Queue{newQueue(t, c, prefix, Options{}), newQueue(t, c, prefix, Options{})}
	type number struct {
		from    string
		rate    float64
		backlog int
		segs    int
	}
	numbers := []number{
		{"+15550000001", 1, 10, 1}, {"+15550000002", 1, 10, 1}, {"+15550000003", 1, 10, 1},
		{"+18005550001", 3, 20, 1}, {"+18005550002", 3, 20, 2},
		{"12345", 100, 400, 1},
	}
	var wg sync.WaitGroup
	for _, n := range numbers {
		wg.Go(func() {
			for i := range n.backlog {
				m := msg(qs[0], n.from, "+15557654321", strconv.Itoa(i))
				m.Segments = n.segs
				enqueue(t, qs[0], m, time.Duration(float64(time.Second)/n.rate))
			}
		})
	}
	wg.Wait()

	const run = 3 * time.Second
	stop := make(chan struct{})
	wait := runClaimers(t, qs, 20, stop)
	time.Sleep(run)
	close(stop)
	recs := wait()

	for _, n := range numbers {
		var mine []claimRecord
		for _, r := range recs {
			if r.from == n.from {
				mine = append(mine, r)
			}
		}
		slices.SortStableFunc(mine, func(a, b claimRecord) int { return a.at.Compare(b.at) })
		require.NotEmpty(t, mine, n.from)
		for i := range mine {
			require.Equal(t, i, mine[i].seq, "%s: FIFO order", n.from)
			segs := 0
			// Claim j happened within a second after claim i for sure when it
			// returned less than a second after claim i was called (the
			// claim times are only known to lie within their calls).
			for j := i; j < len(mine) && mine[j].at.Sub(mine[i].called) < time.Second; j++ {
				segs += mine[j].segs
			}
			require.LessOrEqual(t, float64(segs), n.rate+float64(n.segs),
				"%s: %d segments in the second after claim %d", n.from, segs, i)
		}
		if n.rate == 100 {
			span := mine[len(mine)-1].at.Sub(mine[0].at).Seconds()
			got := float64(len(mine)-1) / span
			t.Logf("%s: %d claims, %.1f segments/s", n.from, len(mine), got)
			require.GreaterOrEqual(t, got, 95.0, "short code throughput")
		} else {
			// Started at once, so within the run it sends about rate × run.
			want := int(n.rate*run.Seconds()/float64(n.segs)) + 1
			require.InDelta(t, want, len(mine), 1.5, "%s claims", n.from)
		}
	}
}

func TestFairness(t *testing.T) {
	c := realClient(t)
	prefix := testPrefix(t, c)
	q := newQueue(t, c, prefix, Options{})
	ctx := context.Background()
	big := "+15550009999"
	bulk(t, q, big, 5000, time.Second)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < 1000; i += 4 {
				from := fmt.Sprintf("+1555100%04d", i)
				enqueue(t, q, msg(q, from, "+15557654321", "0"), time.Second)
			}
		})
	}
	wg.Wait()
	start := time.Now()
	seen := map[string]bool{}
	for len(seen) < 1000 && time.Since(start) < 2*time.Second {
		got, err := q.Claim(ctx, 100)
		require.NoError(t, err)
		for _, cl := range got {
			if cl.Msg.From != big {
				seen[cl.Msg.From] = true
			}
			require.NoError(t, q.Ack(ctx, cl, nil))
		}
		if len(got) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	t.Logf("1000 single-message numbers claimed in %v", time.Since(start))
	require.Len(t, seen, 1000, "within 2s")
}

// bulk queues n messages from one sender in pipelines of enqueue scripts.
func bulk(t testing.TB, q *Queue, from string, n int, interval time.Duration) {
	t.Helper()
	bulkSenders(t, q, []string{from}, n, interval)
}

// bulkSenders queues n messages from each sender, pipelined.
func bulkSenders(t testing.TB, q *Queue, froms []string, n int, interval time.Duration) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, q.pick(scriptEnqueue).Load(ctx, q.rdb).Err())
	pipe := q.rdb.Pipeline()
	flush := func() {
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)
	}
	for i := range n {
		for _, from := range froms {
			m := msg(q, from, "+15557654321", strconv.Itoa(i))
			b := q.Bucket(from)
			args, err := q.msgArgs(b, m)
			require.NoError(t, err)
			a := []any{m.From, m.To, m.OrgID, "", "", "", 0, us(interval), "0", 0}
			a = append(append(a, args...), "", "", 0, 0, "", "")
			q.pick(scriptEnqueue).EvalSha(ctx, pipe, []string{q.base(b) + "ready"}, q.argv(b, a)...)
			if pipe.Len() >= 500 {
				flush()
			}
		}
	}
	flush()
}
