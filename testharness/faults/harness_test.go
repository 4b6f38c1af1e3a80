package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
	"github.com/smsgate/smsgate/testharness"
	"github.com/smsgate/smsgate/testharness/faults"
)

const (
	apiKey     = "faults-key"
	adminToken = "faults-admin"
	hookSecret = "whsec-faults"
)

// binPath is the smsgate binary built once by TestMain ("" in -short mode,
// where every scenario is skipped).
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "smsgate-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "smsgate")
	// The daemon is built the way this test binary was: with -race under
	// `go test -race` (make test, make test-faults), so it reuses the
	// packages that run compiled (no second, uninstrumented build of the
	// whole tree on a cold cache) and a data race on a fault path fails the
	// scenario (see daemon.checkRaces).
	args := []string{"build", "-o", binPath}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/smsgate/smsgate/cmd/smsgate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: build smsgate:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// everyRun marks a fault scenario: every scenario runs in every `go test`
// of this package (make test, CI), and none in -short mode.
func everyRun(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault scenario: not in -short mode")
	}
}

// envInt reads a scale knob, e.g. SMSGATE_FAULTS_MESSAGES=20000.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "%s", name)
	require.Positive(t, n, "%s", name)
	return n
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// numbers returns n sender numbers and the recipient of each.
func numbers(n int) (from, to []string) {
	for i := range n {
		from = append(from, fmt.Sprintf("+1555%07d", i))
		to = append(to, fmt.Sprintf("+1666%07d", i))
	}
	return from, to
}

// bindSpec is one [[carrier.bind]].
type bindSpec struct {
	Addr            string // host:port of the simulator or a proxy
	Window          int
	EnquireLink     time.Duration
	ResponseTimeout time.Duration
	BindTimeout     time.Duration
	ReconnectMin    time.Duration
	ReconnectMax    time.Duration
}

// gwConfig is one daemon's generated configuration.
type gwConfig struct {
	API, Metrics string
	Redis        string
	Prefix       string
	Webhook      string
	Lease        time.Duration
	Grace        time.Duration
	Binds        []bindSpec
	Numbers      []string
	Rate         float64
	// Broken makes the file fail validation (for the bad-reload check).
	Broken bool
}

func dur(d, def time.Duration) string {
	if d <= 0 {
		d = def
	}
	return strconv.Quote(d.String())
}

func (c gwConfig) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, `[http]
listen = %q
[metrics]
listen = %q
[admin]
token_sha256 = %q
[redis]
addr = %q
key_prefix = %q
bind_lease_ttl = "1s"
[queue]
lease = %s
retry_backoff = "100ms"
max_retry_backoff = "1s"
[webhook]
url = %q
secret = %q
timeout = "2s"
min_backoff = "50ms"
max_backoff = "500ms"
[shutdown]
grace = %s
[log]
level = "info"
[[carrier]]
name = "sim"
`, c.API, c.Metrics, config.HashKey(adminToken), c.Redis, c.Prefix, dur(c.Lease, 3*time.Second),
		c.Webhook, hookSecret, dur(c.Grace, 10*time.Second))
	for i, bs := range c.Binds {
		host, port, _ := net.SplitHostPort(bs.Addr)
		window := bs.Window
		if window <= 0 {
			window = 10
		}
		if c.Broken && i == 0 {
			window = 0 // refused by validation: carrier[0].bind[0].window
		}
		fmt.Fprintf(&b, `  [[carrier.bind]]
  name = "sim-%d"
  host = %q
  port = %s
  system_id = "smsgate"
  password = "secret"
  window = %d
  enquire_link = %s
  response_timeout = %s
  bind_timeout = %s
  reconnect_min = %s
  reconnect_max = %s
`, i, host, port, window, dur(bs.EnquireLink, 5*time.Second), dur(bs.ResponseTimeout, 5*time.Second),
			dur(bs.BindTimeout, 2*time.Second), dur(bs.ReconnectMin, 50*time.Millisecond), dur(bs.ReconnectMax, 400*time.Millisecond))
	}
	fmt.Fprintf(&b, `[[route]]
prefix = "+"
carrier = "sim"
[[org]]
id = "acme"
name = "Acme Clinic"
api_key_sha256 = [%q]
`, config.HashKey(apiKey))
	for _, n := range c.Numbers {
		fmt.Fprintf(&b, `  [[org.number]]
  e164 = %q
  kind = "long_code"
  registered = true
  rate = %g
`, n, c.Rate)
	}
	return b.String()
}

