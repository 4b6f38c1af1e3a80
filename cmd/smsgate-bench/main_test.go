package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, o options)
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, o options) {
			require.Equal(t, 50000, o.N)
			require.Equal(t, 1000, o.Numbers)
			require.Equal(t, 64, o.Concurrency)
			require.Equal(t, 2, o.Binds)
			require.Equal(t, 50, o.Window)
			require.Zero(t, o.Rate)
			require.Zero(t, o.QueueOnly)
			require.False(t, o.Cluster)
			require.Equal(t, 1, o.Daemons)
		}},
		{name: "cluster with three daemons", args: []string{"-quick", "-cluster", "-daemons", "3"}, check: func(t *testing.T, o options) {
			require.True(t, o.Cluster)
			require.Equal(t, 3, o.Daemons)
			require.Equal(t, quickN, o.N)
		}},
		{name: "cluster excludes the memory run and profiling", args: []string{"-cluster", "-queue-only", "10", "-profile", "p", "-daemons", "0"},
			wantErr: "-daemons must be positive, got 0\n-queue-only runs one daemon on one redis-server: no -cluster or -daemons\n-profile runs one daemon on one redis-server: no -cluster or -daemons"},
		{name: "quick sets n", args: []string{"-quick"}, check: func(t *testing.T, o options) {
			require.Equal(t, quickN, o.N)
		}},
		{name: "explicit n wins over quick", args: []string{"-n", "777", "-quick"}, check: func(t *testing.T, o options) {
			require.Equal(t, 777, o.N)
		}},
		{name: "open loop and memory run", args: []string{"-rate", "8400", "-queue-only", "1000000"}, check: func(t *testing.T, o options) {
			require.Equal(t, 8400.0, o.Rate)
			require.Equal(t, 1000000, o.QueueOnly)
		}},
		{name: "every bad value reported", args: []string{"-n", "0", "-concurrency", "-1", "-rate", "-5"},
			wantErr: "-n must be positive, got 0\n-concurrency must be positive, got -1\n-rate must not be negative, got -5"},
		{name: "floor", args: []string{"-floor", "-quick"}, check: func(t *testing.T, o options) {
			require.True(t, o.Floor)
			require.Equal(t, quickN, o.N)
		}},
		{name: "floor runs alone", args: []string{"-floor", "-cluster"},
			wantErr: "-floor, -floor-raw and -floor-full run the floor gateway alone: no -queue-only, -cluster, -daemons or -profile"},
		{name: "floor-raw is a floor run", args: []string{"-floor-raw"}, check: func(t *testing.T, o options) {
			require.True(t, o.Floor)
			require.True(t, o.FloorRaw)
		}},
		{name: "floor-full is a floor run, with a simulator", args: []string{"-floor-full", "-floor-raw", "-receipt-delay", "1s"}, check: func(t *testing.T, o options) {
			require.True(t, o.Floor)
			require.True(t, o.FloorFull)
			require.True(t, o.FloorRaw)
			require.Equal(t, time.Second, o.ReceiptDelay)
		}},
		{name: "floor has no simulator to delay", args: []string{"-floor", "-receipt-delay", "1s"},
			wantErr: "-receipt-delay needs a simulator: -floor and -floor-raw run none (-floor-full does)"},
		{name: "stray argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: "flag provided but not defined: -nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99.9 of 1..100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p100 is the max", ms(1, 5, 9), 100, 9 * time.Millisecond},
		{"tiny p is the min", ms(3, 5, 9), 0.1, 3 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, percentile(tc.sorted, tc.p))
		})
	}
	st := summarize(ms(5, 1, 4, 2, 3))
	require.Equal(t, 3*time.Millisecond, st.P50)
	require.Equal(t, 5*time.Millisecond, st.Max)
}

