package webhook

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// sinkEnv makes the test binary a bare webhook receiver (see TestMain): the
// benchmarks run it as a separate process so that the process CPU they report
// is the dispatcher's (and the event producer's), not the receiver's.
const sinkEnv = "SMSGATE_WEBHOOK_BENCH_SINK"

func TestMain(m *testing.M) {
	if os.Getenv(sinkEnv) == "1" {
		runBenchSink()
		return
	}
	os.Exit(m.Run())
}

// runBenchSink answers every request 204 and prints its address; it exits
// when its stdin closes (the parent died or is done).
func runBenchSink() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [512]byte
		for {
			if _, err := r.Body.Read(buf[:]); err != nil {
				break
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(l) }()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = srv.Close()
}

// startBenchSink runs the sink process and returns its URL.
func startBenchSink(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sinkEnv+"=1")
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(b, err)
	return "http://" + strings.TrimSpace(addr) + "/events"
}

// redisStats reads command counts and µs spent (keys "<cmd>" and
// "<cmd>:usec") and the server's CPU seconds.
func redisStats(b *testing.B, c *redis.Client) (calls map[string]float64, cpu float64) {
	b.Helper()
	ctx := context.Background()
	calls = map[string]float64{}
	s, err := c.Info(ctx, "commandstats").Result()
	require.NoError(b, err)
	for line := range strings.SplitSeq(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		n, rest, _ := strings.Cut(rest, ",usec=")
		v, _ := strconv.ParseFloat(n, 64)
		calls[name] = v
		n, _, _ = strings.Cut(rest, ",")
		v, _ = strconv.ParseFloat(n, 64)
		calls[name+":usec"] = v
	}
	s, err = c.Info(ctx, "cpu").Result()
	require.NoError(b, err)
	for line := range strings.SplitSeq(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		}
	}
	return calls, cpu
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDeliverStreams delivers b.N events written to 64 streams (the
// queue's default bucket count) on a private Redis, to a receiver in another
// process. "burst" writes them as fast as it can; "paced" at 2,000 events/s,
// closer to the end-to-end run where events trickle in. Reported per event:
// Redis commands (all, XREADGROUP, XACK), redis-server CPU and this process's
// CPU (dispatcher + the pipelined XADDs that produce the events).
// "produce-only" writes the paced events with no dispatcher running: its
// figures are the share of the others that is not the dispatcher's.
// Each runs with entries in the new format (type, org, data: what the queue
// writes) and the old one (also id and at).
// Run with e.g. -benchtime=10000x; keep runs short on the shared machine.
func BenchmarkDeliverStreams(b *testing.B) {
	for _, bc := range []struct {
		name    string
		rate    int // events/s, 0 = as fast as possible
		deliver bool
	}{{"burst", 0, true}, {"paced", 2000, true}, {"produce-only", 2000, false}} {
		for _, format := range entryFormats {
			b.Run(bc.name+"/"+format, func(b *testing.B) { benchDeliverStreams(b, 64, bc.rate, bc.deliver, format) })
		}
	}
}

// benchValues returns the fields of the i-th benchmark entry in format.
func benchValues(format string, i int) []any {
	v := make([]any, 0, 10)
	v = append(v, "type", "message.status", "org", "acme",
		"data", `{"id":"msg_1","status":"delivered","client_ref":"","carrier_message_id":"abc"}`)
	if format == "old" {
		v = append(v, "id", "evt_"+strconv.Itoa(i), "at", "2025-01-02T03:04:05.123456789Z")
	}
	return v
}

func benchDeliverStreams(b *testing.B, nStreams, rate int, deliver bool, format string) {
	c := redis.NewClient(&redis.Options{Addr: testharness.StartRedis(b)})
	b.Cleanup(func() { _ = c.Close() })
	admin := redis.NewClient(&redis.Options{Addr: c.Options().Addr})
	b.Cleanup(func() { _ = admin.Close() })
	streams := make([]string, nStreams)
	for i := range streams {
		streams[i] = fmt.Sprintf("bench:{b%d}:events", i)
	}
	r := &orgs{m: map[string]Endpoint{"acme": {URL: startBenchSink(b), Secret: "sec"}}}
	opts := Options{Client: c, Prefix: "bench:", Streams: streams, Resolver: r, Consumer: "c1",
		Registerer: prometheus.NewRegistry()}
	var d *Dispatcher
	if deliver {
		d, _ = start(b, opts)
	} else {
		d, _ = New(opts)
	}
	success := d.m.deliveries.WithLabelValues("success")
	ctx := context.Background()
	time.Sleep(100 * time.Millisecond) // groups created, reader started

	calls0, rcpu0 := redisStats(b, admin)
	cpu0 := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	begin := time.Now()
	p := c.Pipeline()
	batch := 500
	if rate > 0 {
		batch = max(1, rate/200) // every 5ms
	}
	for i := range b.N {
		p.XAdd(ctx, &redis.XAddArgs{Stream: streams[i%nStreams], Values: benchValues(format, i)})
		if p.Len() == batch {
			_, _ = p.Exec(ctx)
			if rate > 0 {
				time.Sleep(time.Until(begin.Add(time.Duration(i+1) * time.Second / time.Duration(rate))))
			}
		}
	}
	_, _ = p.Exec(ctx)
	for deliver && counterValue(success) < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := processCPU() - cpu0
	calls1, rcpu1 := redisStats(b, admin)
	n := float64(b.N)
	var all float64
	for k, v := range calls1 {
		if k != "info" && !strings.HasSuffix(k, ":usec") {
			all += v - calls0[k]
		}
	}
	all -= n // the XADDs
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(all/n, "redis-cmds/event")
	b.ReportMetric((calls1["xreadgroup"]-calls0["xreadgroup"])/n, "xreadgroup/event")
	b.ReportMetric((calls1["xack"]-calls0["xack"])/n, "xack/event")
	b.ReportMetric((rcpu1-rcpu0)*1e6/n, "redis-cpu-µs/event")
	for _, c := range []string{"xreadgroup", "xack", "xadd"} {
		b.ReportMetric((calls1[c+":usec"]-calls0[c+":usec"])/n, c+"-µs/event")
	}
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/event")
	b.ReportMetric(counterValue(d.m.retries.WithLabelValues("deferred"))/n, "deferred/op")
}