// env is what one scenario runs against: a private redis-server, a webhook
// sink, a key prefix.
type env struct {
	t      *testing.T
	redis  *testharness.RedisServer
	rdb    *redis.Client
	q      *queue.Queue
	sink   *testharness.WebhookSink
	prefix string
}

func newEnv(t *testing.T, redisArgs ...string) *env {
	t.Helper()
	rs := testharness.StartRedisServer(t, redisArgs...)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := "faults:"
	q, err := queue.New(queue.Options{Client: rdb, Prefix: prefix})
	require.NoError(t, err)
	return &env{t: t, redis: rs, rdb: rdb, q: q, sink: testharness.NewWebhookSink(t), prefix: prefix}
}

// newSim starts a simulator closed at cleanup.
func newSim(t *testing.T, f testharness.Faults) *testharness.Simulator {
	t.Helper()
	sim, err := testharness.NewSimulator(testharness.SimOptions{Faults: f, RecordLimit: 1_000_000})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

// config returns a configuration for one daemon of this env, on fresh ports.
func (e *env) config(binds []bindSpec, nums []string, rate float64) gwConfig {
	return gwConfig{
		API: freeAddr(e.t), Metrics: freeAddr(e.t), Redis: e.redis.Addr(), Prefix: e.prefix,
		Webhook: e.sink.URL(), Binds: binds, Numbers: nums, Rate: rate,
	}
}

// daemon is one smsgate process.
type daemon struct {
	t    *testing.T
	name string
	cfg  gwConfig
	path string
	log  *os.File

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	launches int
}

// startDaemon writes cfg and starts the binary; it waits for /readyz.
func startDaemon(t *testing.T, name string, cfg gwConfig) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, name: name, cfg: cfg, path: filepath.Join(dir, name+".toml")}
	f, err := os.Create(filepath.Join(dir, name+".log"))
	require.NoError(t, err)
	d.log = f
	d.writeConfig(cfg)
	t.Cleanup(func() {
		d.kill()
		d.checkRaces()
		if t.Failed() || os.Getenv("SMSGATE_FAULTS_LOG") != "" {
			t.Logf("--- %s log (tail) ---\n%s", d.name, d.logTail(60))
		}
		_ = d.log.Close()
	})
	d.start()
	return d
}

func (d *daemon) writeConfig(cfg gwConfig) {
	d.t.Helper()
	require.NoError(d.t, os.WriteFile(d.path, []byte(cfg.text()), 0o600))
}

// start launches the process (again) and waits until it is ready.
func (d *daemon) start() {
	d.t.Helper()
	d.launch()
	d.waitReady(20 * time.Second)
}

// launch starts the process without waiting for readiness.
func (d *daemon) launch() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Nil(d.t, d.cmd, "%s already running", d.name)
	d.launches++
	fmt.Fprintf(d.log, "=== launch %d at %s ===\n", d.launches, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(binPath, "-config", d.path)
	cmd.Stdout, cmd.Stderr = d.log, d.log
	require.NoError(d.t, cmd.Start())
	exited := make(chan struct{})
	d.cmd, d.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.exitErr = err
		d.mu.Unlock()
		close(exited)
	}()
}

func (d *daemon) running() (*exec.Cmd, chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd, d.exited
}

