package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/testharness"
)

// jsonLines decodes every JSON log line written to buf.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func newTestLogger(buf *bytes.Buffer, level slog.Level, now func() time.Time) (*slog.Logger, *LogHandler) {
	h := NewLogHandler(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}), LogHandlerOptions{Now: now})
	return slog.New(h), h
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestLogHandlerMasksNumbersAndDropsText(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		log   func(l *slog.Logger)
		check func(t *testing.T, line map[string]any, raw string)
	}{
		{
			name:  "string attribute at info",
			level: slog.LevelInfo,
			log:   func(l *slog.Logger) { l.Info("sent", "to", "+15551231111") },
			check: func(t *testing.T, line map[string]any, raw string) {
				require.Equal(t, "+1555***1111", line["to"])
			},
		},
		{
			name:  "number inside an error and the message",
			level: slog.LevelInfo,
			log: func(l *slog.Logger) {
				l.Warn("no route for +15559876543", "err", fmt.Errorf("route: sender +15559876543 unknown: %w", errors.New("x")))
			},
			check: func(t *testing.T, line map[string]any, raw string) {
				require.Equal(t, "no route for +1555***6543", line["msg"])
				require.Equal(t, "route: sender +1555***6543 unknown: x", line["err"])
			},
		},
		{
			name:  "groups, stringers and string slices",
			level: slog.LevelInfo,
			log: func(l *slog.Logger) {
				l.Info("mo", slog.Group("msg", "from", "+447700900123", "note", stringer("to +15551231111")), "list", []string{"+15551231111", "plain"})
			},
			check: func(t *testing.T, line map[string]any, raw string) {
				g := line["msg"].(map[string]any)
				require.Equal(t, "+4477***0123", g["from"])
				require.Equal(t, "to +1555***1111", g["note"])
				require.Equal(t, []any{"+1555***1111", "plain"}, line["list"])
			},
		},
		{
			name:  "attributes of With are masked too",
			level: slog.LevelInfo,
			log:   func(l *slog.Logger) { l.With("from", "+15550001111").Info("claimed") },
			check: func(t *testing.T, line map[string]any, raw string) {
				require.Equal(t, "+1555***1111", line["from"])
			},
		},
		{
			name:  "message text is dropped at info",
			level: slog.LevelInfo,
			log:   func(l *slog.Logger) { l.Error("mo failed", "text", "my secret appointment", "Body", "x") },
			check: func(t *testing.T, line map[string]any, raw string) {
				require.Equal(t, "[redacted]", line["text"])
				require.Equal(t, "[redacted]", line["Body"])
				require.NotContains(t, raw, "secret appointment")
			},
		},
		{
			name:  "short and non-phone values are left alone",
			level: slog.LevelInfo,
			log:   func(l *slog.Logger) { l.Info("x", "a", "+12345", "b", "15551231111", "c", "1+2", "n", 15551231111) },
			check: func(t *testing.T, line map[string]any, raw string) {
				require.Equal(t, "+12345", line["a"])
				require.Equal(t, "15551231111", line["b"])
				require.Equal(t, "1+2", line["c"])
			},
		},
		{
			name:  "debug lines are raw",
			level: slog.LevelDebug,
			log: func(l *slog.Logger) {
				l.With("from", "+15550001111").Debug("claimed", "to", "+15551231111", "text", "hello")
			},
			check: func(t *testing.T, line map[string]any, raw string) {
				require.Equal(t, "+15550001111", line["from"])
				require.Equal(t, "+15551231111", line["to"])
				require.Equal(t, "hello", line["text"])
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, _ := newTestLogger(&buf, tc.level, nil)
			tc.log(l)
			lines := jsonLines(t, &buf)
			require.Len(t, lines, 1)
			tc.check(t, lines[0], buf.String())
		})
	}
}

func TestMaskNumber(t *testing.T) {
	tests := []struct{ in, want string }{
		{"+15551231111", "+1555***1111"},
		{"+447700900123", "+4477***0123"},
		{"+123456789012345", "+1234***2345"},
		{"+1234567", "+1***67"},
		{"+123456", "+123456"},
		{"+1555abc", "+1555abc"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, MaskNumber(tc.in), tc.in)
	}
}

