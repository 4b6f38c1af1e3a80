package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

// gateHook records the size of every EVALSHA pipeline and holds the first `hold`
// pipelines until release is closed.
type gateHook struct {
	mu      sync.Mutex
	sizes   []int
	hold    int
	release chan struct{}
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 || cmds[0].Name() != "evalsha" {
			return next(ctx, cmds) // the client's own (connection set-up)
		}
		h.mu.Lock()
		h.sizes = append(h.sizes, len(cmds))
		wait := len(h.sizes) <= h.hold
		h.mu.Unlock()
		if wait {
			<-h.release
		}
		return next(ctx, cmds)
	}
}

func (h *gateHook) seen() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.sizes...)
}

// TestEnqueueCombines: while both pipeline slots are busy, later Enqueue
// calls wait and then go out together in one pipeline; every call gets its
// own reply and every message is queued once.
func TestEnqueueCombines(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: realRedis, PoolSize: 32})
	t.Cleanup(func() { _ = c.Close() })
	hook := &gateHook{hold: maxEnqueuePipelines, release: make(chan struct{})}
	c.AddHook(hook)
	q := newQueue(t, c, testPrefix(t, c), Options{})
	ctx := context.Background()
	// Load the script first, so no NOSCRIPT retry runs outside a pipeline.
	require.NoError(t, q.pick(scriptEnqueue).Load(ctx, c).Err())

	const waiting = 10
	total := maxEnqueuePipelines + waiting
	errs := make(chan error, total)
	ids := make(chan string, total)
	send := func(i int) {
		m := msg(q, fmt.Sprintf("+1555200%04d", i), "+15557654321", "hi")
		_, err := q.Enqueue(ctx, EnqueueRequest{Msg: m})
		errs <- err
		ids <- m.ID
	}
	for i := range maxEnqueuePipelines {
		go send(i)
	}
	require.Eventually(t, func() bool { return len(hook.seen()) == maxEnqueuePipelines }, 5*time.Second, time.Millisecond)
	for i := maxEnqueuePipelines; i < total; i++ {
		go send(i)
	}
	require.Eventually(t, func() bool {
		q.comb.mu.Lock()
		defer q.comb.mu.Unlock()
		return len(q.comb.pending) == waiting
	}, 5*time.Second, time.Millisecond)
	close(hook.release)

	got := map[string]bool{}
	for range total {
		require.NoError(t, <-errs)
		got[<-ids] = true
	}
	require.Len(t, got, total)
	// The two held pipelines carried one call each; when they return, each
	// hands its slot to a waiting call, which takes every call waiting then:
	// the ten go out in at most two pipelines (one when the first new leader
	// takes them all before the second slot is handed on).
	sizes := hook.seen()
	require.Equal(t, []int{1, 1}, sizes[:2])
	rest := sizes[2:]
	require.LessOrEqual(t, len(rest), maxEnqueuePipelines, "sizes %v", sizes)
	sum := 0
	for _, n := range rest {
		sum += n
	}
	require.Equal(t, waiting, sum, "sizes %v", sizes)
	for id := range got {
		rec, err := q.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, message.StatusQueued, rec.Status)
	}
	q.comb.mu.Lock()
	defer q.comb.mu.Unlock()
	require.Zero(t, q.comb.running, "every slot given back")
	require.Empty(t, q.comb.pending)
}

// TestEnqueueCombinedErrors: each call of a combined pipeline gets its own
// outcome (an opted-out recipient fails only its own call).
func TestEnqueueCombinedErrors(t *testing.T) {
	c := realClient(t)
	q := newQueue(t, c, testPrefix(t, c), Options{})
	ctx := context.Background()
	from := "+15550003333"
	require.NoError(t, q.OptOut(ctx, from, "+15550000000"))
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Go(func() {
			to := fmt.Sprintf("+1555000%04d", i)
			if i%8 == 0 {
				to = "+15550000000"
			}
			_, errs[i] = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "x"), CheckOptOut: true})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%8 == 0 {
			require.ErrorIs(t, err, ErrOptedOut, "call %d", i)
		} else {
			require.NoError(t, err, "call %d", i)
		}
	}
	n, err := c.LLen(ctx, q.base(q.Bucket(from))+"q:"+from).Result()
	require.NoError(t, err)
	require.EqualValues(t, 56, n)
}
