package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// testRedis connects to the shared Redis and returns a key prefix unique to
// the test; the test's keys are deleted at cleanup.
func testRedis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	ctx := context.Background()
	require.NoError(tb, c.Ping(ctx).Err(), "a Redis server must answer on 127.0.0.1:6379")
	prefix := fmt.Sprintf("test:%s:%08x:", strings.ReplaceAll(tb.Name(), "/", "_"), rand.Uint32())
	tb.Cleanup(func() {
		iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var ks []string
		for iter.Next(ctx) {
			ks = append(ks, iter.Val())
		}
		if len(ks) > 0 {
			c.Del(ctx, ks...)
		}
		_ = c.Close()
	})
	return c, prefix
}

// orgs is a Resolver backed by a map.
type orgs struct {
	mu sync.Mutex
	m  map[string]Endpoint
}

func (o *orgs) Endpoint(org string) (Endpoint, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.m[org]
	return e, ok
}

// delivery is one request received by a sink.
type delivery struct {
	eventID, signature, contentType string
	body                            []byte
	status                          int
	at                              time.Time // when the request arrived
}

// sink is a webhook receiver recording every request; status decides the
// answer to the n-th request (0-based) for an event id.
type sink struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	got    []delivery
	tries  map[string]int
	status func(id string, try int) int
	delay  func(id string, try int) time.Duration
}

func newSink(t testing.TB, secret string) *sink {
	s := &sink{secret: secret, tries: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("Smsgate-Event-Id")
		s.mu.Lock()
		try := s.tries[id]
		s.tries[id]++
		status, delay := http.StatusNoContent, time.Duration(0)
		if s.status != nil {
			status = s.status(id, try)
		}
		if s.delay != nil {
			delay = s.delay(id, try)
		}
		s.got = append(s.got, delivery{eventID: id, signature: r.Header.Get("Smsgate-Signature"),
			contentType: r.Header.Get("Content-Type"), body: body, status: status, at: time.Now()})
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) set(status func(string, int) int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

func (s *sink) deliveries() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.got...)
}

// delivered returns the event ids answered 2xx.
func (s *sink) delivered() map[string]bool {
	out := map[string]bool{}
	for _, d := range s.deliveries() {
		if d.status/100 == 2 {
			out[d.eventID] = true
		}
	}
	return out
}

// checkSignature recomputes the signature independently of Sign.
func checkSignature(t *testing.T, secret string, d delivery) {
	t.Helper()
	ts, v1, ok := strings.Cut(d.signature, ",v1=")
	require.True(t, ok, d.signature)
	ts = strings.TrimPrefix(ts, "t=")
	sec, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	require.InDelta(t, time.Now().Unix(), sec, 60)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(d.body)))
	require.Equal(t, hex.EncodeToString(m.Sum(nil)), v1)
}

// addEvent appends an event for org to stream, as the queue does.
func addEvent(t testing.TB, c *redis.Client, stream, id, org string) {
	t.Helper()
	require.NoError(t, c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []any{
		"id", id, "type", "message.status", "org", org,
		"data", `{"id": "msg_` + id + `", "status": "delivered", "client_ref": "r"}`,
		"at", "2025-01-02T03:04:05.123456789Z",
	}}).Err())
}

func expectedBody(id string) string {
	return `{"id":"` + id + `","type":"message.status","created_at":"2025-01-02T03:04:05.123456789Z","data":{"id": "msg_` + id + `", "status": "delivered", "client_ref": "r"}}`
}

// bucketStream is the event stream of bucket n, as queue.EventStreams names it.
func bucketStream(prefix string, n int) string { return fmt.Sprintf("%s{b%d}:events", prefix, n) }

// entryFormats are the two stream entry formats the webhook reads.
var entryFormats = []string{"old", "new"}

// events writes test events in one entry format and remembers the body each
// must be delivered with.
type events struct {
	t      testing.TB
	c      *redis.Client
	format string // "old" or "new"
	mu     sync.Mutex
	bodies map[string]string // event id -> expected body
}

func newEvents(t testing.TB, c *redis.Client, format string) *events {
	return &events{t: t, c: c, format: format, bodies: map[string]string{}}
}

var bucketStreamRE = regexp.MustCompile(`\{b([0-9]+)\}:events$`)

// add appends the event called name for org to stream and returns its event
// id. In the old format (as versions before the change queue it) the entry
// has the fields id (name), type, org, data and at. In the new one it has
// type, org and data only: the id is "evt_b<N>_<ms>_<seq>" from the bucket
// and the stream entry ID, created_at the entry ID's milliseconds.
func (e *events) add(stream, name, org string) string {
	e.t.Helper()
	data := `{"id": "msg_` + name + `", "status": "delivered", "client_ref": "r"}`
	values := []any{"type", "message.status", "org", org, "data", data}
	id, at := name, "2025-01-02T03:04:05.123456789Z"
	if e.format == "old" {
		values = append(values, "id", name, "at", at)
	}
	entryID, err := e.c.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: values}).Result()
	require.NoError(e.t, err)
	if e.format == "new" {
		bucket := bucketStreamRE.FindStringSubmatch(stream)
		require.NotNil(e.t, bucket, stream)
		ms, seq, ok := strings.Cut(entryID, "-")
		require.True(e.t, ok, entryID)
		msec, err := strconv.ParseInt(ms, 10, 64)
		require.NoError(e.t, err)
		id = "evt_b" + bucket[1] + "_" + ms + "_" + seq
		at = time.UnixMilli(msec).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	e.mu.Lock()
	e.bodies[id] = `{"id":"` + id + `","type":"message.status","created_at":"` + at + `","data":` + data + `}`
	e.mu.Unlock()
	return id
}