func FuzzMaskString(f *testing.F) {
	f.Add("call +15551231111 now")
	f.Add("+1234567+7654321")
	f.Add("++++1")
	f.Fuzz(func(t *testing.T, s string) {
		out := maskString(s)
		// No run of more than eight digits after a '+' survives masking.
		for _, m := range e164Re.FindAllString(out, -1) {
			require.NotContains(t, s, m, "an E.164 number survived: %q in %q", m, out)
		}
	})
}

func TestLogHandlerComponentOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	l, _ := newTestLogger(&buf, slog.LevelDebug, nil)
	l.Info("no component")
	l.Debug("no component, debug")
	l.With("component", "api").With("component", "api").Info("twice")
	l.With("component", "app").Info("own")
	l.Info("in record", "component", "x")
	for _, line := range jsonLines(t, &buf) {
		require.NotEmpty(t, line["component"], line)
	}
	require.Equal(t, 1, strings.Count(strings.Split(buf.String(), "\n")[2], `"component"`), "a repeated component key is written once")
}

func TestLogHandlerDedupesRepeatedFailures(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	var buf bytes.Buffer
	l, h := newTestLogger(&buf, slog.LevelInfo, clock)
	dl := l.With("component", "dispatcher")
	for i := range 5 {
		dl.Error("claim from the queue failed", "err", errors.New("dial tcp 127.0.0.1:6379: connection refused"), "id", fmt.Sprint("msg_", i))
		advance(time.Second)
	}
	dl.Error("claim from the queue failed", "err", errors.New("READONLY"))          // a distinct error: written
	l.With("component", "webhook").Error("claim from the queue failed", "err", "x") // another scope: written
	l.Info("info lines are never held back")
	l.Info("info lines are never held back")
	lines := jsonLines(t, &buf)
	require.Len(t, lines, 5)
	require.Equal(t, "claim from the queue failed", lines[0]["msg"])

	// After the window the count is written once, then the error again.
	advance(DefaultDedupWindow)
	dl.Error("claim from the queue failed", "err", errors.New("dial tcp 127.0.0.1:6379: connection refused"))
	lines = jsonLines(t, &buf)
	require.Len(t, lines, 7)
	require.Equal(t, "claim from the queue failed (repeated 4 times)", lines[5]["msg"])
	require.EqualValues(t, 4, lines[5]["repeated"])
	require.Equal(t, "dispatcher", lines[5]["component"])
	require.Equal(t, "claim from the queue failed", lines[6]["msg"])

	// Flush writes what is pending at shutdown.
	dl.Error("claim from the queue failed", "err", errors.New("dial tcp 127.0.0.1:6379: connection refused"))
	dl.Error("claim from the queue failed", "err", errors.New("dial tcp 127.0.0.1:6379: connection refused"))
	h.Flush(context.Background())
	lines = jsonLines(t, &buf)
	require.Len(t, lines, 8)
	require.Equal(t, "claim from the queue failed (repeated 2 times)", lines[7]["msg"])
	h.Flush(context.Background())
	require.Len(t, jsonLines(t, &buf), 8, "nothing pending after a flush")
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, _, err := NewLogger("json", "warn", &buf)
	require.NoError(t, err)
	l.Info("hidden")
	l.Warn("shown", "to", "+15551231111")
	lines := jsonLines(t, &buf)
	require.Len(t, lines, 1)
	require.Equal(t, "+1555***1111", lines[0]["to"])
	require.Equal(t, "smsgate", lines[0]["component"])

	buf.Reset()
	l, _, err = NewLogger("text", "debug", &buf)
	require.NoError(t, err)
	l.Debug("hello")
	require.Contains(t, buf.String(), "level=DEBUG msg=hello component=smsgate")

	_, _, err = NewLogger("xml", "info", &buf)
	require.ErrorContains(t, err, "log format")
	_, _, err = NewLogger("text", "loud", &buf)
	require.ErrorContains(t, err, "log level")
}

