package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

const (
	testAPIKey     = "test-key-acme"
	testAdminToken = "test-admin-token"
	testSecret     = "whsec-test"
)

// daemon is one smsgate built from a generated config file, against the
// shared Redis (isolated by key prefix), an in-process simulator and a
// webhook sink.
type daemon struct {
	t      *testing.T
	app    *App
	sim    *testharness.Simulator
	sink   *testharness.WebhookSink
	path   string
	prefix string
	edit   func(string) string
}

// configHead is the part of the app tests' configs before the first
// [[org]]: listeners, admin token, Redis (redisAddr, "" the shared one),
// queue, webhook (more keys in webhookExtra), shutdown grace and the
// simulator carrier with its catch-all route.
func configHead(simAddr, sinkURL, prefix, redisAddr, webhookExtra, grace string) string {
	if redisAddr == "" {
		redisAddr = testharness.SharedRedisAddr
	}
	host, port, _ := strings.Cut(simAddr, ":")
	return fmt.Sprintf(`
[http]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[admin]
token_sha256 = %q
[redis]
addr = %q
key_prefix = %q
[queue]
lease = "5s"
retry_backoff = "100ms"
[webhook]
url = %q
secret = %q
min_backoff = "50ms"
max_backoff = "200ms"
%s
[shutdown]
grace = %q
[[carrier]]
name = "sim"
  [[carrier.bind]]
  host = %q
  port = %s
  system_id = "smsgate"
  password = "secret"
  window = 10
  reconnect_min = "50ms"
  reconnect_max = "200ms"
[[route]]
prefix = "+"
carrier = "sim"
`, config.HashKey(testAdminToken), redisAddr, prefix, sinkURL, testSecret, webhookExtra, grace, host, port)
}

// configText is the app tests' usual config: org acme with one registered
// long code, +15550001111, and the org.number tables in extraNumbers.
func configText(simAddr, sinkURL, prefix, extraNumbers string) string {
	return configHead(simAddr, sinkURL, prefix, "", "", "10s") + fmt.Sprintf(`[[org]]
id = "acme"
name = "Acme Clinic"
api_key_sha256 = [%q]
  [[org.number]]
  e164 = "+15550001111"
  kind = "long_code"
  registered = true
  rate = 50
%s
`, config.HashKey(testAPIKey), extraNumbers)
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonWith(t, nil)
}