// body is the body event id must be delivered with.
func (e *events) body(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.bodies[id]
	require.True(e.t, ok, "unknown event id %q", id)
	return b
}

func fastOptions(c *redis.Client, prefix string, r Resolver, streams ...string) Options {
	return Options{
		Client: c, Prefix: prefix, Streams: streams, Resolver: r, Consumer: "c1",
		Timeout: time.Second, RetryFor: time.Minute, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, Registerer: prometheus.NewRegistry(),
	}
}

// start runs a dispatcher until the returned stop is called (or the test ends).
func start(t testing.TB, opts Options) (*Dispatcher, func()) {
	t.Helper()
	d, err := New(opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}

func pendingCount(t testing.TB, c *redis.Client, stream string) int64 {
	p, err := c.XPending(context.Background(), stream, "webhook").Result()
	require.NoError(t, err)
	return p.Count
}

func retryCount(t testing.TB, c *redis.Client, prefix string) int {
	ks, err := c.Keys(context.Background(), prefix+"webhook:{*}:ev").Result()
	require.NoError(t, err)
	n := 0
	for _, k := range ks {
		if strings.HasSuffix(k, "{dead}:ev") {
			continue
		}
		n += int(c.HLen(context.Background(), k).Val())
	}
	return n
}

func TestDeliverSuccess(t *testing.T) {
	for _, format := range entryFormats {
		t.Run(format, func(t *testing.T) { testDeliverSuccess(t, format) })
	}
}

func testDeliverSuccess(t *testing.T, format string) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec-a")
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL + "/events", Secret: "sec-a"}}}
	evs := newEvents(t, c, format)
	want := map[string]bool{}
	for i := range 3 {
		want[evs.add(stream, fmt.Sprintf("evt_%d", i), "acme")] = true
	}
	opts := fastOptions(c, prefix, r, stream)
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	d, _ := start(t, opts)

	require.Eventually(t, func() bool { return len(s.delivered()) == 3 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, want, s.delivered())
	for _, got := range s.deliveries() {
		require.Equal(t, "application/json", got.contentType)
		require.Equal(t, evs.body(got.eventID), string(got.body))
		var doc map[string]any
		require.NoError(t, json.Unmarshal(got.body, &doc))
		require.Equal(t, got.eventID, doc["id"])
		checkSignature(t, "sec-a", got)
	}
	require.Eventually(t, func() bool { return pendingCount(t, c, stream) == 0 }, 2*time.Second, 10*time.Millisecond)
	require.Len(t, s.deliveries(), 3)
	require.Equal(t, 3.0, counterValue(d.m.deliveries.WithLabelValues("success")))
	require.Equal(t, 0, retryCount(t, c, prefix))

	mfs, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestRetryThenSuccess(t *testing.T) {
	for _, format := range entryFormats {
		t.Run(format, func(t *testing.T) { testRetryThenSuccess(t, format) })
	}
}

func testRetryThenSuccess(t *testing.T, format string) {
	c, prefix := testRedis(t)
	streams := []string{bucketStream(prefix, 0), bucketStream(prefix, 1)} // two streams: the pipelined read
	s := newSink(t, "sec")
	s.set(func(id string, try int) int {
		if try == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	evs := newEvents(t, c, format)
	ids := []string{evs.add(streams[0], "evt_a", "acme"), evs.add(streams[1], "evt_b", "acme")}
	d, _ := start(t, fastOptions(c, prefix, r, streams...))

	require.Eventually(t, func() bool { return len(s.delivered()) == 2 }, 5*time.Second, 10*time.Millisecond)
	byID := map[string][]delivery{}
	for _, got := range s.deliveries() {
		byID[got.eventID] = append(byID[got.eventID], got)
		checkSignature(t, "sec", got)
	}
	for _, id := range ids {
		require.Len(t, byID[id], 2, id)
		require.Equal(t, http.StatusInternalServerError, byID[id][0].status)
		require.Equal(t, byID[id][0].body, byID[id][1].body, "body must be identical on retry")
		require.Equal(t, evs.body(id), string(byID[id][1].body))
	}
	require.Eventually(t, func() bool {
		return pendingCount(t, c, streams[0])+pendingCount(t, c, streams[1]) == 0 && retryCount(t, c, prefix) == 0
	}, 2*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, counterValue(d.m.deliveries.WithLabelValues("retry")), 1.0)
}

func TestTimeoutIsFailure(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec")
	s.delay = func(_ string, try int) time.Duration {
		if try == 0 {
			return 2 * time.Second
		}
		return 0
	}
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	addEvent(t, c, stream, "evt_slow", "acme")
	opts := fastOptions(c, prefix, r, stream)
	opts.Timeout = 200 * time.Millisecond
	d, _ := start(t, opts)

	require.Eventually(t, func() bool { return s.delivered()["evt_slow"] && len(s.deliveries()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, counterValue(d.m.deliveries.WithLabelValues("retry")))
	require.Equal(t, 1.0, counterValue(d.m.deliveries.WithLabelValues("success")))
}

// TestRestartDeliversEverything: events that failed (retry set), events a
// dead consumer held (claimed) and events written while no daemon ran are
// all delivered once the endpoint is back, with the ids and bodies they were
// first attempted with. With "old" entries before the restart and new ones
// after, it is also an upgrade.
func TestRestartDeliversEverything(t *testing.T) {
	for _, format := range entryFormats {
		t.Run(format, func(t *testing.T) { testRestartDeliversEverything(t, format) })
	}
}

func testRestartDeliversEverything(t *testing.T, format string) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec")
	s.set(func(string, int) int { return http.StatusServiceUnavailable }) // endpoint down
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	evs := newEvents(t, c, format)
	want := map[string]bool{}
	for i := range 20 {
		want[evs.add(stream, fmt.Sprintf("evt_%02d", i), "acme")] = true
	}
	// A consumer that read three entries and died before acknowledging them.
	ctx := context.Background()
	require.NoError(t, c.XGroupCreateMkStream(ctx, stream, "webhook", "0").Err())
	for i := range 3 {
		want[evs.add(stream, fmt.Sprintf("evt_crashed_%d", i), "acme")] = true
	}
	_, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "webhook", Consumer: "crashed", Streams: []string{stream, ">"}, Block: -1}).Result()
	require.NoError(t, err)

	opts := fastOptions(c, prefix, r, stream)
	opts.ClaimIdle = 300 * time.Millisecond
	_, stop := start(t, opts)
	require.Eventually(t, func() bool { return len(s.deliveries()) >= 20 }, 5*time.Second, 10*time.Millisecond)
	stop()
	require.Empty(t, s.delivered())
	first := map[string]string{} // event id -> body of its first attempt
	for _, got := range s.deliveries() {
		if _, ok := first[got.eventID]; !ok {
			first[got.eventID] = string(got.body)
		}
	}

	// While stopped, more events arrive (from an upgraded queue: new
	// format) and the endpoint comes back.
	evs.format = "new"
	for i := range 5 {
		want[evs.add(stream, fmt.Sprintf("evt_late_%d", i), "acme")] = true
	}
	s.set(func(string, int) int { return http.StatusOK })
	opts.Consumer = "c2" // a new process, a new name
	opts.Registerer = prometheus.NewRegistry()
	start(t, opts)

	require.Eventually(t, func() bool { return len(s.delivered()) == len(want) }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, want, s.delivered())
	for _, got := range s.deliveries() {
		checkSignature(t, "sec", got)
		if b, ok := first[got.eventID]; ok {
			require.Equal(t, b, string(got.body), "body changed between attempts")
		}
		require.Equal(t, evs.body(got.eventID), string(got.body))
	}
	require.Eventually(t, func() bool { return pendingCount(t, c, stream) == 0 && retryCount(t, c, prefix) == 0 },
		5*time.Second, 20*time.Millisecond)
}

// TestRedeliveredEntryKeepsID: a stream entry read again after it was
// delivered (its XACK lost, here: the group rewound) is sent by another
// daemon with the same event id and body, so receivers de-duplicate it.
func TestRedeliveredEntryKeepsID(t *testing.T) {
	for _, format := range entryFormats {
		t.Run(format, func(t *testing.T) {
			c, prefix := testRedis(t)
			streams := []string{bucketStream(prefix, 4), bucketStream(prefix, 5)}
			s := newSink(t, "sec")
			r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
			evs := newEvents(t, c, format)
			want := map[string]bool{}
			for i := range 4 {
				want[evs.add(streams[i%2], fmt.Sprintf("evt_%d", i), "acme")] = true
			}
			opts := fastOptions(c, prefix, r, streams...)
			_, stop := start(t, opts)
			require.Eventually(t, func() bool { return len(s.delivered()) == 4 }, 5*time.Second, 10*time.Millisecond)
			stop()
			for _, st := range streams {
				require.Eventually(t, func() bool { return pendingCount(t, c, st) == 0 }, 2*time.Second, 10*time.Millisecond)
				require.NoError(t, c.XGroupSetID(context.Background(), st, "webhook", "0").Err())
			}
			opts.Consumer, opts.Registerer = "c2", prometheus.NewRegistry()
			start(t, opts)
			require.Eventually(t, func() bool { return len(s.deliveries()) == 8 }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, want, s.delivered())
			n := map[string]int{}
			for _, got := range s.deliveries() {
				n[got.eventID]++
				require.Equal(t, evs.body(got.eventID), string(got.body))
			}
			for id := range want {
				require.Equal(t, 2, n[id], id)
			}
		})
	}
}

func TestDeadLetterAndRedeliver(t *testing.T) {
	for _, format := range entryFormats {
		t.Run(format, func(t *testing.T) { testDeadLetterAndRedeliver(t, format) })
	}
}

func testDeadLetterAndRedeliver(t *testing.T, format string) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 2)
	s := newSink(t, "sec")
	s.set(func(string, int) int { return http.StatusInternalServerError })
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	evs := newEvents(t, c, format)
	id := evs.add(stream, "evt_dead", "acme")
	opts := fastOptions(c, prefix, r, stream)
	opts.RetryFor = 300 * time.Millisecond
	d, _ := start(t, opts)
	ctx := context.Background()

	var dl []DeadLetter
	require.Eventually(t, func() bool {
		var err error
		dl, err = d.DeadLetters(ctx, 10)
		require.NoError(t, err)
		return len(dl) == 1
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, id, dl[0].EventID)
	require.Equal(t, "acme", dl[0].Org)
	require.Equal(t, s.srv.URL, dl[0].URL)
	require.Equal(t, evs.body(id), string(dl[0].Body))
	require.GreaterOrEqual(t, dl[0].Attempts, 2)
	require.Contains(t, dl[0].LastError, "500")
	require.GreaterOrEqual(t, dl[0].DeadAt.Sub(dl[0].FirstAttemptAt), 300*time.Millisecond)
	require.Eventually(t, func() bool { return pendingCount(t, c, stream) == 0 && retryCount(t, c, prefix) == 0 },
		2*time.Second, 10*time.Millisecond)
	attempts := len(s.deliveries())
	require.Equal(t, dl[0].Attempts, attempts)

	require.ErrorIs(t, d.Redeliver(ctx, "evt_nope"), ErrNotFound)
	s.set(func(string, int) int { return http.StatusOK })
	require.NoError(t, d.Redeliver(ctx, id))
	require.Eventually(t, func() bool { return s.delivered()[id] }, 5*time.Second, 10*time.Millisecond)
	last := s.deliveries()[len(s.deliveries())-1]
	require.Equal(t, evs.body(id), string(last.body))
	checkSignature(t, "sec", last)
	dl, err := d.DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, dl)
	require.Eventually(t, func() bool { return retryCount(t, c, prefix) == 0 }, 2*time.Second, 10*time.Millisecond)
}

