package queue

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

// BenchmarkEnqueue measures Enqueue from 8 concurrent callers over 100 senders.
func BenchmarkEnqueue(b *testing.B) {
	c := realClient(b)
	q := newQueue(b, c, testPrefix(b, c), Options{})
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			from := fmt.Sprintf("+1555000%04d", i%100)
			if _, err := q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, "+15557654321", "hello"), Interval: time.Second}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkClaimAck measures claim + ack of messages from 1,000 senders
// without a rate limit, by two concurrent claimers of up to 100 messages
// each acking with 8 goroutines (as a dispatcher with a window would).
func BenchmarkClaimAck(b *testing.B) {
	c := realClient(b)
	q := newQueue(b, c, testPrefix(b, c), Options{})
	froms := make([]string, 1000)
	for i := range froms {
		froms[i] = fmt.Sprintf("+1555200%04d", i)
	}
	bulkSenders(b, q, froms, b.N/len(froms)+1, 0)
	ctx := context.Background()
	var done atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for done.Load() < int64(b.N) {
				got, err := q.Claim(ctx, 100)
				if err != nil {
					b.Error(err)
					return
				}
				var acks sync.WaitGroup
				for w := range 8 {
					acks.Go(func() {
						for i := w; i < len(got); i += 8 {
							if err := q.Ack(ctx, got[i], []string{"c"}); err != nil {
								b.Error(err)
							}
						}
					})
				}
				acks.Wait()
				done.Add(int64(len(got)))
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkClaim measures Claim(100) with 1,000 and 100,000 active senders
// (each with a message due); the cost per claimed message must not grow
// with the number of senders. Claimed messages are put back (untimed).
func BenchmarkClaim(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		c := realClient(b)
		q := newQueue(b, c, testPrefix(b, c), Options{})
		froms := make([]string, n)
		for i := range froms {
			froms[i] = fmt.Sprintf("+1556%07d", i)
		}
		bulkSenders(b, q, froms, 1, 0)
		b.Run(fmt.Sprintf("senders=%d", n), func(b *testing.B) {
			ctx := context.Background()
			claimed := 0
			var timed time.Duration
			for b.Loop() {
				start := time.Now()
				got, err := q.Claim(ctx, 100)
				timed += time.Since(start)
				require.NoError(b, err)
				require.Len(b, got, 100)
				claimed += len(got)
				b.StopTimer()
				putBack(b, q, got)
				b.StartTimer()
			}
			b.ReportMetric(float64(timed.Nanoseconds())/float64(claimed), "ns/msg")
		})
	}
}

// putBack returns claimed messages to their queues concurrently.
func putBack(b *testing.B, q *Queue, got []Claimed) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(got); i += 8 {
				if err := q.Retry(context.Background(), got[i], 0, message.Error{Code: "bench"}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