func TestIDTime(t *testing.T) {
	q, err := queue.New(queue.Options{Client: redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}), Prefix: "x:"})
	require.NoError(t, err)
	before := time.Now().Truncate(time.Millisecond)
	id := q.NewMessageID("+15550001111")
	got, ok := idTime(id)
	require.True(t, ok, id)
	require.False(t, got.Before(before))
	require.WithinDuration(t, time.Now(), got, time.Second)

	for _, bad := range []string{"", "msg_", "msg_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"} {
		_, ok := idTime(bad)
		require.False(t, ok, bad)
	}
}

func FuzzIDTime(f *testing.F) {
	f.Add("msg_06h2js29gms74syahby67ekgpw01f")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		_, _ = idTime(id) // must not panic
	})
}

func TestQueueStatsFromStore(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		if testing.Short() {
			t.Skip("needs Redis")
		}
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		t.Cleanup(func() { _ = rdb.Close() })
		testQueueStatsFromStore(t, rdb, testharness.RedisPrefix(t))
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a Redis Cluster")
		}
		// Buckets live on different masters: every bucket is read on its own.
		testQueueStatsFromStore(t, testharness.StartCluster(t, 3, 0).Client(), "smsgate:")
	})
	t.Run("embedded", func(t *testing.T) {
		rdb, stop, err := queue.NewEmbedded()
		require.NoError(t, err)
		t.Cleanup(stop)
		testQueueStatsFromStore(t, rdb, "smsgate:")
	})
}