func TestNoEndpointIsDeadLettered(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	r := &orgs{m: map[string]Endpoint{}}
	addEvent(t, c, stream, "evt_orphan", "ghost")
	d, _ := start(t, fastOptions(c, prefix, r, stream))
	ctx := context.Background()

	require.Eventually(t, func() bool {
		dl, err := d.DeadLetters(ctx, 10)
		require.NoError(t, err)
		return len(dl) == 1 && dl[0].LastError == "no webhook configured" && dl[0].EventID == "evt_orphan"
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return pendingCount(t, c, stream) == 0 }, 2*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, counterValue(d.m.deliveries.WithLabelValues("no_endpoint")))
	require.ErrorIs(t, d.Redeliver(ctx, "evt_orphan"), ErrNoEndpoint)

	// Once the org has a webhook, the operator redelivers it.
	s := newSink(t, "sec")
	r.mu.Lock()
	r.m["ghost"] = Endpoint{URL: s.srv.URL, Secret: "sec"}
	r.mu.Unlock()
	require.NoError(t, d.Redeliver(ctx, "evt_orphan"))
	require.Eventually(t, func() bool { return s.delivered()["evt_orphan"] }, 5*time.Second, 10*time.Millisecond)
}

func TestFairness(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	dead := newSink(t, "x")
	dead.delay = func(string, int) time.Duration { return 10 * time.Second } // never answers in time
	live := newSink(t, "y")
	r := &orgs{m: map[string]Endpoint{
		"deadorg": {URL: dead.srv.URL, Secret: "x"},
		"liveorg": {URL: live.srv.URL, Secret: "y"},
	}}
	for i := range 500 {
		addEvent(t, c, stream, fmt.Sprintf("evt_dead_%d", i), "deadorg")
	}
	addEvent(t, c, stream, "evt_live", "liveorg")
	opts := fastOptions(c, prefix, r, stream)
	opts.Timeout = 500 * time.Millisecond
	began := time.Now()
	start(t, opts)

	require.Eventually(t, func() bool { return live.delivered()["evt_live"] }, time.Second, 5*time.Millisecond)
	t.Logf("live event delivered after %v", time.Since(began))
	// The dead endpoint's circuit holds its retries back instead of hammering it.
	time.Sleep(700 * time.Millisecond)
	require.Less(t, len(dead.deliveries()), 30, "a dead endpoint must not be hammered")

	// A second live event still goes straight through.
	addEvent(t, c, stream, "evt_live2", "liveorg")
	t0 := time.Now()
	require.Eventually(t, func() bool { return live.delivered()["evt_live2"] }, time.Second, 5*time.Millisecond)
	t.Logf("second live event delivered after %v", time.Since(t0))
}