// waitReady waits until GET /readyz answers 200.
func (d *daemon) waitReady(timeout time.Duration) time.Duration {
	d.t.Helper()
	start := time.Now()
	_, exited := d.running()
	c := &http.Client{Timeout: time.Second}
	for time.Since(start) < timeout {
		resp, err := c.Get("http://" + d.cfg.API + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		select {
		case <-exited:
			d.t.Fatalf("%s exited before it was ready (%v):\n%s", d.name, d.exitErr, d.logTail(40))
		case <-time.After(25 * time.Millisecond):
		}
	}
	d.t.Fatalf("%s not ready after %v:\n%s", d.name, timeout, d.logTail(40))
	return 0
}

// kill sends SIGKILL and waits for the process (no-op when not running).
func (d *daemon) kill() {
	cmd, exited := d.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
	d.mu.Lock()
	d.cmd = nil
	d.mu.Unlock()
	fmt.Fprintf(d.log, "=== SIGKILL at %s ===\n", time.Now().Format(time.RFC3339Nano))
}

// term sends SIGTERM and waits up to timeout; it returns how long the
// process took to exit and its exit error.
func (d *daemon) term(timeout time.Duration) (time.Duration, error) {
	d.t.Helper()
	cmd, exited := d.running()
	require.NotNil(d.t, cmd, "%s is not running", d.name)
	start := time.Now()
	fmt.Fprintf(d.log, "=== SIGTERM at %s ===\n", start.Format(time.RFC3339Nano))
	require.NoError(d.t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-exited:
	case <-time.After(timeout):
		d.t.Errorf("%s did not exit within %v of SIGTERM", d.name, timeout)
		_ = cmd.Process.Kill()
		<-exited
	}
	d.mu.Lock()
	d.cmd = nil
	err := d.exitErr
	d.mu.Unlock()
	return time.Since(start), err
}

// hup sends SIGHUP (reload).
func (d *daemon) hup() {
	d.t.Helper()
	cmd, _ := d.running()
	require.NotNil(d.t, cmd)
	require.NoError(d.t, cmd.Process.Signal(syscall.SIGHUP))
}

func (d *daemon) logTail(lines int) string {
	b, err := os.ReadFile(d.log.Name())
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// checkRaces fails the test when the race detector reported a data race in
// the daemon (built with -race when the tests are): the report goes to the
// daemon's stderr, its log file.
func (d *daemon) checkRaces() {
	d.t.Helper()
	const marker = "WARNING: DATA RACE"
	b, _ := os.ReadFile(d.log.Name())
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		return
	}
	report := strings.Split(string(b[i:]), "\n")
	report = report[:min(len(report), 80)]
	d.t.Errorf("%s: the race detector reported %d data race(s); the first:\n%s", d.name, bytes.Count(b, []byte(marker)), strings.Join(report, "\n"))
}

// logCount counts log lines containing s.
func (d *daemon) logCount(s string) int {
	b, _ := os.ReadFile(d.log.Name())
	return bytes.Count(b, []byte(s))
}

// metric returns the value of an unlabelled metric line from /metrics.
func (d *daemon) metric(name string) (float64, bool) {
	resp, err := http.Get("http://" + d.cfg.Metrics + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// client is an API client that knows every daemon's address.
type client struct {
	http *http.Client
}

func newClient() *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &client{http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

type sendResult struct {
	code int
	id   string
	raw  string
}

// send posts one message with an Idempotency-Key.
func (c *client) send(ctx context.Context, api, from, to, text, idem string) (sendResult, error) {
	body := fmt.Sprintf(`{"from":%q,"to":%q,"text":%q}`, from, to, text)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+api+"/v1/messages", strings.NewReader(body))
	if err != nil {
		return sendResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return sendResult{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return sendResult{code: resp.StatusCode}, err
	}
	var out struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &out)
	return sendResult{code: resp.StatusCode, id: out.ID, raw: string(raw)}, nil
}

// loader sends perSender messages from each sender, each sender's messages
// one after the other (so accept order is sequence order), retrying every
// message with the same Idempotency-Key until it gets a 202. It records the
// ledger of accepted messages.
type loader struct {
	c    *client
	apis []string

	mu        sync.Mutex
	accepted  []faults.Accepted
	codes     map[int]int // non-202 answers
	transport int         // transport errors (daemon down)
	gaveUp    []string
}

func newLoader(apis ...string) *loader {
	return &loader{c: newClient(), apis: apis, codes: map[int]int{}}
}

// run blocks until every message is accepted or ctx ends. pace is a pause
// between a worker's messages (0: as fast as the API answers).
func (l *loader) run(ctx context.Context, from, to []string, perSender, workers int, pace time.Duration) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			n := 0
			for seq := 1; seq <= perSender; seq++ {
				for i := w; i < len(from); i += workers {
					if ctx.Err() != nil {
						return
					}
					l.one(ctx, n, from[i], to[i], seq)
					n++
					if pace > 0 {
						select {
						case <-ctx.Done():
						case <-time.After(pace):
						}
					}
				}
			}
		})
	}
	wg.Wait()
}

func (l *loader) one(ctx context.Context, n int, from, to string, seq int) {
	idem := fmt.Sprintf("%s-%d", from, seq)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		api := l.apis[(n+attempt)%len(l.apis)]
		res, err := l.c.send(ctx, api, from, to, faults.Text(seq), idem)
		switch {
		case err != nil:
			l.mu.Lock()
			l.transport++
			l.mu.Unlock()
		case res.code == http.StatusAccepted:
			l.mu.Lock()
			l.accepted = append(l.accepted, faults.Accepted{ID: res.id, From: from, Seq: seq, At: time.Now()})
			l.mu.Unlock()
			return
		default:
			l.mu.Lock()
			l.codes[res.code]++
			l.mu.Unlock()
			if res.code < 500 && res.code != http.StatusTooManyRequests {
				l.mu.Lock()
				l.gaveUp = append(l.gaveUp, fmt.Sprintf("%s #%d: %d %s", from, seq, res.code, res.raw))
				l.mu.Unlock()
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	l.mu.Lock()
	l.gaveUp = append(l.gaveUp, fmt.Sprintf("%s #%d: no 202 before the deadline", from, seq))
	l.mu.Unlock()
}

func (l *loader) ledger() []faults.Accepted {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]faults.Accepted(nil), l.accepted...)
}