func testQueueStatsFromStore(t *testing.T, rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	q, err := queue.New(queue.Options{Client: rdb, Prefix: prefix, Buckets: 8})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	s := newQueueStats(rdb, prefix, 8, slog.New(slog.DiscardHandler), reg)

	// Before the first refresh and with nothing queued, the JSON has an
	// empty top and no oldest time (not null and year 1).
	for range 2 {
		raw, err := json.Marshal(s.Snapshot())
		require.NoError(t, err)
		require.Contains(t, string(raw), `"top":[]`)
		require.NotContains(t, string(raw), "oldest_created_at")
		require.NoError(t, s.refresh(ctx))
	}
	require.Zero(t, s.Snapshot().Depth)
	require.Zero(t, s.oldestAge())

	enqueue := func(from string, n int) {
		for range n {
			m := &message.Message{ID: q.NewMessageID(from), OrgID: "acme", From: from, To: "+15557654321", Text: "hi",
				Kind: message.KindUser, Encoding: message.EncodingGSM7, Segments: 1, Characters: 2,
				CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC()}
			_, err := q.Enqueue(ctx, queue.EnqueueRequest{Msg: m, Interval: time.Second, MaxDepth: 1000})
			require.NoError(t, err)
		}
	}
	// claim leases one message; a sender just queued may look due to Claim's
	// clock estimate only a moment later.
	claim := func() []queue.Claimed {
		var got []queue.Claimed
		require.Eventually(t, func() bool {
			c, err := q.Claim(ctx, 1)
			require.NoError(t, err)
			got = c
			return len(c) > 0
		}, 5*time.Second, 5*time.Millisecond)
		require.Len(t, got, 1)
		return got
	}
	enqueue("+15550001111", 3)
	claimed := claim() // one leased: not in the depth
	require.Equal(t, "+15550001111", claimed[0].Msg.From)
	// Its window is full, so it left ready: its two queued messages are found
	// through the leased one.
	ready := fmt.Sprintf("%s{b%d}:ready", prefix, q.Bucket("+15550001111"))
	require.ErrorIs(t, rdb.ZScore(ctx, ready, "+15550001111").Err(), redis.Nil)
	// A sender whose only message is leased has nothing queued.
	enqueue("+15550003333", 1)
	only := claim()
	require.Equal(t, "+15550003333", only[0].Msg.From)
	time.Sleep(20 * time.Millisecond)
	enqueue("+15550002222", 5)

	require.NoError(t, s.refresh(ctx))
	snap := s.Snapshot()
	require.EqualValues(t, 7, snap.Depth)
	require.Equal(t, 2, snap.Senders)
	require.EqualValues(t, 2, snap.Leased)
	require.Len(t, snap.Top, 2)
	require.Equal(t, "+15550002222", snap.Top[0].From)
	require.EqualValues(t, 5, snap.Top[0].Depth)
	require.Equal(t, "+15550001111", snap.Top[1].From)
	require.EqualValues(t, 2, snap.Top[1].Depth)
	require.True(t, snap.Top[1].OldestCreatedAt.Before(snap.Top[0].OldestCreatedAt))
	require.Equal(t, snap.Top[1].OldestCreatedAt, snap.OldestCreatedAt)
	require.WithinDuration(t, time.Now(), snap.OldestCreatedAt, 5*time.Second)
	require.Greater(t, s.oldestAge(), 0.0)

	mfs, err := reg.Gather()
	require.NoError(t, err)
	vals := map[string]float64{}
	for _, mf := range mfs {
		if len(mf.Metric) == 1 && mf.Metric[0].Gauge != nil {
			vals[mf.GetName()] = mf.Metric[0].Gauge.GetValue()
		}
	}
	require.Equal(t, 7.0, vals["smsgate_queue_depth_messages"])
	require.Equal(t, 2.0, vals["smsgate_queue_senders_waiting"])
	require.Equal(t, 2.0, vals["smsgate_queue_leased_messages"])

	// Settling the leases puts the first sender back in ready; nothing
	// queued changes, the third sender stays out.
	require.NoError(t, q.Ack(ctx, claimed[0], []string{"c1"}))
	require.NoError(t, q.Ack(ctx, only[0], []string{"c2"}))
	require.NoError(t, rdb.ZScore(ctx, ready, "+15550001111").Err())
	require.NoError(t, s.refresh(ctx))
	again := s.Snapshot()
	require.EqualValues(t, 7, again.Depth)
	require.Equal(t, 2, again.Senders)
	require.Zero(t, again.Leased)
	require.Equal(t, snap.Top, again.Top)
	require.Equal(t, snap.OldestCreatedAt, again.OldestCreatedAt)

	// A message that Reap ended expired behind a longer-lived one leaves the
	// depth at once, though its id stays in the list until claimed.
	const late = "+15550004444"
	long := &message.Message{ID: q.NewMessageID(late), OrgID: "acme", From: late, To: "+15557654321", Text: "hi",
		Kind: message.KindUser, Encoding: message.EncodingGSM7, Segments: 1, Characters: 2,
		CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour).UTC()}
	short := *long
	short.ID = q.NewMessageID(late)
	short.ExpiresAt = time.Now().Add(300 * time.Millisecond).UTC()
	for _, m := range []*message.Message{long, &short} {
		_, err := q.Enqueue(ctx, queue.EnqueueRequest{Msg: m, Interval: time.Hour})
		require.NoError(t, err)
	}
	require.NoError(t, s.refresh(ctx))
	require.EqualValues(t, 9, s.Snapshot().Depth)
	time.Sleep(time.Until(short.ExpiresAt) + 20*time.Millisecond)
	_, err = q.Reap(ctx)
	require.NoError(t, err)
	rec, err := q.Get(ctx, short.ID)
	require.NoError(t, err)
	require.Equal(t, message.StatusExpired, rec.Status)
	require.NoError(t, s.refresh(ctx))
	require.EqualValues(t, 8, s.Snapshot().Depth)
	require.Equal(t, 3, s.Snapshot().Senders)
}