func TestNewValidates(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer c.Close()
	r := &orgs{}
	_, err := New(Options{Streams: []string{"{b0}:events"}, Resolver: r})
	require.ErrorContains(t, err, "Client")
	_, err = New(Options{Client: c, Resolver: r})
	require.ErrorContains(t, err, "Streams")
	_, err = New(Options{Client: c, Streams: []string{"{b0}:events"}})
	require.ErrorContains(t, err, "Resolver")
	_, err = New(Options{Client: c, Streams: []string{"{b0}:events"}, Resolver: r, MinBackoff: time.Minute, MaxBackoff: time.Second})
	require.ErrorContains(t, err, "MaxBackoff")
	_, err = New(Options{Client: c, Streams: []string{"sg:{b0}:events", "sg:events:1"}, Resolver: r})
	require.ErrorContains(t, err, `stream "sg:events:1" is not a bucket stream`)
	_, err = New(Options{Client: c, Streams: []string{"a:{b3}:events", "b:{b3}:events"}, Resolver: r})
	require.ErrorContains(t, err, "both bucket 3")
	d, err := New(Options{Client: c, Streams: []string{"{b0}:events"}, Resolver: r})
	require.NoError(t, err)
	require.Equal(t, "webhook", d.opts.Group)
	require.NotEmpty(t, d.opts.Consumer)
	require.Equal(t, 24*time.Hour, d.opts.RetryFor)
}

