package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/testharness"
)

// TestCluster: events the queue writes on a 3-master Redis Cluster (one
// stream per bucket, buckets on every master) reach the endpoint through two
// dispatchers sharing the consumer group, including events whose first
// attempt fails (the retry set on the cluster), and nothing stays pending.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Redis Cluster")
	}
	cl := testharness.StartCluster(t, 3, 0)
	c := cl.Client()
	ctx := context.Background()
	prefix := "test:webhook:"
	q, err := queue.New(queue.Options{Client: c, Prefix: prefix, Buckets: 16})
	require.NoError(t, err)

	// Settle messages from senders spread over every bucket: each Ack
	// appends a message.status event to its bucket's stream.
	const senders = 48
	want := map[string]bool{} // message ids
	for i := range senders {
		from := "+1555200" + strconv.Itoa(1000+i)
		now := time.Now().UTC()
		m := &message.Message{ID: q.NewMessageID(from), OrgID: "acme", From: from, To: "+15557654321", Text: "hi",
			Kind: message.KindUser, Encoding: message.EncodingGSM7, Segments: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		_, err := q.Enqueue(ctx, queue.EnqueueRequest{Msg: m})
		require.NoError(t, err)
		want[m.ID] = true
	}
	var claimed []queue.Claimed
	require.Eventually(t, func() bool {
		got, err := q.Claim(ctx, senders)
		require.NoError(t, err)
		claimed = append(claimed, got...)
		return len(claimed) == senders
	}, 5*time.Second, 5*time.Millisecond)
	for _, cm := range claimed {
		require.NoError(t, q.Ack(ctx, cm, []string{"cid-" + cm.Msg.ID}))
	}
	masters := map[string]bool{}
	for _, st := range q.EventStreams() {
		n, err := c.XLen(ctx, st).Result()
		require.NoError(t, err)
		if n > 0 {
			m, err := c.MasterForKey(ctx, st)
			require.NoError(t, err)
			masters[m.Options().Addr] = true
		}
	}
	require.Len(t, masters, 3, "events on every master")

	s := newSink(t, "sec")
	s.set(func(id string, try int) int {
		if try == 0 && id[len(id)-1]%2 == 0 {
			return http.StatusServiceUnavailable // half the events fail once
		}
		return http.StatusOK
	})
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	for _, consumer := range []string{"c1", "c2"} {
		start(t, Options{
			Client: c, Prefix: prefix, Streams: q.EventStreams(), Resolver: r, Consumer: consumer,
			Timeout: time.Second, RetryFor: time.Minute, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
			PollInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
		})
	}
	require.Eventually(t, func() bool { return len(s.delivered()) == senders }, 15*time.Second, 20*time.Millisecond)
	var mu sync.Mutex
	seen := map[string]bool{}
	for _, d := range s.deliveries() {
		if d.status/100 != 2 {
			continue
		}
		checkSignature(t, "sec", d)
		var ev struct {
			ID        string             `json:"id"`
			Type      string             `json:"type"`
			CreatedAt time.Time          `json:"created_at"`
			Data      message.StatusData `json:"data"`
		}
		require.NoError(t, json.Unmarshal(d.body, &ev))
		require.Equal(t, d.eventID, ev.ID)
		// Entries of either format: with an id field (older queues) or
		// without, the id then derived from bucket and entry ID.
		require.Regexp(t, `^evt_(b[0-9]+_[0-9]+_[0-9]+|[0-9]+_[0-9]+_[0-9]+)$`, ev.ID)
		require.WithinDuration(t, time.Now(), ev.CreatedAt, time.Minute)
		require.Equal(t, message.EventStatus, ev.Type)
		require.Equal(t, message.StatusSent, ev.Data.Status)
		mu.Lock()
		seen[ev.Data.ID] = true
		mu.Unlock()
	}
	require.Equal(t, want, seen)
	require.Eventually(t, func() bool {
		for _, st := range q.EventStreams() {
			p, err := c.XPending(ctx, st, "webhook").Result()
			if err != nil || p.Count != 0 {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "every entry acknowledged")
}