func TestParseBucketStats(t *testing.T) {
	id := "msg_06h2js29gms74syahby67ekgpw01f"
	at, ok := idTime(id)
	require.True(t, ok)
	for _, tc := range []struct {
		name    string
		val     any
		leased  int64
		queues  []SenderQueue
		wantErr string
	}{
		{name: "empty bucket", val: []any{int64(0)}},
		{name: "leased only", val: []any{int64(3)}, leased: 3},
		{name: "senders", val: []any{int64(1), "+15550001111", int64(2), id, "+15550002222", int64(1), ""}, leased: 1,
			queues: []SenderQueue{{From: "+15550001111", Depth: 2, OldestCreatedAt: at}, {From: "+15550002222", Depth: 1}}},
		{name: "no values", val: []any{}, wantErr: "0 values"},
		{name: "truncated", val: []any{int64(0), "+15550001111", int64(2)}, wantErr: "3 values"},
		{name: "bad leased", val: []any{"x"}, wantErr: "leased count"},
		{name: "bad entry", val: []any{int64(0), "+15550001111", "2", id}, wantErr: "sender entry"},
		{name: "not an array", val: int64(1), wantErr: "redis: unexpected type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := redis.NewCmd(context.Background())
			c.SetVal(tc.val)
			leased, queues, err := parseBucketStats(c)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.leased, leased)
			require.Equal(t, tc.queues, queues)
		})
	}
}

// requiredFamilies are the metric families issue 7 asks for; a scrape of a
// daemon that sent, received and reloaded must show every one.
var requiredFamilies = []string{
	// API requests by route and status class, latency.
	"smsgate_api_requests_total", "smsgate_api_request_duration_seconds",
	// Messages accepted and refused by reason.
	"smsgate_api_messages_accepted_total", "smsgate_api_messages_refused_total",
	// Queue depth and oldest message age.
	"smsgate_queue_depth_messages", "smsgate_queue_oldest_message_age_seconds",
	// Claim and submit latency.
	"smsgate_queue_claim_duration_seconds", "smsgate_dispatch_submit_duration_seconds",
	"smsgate_smpp_submit_sm_duration_seconds",
	// Window in flight and bind state per bind.
	"smsgate_smpp_window_in_flight", "smsgate_smpp_bind_state",
	// submit_sm outcomes by command_status.
	"smsgate_smpp_submit_sm_total",
	// Receipts by state; MO by keyword.
	"smsgate_smpp_receipts_total", "smsgate_inbound_receipts_total", "smsgate_inbound_messages_total",
	// Webhook deliveries by outcome, retries, dead letters, latency.
	"smsgate_webhook_deliveries_total", "smsgate_webhook_retries_scheduled_total",
	"smsgate_webhook_dead_letters", "smsgate_webhook_attempt_duration_seconds",
	// Config reload success and timestamp.
	"smsgate_config_last_reload_successful", "smsgate_config_last_reload_success_timestamp_seconds",
}

// forbiddenLabelValue matches a phone number or a message/event id.
var forbiddenLabelValue = regexp.MustCompile(`^\+?[0-9]{7,15}$|^(msg|evt)_`)

