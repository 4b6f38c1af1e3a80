package smpp

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

// BenchmarkBindSubmit: one bind, window 10, no throughput cap, against the
// in-process simulator; callers submit concurrently from `window`
// goroutines. Reports submit_sm/s.
func BenchmarkBindSubmit(b *testing.B) {
	sim := startSim(b, testharness.SimOptions{RecordLimit: -1, Faults: testharness.Faults{NoReceipts: true}})
	bc := testBind(b, sim.Addr(), "bench-0")
	bc.ResponseTimeout = 10 * time.Second
	p := newTestPool(b, config.Carrier{Name: "bench", Binds: []config.Bind{bc}})
	waitUp(b, p)
	s := sub("benchmark message")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range bc.Window {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if p.Submit(context.Background(), s).Outcome != OK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d submits failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "submit_sm/s")
}