// BenchmarkDeliver delivers b.N events from one stream to a receiver in this
// process, with entries in the new format and the old one.
func BenchmarkDeliver(b *testing.B) {
	for _, format := range entryFormats {
		b.Run(format, func(b *testing.B) { benchDeliver(b, format) })
	}
}

func benchDeliver(b *testing.B, format string) {
	c, prefix := testRedis(b)
	stream := bucketStream(prefix, 0)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer s.Close()
	var mu sync.Mutex
	delivered := 0
	counting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Config.Handler.ServeHTTP(w, r)
		mu.Lock()
		delivered++
		mu.Unlock()
	})
	sink := httptest.NewServer(counting)
	defer sink.Close()
	r := &orgs{m: map[string]Endpoint{"acme": {URL: sink.URL, Secret: "sec"}}}
	opts := fastOptions(c, prefix, r, stream)
	d, _ := start(b, opts)

	ctx := context.Background()
	b.ResetTimer()
	p := c.Pipeline()
	for i := range b.N {
		p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: benchValues(format, i)})
		if p.Len() == 500 {
			_, _ = p.Exec(ctx)
		}
	}
	_, _ = p.Exec(ctx)
	for {
		mu.Lock()
		n := delivered
		mu.Unlock()
		if n >= b.N {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(counterValue(d.m.retries.WithLabelValues("deferred"))/float64(b.N), "deferred/op")
}

// counterValue reads a counter (prometheus/testutil would need a module not in go.mod).
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// hashTag returns the part of a key Redis Cluster hashes (its {tag} if any).
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func TestKeysShareSlot(t *testing.T) {
	k := keys{prefix: "smsgate:"}
	ep := endpointID("http://127.0.0.1:9000/events")
	require.Len(t, ep, 16)
	// The claim script and remove touch these three keys together.
	require.Equal(t, ep, hashTag(k.due(ep)))
	require.Equal(t, ep, hashTag(k.first(ep)))
	require.Equal(t, ep, hashTag(k.ev(ep)))
	// Dead letters are written in one MULTI.
	require.Equal(t, hashTag(k.dead()), hashTag(k.deadAt()))
	require.NotEqual(t, ep, endpointID("http://127.0.0.1:9001/events"))
}

func TestRunTwiceAfterStop(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec")
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	d, err := New(fastOptions(c, prefix, r, stream))
	require.NoError(t, err)
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		id := fmt.Sprintf("evt_round_%d", round)
		addEvent(t, c, stream, id, "acme")
		require.Eventually(t, func() bool { return s.delivered()[id] }, 5*time.Second, 10*time.Millisecond)
		cancel()
		require.NoError(t, <-done)
	}
}

// TestDeadEndpointBacklogExpires: a backlog for an endpoint that never
// answers 2xx ends as dead letters, while the circuit lets one probe at a time
// reach the endpoint, spaced by its openings. Events held back behind the
// circuit longer than RetryFor are still tried and retried for RetryFor from
// their first POST: the audit saw such events dead-lettered on their first
// failure (and the sweep dead-lettered others never POSTed), because their
// horizon started when they were held back.
func TestDeadEndpointBacklogExpires(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec")
	s.set(func(string, int) int { return http.StatusBadGateway })
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	const n = 20
	for i := range n {
		addEvent(t, c, stream, fmt.Sprintf("evt_%02d", i), "acme")
	}
	opts := fastOptions(c, prefix, r, stream)
	opts.PerEndpoint = 1 // no first burst of POSTs in flight together
	opts.RetryFor = 300 * time.Millisecond
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 80*time.Millisecond
	d, _ := start(t, opts)
	ctx := context.Background()

	var dls []DeadLetter
	require.Eventually(t, func() bool {
		var err error
		dls, err = d.DeadLetters(ctx, 1000)
		require.NoError(t, err)
		return len(dls) == n
	}, 15*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return pendingCount(t, c, stream) == 0 && retryCount(t, c, prefix) == 0 },
		2*time.Second, 10*time.Millisecond)
	requireHorizonFromFirstPost(t, dls, s, opts.RetryFor)
	require.Equal(t, float64(n), counterValue(d.m.deliveries.WithLabelValues("dead")))
	got := s.deliveries()
	var lastFirst time.Time
	for _, at := range s.firstPosts() {
		if at.After(lastFirst) {
			lastFirst = at
		}
	}
	require.Greater(t, lastFirst.Sub(got[0].at), opts.RetryFor, "some events must be held back longer than RetryFor")
	// One probe at a time, each after the circuit's opening, at least half
	// of MinBackoff.
	for i := 1; i < len(got); i++ {
		require.GreaterOrEqual(t, got[i].at.Sub(got[i-1].at), opts.MinBackoff/2, "POST %d of %d", i, len(got))
	}
}

