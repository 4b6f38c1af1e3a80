package queue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/testharness"
)

// tripCounter counts client round trips (a pipeline is one).
type tripCounter struct{ n atomic.Int64 }

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// commandStats reads INFO commandstats: calls per command, and the server's CPU in µs.
func commandStats(tb testing.TB, c redis.UniversalClient) (map[string]int64, int64) {
	tb.Helper()
	s, err := c.Info(context.Background(), "commandstats", "cpu").Result()
	require.NoError(tb, err)
	calls := map[string]int64{}
	var cpu float64
	for _, line := range strings.Split(s, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			name, stats, _ := strings.Cut(rest, ":")
			for _, kv := range strings.Split(stats, ",") {
				if v, ok := strings.CutPrefix(kv, "calls="); ok {
					calls[name], _ = strconv.ParseInt(v, 10, 64)
				}
			}
		}
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				cpu += f
			}
		}
	}
	return calls, int64(cpu * 1e6)
}

// BenchmarkCommandsPerMessage runs the whole life of b.N messages from
// 1,000 senders (enqueue, claim, ack with a carrier id, delivery receipt)
// against a private redis-server and reports, per message, the client's
// round trips, the commands Redis executed (scripts' inner commands
// included), the scripts run, the claim probe commands and Redis CPU.
// "single" acks and applies receipts one message at a time (Ack,
// ApplyReceipt), "batch" in batches of 64 (AckMany, ApplyReceipts).
func BenchmarkCommandsPerMessage(b *testing.B) {
	for _, batch := range []bool{false, true} {
		name := "single"
		if batch {
			name = "batch"
		}
		b.Run(name, func(b *testing.B) { benchCommands(b, batch) })
	}
}

func benchCommands(b *testing.B, batch bool) {
	addr := testharness.StartRedis(b)
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	b.Cleanup(func() { _ = c.Close() })
	trips := &tripCounter{}
	c.AddHook(trips)
	q := newQueue(b, c, "bench:", Options{})
	ctx := context.Background()
	n := b.N
	froms := make([]string, 1000)
	for i := range froms {
		froms[i] = fmt.Sprintf("+1555300%04d", i)
	}
	// Warm up (scripts loaded) outside the measurement.
	_, err := q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, "+15550000000", "+1", "warm")})
	require.NoError(b, err)
	got, err := q.Claim(ctx, 1)
	require.NoError(b, err)
	require.NoError(b, q.Ack(ctx, got[0], []string{"warm"}))
	_, err = q.ApplyReceipt(ctx, Receipt{CarrierID: "warm", State: message.StatusDelivered})
	require.NoError(b, err)

	before, cpu0 := commandStats(b, c)
	trips.n.Store(0)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 { // API callers
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				_, err := q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, froms[i%1000], "+15557654321", "hi")})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	cids := make(chan string, n)
	done := 0
	for done < n {
		got, err := q.Claim(ctx, 64)
		require.NoError(b, err)
		done += len(got)
		if batch {
			items := make([]AckItem, len(got))
			for i, c := range got {
				items[i] = AckItem{Claimed: c, CarrierIDs: []string{"c" + c.Msg.ID}}
				cids <- "c" + c.Msg.ID
			}
			for i, err := range q.AckMany(ctx, items) {
				require.NoError(b, err, i)
			}
		} else {
			benchSettle(b, q, got, cids)
		}
	}
	close(cids)
	if batch {
		var rs []Receipt
		flush := func() {
			_, err := q.ApplyReceipts(ctx, rs)
			require.NoError(b, err)
			rs = rs[:0]
		}
		for cid := range cids {
			rs = append(rs, Receipt{CarrierID: cid, State: message.StatusDelivered})
			if len(rs) == 64 {
				flush()
			}
		}
		if len(rs) > 0 {
			flush()
		}
	} else {
		benchReceipts(b, q, cids)
	}
	b.StopTimer()
	after, cpu1 := commandStats(b, c)
	var total int64
	for k, v := range after {
		if k == "info" {
			continue
		}
		total += v - before[k]
	}
	per := func(v int64) float64 { return float64(v) / float64(n) }
	b.ReportMetric(per(trips.n.Load()), "trips/msg")
	b.ReportMetric(per(total), "cmds/msg")
	b.ReportMetric(per(after["evalsha"]-before["evalsha"]+after["eval"]-before["eval"]), "scripts/msg")
	b.ReportMetric(per(after["zcount"]-before["zcount"]+after["zrange"]-before["zrange"]), "probe/msg")
	b.ReportMetric(per(cpu1-cpu0), "redis-µs/msg")
}

// benchSettle acks claimed messages one by one from 8 goroutines.
func benchSettle(b *testing.B, q *Queue, got []Claimed, cids chan<- string) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(got); i += 8 {
				cid := "c" + got[i].Msg.ID
				if err := q.Ack(context.Background(), got[i], []string{cid}); err != nil {
					b.Error(err)
				}
				cids <- cid
			}
		})
	}
	wg.Wait()
}

// benchReceipts applies one receipt per carrier id from 4 goroutines.
func benchReceipts(b *testing.B, q *Queue, cids <-chan string) {
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for cid := range cids {
				if _, err := q.ApplyReceipt(context.Background(), Receipt{CarrierID: cid, State: message.StatusDelivered}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
