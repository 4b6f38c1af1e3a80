package queue

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// An Enqueue with a Deadline answers by then, and a call that Redis runs
// after it stores nothing, so an error by the deadline means nothing was
// accepted.
func TestEnqueueDeadline(t *testing.T) {
	const from, to = "+15550004001", "+15557650001"
	ctx := context.Background()

	for _, be := range backends {
		t.Run("passed before it was sent/"+be.name, func(t *testing.T) {
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, from, to, "too late")
			_, err := q.Enqueue(ctx, EnqueueRequest{Msg: m, Deadline: time.Now().Add(-time.Millisecond)})
			require.ErrorIs(t, err, ErrDeadline)
			_, err = q.Get(ctx, m.ID)
			require.ErrorIs(t, err, ErrNotFound)
		})

		t.Run("a call sent again after its reply was lost/"+be.name, func(t *testing.T) {
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, from, to, "once")
			req := EnqueueRequest{Msg: m, Notice: msg(q, from, to, "notice"), MaxDepth: 2,
				Deadline: time.Now().Add(5 * time.Second)}
			first, err := q.Enqueue(ctx, req)
			require.NoError(t, err)
			require.True(t, first.NoticeQueued)
			// The same call again (as the client resends a pipeline whose
			// reply it lost): the first attempt's outcome, not an error, and
			// nothing stored twice, though the queue is now at its depth.
			again, err := q.Enqueue(ctx, req)
			require.NoError(t, err)
			require.Equal(t, first, again)
			require.Equal(t, int64(2), c.LLen(ctx, q.base(q.Bucket(from))+"q:"+from).Val())
		})
	}

	t.Run("redis stalled", func(t *testing.T) {
		srv := testharness.StartRedisServer(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		q := newQueue(t, c, "deadline:", Options{})
		enqueue(t, q, msg(q, from, to, "before the stall"), 0) // also compares the clocks
		require.True(t, q.offsetKnown.Load())

		srv.Pause()
		m := msg(q, from, to, "while redis is stalled")
		start := time.Now()
		_, err := q.Enqueue(ctx, EnqueueRequest{Msg: m, Deadline: start.Add(time.Second)})
		waited := time.Since(start)
		srv.Resume()
		require.Error(t, err)
		require.Less(t, waited, 1500*time.Millisecond, "answered by its deadline")

		// Redis then ran the call from its buffer: too late, so it stored
		// nothing, as the error told the caller.
		require.Eventually(t, func() bool { return c.Ping(ctx).Err() == nil }, 5*time.Second, 10*time.Millisecond)
		_, err = q.Get(ctx, m.ID)
		require.ErrorIs(t, err, ErrNotFound)
		require.Equal(t, int64(1), c.LLen(ctx, q.base(q.Bucket(from))+"q:"+from).Val())

		// And the queue goes on.
		_, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "after"), Deadline: time.Now().Add(time.Second)})
		require.NoError(t, err)
	})

	t.Run("waiting behind pipelines without a deadline", func(t *testing.T) {
		srv := testharness.StartRedisServer(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, ReadTimeout: 3 * time.Second})
		t.Cleanup(func() { _ = c.Close() })
		q := newQueue(t, c, "deadline2:", Options{})
		enqueue(t, q, msg(q, from, to, "before the stall"), 0)

		srv.Pause()
		// Two calls without a deadline (as keyword replies) hold both
		// pipeline slots while Redis is stalled.
		var wg sync.WaitGroup
		for i := range maxEnqueuePipelines {
			wg.Go(func() { _, _ = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, fmt.Sprint("untimed ", i))}) })
		}
		require.Eventually(t, func() bool {
			q.comb.mu.Lock()
			defer q.comb.mu.Unlock()
			return q.comb.running == maxEnqueuePipelines
		}, time.Second, time.Millisecond)
		m := msg(q, from, to, "an API call behind them")
		start := time.Now()
		_, err := q.Enqueue(ctx, EnqueueRequest{Msg: m, Deadline: start.Add(500 * time.Millisecond)})
		waited := time.Since(start)
		srv.Resume()
		wg.Wait()
		require.ErrorIs(t, err, ErrDeadline)
		require.Less(t, waited, time.Second, "answered by its deadline, not when the others gave up")
		_, err = q.Get(ctx, m.ID)
		require.ErrorIs(t, err, ErrNotFound, "never sent")
	})
}

func TestNoteRedisTime(t *testing.T) {
	q := &Queue{}
	sent := time.UnixMicro(1_000_000_000)
	for _, tc := range []struct {
		name       string
		redisNow   int64
		rtt        time.Duration
		wantOffset int64
		wantKnown  bool
	}{
		{"slow round trip: learnt, not known", 1_000_500_000, 200 * time.Millisecond, 400_000, false},
		{"fast: half the round trip each way", 1_000_500_000, 10 * time.Millisecond, 495_000, true},
		{"slow again: the known estimate stays", 2_000_000_000, time.Second, 495_000, true},
		{"Redis behind this host", 999_000_000, 2 * time.Millisecond, -1_001_000, true},
	} {
		q.noteRedisTime(tc.redisNow, sent, tc.rtt)
		require.Equal(t, tc.wantOffset, q.offset.Load(), tc.name)
		require.Equal(t, tc.wantKnown, q.offsetKnown.Load(), tc.name)
	}
}

// A call sent again after its deadline, whose first attempt ran in time,
// answers as the first attempt did: the message is stored, so it must not
// be reported late (not accepted).
func TestEnqueueResentAfterDeadline(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, "+15550004301", "+15557650301", "stored once")
			_, err := q.Enqueue(ctx, EnqueueRequest{Msg: m, Deadline: time.Now().Add(5 * time.Second)})
			require.NoError(t, err)
			require.True(t, q.offsetKnown.Load())
			// The resent script, as if it reached Redis after the deadline:
			// the queue sends it with a deadline already past in Redis's clock.
			args := []any{m.From, m.To, m.OrgID, "", "", []byte(nil), 0, int64(-1), "0", int64(0)}
			msgArgs, err := q.msgArgs(q.Bucket(m.From), m)
			require.NoError(t, err)
			args = append(append(append(args, msgArgs...), "", "", 0, 0, ""), "", "", q.nowRedis()-1_000_000)
			res, err := q.runScript(ctx, scriptEnqueue, q.buckets[q.Bucket(m.From)].keys, q.argv(q.Bucket(m.From), args)...).Slice()
			require.NoError(t, err)
			require.Equal(t, "ok", res[0], "stored by the first attempt: not late")
		})
	}
}