func TestStopLetsInFlightFinish(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec")
	s.delay = func(string, int) time.Duration { return 300 * time.Millisecond }
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	addEvent(t, c, stream, "evt_inflight", "acme")
	_, stop := start(t, fastOptions(c, prefix, r, stream))
	require.Eventually(t, func() bool { return len(s.deliveries()) == 1 }, 5*time.Second, 5*time.Millisecond)
	stop()
	require.True(t, s.delivered()["evt_inflight"])
	require.Equal(t, int64(0), pendingCount(t, c, stream), "a finished POST is acknowledged before Run returns")
	require.Len(t, s.deliveries(), 1)
}

func TestCredentialsInURLAndNoRedirects(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	var mu sync.Mutex
	var auths []string
	var redirected int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path == "/elsewhere" {
			redirected++
			w.WriteHeader(http.StatusOK)
			return
		}
		u, p, _ := r.BasicAuth()
		auths = append(auths, u+":"+p)
		if r.Header.Get("Smsgate-Event-Id") == "evt_moved" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	url := strings.Replace(srv.URL, "http://", "http://hook:pa%20ss@", 1)
	r := &orgs{m: map[string]Endpoint{"acme": {URL: url, Secret: "sec"}}}
	addEvent(t, c, stream, "evt_auth", "acme")
	addEvent(t, c, stream, "evt_moved", "acme")
	opts := fastOptions(c, prefix, r, stream)
	opts.RetryFor = 200 * time.Millisecond
	d, _ := start(t, opts)

	require.Eventually(t, func() bool {
		dl, err := d.DeadLetters(context.Background(), 10)
		require.NoError(t, err)
		return len(dl) == 1 && dl[0].EventID == "evt_moved" && strings.Contains(dl[0].LastError, "302")
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1.0, counterValue(d.m.deliveries.WithLabelValues("success")))
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, redirected, "redirects are not followed")
	require.NotEmpty(t, auths)
	for _, a := range auths {
		require.Equal(t, "hook:pa ss", a)
	}
}

func TestSlot(t *testing.T) {
	require.Equal(t, 12182, slot("foo"))                        // CLUSTER KEYSLOT foo
	require.Equal(t, 0x31C3, slot("123456789"))                 // the CRC16/XMODEM check value
	require.Equal(t, slot("bar"), slot("smsgate:{bar}:events")) // the hash tag decides
	require.Equal(t, slot("{}x"), slot("{}x"))
}

// TestReadPaths delivers events spread over many streams, one stream much
// busier than the others, through the single-command blocking read (a
// *redis.Client) and the pipelined read (any other client; a one-shard Ring
// here), and checks that stopping an idle dispatcher is prompt.
func TestReadPaths(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func(*redis.Client) redis.UniversalClient
	}{
		{"single", func(c *redis.Client) redis.UniversalClient { return c }},
		{"pipelined", func(c *redis.Client) redis.UniversalClient {
			r := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": c.Options().Addr}})
			t.Cleanup(func() { _ = r.Close() })
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, prefix := testRedis(t)
			streams := make([]string, 16)
			for i := range streams {
				streams[i] = bucketStream(prefix, i)
			}
			s := newSink(t, "sec")
			r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
			opts := fastOptions(c, prefix, r, streams...)
			opts.Client = tc.client(c)
			opts.ReadCount = 32
			_, stop := start(t, opts)

			// Entries of both formats (as after an upgrade), in one pipeline.
			want := map[string]bool{}
			p := c.Pipeline()
			type added struct {
				stream string
				id     string // old format; "" new format
				cmd    *redis.StringCmd
			}
			var adds []added
			for i := range 300 {
				st := streams[0] // the busy one
				if i%10 == 0 {
					st = streams[1+i/10%15]
				}
				values := []any{"type", "message.status", "org", "acme", "data", `{"n":1}`}
				id := ""
				if i%2 == 0 {
					id = fmt.Sprintf("evt_%03d", i)
					values = append(values, "id", id, "at", "2025-01-02T03:04:05Z")
				}
				adds = append(adds, added{st, id, p.XAdd(context.Background(), &redis.XAddArgs{Stream: st, Values: values})})
			}
			_, err := p.Exec(context.Background())
			require.NoError(t, err)
			for _, a := range adds {
				id := a.id
				if id == "" {
					n := bucketStreamRE.FindStringSubmatch(a.stream)[1]
					id = "evt_b" + n + "_" + strings.Replace(a.cmd.Val(), "-", "_", 1)
				}
				want[id] = true
			}
			require.Len(t, want, 300)
			require.Eventually(t, func() bool { return len(s.delivered()) == len(want) }, 5*time.Second, 10*time.Millisecond)
			require.Equal(t, want, s.delivered())
			require.Eventually(t, func() bool {
				n := int64(0)
				for _, st := range streams {
					n += pendingCount(t, c, st)
				}
				return n == 0
			}, 2*time.Second, 10*time.Millisecond)

			time.Sleep(50 * time.Millisecond) // the reader is waiting for entries
			began := time.Now()
			stop()
			require.Less(t, time.Since(began), 500*time.Millisecond, "stop must not wait out a blocking read")
		})
	}
}