func scrape(t *testing.T, addr string) []*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, mf := range fams {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

func TestMetricsScrapeLintAndDocs(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	msg := d.send("+15550001111", "+15557654321", "Metrics, please.")
	code, _ := d.do("POST", "/v1/messages", `{"from":"+15559990000","to":"+15557654321","text":"x"}`, nil)
	require.Equal(t, http.StatusForbidden, code)
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: "+15557654321", To: "+15550001111", Text: "HELP"}))
	require.Eventually(t, func() bool { return len(d.statuses(msg.ID)) == 2 }, 10*time.Second, 20*time.Millisecond)
	// A failed then a successful reload.
	require.NoError(t, os.WriteFile(d.path, []byte("[http]\nlisten = 7\n"), 0o600))
	code, _ = d.do("POST", "/admin/reload", "", nil)
	require.Equal(t, http.StatusUnprocessableEntity, code)
	d.writeConfig("")
	code, _ = d.do("POST", "/admin/reload", "", nil)
	require.Equal(t, http.StatusOK, code)

	fams := scrape(t, d.app.MetricsAddr())
	got := map[string]*dto.MetricFamily{}
	for _, mf := range fams {
		got[mf.GetName()] = mf
	}
	for _, name := range requiredFamilies {
		require.Contains(t, got, name, "metric family missing from the scrape")
	}
	require.Equal(t, 1.0, got["smsgate_config_last_reload_successful"].Metric[0].Gauge.GetValue())

	// promlint over every family of the scrape.
	problems, err := promlint.NewWithMetricFamilies(fams).Lint()
	require.NoError(t, err)
	require.Empty(t, problems, "promlint")

	// Labels come from fixed sets: never a phone number or an id.
	for _, mf := range fams {
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				require.NotRegexp(t, forbiddenLabelValue, lp.GetValue(), "%s{%s}", mf.GetName(), lp.GetName())
			}
		}
	}

	// Every smsgate family registered (also those with no series yet) is
	// well named and listed in docs/OPERATIONS.md.
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	require.NoError(t, err)
	nameRe := regexp.MustCompile(`^smsgate_[a-z]+_[a-z0-9_]+$`)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	seen := map[string]bool{}
	for _, desc := range d.app.regs.descs() {
		m := fq.FindStringSubmatch(desc.String())
		require.NotNil(t, m, desc.String())
		name := m[1]
		if seen[name] {
			continue
		}
		seen[name] = true
		require.Regexp(t, nameRe, name)
		require.Contains(t, string(doc), "`"+name+"`", "metric %s is not documented in docs/OPERATIONS.md", name)
	}
	for _, name := range requiredFamilies {
		require.True(t, seen[name], "%s not registered through the app's registerer", name)
	}
	// And the doc lists nothing that does not exist.
	for _, m := range regexp.MustCompile("`(smsgate_[a-z0-9_]+)`").FindAllStringSubmatch(string(doc), -1) {
		if strings.HasSuffix(m[1], "_") {
			continue // a prefix such as smsgate_api_
		}
		require.True(t, seen[m[1]], "docs/OPERATIONS.md lists %s, which no component registers", m[1])
	}
}

// configWith rewrites the harness config: rate of the main number, extra
// numbers and extra TOML appended.
func (d *daemon) writeConfigWith(rate string, extra string) {
	d.t.Helper()
	text := configText(d.sim.Addr(), d.sink.URL(), d.prefix, "")
	text = strings.Replace(text, "rate = 50", "rate = "+rate, 1)
	require.NoError(d.t, os.WriteFile(d.path, []byte(text+extra), 0o600))
}

func (d *daemon) reload() (int, string) {
	d.t.Helper()
	return d.do("POST", "/admin/reload", "", nil)
}

// traffic sends messages from one number with unique texts until stop is
// called, and returns the texts of the accepted ones.
func (d *daemon) traffic(from, to, tag string, every time.Duration) (stop func() []string) {
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			text := fmt.Sprintf("%s %d", tag, i)
			if ok, _ := postText(http.DefaultClient, d.app.APIAddr(), from, to, text); ok {
				mu.Lock()
				accepted = append(accepted, text)
				mu.Unlock()
			}
		}
	})
	return func() []string {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return accepted
	}
}

