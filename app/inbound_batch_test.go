package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
	"github.com/smsgate/smsgate/testharness"
)

// receiptHandler is an inbound handler on a queue in the shared Redis
// under a fresh prefix, with its own metrics registry.
func receiptHandler(t *testing.T) (*inbound, *queue.Queue, *redis.Client, string, *prometheus.Registry) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testharness.SharedRedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := testharness.RedisPrefix(t)
	q, err := queue.New(queue.Options{Client: rdb, Prefix: prefix, NormalizeID: smpp.NormalizeID})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	return &inbound{app: queueApp(q), log: slog.New(slog.DiscardHandler), metrics: newInboundMetrics(reg)}, q, rdb, prefix, reg
}

// batchReceiptCounts reads smsgate_inbound_receipts_total as
// "outcome/state" -> count.
func batchReceiptCounts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	counts := map[string]float64{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "smsgate_inbound_receipts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetValue())
			}
			counts[strings.Join(l, "/")] = m.GetCounter().GetValue()
		}
	}
	return counts
}

// HandleReceipts maps and counts each receipt of a batch as HandleReceipt
// does (applied, duplicate, unmatched, held, ignored), each with its own
// result.
func TestHandleReceiptsBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared Redis")
	}
	ctx := context.Background()
	h, q, rdb, prefix, reg := receiptHandler(t)
	var err error

	const from = "+15550001111"
	var ids []string
	for i, cid := range []string{"a00000000beef", "a00000000f00d"} {
		m := &message.Message{ID: q.NewMessageID(from), From: from, To: fmt.Sprintf("+155576543%02d", i), Text: "hi", Segments: 1, Kind: message.KindUser}
		_, err = q.Enqueue(ctx, queue.EnqueueRequest{Msg: m})
		require.NoError(t, err)
		got, err := q.Claim(ctx, 1)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.NoError(t, q.Ack(ctx, got[0], []string{cid}))
		ids = append(ids, got[0].Msg.ID)
	}
	// The second message vanishes (expired, deleted).
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*m:"+ids[1], 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	require.Len(t, keys, 1)
	require.NoError(t, rdb.Del(ctx, keys...).Err())

	errs := h.HandleReceipts(ctx, []smpp.Receipt{
		{CarrierMessageID: "A00000000BEEF", State: "DELIVRD"},             // applied
		{CarrierMessageID: "a00000000cafe", State: "ENROUTE"},             // ignored
		{CarrierMessageID: "a00000000f00d", State: "DELIVRD"},             // unmatched
		{CarrierMessageID: "a00000000cafe", State: "UNDELIV", Err: "001"}, // held: no ack indexed it
		{CarrierMessageID: "a00000000beef", State: "DELIVRD"},             // duplicate
	})
	require.Equal(t, make([]error, 5), errs)
	require.Equal(t, map[string]float64{
		"applied/DELIVRD": 1, "ignored/ENROUTE": 1, "unmatched/DELIVRD": 1, "held/UNDELIV": 1, "duplicate/DELIVRD": 1,
	}, batchReceiptCounts(t, reg))
	rec, err := q.Get(ctx, ids[0])
	require.NoError(t, err)
	require.Equal(t, message.StatusDelivered, rec.Status)

	require.Empty(t, h.HandleReceipts(ctx, nil))
	require.Equal(t, []error{nil}, h.HandleReceipts(ctx, []smpp.Receipt{{CarrierMessageID: "x", State: "ACCEPTD"}}))
}

// With storage down every final receipt of the batch fails on its own (the
// carrier delivers it again); intermediate ones are still acknowledged.
func TestHandleReceiptsStorageDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	q, err := queue.New(queue.Options{Client: rdb, Prefix: "test:down:", NormalizeID: smpp.NormalizeID})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	h := &inbound{app: queueApp(q), log: slog.New(slog.DiscardHandler), metrics: newInboundMetrics(reg)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := h.HandleReceipts(ctx, []smpp.Receipt{
		{CarrierMessageID: "a1", State: "DELIVRD"},
		{CarrierMessageID: "a2", State: "ENROUTE"},
		{CarrierMessageID: "a3", State: "EXPIRED"},
	})
	require.Len(t, errs, 3)
	require.ErrorContains(t, errs[0], "apply receipt")
	require.NoError(t, errs[1])
	require.ErrorContains(t, errs[2], "apply receipt")
	require.Equal(t, map[string]float64{"error/DELIVRD": 1, "ignored/ENROUTE": 1, "error/EXPIRED": 1}, batchReceiptCounts(t, reg))
}

// queueApp is an App with only a queue and an empty configuration, for the
// inbound handler's tests.
func queueApp(q *queue.Queue) *App {
	a := &App{queue: q}
	a.state.Store(&state{cfg: &config.Config{}})
	return a
}
