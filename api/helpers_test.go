package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/compliance"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/queue"
)

// Credentials of testdata/smsgate.toml.
const (
	acmeKey    = "acme-key"
	acmeKey2   = "acme-key-2"
	betaKey    = "beta-key"
	adminToken = "admin-token"

	acmeNum       = "+15550001111"
	acmeUnreg     = "+15550002222"
	acmeTollFree  = "+18005550000"
	acmeShortCode = "+15550004444"
	betaNum       = "+15550003333"
)

func loadConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Load("testdata/smsgate.toml")
	require.NoError(t, err)
	return cfg
}

func loadRules(t testing.TB) *compliance.Rules {
	t.Helper()
	b, err := os.ReadFile("testdata/rules.toml")
	require.NoError(t, err)
	r, err := compliance.ParseRules(b)
	require.NoError(t, err)
	return r
}

// newQueue returns a queue on the local Redis under a unique prefix whose
// keys are deleted at cleanup. addr "" means 127.0.0.1:6379.
func newQueue(t testing.TB, addr string) (*queue.Queue, *redis.Client) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := strings.NewReplacer("/", "_", " ", "_", "{", "", "}", "").Replace(t.Name())
	prefix := "test:api:" + name + ":" + hex.EncodeToString(rnd[:]) + ":"
	q, err := queue.New(queue.Options{Client: rdb, Prefix: prefix, Buckets: 4, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		if addr == "127.0.0.1:6379" {
			iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
			var keys []string
			for iter.Next(ctx) {
				keys = append(keys, iter.Val())
			}
			if len(keys) > 0 {
				rdb.Del(ctx, keys...)
			}
		}
		_ = rdb.Close()
	})
	return q, rdb
}

type fakeDeadLetters struct {
	mu          sync.Mutex
	list        []DeadLetter
	redelivered []string
}

func (f *fakeDeadLetters) DeadLetters(_ context.Context, limit int) ([]DeadLetter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if limit > len(f.list) {
		limit = len(f.list)
	}
	return append([]DeadLetter(nil), f.list[:limit]...), nil
}

func (f *fakeDeadLetters) Redeliver(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range f.list {
		if d.EventID == id {
			f.list = append(f.list[:i], f.list[i+1:]...)
			f.redelivered = append(f.redelivered, id)
			return nil
		}
	}
	return ErrNotFound
}

type env struct {
	t       testing.TB
	srv     *Server
	q       *queue.Queue
	rdb     *redis.Client
	base    string
	reg     *prometheus.Registry
	dead    *fakeDeadLetters
	readyMu sync.Mutex
	readyEr error
	reloads int
}

type envOption func(*Options, *config.Config)

// newEnv starts a Server on 127.0.0.1:0 over a real queue.
func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	return newEnvRedis(t, "", opts...)
}

func newEnvRedis(t testing.TB, redisAddr string, opts ...envOption) *env {
	t.Helper()
	cfg := loadConfig(t)
	q, rdb := newQueue(t, redisAddr)
	e := &env{t: t, q: q, rdb: rdb, reg: prometheus.NewRegistry(), dead: &fakeDeadLetters{}}
	o := Options{
		Addr:        "127.0.0.1:0",
		Queue:       q,
		DeadLetters: e.dead,
		Registerer:  e.reg,
		Ready: func(context.Context) error {
			e.readyMu.Lock()
			defer e.readyMu.Unlock()
			return e.readyEr
		},
	}
	for _, f := range opts {
		f(&o, cfg)
	}
	if o.State == nil {
		o.State = NewState(cfg, loadRules(t))
	}
	srv, err := New(o)
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	e.srv = srv
	e.base = "http://" + srv.Addr()
	return e
}

type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r reply) errCode() string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (r reply) errField(name string) string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e[name].(string)
	return s
}

// do sends a request; key "" sends no Authorization header.
func (e *env) do(method, path, key, body string, headers ...string) reply {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	require.NoError(e.t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	out := reply{status: res.StatusCode, header: res.Header, raw: raw}
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
		require.NoError(e.t, json.Unmarshal(raw, &out.body), "body %s", raw)
	}
	return out
}

// send posts a message body as acme.
func (e *env) send(key, body string, headers ...string) reply {
	e.t.Helper()
	return e.do(http.MethodPost, "/v1/messages", key, body, headers...)
}

// jsonBody marshals v.
func jsonBody(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// counterValue reads a counter without the testutil package.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