// postText sends one message with the test API key; ok is true on a 202.
func postText(client *http.Client, apiAddr, from, to, text string) (ok bool, err error) {
	body := fmt.Sprintf(`{"from":%q,"to":%q,"text":%q}`, from, to, text)
	req, err := http.NewRequest("POST", "http://"+apiAddr+"/v1/messages", strings.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted, nil
}

// submitCounts counts the simulator's submit_sm by text, and by sender and
// text (the notice text is the same for every sender of an org).
func submitCounts(sim *testharness.Simulator) (byText, bySenderText map[string]int) {
	byText, bySenderText = map[string]int{}, map[string]int{}
	for _, s := range sim.Submits() {
		byText[string(s.ShortMessage)]++
		bySenderText[s.Source+" "+string(s.ShortMessage)]++
	}
	return byText, bySenderText
}

// requireSentOnce waits until every text was submitted and checks that
// nothing was submitted twice (by sender and text).
func requireSentOnce(t *testing.T, sim *testharness.Simulator, texts []string, within time.Duration) {
	t.Helper()
	var missing []string
	ok := assert.Eventually(t, func() bool {
		c, _ := submitCounts(sim)
		missing = missing[:0]
		for _, tx := range texts {
			if c[tx] == 0 {
				missing = append(missing, tx)
			}
		}
		return len(missing) == 0
	}, within, 20*time.Millisecond)
	require.True(t, ok, "%d of %d accepted messages never submitted, e.g. %q", len(missing), len(texts), missing[:min(len(missing), 5)])
	_, c := submitCounts(sim)
	for tx, n := range c {
		require.Equal(t, 1, n, "%q submitted %d times", tx, n)
	}
}

func TestReloadWithTrafficAddsNumberChangesRateKeepsBind(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	stop := d.traffic("+15550001111", "+15557654321", "flow", 30*time.Millisecond)

	// Reload 1: a new number, and the main number slowed to 4 segments/s.
	time.Sleep(200 * time.Millisecond)
	d.writeConfigWith("4", `
  [[org.number]]
  e164 = "+15550003333"
  kind = "toll_free"
  registered = true
`)
	code, raw := d.reload()
	require.Equal(t, http.StatusOK, code, raw)
	slowFrom := time.Now()
	var num struct {
		Rate float64 `json:"rate"`
	}
	code, raw = d.do("GET", "/admin/numbers/%2B15550001111", "", &num)
	require.Equal(t, http.StatusOK, code, raw)
	require.Equal(t, 4.0, num.Rate)
	added := d.send("+15550003333", "+15557654321", "from the new number")

	// Reload 2: a broken file while traffic flows: refused, nothing changes.
	time.Sleep(300 * time.Millisecond)
	broken := strings.Replace(configText(d.sim.Addr(), d.sink.URL(), d.prefix, ""), "window = 10", "window = 0", 1)
	require.NoError(t, os.WriteFile(d.path, []byte(broken), 0o600))
	code, raw = d.reload()
	require.Equal(t, http.StatusUnprocessableEntity, code, raw)
	require.Contains(t, raw, "carrier[0].bind[0].window")
	d.send("+15550003333", "+15557654321", "still configured")
	time.Sleep(900 * time.Millisecond)

	// Submissions from the slowed number are spaced by the new rate (the
	// queue may let one catch up by at most 20 ms).
	var times []time.Time
	for _, s := range d.sim.Submits() {
		if strings.TrimPrefix(s.Source, "+") == "15550001111" && s.At.After(slowFrom.Add(300*time.Millisecond)) {
			times = append(times, s.At)
		}
	}
	require.GreaterOrEqual(t, len(times), 3, "the slowed number kept sending")
	for i := 1; i < len(times); i++ {
		require.GreaterOrEqual(t, times[i].Sub(times[i-1]), 200*time.Millisecond, "gap %d", i)
	}

	// Reload 3: back to 50/s so the backlog drains; traffic stops.
	d.writeConfigWith("50", `
  [[org.number]]
  e164 = "+15550003333"
  kind = "toll_free"
  registered = true
`)
	code, raw = d.reload()
	require.Equal(t, http.StatusOK, code, raw)
	accepted := stop()
	require.NotEmpty(t, accepted)
	requireSentOnce(t, d.sim, append(accepted, "from the new number", "still configured"), 10*time.Second)
	require.Eventually(t, func() bool { return len(d.statuses(added.ID)) == 2 }, 5*time.Second, 20*time.Millisecond)

	// No bind was dropped: one connection carried everything.
	require.Equal(t, 1, d.sim.ActiveBinds())
	require.Equal(t, 1, d.sim.MaxActiveBinds())
	for _, s := range d.sim.Submits() {
		require.Equal(t, 1, s.Conn, "every submit on the first bind")
	}
	fams := scrape(t, d.app.MetricsAddr())
	for _, mf := range fams {
		if mf.GetName() == "smsgate_config_reloads_total" {
			for _, m := range mf.Metric {
				want := map[string]float64{"success": 2, "failure": 1}[m.Label[0].GetValue()]
				require.Equal(t, want, m.Counter.GetValue(), m.Label[0].GetValue())
			}
		}
	}
}

func TestReloadCarrierSet(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	sim2, err := testharness.NewSimulator(testharness.SimOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim2.Close() })
	host, port, _ := strings.Cut(sim2.Addr(), ":")
	second := fmt.Sprintf(`
[[carrier]]
name = "sim2"
  [[carrier.bind]]
  host = %q
  port = %s
  system_id = "smsgate"
  password = "secret"
  window = 5
  reconnect_min = "50ms"
  reconnect_max = "200ms"
`, host, port)
	// The new number routes to the new carrier (set per number, after the
	// [[org]] table so it lands in org[0].number).
	number := `
[[org.number]]
e164 = "+15550003333"
kind = "long_code"
registered = true
carrier = "sim2"
rate = 50
`
	d.writeConfigWith("50", number+second)
	code, raw := d.reload()
	require.Equal(t, http.StatusOK, code, raw)
	require.Eventually(t, func() bool { return sim2.ActiveBinds() == 1 }, 5*time.Second, 20*time.Millisecond, "the new carrier binds")
	d.send("+15550003333", "+15557654321", "via the second carrier")
	require.Eventually(t, func() bool { return sim2.SubmitCount() >= 1 }, 5*time.Second, 20*time.Millisecond)

	// Remove it again: it unbinds; the first carrier's bind is untouched.
	d.writeConfigWith("50", "")
	code, raw = d.reload()
	require.Equal(t, http.StatusOK, code, raw)
	require.Eventually(t, func() bool { return sim2.ActiveBinds() == 0 }, 5*time.Second, 20*time.Millisecond, "the removed carrier unbinds")
	require.Equal(t, 1, d.sim.ActiveBinds())
	require.Equal(t, 1, d.sim.MaxActiveBinds())
}

