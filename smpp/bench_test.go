package smpp

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

// BenchmarkBindSubmit: one bind, no throughput cap, against the in-process
// simulator; callers submit concurrently from `window` goroutines. Reports
// submit_sm/s, the mean submit latency and the receipts handled while the
// submits ran.
//
//	plain            window 10, no receipts
//	receipts         window 10, receipts right after each submit_sm_resp, instant handler
//	slow-handler     window 50, receipts, each HandleReceipt takes ~100µs (a Redis round trip)
//	slow-batch       window 50, receipts, HandleReceipts takes ~100µs per batch + 2µs per receipt
//	loaded-handler   as slow-handler with 1ms per receipt (a loaded Redis)
//	loaded-batch     as slow-batch with 1ms per batch
func BenchmarkBindSubmit(b *testing.B) {
	const slow = 100 * time.Microsecond
	cases := []struct {
		name     string
		window   int
		receipts bool
		h        Handler
	}{
		{"plain", 10, false, &countHandler{}},
		{"receipts", 10, true, &countHandler{}},
		{"slow-handler", 50, true, &countHandler{delay: slow}},
		{"slow-batch", 50, true, &batchCountHandler{countHandler{delay: slow, perItem: 2 * time.Microsecond}}},
		{"loaded-handler", 50, true, &countHandler{delay: 10 * slow}},
		{"loaded-batch", 50, true, &batchCountHandler{countHandler{delay: 10 * slow, perItem: 2 * time.Microsecond}}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			benchSubmit(b, tc.window, tc.receipts, tc.h)
		})
	}
}

func benchSubmit(b *testing.B, window int, receipts bool, h Handler) {
	sim := startSim(b, testharness.SimOptions{RecordLimit: -1, Faults: testharness.Faults{NoReceipts: !receipts}})
	bc := testBind(b, sim.Addr(), "bench-0")
	bc.Window = window
	bc.ResponseTimeout = 10 * time.Second
	reg := prometheus.NewRegistry()
	p, err := NewPool(PoolOptions{Carrier: config.Carrier{Name: "bench", Binds: []config.Bind{bc}}, Handler: h, Registerer: reg})
	require.NoError(b, err)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	waitFor(b, 3*time.Second, "a bound bind", p.Up)
	counted := h.(interface{ handled() int64 })
	s := sub("benchmark message")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	before := counted.handled()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range window {
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
	b.ReportMetric(float64(counted.handled()-before)/el.Seconds(), "receipts/s")
	b.ReportMetric(meanLatency(b, reg)*1e3, "ms/submit_sm")
}

// meanLatency is the mean of smsgate_smpp_submit_sm_duration_seconds.
func meanLatency(t testing.TB, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "smsgate_smpp_submit_sm_duration_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() == 0 {
				return 0
			}
			return h.GetSampleSum() / float64(h.GetSampleCount())
		}
	}
	return 0
}

// countHandler counts receipts; each HandleReceipt sleeps delay (standing
// in for the Redis round trips of the real handler).
type countHandler struct {
	delay   time.Duration
	perItem time.Duration // batch: added per receipt
	n       atomic.Int64
	batches atomic.Int64
}

func (h *countHandler) handled() int64 { return h.n.Load() }

func (h *countHandler) HandleReceipt(context.Context, Receipt) error {
	if h.delay > 0 {
		time.Sleep(h.delay)
	}
	h.n.Add(1)
	return nil
}

func (h *countHandler) HandleMO(context.Context, MO) error { return nil }

// batchCountHandler also implements ReceiptBatchHandler: one delay per
// batch plus perItem per receipt (a pipeline).
type batchCountHandler struct{ countHandler }

func (h *batchCountHandler) HandleReceipts(_ context.Context, rs []Receipt) []error {
	time.Sleep(h.delay + time.Duration(len(rs))*h.perItem)
	h.n.Add(int64(len(rs)))
	h.batches.Add(1)
	return make([]error, len(rs))
}