func (l *loader) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

func (l *loader) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("accepted=%d transport_errors=%d other_answers=%v gave_up=%d", len(l.accepted), l.transport, l.codes, len(l.gaveUp))
}

// attempts collects every submit_sm of the simulators for the ledger.
func attempts(sims map[string]*testharness.Simulator, mark func(*faults.Attempt, testharness.Submit)) []faults.Attempt {
	var out []faults.Attempt
	for name, s := range sims {
		for _, sub := range s.Submits() {
			seq, _ := faults.ParseText(sub.ShortMessage)
			// A submission the carrier swallowed (NoResponseRate: no answer,
			// no message id) was never taken, although its status says OK.
			swallowed := !sub.Answered && sub.MessageID == ""
			a := faults.Attempt{From: sub.Source, Seq: seq, OK: sub.Status == testharness.StatusOK && !swallowed, At: sub.At, Carrier: name}
			if mark != nil {
				mark(&a, sub)
			}
			out = append(out, a)
		}
	}
	return out
}

// waitFinal waits until every accepted message is in a final state in Redis
// (or timeout, or 15 s without progress) and returns how many are not.
func (e *env) waitFinal(acc []faults.Accepted, timeout time.Duration) int {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	pending := make(map[string]bool, len(acc))
	for _, a := range acc {
		pending[a.ID] = true
	}
	ctx := context.Background()
	last, lastChange := len(pending), time.Now()
	for {
		if len(pending) != last {
			last, lastChange = len(pending), time.Now()
		}
		if time.Since(lastChange) > 15*time.Second {
			return len(pending)
		}
		for id := range pending {
			rec, err := e.q.Get(ctx, id)
			if err == nil && faults.Final(string(rec.Status)) {
				delete(pending, id)
			}
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			return len(pending)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// historyView is the part of GET /v1/messages/{id} the ledger reads.
type historyView struct {
	Status  string `json:"status"`
	History []struct {
		Status string `json:"status"`
		Error  *struct {
			Code string `json:"code"`
		} `json:"error"`
	} `json:"history"`
}

// outcomes reads every accepted message through GET /v1/messages/{id} (the
// API view: status, history entries lease_expired / outcome_unknown flag a
// possible duplicate) and the stored possible-duplicate flag.
func (e *env) outcomes(api string, acc []faults.Accepted) map[string]faults.Outcome {
	e.t.Helper()
	c := newClient()
	out := make(map[string]faults.Outcome, len(acc))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	for range 8 {
		wg.Go(func() {
			for id := range work {
				o := e.outcome(c, api, id)
				mu.Lock()
				out[id] = o
				mu.Unlock()
			}
		})
	}
	for _, a := range acc {
		work <- a.ID
	}
	close(work)
	wg.Wait()
	return out
}

func (e *env) outcome(c *client, api, id string) faults.Outcome {
	var o faults.Outcome
	req, _ := http.NewRequest(http.MethodGet, "http://"+api+"/v1/messages/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := c.http.Do(req)
	if err != nil {
		e.t.Errorf("GET %s: %v", id, err)
		return o
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return o
	}
	var v historyView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		e.t.Errorf("GET %s: %v", id, err)
		return o
	}
	o.Status = v.Status
	for _, h := range v.History {
		if h.Error != nil && (h.Error.Code == "lease_expired" || h.Error.Code == "outcome_unknown") {
			o.PossibleDuplicate = true
		}
	}
	if rec, err := e.q.Get(context.Background(), id); err == nil && rec.PossibleDuplicate {
		o.PossibleDuplicate = true
	}
	return o
}

// verdict waits for the final states, checks the ledger and logs a summary
// line tagged with the scenario name.
func (e *env) verdict(name, api string, l *loader, sims map[string]*testharness.Simulator, rate float64, wait time.Duration) faults.Report {
	e.t.Helper()
	return e.verdictWith(name, api, l, sims, rate, wait, nil)
}

// verdictWith is verdict with a hook that may mark attempts (NetworkDelayed).
func (e *env) verdictWith(name, api string, l *loader, sims map[string]*testharness.Simulator, rate float64, wait time.Duration, mark func(*faults.Attempt, testharness.Submit)) faults.Report {
	e.t.Helper()
	acc := l.ledger()
	start := time.Now()
	notFinal := e.waitFinal(acc, wait)
	e.t.Logf("%s: %d of %d messages final %.1fs after the load ended", name, len(acc)-notFinal, len(acc), time.Since(start).Seconds())
	rep := faults.Check(acc, e.outcomes(api, acc), attempts(sims, mark), func(string) float64 { return rate })
	e.t.Logf("RESULT %s: %s; loader: %s", name, rep, l.summary())
	for _, p := range rep.Problems {
		e.t.Logf("  problem: %s", p)
	}
	for i, id := range rep.Suspects {
		if i == 5 {
			break
		}
		e.explain(id, sims)
	}
	return rep
}

// requireNoLoss asserts the invariants every scenario shares.
func requireNoLoss(t *testing.T, rep faults.Report, l *loader) {
	t.Helper()
	require.Empty(t, l.gaveUp, "every message got a 202")
	require.Zero(t, rep.Lost, "lost messages")
	require.Zero(t, rep.Phantom, "messages reported sent that the carrier never got")
	require.Zero(t, rep.NotFinal-rep.StuckSent, "messages not final at the end")
	require.Zero(t, rep.StuckSent, "messages the carrier accepted and sent a receipt for stay \"sent\": the receipt was lost")
	require.Zero(t, rep.Failed, "messages failed")
	require.Zero(t, rep.UnflaggedDuplicates, "duplicates not flagged possible duplicate")
	require.Zero(t, rep.OrderViolations, "per-number order")
	require.Zero(t, rep.Unledgered, "messages sent without a 202")
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// redisShutdown stops the private Redis cleanly (SHUTDOWN: the AOF is
// flushed and fsynced) and reaps the process.
func (e *env) redisShutdown() {
	e.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	err := c.Shutdown(context.Background()).Err()
	_ = c.Close()
	// SHUTDOWN closes the connection instead of answering when it succeeds.
	if err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "connection") && err != redis.Nil {
		e.t.Logf("redis SHUTDOWN: %v", err)
	}
	e.redis.Stop()
}

// parseSeq is faults.ParseText.
func parseSeq(b []byte) (int, bool) { return faults.ParseText(b) }

// explain logs what Redis and the carriers know about a message that did
// not end as expected: its record, its carrier ids, whether each id is
// indexed for receipts or has receipts held for it, and the carrier's view.
func (e *env) explain(id string, sims map[string]*testharness.Simulator) {
	e.t.Helper()
	ctx := context.Background()
	rec, err := e.q.Get(ctx, id)
	if err != nil {
		e.t.Logf("  explain %s: %v", id, err)
		return
	}
	var hist []string
	for _, h := range rec.History {
		s := h.At.Format("15:04:05.000") + " " + string(h.Status)
		if h.Error != nil {
			s += "(" + h.Error.Code + ")"
		}
		hist = append(hist, s)
	}
	e.t.Logf("  explain %s: status=%s attempts=%d dup=%v history=[%s] carrier_ids=%v", id, rec.Status, rec.Attempts, rec.PossibleDuplicate, strings.Join(hist, ", "), rec.CarrierMessageIDs)
	for _, cid := range rec.CarrierMessageIDs {
		msg, seg, ok, err := e.q.LookupCarrierID(ctx, cid)
		n := smpp.NormalizeID(cid)
		held := fmt.Sprintf("%s{c%d}:held:%s", e.prefix, crc32.ChecksumIEEE([]byte(n))%uint32(e.q.Buckets()), n)
		hl, _ := e.rdb.LLen(ctx, held).Result()
		e.t.Logf("    carrier id %s: indexed=%v (%s|%d, err %v) held receipts=%d", cid, ok, msg, seg, err, hl)
	}
	for name, s := range sims {
		for _, sub := range s.Submits() {
			if "+"+sub.Source == rec.Msg.From && string(sub.ShortMessage) == rec.Msg.Text {
				e.t.Logf("    carrier %s: submit at %s conn %d status 0x%x answered=%v id %q", name, sub.At.Format("15:04:05.000"), sub.Conn, sub.Status, sub.Answered, sub.MessageID)
			}
		}
	}
}