// A reload that fails as the previous one did is logged when it happens:
// its lines name the reload, so the log's de-duplication does not hold
// them back.
func TestRepeatedFailedReloadIsLogged(t *testing.T) {
	var buf bytes.Buffer
	h := NewLogHandler(slog.NewTextHandler(&buf, nil), LogHandlerOptions{})
	reg := prometheus.NewRegistry()
	a := &App{
		log:      slog.New(h),
		opts:     Options{ConfigPath: "smsgate.toml"},
		reloadOK: promauto.With(reg).NewGauge(prometheus.GaugeOpts{Name: "ok"}),
		reloads:  promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Name: "reloads"}, []string{"result"}),
	}
	bad := &config.ValidationError{Problems: []config.Problem{{Path: "carrier[0].bind[0].window", Message: "must be at least 1, got 0"}}}
	for range 2 {
		a.reloadSeq++
		a.reloadFailed(bad)
	}
	out := buf.String()
	for _, n := range []string{"reload=1", "reload=2"} {
		require.Contains(t, out, `msg="configuration reload: invalid key" `+n+" key=carrier[0].bind[0].window")
		require.Contains(t, out, `msg="configuration reload failed; nothing changed" `+n)
	}
	require.NotContains(t, out, "repeated")
}

func TestRestartOnlyKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smsgate.toml")
	require.NoError(t, os.WriteFile(path, []byte(configText("127.0.0.1:2775", "http://127.0.0.1:9/events", "restart:", "")), 0o600))
	prev, err := CheckConfig(path)
	require.NoError(t, err)
	next, err := CheckConfig(path)
	require.NoError(t, err)
	require.Empty(t, restartOnly(prev, next))

	next.HTTP.Listen = "127.0.0.1:18081"
	next.Redis.KeyPrefix = "other:"
	next.Log.Level = "debug"
	next.Queue.MaxPerNumber++ // applied by a reload
	next.Webhook.Workers++
	require.Equal(t, []string{"http.*", "redis.*", "webhook.workers", "log.*"}, restartOnly(prev, next))
}