func TestDeletedStreamRecovers(t *testing.T) {
	c, prefix := testRedis(t)
	streams := []string{bucketStream(prefix, 0), bucketStream(prefix, 1)}
	s := newSink(t, "sec")
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	start(t, fastOptions(c, prefix, r, streams...))
	addEvent(t, c, streams[0], "evt_before", "acme")
	require.Eventually(t, func() bool { return s.delivered()["evt_before"] }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, c.Del(context.Background(), streams[1]).Err()) // group gone with it
	time.Sleep(50 * time.Millisecond)
	addEvent(t, c, streams[0], "evt_after", "acme")
	addEvent(t, c, streams[1], "evt_new_stream", "acme")
	require.Eventually(t, func() bool { return s.delivered()["evt_after"] && s.delivered()["evt_new_stream"] },
		5*time.Second, 10*time.Millisecond)
}

// The embedded store (miniredis, `make run`) knows no CLIENT ID: the reader
// polls there instead of blocking, and events are still delivered.
func TestEmbeddedStoreDelivers(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	require.Error(t, c.ClientID(context.Background()).Err(), "miniredis still lacks CLIENT ID; this test guards the fallback")
	s := newSink(t, "sec")
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	streams := []string{"sg:{b0}:events", "sg:{b1}:events"}
	_, stop := start(t, fastOptions(c, "sg:", r, streams...))
	defer stop()
	want := map[string]bool{}
	for i, format := range entryFormats {
		evs := newEvents(t, c, format)
		want[evs.add(streams[i], fmt.Sprintf("evt_%d", i), "acme")] = true
	}
	require.Eventually(t, func() bool { return len(s.delivered()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, want, s.delivered())
}

// firstPosts returns when the sink first received each event.
func (s *sink) firstPosts() map[string]time.Time {
	out := map[string]time.Time{}
	for _, got := range s.deliveries() {
		if _, ok := out[got.eventID]; !ok {
			out[got.eventID] = got.at
		}
	}
	return out
}

// requireHorizonFromFirstPost checks that every dead letter was POSTed, that
// its FirstAttemptAt is its first POST, and that it died no earlier than
// retryFor after that POST (API.md 3: retried until the horizon; OPERATIONS:
// retry_for counts from the first attempt).
func requireHorizonFromFirstPost(t *testing.T, dls []DeadLetter, s *sink, retryFor time.Duration) {
	t.Helper()
	const slack = 100 * time.Millisecond // from the dispatcher's clock reading to the sink's
	posts := s.firstPosts()
	tries := map[string]int{}
	for _, got := range s.deliveries() {
		tries[got.eventID]++
	}
	for _, dl := range dls {
		first, ok := posts[dl.EventID]
		require.True(t, ok, "%s was dead-lettered without ever being POSTed", dl.EventID)
		require.WithinDuration(t, first, dl.FirstAttemptAt, slack, "%s: FirstAttemptAt is not its first POST", dl.EventID)
		require.GreaterOrEqual(t, dl.DeadAt.Sub(first), retryFor-slack,
			"%s died %v after its first POST (%d attempts), before retry_for %v", dl.EventID, dl.DeadAt.Sub(first), dl.Attempts, retryFor)
		require.Equal(t, tries[dl.EventID], dl.Attempts, dl.EventID)
	}
}

// TestHorizonAcrossRestart: the first-attempt time is in Redis only once an
// event was POSTed. After a restart, an event attempted before it keeps its
// horizon (it is dead-lettered RetryFor after that POST, not later), while
// events held back and never attempted, including one stored by an older
// version with the time it was held back as its first attempt, are tried and
// retried for RetryFor from their first POST.
func TestHorizonAcrossRestart(t *testing.T) {
	c, prefix := testRedis(t)
	stream := bucketStream(prefix, 0)
	s := newSink(t, "sec")
	s.set(func(string, int) int { return http.StatusInternalServerError })
	r := &orgs{m: map[string]Endpoint{"acme": {URL: s.srv.URL, Secret: "sec"}}}
	ep := endpointID(s.srv.URL)
	ctx := context.Background()
	const n = 4
	for i := range n {
		addEvent(t, c, stream, fmt.Sprintf("evt_%d", i), "acme")
	}

	// The first run POSTs one event; its failure opens the circuit for
	// 0.5-1s and the others are held back in the retry set, unattempted.
	opts := fastOptions(c, prefix, r, stream)
	opts.PerEndpoint = 1
	opts.RetryFor = 600 * time.Millisecond
	opts.MinBackoff, opts.MaxBackoff = time.Second, time.Second
	d1, stop := start(t, opts)
	require.Eventually(t, func() bool {
		return len(s.deliveries()) >= 1 && retryCount(t, c, prefix) == n && pendingCount(t, c, stream) == 0
	}, 5*time.Second, 5*time.Millisecond)
	stop()
	tried := s.firstPosts()
	require.NotEmpty(t, tried)
	stored, err := c.ZRangeWithScores(ctx, d1.keys.first(ep), 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, stored, len(tried), "a first attempt is stored for the events POSTed, and only for them")
	for _, z := range stored {
		at, ok := tried[z.Member.(string)]
		require.True(t, ok, "first attempt stored for %v, never POSTed", z.Member)
		require.WithinDuration(t, at, time.UnixMilli(int64(z.Score)), 100*time.Millisecond)
	}
	// An event as versions before this one left it when they held it back:
	// no attempt, and the time it was held back (long ago) stored as its first.
	require.NoError(t, d1.schedule(ctx, []scheduled{{ep: ep,
		rec:   record{ID: "evt_legacy", Type: "message.status", Org: "acme", Body: expectedBody("evt_legacy")},
		first: time.Now().Add(-time.Hour), due: time.Now()}}))

	// Restart once the events POSTed are past their horizon.
	var last time.Time
	for _, at := range tried {
		if at.After(last) {
			last = at
		}
	}
	time.Sleep(time.Until(last.Add(opts.RetryFor)))
	opts.Consumer, opts.Registerer = "c2", prometheus.NewRegistry()
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 80*time.Millisecond
	d2, _ := start(t, opts)

	var dls []DeadLetter
	require.Eventually(t, func() bool {
		var err error
		dls, err = d2.DeadLetters(ctx, 1000)
		require.NoError(t, err)
		return len(dls) == n+1
	}, 10*time.Second, 20*time.Millisecond)
	requireHorizonFromFirstPost(t, dls, s, opts.RetryFor)
	for _, dl := range dls {
		if at, ok := tried[dl.EventID]; ok {
			require.WithinDuration(t, at, dl.FirstAttemptAt, 100*time.Millisecond, "the horizon survives the restart")
		}
	}
	require.Eventually(t, func() bool { return retryCount(t, c, prefix) == 0 }, 2*time.Second, 10*time.Millisecond)
}

// TestSweepSparesUntried: the sweep dead-letters an event whose first attempt
// is older than RetryFor, but not an event never attempted for which an older
// version stored the time it held the event back as its first attempt: that
// time is dropped and the event is due at once, to be tried.
func TestSweepSparesUntried(t *testing.T) {
	for _, tc := range []struct {
		name     string
		attempts int
		dead     bool
	}{
		{"attempted", 1, true},
		{"never attempted", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, prefix := testRedis(t)
			ep := endpointID("http://127.0.0.1:9/events")
			d, err := New(fastOptions(c, prefix, &orgs{}, bucketStream(prefix, 0)))
			require.NoError(t, err)
			ctx := context.Background()
			now := time.Now()
			rec := record{ID: "evt_old", Type: "message.status", Org: "acme", Body: expectedBody("evt_old"), Attempts: tc.attempts}
			if tc.attempts > 0 {
				rec.LastError = "webhook post: http status 500"
			}
			require.NoError(t, d.schedule(ctx, []scheduled{{ep: ep, rec: rec, first: now.Add(-time.Hour), due: now.Add(-time.Second)}}))

			d.sweepOnce(ctx)

			dls, err := d.DeadLetters(ctx, 10)
			require.NoError(t, err)
			_, firstErr := c.ZScore(ctx, d.keys.first(ep), rec.ID).Result()
			due, dueErr := c.ZScore(ctx, d.keys.due(ep), rec.ID).Result()
			if tc.dead {
				require.Len(t, dls, 1)
				require.Equal(t, rec.ID, dls[0].EventID)
				require.Equal(t, rec.LastError, dls[0].LastError)
				require.Equal(t, 0, retryCount(t, c, prefix))
				return
			}
			require.Empty(t, dls)
			require.ErrorIs(t, firstErr, redis.Nil, "the stored first time is dropped")
			require.NoError(t, dueErr)
			require.LessOrEqual(t, int64(due), ms(time.Now()), "due at once, not leased")
			idx, err := c.ZScore(ctx, d.keys.index(), ep).Result()
			require.NoError(t, err)
			require.LessOrEqual(t, int64(idx), int64(due), "the poller finds it")
			got, _, err := d.claim(ctx, ep, 10, time.Now(), false)
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.True(t, got[0].first.IsZero(), "no first attempt yet")
		})
	}
}