// startDaemonWith is startDaemon with the generated config text passed
// through edit first (nil: unchanged).
func startDaemonWith(t *testing.T, edit func(string) string) *daemon {
	t.Helper()
	sim, err := testharness.NewSimulator(testharness.SimOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	sink := testharness.NewWebhookSink(t)
	prefix := testharness.RedisPrefix(t)

	d := &daemon{t: t, sim: sim, sink: sink, prefix: prefix, path: filepath.Join(t.TempDir(), "smsgate.toml"), edit: edit}
	d.writeConfig("")
	var logOut io.Writer = io.Discard
	if os.Getenv("SMSGATE_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	a, err := New(Options{ConfigPath: d.path, Logger: slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	d.app = a
	a.Start()
	t.Cleanup(func() { _ = a.Stop() })
	require.Eventually(t, func() bool {
		code, _ := d.do("GET", "/readyz", "", nil)
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "daemon never became ready")
	return d
}

func (d *daemon) writeConfig(extraNumbers string) {
	d.t.Helper()
	text := configText(d.sim.Addr(), d.sink.URL(), d.prefix, extraNumbers)
	if d.edit != nil {
		text = d.edit(text)
	}
	require.NoError(d.t, os.WriteFile(d.path, []byte(text), 0o600))
}

// do sends a request with the API key (or admin token for /admin paths) and
// decodes a JSON answer into out when it is not nil.
func (d *daemon) do(method, path, body string, out any) (int, string) {
	d.t.Helper()
	req, err := http.NewRequest(method, "http://"+d.app.APIAddr()+path, strings.NewReader(body))
	require.NoError(d.t, err)
	token := testAPIKey
	if strings.HasPrefix(path, "/admin") {
		token = testAdminToken
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(d.t, err)
	if out != nil && len(raw) > 0 {
		require.NoError(d.t, json.Unmarshal(raw, out), string(raw))
	}
	return resp.StatusCode, string(raw)
}

type accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func (d *daemon) send(from, to, text string) accepted {
	d.t.Helper()
	var a accepted
	code, raw := d.do("POST", "/v1/messages", fmt.Sprintf(`{"from":%q,"to":%q,"text":%q,"client_ref":"ref-1"}`, from, to, text), &a)
	require.Equal(d.t, http.StatusAccepted, code, raw)
	require.Equal(d.t, "queued", a.Status)
	return a
}

type hookEvent struct {
	ID   string          `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// events returns the webhook events received so far, checking each signature.
func (d *daemon) events() []hookEvent {
	d.t.Helper()
	var out []hookEvent
	for _, e := range d.sink.Events() {
		require.NoError(d.t, testharness.VerifySignature(testSecret, e.Header.Get("Smsgate-Signature"), e.Body))
		var ev hookEvent
		require.NoError(d.t, json.Unmarshal(e.Body, &ev))
		require.Equal(d.t, ev.ID, e.Header.Get("Smsgate-Event-Id"))
		out = append(out, ev)
	}
	return out
}

// statuses returns the message.status values seen for one message id,
// sorted: webhook deliveries run concurrently, so events of one message may
// arrive in any order (receivers order them by the message's history).
func (d *daemon) statuses(id string) []string {
	var out []string
	for _, e := range d.events() {
		if e.Type != "message.status" {
			continue
		}
		var s struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		require.NoError(d.t, json.Unmarshal(e.Data, &s))
		if s.ID == id {
			out = append(out, s.Status)
		}
	}
	sort.Strings(out)
	return out
}

func TestEndToEndSendReceiptAndKeywords(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)

	// First message of a conversation: notice first, then the message,
	// both submitted, both delivered.
	msg := d.send("+15550001111", "+15557654321", "Your appointment is tomorrow at 10:00.")
	require.Eventually(t, func() bool {
		return strings.Join(d.statuses(msg.ID), ",") == "delivered,sent"
	}, 10*time.Second, 20*time.Millisecond)
	subs := d.sim.Submits()
	require.Len(t, subs, 2)
	require.Equal(t, "You are messaging with Acme Clinic. To opt out, reply STOP.", string(subs[0].ShortMessage))
	require.Equal(t, "Your appointment is tomorrow at 10:00.", string(subs[1].ShortMessage))

	var got struct {
		Status            string   `json:"status"`
		CarrierMessageIDs []string `json:"carrier_message_ids"`
		History           []struct {
			Status string `json:"status"`
		} `json:"history"`
	}
	code, raw := d.do("GET", "/v1/messages/"+msg.ID, "", &got)
	require.Equal(t, http.StatusOK, code, raw)
	require.Equal(t, "delivered", got.Status)
	require.Equal(t, []string{subs[1].MessageID}, got.CarrierMessageIDs)

	// A second message in the same conversation: no second notice.
	msg2 := d.send("+15550001111", "+15557654321", "See you then.")
	require.Eventually(t, func() bool { return len(d.statuses(msg2.ID)) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, d.sim.Submits(), 3)

	// STOP: opt-out recorded, one confirmation sent, next send refused.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: "+15557654321", To: "+15550001111", Text: "Stop"}))
	require.Eventually(t, func() bool { return len(d.sim.Submits()) == 4 }, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, string(d.sim.Submits()[3].ShortMessage), "unsubscribed")
	code, raw = d.do("POST", "/v1/messages", `{"from":"+15550001111","to":"+15557654321","text":"Are you there?"}`, nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, raw)
	require.Contains(t, raw, `"recipient_opted_out"`)

	var received []map[string]any
	require.Eventually(t, func() bool {
		received = received[:0]
		for _, e := range d.events() {
			if e.Type == "message.received" {
				var m map[string]any
				require.NoError(t, json.Unmarshal(e.Data, &m))
				received = append(received, m)
			}
		}
		return len(received) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "stop", received[0]["keyword"])
	require.Equal(t, "+15557654321", received[0]["from"])

	// START lifts it.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: "+15557654321", To: "+15550001111", Text: "START"}))
	require.Eventually(t, func() bool { return len(d.sim.Submits()) == 5 }, 10*time.Second, 20*time.Millisecond)
	d.send("+15550001111", "+15557654321", "Welcome back.")
}

func TestExternalPartyFirstGetsNoNotice(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: "+15558889999", To: "+15550001111", Text: "Hi, can I book a visit?"}))
	require.Eventually(t, func() bool {
		for _, e := range d.events() {
			if e.Type == "message.received" {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	msg := d.send("+15550001111", "+15558889999", "Sure, Tuesday at 9?")
	require.Eventually(t, func() bool { return len(d.statuses(msg.ID)) == 2 }, 10*time.Second, 20*time.Millisecond)
	subs := d.sim.Submits()
	require.Len(t, subs, 1, "no notice when the external party texted first")
	require.Equal(t, "Sure, Tuesday at 9?", string(subs[0].ShortMessage))
}

func TestReloadAddsNumberAndBadConfigChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	code, raw := d.do("POST", "/v1/messages", `{"from":"+15550003333","to":"+15557654321","text":"hi"}`, nil)
	require.Equal(t, http.StatusForbidden, code, raw)

	d.writeConfig(`
  [[org.number]]
  e164 = "+15550003333"
  kind = "toll_free"
  registered = true
`)
	code, raw = d.do("POST", "/admin/reload", "", nil)
	require.Equal(t, http.StatusOK, code, raw)
	d.send("+15550003333", "+15557654321", "hi")

	// A broken file: reload refused with the key path, old config stays.
	require.NoError(t, os.WriteFile(d.path, bytes.ReplaceAll([]byte(configText(d.sim.Addr(), d.sink.URL(), d.prefix, "")), []byte(`window = 10`), []byte(`window = 0`)), 0o600))
	code, raw = d.do("POST", "/admin/reload", "", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code, raw)
	require.Contains(t, raw, "carrier[0].bind[0].window")
	d.send("+15550003333", "+15557654321", "still here")

	resp, err := http.Get("http://" + d.app.MetricsAddr() + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), "smsgate_config_last_reload_successful 0")

	var stats map[string]any
	code, raw = d.do("GET", "/admin/queues", "", &stats)
	require.Equal(t, http.StatusOK, code, raw)
	require.Contains(t, stats, "depth")
	require.Contains(t, stats, "top")
	require.Equal(t, 1, d.sim.ActiveBinds(), "the bind stayed up through both reloads")
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, enabled := range []bool{false, true} {
		t.Run(fmt.Sprint(enabled), func(t *testing.T) {
			d := startDaemonWith(t, func(s string) string {
				return strings.Replace(s, "[metrics]\n", fmt.Sprintf("[metrics]\npprof = %v\n", enabled), 1)
			})
			resp, err := http.Get("http://" + d.app.MetricsAddr() + "/debug/pprof/")
			require.NoError(t, err)
			resp.Body.Close()
			want := http.StatusNotFound
			if enabled {
				want = http.StatusOK
			}
			require.Equal(t, want, resp.StatusCode)
		})
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The newcomer path (make run): embedded store, embedded simulator, the
// webhook pointed at the built-in dev sink. A message goes out and its
// receipt shows up at /dev/events.
func TestNewcomerPathEmbeddedStoreAndSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	example, err := os.ReadFile("../smsgate.example.toml")
	require.NoError(t, err)
	httpPort, metricsPort, simPort := freePort(t), freePort(t), freePort(t)
	text := strings.NewReplacer(
		"127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"127.0.0.1:9090", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"127.0.0.1:2775", fmt.Sprintf("127.0.0.1:%d", simPort),
		"port = 2775", fmt.Sprintf("port = %d", simPort),
	).Replace(string(example))
	require.Contains(t, text, `addr = ""`, "the example uses the embedded store")
	path := filepath.Join(t.TempDir(), "smsgate.toml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))

	a, err := New(Options{ConfigPath: path, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	a.Start()
	t.Cleanup(func() { _ = a.Stop() })
	api := "http://" + a.APIAddr()
	require.Eventually(t, func() bool {
		resp, err := http.Get(api + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)

	req, err := http.NewRequest("POST", api+"/v1/messages", strings.NewReader(`{"from":"+15550001111","to":"+15557654321","text":"Hello from smsgate"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer dev-key-acme")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var acc accepted
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&acc))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Eventually(t, func() bool {
		resp, err := http.Get(api + "/dev/events")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var evs []struct {
			Body struct {
				Type string `json:"type"`
				Data struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"data"`
			} `json:"body"`
		}
		if json.NewDecoder(resp.Body).Decode(&evs) != nil {
			return false
		}
		for _, e := range evs {
			if e.Body.Data.ID == acc.ID && e.Body.Data.Status == "delivered" {
				return true
			}
		}
		return false
	}, 15*time.Second, 50*time.Millisecond, "the receipt shows up at /dev/events")
}

// TestStatusEventsFilter: with the org's webhook_status_events naming only
// final statuses (overriding the global list, which names sent only), the
// webhook gets no sent event — for the message, its notice and a keyword
// reply — while the message's history still records it.
func TestStatusEventsFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemonWith(t, func(s string) string {
		s = strings.Replace(s, "[webhook]\n", "[webhook]\nstatus_events = [\"sent\"]\n", 1)
		return strings.Replace(s, "name = \"Acme Clinic\"\n",
			"name = \"Acme Clinic\"\nwebhook_status_events = [\"delivered\", \"undelivered\", \"failed\", \"expired\"]\n", 1)
	})
	statusEvents := func() []string {
		var out []string
		for _, e := range d.events() {
			if e.Type == "message.status" {
				var s struct{ Status string }
				require.NoError(t, json.Unmarshal(e.Data, &s))
				out = append(out, s.Status)
			}
		}
		return out
	}

	msg := d.send("+15550001111", "+15557654321", "Your appointment is tomorrow at 10:00.")
	require.Eventually(t, func() bool { return len(d.statuses(msg.ID)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"delivered"}, d.statuses(msg.ID))
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: "+15557654321", To: "+15550001111", Text: "HELP"}))
	require.Eventually(t, func() bool { return len(d.sim.Submits()) == 3 }, 10*time.Second, 20*time.Millisecond)
	// Notice, message and the HELP reply: one delivered event each, no sent.
	require.Eventually(t, func() bool { return len(statusEvents()) >= 3 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // a sent event would have been emitted before its delivered one
	require.Equal(t, []string{"delivered", "delivered", "delivered"}, statusEvents())

	var got struct {
		History []struct {
			Status string `json:"status"`
		} `json:"history"`
	}
	code, raw := d.do("GET", "/v1/messages/"+msg.ID, "", &got)
	require.Equal(t, http.StatusOK, code, raw)
	var hist []string
	for _, h := range got.History {
		hist = append(hist, h.Status)
	}
	require.Equal(t, []string{"queued", "sent", "delivered"}, hist)
}

// With no carrier bind up nothing is claimed, yet a message still ends
// expired, with its event, once its validity passed (and its notice too).
func TestExpiryWhileNoCarrierIsUp(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	require.NoError(t, d.sim.Close())
	require.Eventually(t, func() bool {
		code, _ := d.do("GET", "/readyz", "", nil)
		return code == http.StatusServiceUnavailable
	}, 10*time.Second, 20*time.Millisecond, "the bind never went down")

	var a accepted
	code, raw := d.do("POST", "/v1/messages", `{"from":"+15550001111","to":"+15557654321","text":"Running 10 minutes late.","validity":"1s"}`, &a)
	require.Equal(t, http.StatusAccepted, code, raw)
	// Reaps run every lease/3 (5 s / 3 in this config).
	require.Eventually(t, func() bool {
		return slices.Equal(d.statuses(a.ID), []string{"expired"})
	}, 10*time.Second, 50*time.Millisecond, "no expired event: %v", d.statuses(a.ID))
	var m struct {
		Status  string `json:"status"`
		History []struct {
			Status string `json:"status"`
			Error  *struct {
				Code string `json:"code"`
			} `json:"error"`
		} `json:"history"`
	}
	code, raw = d.do("GET", "/v1/messages/"+a.ID, "", &m)
	require.Equal(t, http.StatusOK, code, raw)
	require.Equal(t, "expired", m.Status)
	last := m.History[len(m.History)-1]
	require.Equal(t, "expired", last.Status)
	require.NotNil(t, last.Error)
	require.Equal(t, "expired", last.Error.Code)
	// The notice queued ahead of it expired with it: no event is missing.
	require.Eventually(t, func() bool {
		n := 0
		for _, e := range d.events() {
			if e.Type == "message.status" && strings.Contains(string(e.Data), `"status":"expired"`) {
				n++
			}
		}
		return n == 2
	}, 10*time.Second, 50*time.Millisecond)
}

func TestWebhookConsumer(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	tests := []struct{ listen, want string }{
		{"127.0.0.1:8080", host + "-127.0.0.1:8080"},
		{":8080", host + "-:8080"},
		{"[::1]:8443", host + "-[::1]:8443"},
		{"127.0.0.1:0", ""}, // a port per process: a name per process
		{"no-port", ""},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, webhookConsumer(tc.listen), tc.listen)
	}
}