func TestParseStat(t *testing.T) {
	// Field 2 with spaces and a ')' inside, as a process may name itself.
	line := "4242 (redis-server (x) *:6379) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 3 2 20 0 5 0 1000 100000 2000 18446744073709551615"
	c, err := parseStat(line)
	require.NoError(t, err)
	require.Equal(t, 2500*time.Millisecond, c.User)
	require.Equal(t, 750*time.Millisecond, c.System)
	require.Equal(t, 30*time.Millisecond, c.ChildUser)
	require.Equal(t, 20*time.Millisecond, c.ChildSystem)
	require.Equal(t, 3300*time.Millisecond, c.Total())
	d := c.Sub(cpuTimes{User: time.Second, System: 250 * time.Millisecond})
	require.Equal(t, 1500*time.Millisecond, d.User)
	require.Equal(t, 500*time.Millisecond, d.System)

	_, err = parseStat("4242 no parenthesis")
	require.Error(t, err)
	_, err = parseStat("1 (x) S 1 2 3")
	require.ErrorContains(t, err, "fields after the command name")
	_, err = parseStat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 1 1 1")
	require.ErrorContains(t, err, "field 14")
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tsmsgate\nVmPeak:\t 1875636 kB\nVmHWM:\t   57812 kB\nVmRSS:\t   29708 kB\nThreads:\t12\n"
	v, err := parseStatusKB(status, "VmHWM")
	require.NoError(t, err)
	require.Equal(t, int64(57812*1024), v)
	_, err = parseStatusKB(status, "VmSwap")
	require.ErrorContains(t, err, "no VmSwap line")
	_, err = parseStatusKB(status, "Threads")
	require.ErrorContains(t, err, "unexpected value")
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP smsgate_smpp_submit_sm_total submit_sm answered.
# TYPE smsgate_smpp_submit_sm_total counter
smsgate_smpp_submit_sm_total{carrier="sim",status="ESME_ROK"} 1234
smsgate_smpp_submit_sm_total{carrier="other",status="ESME_ROK"} 6
smsgate_smpp_submit_sm_total{carrier="sim",status="timeout"} 2
smsgate_queue_enqueued_total{kind="notice"} 5000
go_goroutines 87
process_start_time_seconds 1.7959910840549326e+09
`
	s, err := parseMetrics(text)
	require.NoError(t, err)
	require.Len(t, s, 6)
	require.Equal(t, 1240.0, submitsOK(s))
	require.Equal(t, 1242.0, sum(s, "smsgate_smpp_submit_sm_total", nil))
	require.Equal(t, 1236.0, sum(s, "smsgate_smpp_submit_sm_total", map[string]string{"carrier": "sim"}))
	require.Equal(t, 5000.0, sum(s, "smsgate_queue_enqueued_total", map[string]string{"kind": "notice"}))
	require.Equal(t, 87.0, sum(s, "go_goroutines", nil))
	require.Zero(t, sum(s, "missing", nil))

	_, err = parseMetrics("x{a=\"b\" 1\n")
	require.Error(t, err)
	_, err = parseMetrics("x{a=\"b\"} notanumber\n")
	require.Error(t, err)
}

func TestReached(t *testing.T) {
	t0 := time.Unix(1000, 0)
	pts := []point{{At: t0, Value: 0}, {At: t0.Add(100 * time.Millisecond), Value: 50}, {At: t0.Add(200 * time.Millisecond), Value: 150}}
	at, ok := reached(pts, 100)
	require.True(t, ok)
	require.Equal(t, t0.Add(150*time.Millisecond), at) // halfway between 50 and 150
	at, ok = reached(pts, 0)
	require.True(t, ok)
	require.Equal(t, t0, at)
	_, ok = reached(pts, 151)
	require.False(t, ok)
}

func TestInfoFields(t *testing.T) {
	info := "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
	v, err := infoField(info, "used_memory")
	require.NoError(t, err)
	require.Equal(t, int64(1048576), v)
	_, err = infoField(info, "used_memory_human")
	require.Error(t, err)
	_, err = infoField(info, "maxmemory")
	require.Error(t, err)

	cs := parseCommandStats("# Commandstats\r\ncmdstat_get:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=5,usec=500,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n")
	require.Equal(t, []cmdStat{{Name: "evalsha", Calls: 5, Usec: 500}, {Name: "get", Calls: 10, Usec: 20}}, cs)
}

func TestPlan(t *testing.T) {
	p := newPlan(3, 2, `Say "hi" ✓`)
	require.Equal(t, []string{"+15551000000", "+15551000001", "+15551000002"}, p.numbers)
	pairs := map[[2]string]bool{}
	for i := range 12 {
		from, to := p.route(i)
		require.Equal(t, p.numbers[i%3], from)
		pairs[[2]string{from, to}] = true
		if i == 5 {
			require.Len(t, pairs, 6, "the first numbers×recipients messages open distinct conversations")
		}
	}
	require.Len(t, pairs, 6, "later messages reuse them")
	require.Equal(t, 6, p.conversations(100))
	require.Equal(t, 4, p.conversations(4))

	bodies := p.bodies(4)
	var req struct{ From, To, Text, ClientRef string }
	require.NoError(t, json.Unmarshal(bodies[3], &req))
	require.Equal(t, `Say "hi" ✓`, req.Text)
	i, ok := parseClientRef(clientRef(3))
	require.True(t, ok)
	require.Equal(t, 3, i)
	_, ok = parseClientRef("")
	require.False(t, ok)
	_, ok = parseClientRef("bx")
	require.False(t, ok)
}

// TestConfigValid checks that the generated configuration passes the
// daemon's own strict parsing and validation.
func TestConfigValid(t *testing.T) {
	for _, unreachable := range []bool{false, true} {
		text := configTOML(daemonConfig{
			HTTPPort: 18080, MetricsPort: 19090, RedisPort: 16379, SinkURL: "http://127.0.0.1:9999/events",
			SMSCHost: "127.0.0.1", SMSCPort: 2775, Binds: 2, Window: 50, WebhookWorkers: 16,
			MaxPerNumber: 100000, Numbers: newPlan(3, 5, "x").numbers, Unreachable: unreachable,
			StatusEvents: []string{"delivered", "failed"},
		})
		cfg, err := config.Parse([]byte(text))
		require.NoError(t, err, text)
		require.Len(t, cfg.Orgs, 1)
		require.Len(t, cfg.Orgs[0].Numbers, 3)
		require.Len(t, cfg.Carriers[0].Binds, 2)
		require.Equal(t, 16, cfg.Webhook.Workers)
		require.Equal(t, []string{"delivered", "failed"}, cfg.Webhook.StatusEvents)
		_, num, ok := cfg.Number("+15551000002")
		require.True(t, ok)
		require.True(t, num.Registered)
		require.Equal(t, 1000.0, num.EffectiveRate())
		require.Equal(t, "127.0.0.1:16379", cfg.Redis.Addr)
	}
	text := configTOML(daemonConfig{
		HTTPPort: 18080, MetricsPort: 19090, RedisCluster: []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
		SinkURL: "http://127.0.0.1:9999/events", SMSCHost: "127.0.0.1", SMSCPort: 2775, Binds: 2, Window: 50,
		MaxPerNumber: 100000, Numbers: newPlan(3, 5, "x").numbers,
	})
	cfg, err := config.Parse([]byte(text))
	require.NoError(t, err, text)
	require.Empty(t, cfg.Redis.Addr)
	require.Equal(t, []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, cfg.Redis.Cluster)
}

func TestMergeCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=250,usec_per_call=25.00\r\ncmdstat_get:calls=1,usec=5\r\n\n" +
		"# Commandstats\r\ncmdstat_evalsha:calls=5,usec=100,usec_per_call=20.00\r\ncmdstat_xadd:calls=4,usec=300\r\n"
	got := mergeCommandStats(parseCommandStats(info))
	require.Equal(t, []cmdStat{{Name: "evalsha", Calls: 15, Usec: 350}, {Name: "xadd", Calls: 4, Usec: 300}, {Name: "get", Calls: 1, Usec: 5}}, got)
}

func TestSinkCounts(t *testing.T) {
	s := &sink{byKind: map[string]int{}, delivered: make([]bool, 3)}
	post := func(body string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(body)))
		require.Equal(t, http.StatusNoContent, rec.Code)
	}
	ev := func(status, ref string) string {
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(map[string]any{"id": "evt_1", "type": "message.status",
			"data": map[string]string{"id": "msg_1", "status": status, "client_ref": ref}})
		return b.String()
	}
	post(ev("sent", "b0"))
	post(ev("delivered", "b0"))
	post(ev("delivered", "b0")) // at-least-once: a repeat
	post(ev("delivered", "b2"))
	post(ev("delivered", ""))   // a notice
	post(ev("delivered", "b9")) // out of range
	post(`{"type":"message.received","data":{}}`)
	post(`not json`)
	c := s.counts()
	require.Equal(t, 2, c.UserDelivered)
	require.Equal(t, 1, c.DupDelivered)
	require.Equal(t, 1, c.NoticeDelivered)
	require.Equal(t, 2, c.Bad)
	require.Equal(t, 8, c.Total)
	require.Equal(t, map[string]int{"message.status:sent": 1, "message.status:delivered": 5, "message.received": 1}, c.ByKind)
	require.False(t, c.LastDelivered.IsZero())
}

func TestReport(t *testing.T) {
	r := &Result{Mode: "e2e", Params: Params{N: 10, Numbers: 2, Recipients: 5, Concurrency: 4, Rate: 9000, Binds: 2, Window: 50},
		Accepted: 10, AcceptRate: 9000, P99Ms: 4, SubmitRate: 9000, DeliveredRate: 100, CPU: CPU{TotalPer1k: 0.5}}
	var b bytes.Buffer
	require.NoError(t, report(&b, r))
	out := b.String()
	require.Contains(t, out, "≤ 10 ms at ≥ 8400/s: met")
	require.Contains(t, out, "≥ 8400: met")
	require.Contains(t, out, "≥ 8100: missed")
	require.Contains(t, out, "≤ 0.12: missed")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var back Result
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &back), "the last line is the JSON result")
	require.Equal(t, 10, back.Accepted)
}

func TestFloorStatuses(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "sent,delivered"},
		{"delivered,undelivered,failed,expired", "delivered"},
		{"sent,delivered", "sent,delivered"},
		{"failed", ""},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, floorStatuses(tc.in), tc.in)
	}
}

// TestFloorGateway runs the floor gateway against the bench's sink: every
// message gets its events, a new conversation also its notice's, and a bad
// request is refused. The full variants also store each message in Redis
// and submit it to an in-process simulator, whose answers and receipts
// make the events; one has a single bind with a window of 1, so a message
// queued behind its notice waits for the notice's window slot.
func TestFloorGateway(t *testing.T) {
	type serveFunc = func(ctx context.Context, ln net.Listener, webhook string, core *floorCore, workers int) error
	for _, tc := range []struct {
		name   string
		serve  serveFunc
		full   bool
		binds  int
		window int
	}{
		{"net/http", serveFloor, false, 0, 0},
		{"raw", serveFloorRaw, false, 0, 0},
		{"net/http full", serveFloor, true, 2, 50},
		{"raw full, one bind, window 1", serveFloorRaw, true, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core := newFloorCore([]string{"sent", "delivered"})
			var rdb *redis.Client
			var prefix string
			if tc.full {
				rdb, prefix = floorRedis(t)
				sim, err := testharness.NewSimulator(testharness.SimOptions{})
				require.NoError(t, err)
				t.Cleanup(func() { _ = sim.Close() })
				c, err := newFloorCarrier(core, rdb.Options().Addr, prefix, sim.Addr(), testharness.DefaultSystemID, testharness.DefaultPassword, tc.binds, tc.window)
				require.NoError(t, err)
				core.carrier = c
			}
			testFloorGateway(t, core, tc.serve)
			if tc.full {
				// Every message (4) and notice (2) is stored, ended delivered.
				keys, err := rdb.Keys(context.Background(), prefix+"m:*").Result()
				require.NoError(t, err)
				require.Len(t, keys, 6)
				for _, k := range keys {
					require.Equal(t, "delivered", rdb.HGet(context.Background(), k, "st").Val(), k)
				}
			}
		})
	}
}

// floorRedis is a client of the shared redis-server and a key prefix of the
// test's own, whose keys are removed at cleanup.
func floorRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	const addr = "127.0.0.1:6379" // the Redis of the machine and of CI
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Ping(context.Background()).Err(), "redis-server at %s", addr)
	prefix := fmt.Sprintf("test:floor:%d:", rand.Uint64())
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			_ = rdb.Del(context.Background(), keys...).Err()
		}
	})
	return rdb, prefix
}

func testFloorGateway(t *testing.T, core *floorCore, serve func(ctx context.Context, ln net.Listener, webhook string, core *floorCore, workers int) error) {
	snk, err := newSink(10)
	require.NoError(t, err)
	t.Cleanup(func() { _ = snk.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, snk.URL(), core, 2) }()

	p := newPlan(2, 1, "hello")
	bodies := p.bodies(4) // two numbers with one recipient each: messages 2 and 3 reuse the conversations of 0 and 1
	for i, b := range bodies {
		resp, err := http.Post("http://"+ln.Addr().String()+"/v1/messages", "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "message %d", i)
	}
	resp, err := http.Post("http://"+ln.Addr().String()+"/v1/messages", "application/json", strings.NewReader("{"))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	notices := p.conversations(4)
	require.Equal(t, 2, notices)
	require.Eventually(t, func() bool {
		c := snk.counts()
		return c.UserDelivered == 4 && c.NoticeDelivered == notices
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	c := snk.counts()
	require.Equal(t, map[string]int{"message.status:sent": 4 + notices, "message.status:delivered": 4 + notices}, c.ByKind)
	require.Zero(t, c.DupDelivered)
	require.Zero(t, c.Bad)
}

// TestFloorCarrierWindow: messages queued together on one bind with a
// window of 1 all go out: the writer flushes what it wrote before it waits
// for a window slot.
func TestFloorCarrierWindow(t *testing.T) {
	rdb, prefix := floorRedis(t)
	sim, err := testharness.NewSimulator(testharness.SimOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	core := newFloorCore([]string{"delivered"})
	c, err := newFloorCarrier(core, rdb.Options().Addr, prefix, sim.Addr(), testharness.DefaultSystemID, testharness.DefaultPassword, 1, 1)
	require.NoError(t, err)
	core.carrier = c
	defer core.drain() // stops the carrier
	var msgs []floorMsg
	for i := range 20 {
		msgs = append(msgs, floorMsg{id: fmt.Sprint("m", i), ref: fmt.Sprint("r", i), from: "+15550000001", to: "+15560000001", text: "hi"})
	}
	require.NoError(t, c.accept(msgs))
	got := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for len(got) < len(msgs) {
		select {
		case ev := <-core.events:
			require.Equal(t, "delivered", ev.status)
			got[ev.msgID] = true
		case <-timeout:
			t.Fatalf("%d of %d messages delivered", len(got), len(msgs))
		}
	}
}
