package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/queue"
)

// BenchmarkAccept measures POST /v1/messages end to end through the handler
// (auth, decode, compliance, Enqueue on the local Redis), without the
// network stack. Run: go test -run=^$ -bench=Accept ./api
func BenchmarkAccept(b *testing.B) {
	e := newEnv(b, func(_ *Options, c *config.Config) { c.Queue.MaxPerNumber = 1 << 30 })
	h := e.srv.Handler()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // many requests in flight, as under real load
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"from":"+15550004444","to":"+1555%07d","text":"Your appointment is tomorrow at 10:00. Reply C to confirm.","client_ref":"bench"}`, i%1000)
			req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+acmeKey)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
			}
		}
	})
}

// nopQueue accepts everything without storing it: BenchmarkAcceptHandler
// uses it to measure the API's own cost per request, apart from Redis.
type nopQueue struct{ n atomic.Int64 }

func (q *nopQueue) NewMessageID(string) string                                       { return fmt.Sprint("msg_", q.n.Add(1)) }
func (q *nopQueue) BindIdempotencyKey(context.Context, string, string, string) error { return nil }
func (q *nopQueue) Replay(context.Context, string, string, string) ([]byte, bool, error) {
	return nil, false, nil
}
func (q *nopQueue) Enqueue(context.Context, queue.EnqueueRequest) (queue.EnqueueResult, error) {
	return queue.EnqueueResult{}, nil
}
func (q *nopQueue) Get(context.Context, string) (*queue.Record, error) { return nil, queue.ErrNotFound }
func (q *nopQueue) IsOptedOut(context.Context, string, string) (bool, error) {
	return false, nil
}
func (q *nopQueue) OptOut(context.Context, string, string) error      { return nil }
func (q *nopQueue) OptIn(context.Context, string, string) error       { return nil }
func (q *nopQueue) OptOuts(context.Context, string) ([]string, error) { return nil, nil }

// BenchmarkAcceptHandler is BenchmarkAccept without Redis: the CPU the API
// itself spends per accepted message (auth, decode, compliance, encode).
func BenchmarkAcceptHandler(b *testing.B) {
	srv, err := New(Options{Addr: "127.0.0.1:0", State: NewState(loadConfig(b), loadRules(b)), Queue: &nopQueue{}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	h := srv.Handler()
	body := `{"from":"+15550004444","to":"+15557654321","text":"Your appointment is tomorrow at 10:00. Reply C to confirm.","client_ref":"bench"}`
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
}
