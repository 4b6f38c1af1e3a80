package queue

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

const realRedis = "127.0.0.1:6379"

// backend is a Redis to run a test against.
type backend struct {
	name   string
	client func(t testing.TB) redis.UniversalClient
}

func realClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: realRedis, PoolSize: 32})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("real redis on %s: %v", realRedis, err)
	}
	return c
}

func miniClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	s := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var backends = []backend{{"redis", realClient}, {"miniredis", miniClient}}

// testPrefix returns a unique key prefix and removes its keys at cleanup.
func testPrefix(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_", "{", "", "}", "").Replace(t.Name())
	p := fmt.Sprintf("test:%s:%d:", name, rand.Uint64())
	t.Cleanup(func() { cleanPrefix(t, c, p) })
	return p
}

func cleanPrefix(t testing.TB, c redis.UniversalClient, p string) {
	ctx := context.Background()
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, p+"*", 1000).Result()
		if err != nil {
			t.Logf("cleanup %s: %v", p, err)
			return
		}
		if len(keys) > 0 {
			// One DEL per key: keys of different slots in a cluster.
			pipe := c.Pipeline()
			for _, k := range keys {
				pipe.Unlink(ctx, k)
			}
			_, _ = pipe.Exec(ctx)
		}
		if next == 0 {
			return
		}
		cursor = next
	}
}

func newQueue(t testing.TB, c redis.UniversalClient, prefix string, opts Options) *Queue {
	t.Helper()
	opts.Client = c
	opts.Prefix = prefix
	q, err := New(opts)
	require.NoError(t, err)
	return q
}

// msg returns a message from "from" to "to" with an id of from's bucket.
func msg(q *Queue, from, to, text string) *message.Message {
	now := time.Now().UTC()
	return &message.Message{
		ID: q.NewMessageID(from), OrgID: "acme", From: from, To: to, Text: text,
		Kind: message.KindUser, Encoding: message.EncodingGSM7, Segments: 1,
		Characters: len(text), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
}

func enqueue(t testing.TB, q *Queue, m *message.Message, interval time.Duration) {
	t.Helper()
	_, err := q.Enqueue(context.Background(), EnqueueRequest{Msg: m, Interval: interval})
	require.NoError(t, err)
}

// streamEvent is one entry of an event stream.
type streamEvent struct {
	ID, Type, Org, Data, At string
}

func events(t testing.TB, q *Queue, from string) []streamEvent {
	t.Helper()
	key := q.base(q.Bucket(from)) + "events"
	xs, err := q.rdb.XRange(context.Background(), key, "-", "+").Result()
	require.NoError(t, err)
	out := make([]streamEvent, 0, len(xs))
	for _, x := range xs {
		s := func(k string) string { v, _ := x.Values[k].(string); return v }
		// Event id and time come from the entry's stream id (the webhook
		// derives them); the entry carries no field for either.
		require.NotContains(t, x.Values, "id")
		require.NotContains(t, x.Values, "at")
		ms, err := strconv.ParseInt(strings.SplitN(x.ID, "-", 2)[0], 10, 64)
		require.NoError(t, err)
		at := time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
		out = append(out, streamEvent{x.ID, s("type"), s("org"), s("data"), at})
	}
	return out
}

// claimAll claims until n messages arrived or the deadline passed.
func claimAll(t testing.TB, q *Queue, n int, within time.Duration) []Claimed {
	t.Helper()
	var out []Claimed
	deadline := time.Now().Add(within)
	for len(out) < n && time.Now().Before(deadline) {
		got, err := q.Claim(context.Background(), n-len(out))
		require.NoError(t, err)
		out = append(out, got...)
		if len(got) == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	return out
}
