package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// snapshot is the CPU times of the processes at one moment.
type snapshot struct {
	At                        time.Time
	Smsgate, Redis, Sim, Self cpuTimes
}

func (e *env) snap() (snapshot, error) {
	s := snapshot{At: time.Now()}
	var err error
	if s.Smsgate, err = sumCPU(e.daemons); err != nil {
		return s, err
	}
	if s.Redis, err = sumCPU(e.redisNodes); err != nil {
		return s, err
	}
	if e.sim != nil {
		if s.Sim, err = readCPU(e.sim.pid()); err != nil {
			return s, err
		}
	}
	s.Self, err = readCPU(os.Getpid())
	return s, err
}

// sumCPU is the CPU times of several processes added up.
func sumCPU(cs []*child) (cpuTimes, error) {
	var total cpuTimes
	for _, c := range cs {
		t, err := readCPU(c.pid())
		if err != nil {
			return total, err
		}
		total = cpuTimes{User: total.User + t.User, System: total.System + t.System,
			ChildUser: total.ChildUser + t.ChildUser, ChildSystem: total.ChildSystem + t.ChildSystem}
	}
	return total, nil
}

// fillEnd records what every run notes once its measured window ends: the
// daemons' peak RSS, the load average, and the accept figures of lr.
func (e *env) fillEnd(res *Result, lr loadResult) error {
	var err error
	if res.SmsgatePeakRSS, err = e.peakRSS(); err != nil {
		return err
	}
	res.LoadAvgEnd = loadAvg()
	res.fillAccept(lr)
	return nil
}

// peakRSS is the largest VmHWM of the daemons.
func (e *env) peakRSS() (int64, error) {
	var peak int64
	for _, d := range e.daemons {
		v, err := readHWM(d.pid())
		if err != nil {
			return 0, err
		}
		peak = max(peak, v)
	}
	return peak, nil
}

// daemonExited reports whether any daemon has ended.
func (e *env) daemonExited() bool {
	for _, d := range e.daemons {
		if d.exited() {
			return true
		}
	}
	return false
}

// measureIdle returns the CPU seconds per second smsgate and redis-server
// use while nothing is sent (polling loops).
func (e *env) measureIdle(ctx context.Context) (smsgate, redis float64, err error) {
	if e.opts.Idle <= 0 {
		return 0, 0, nil
	}
	a, err := e.snap()
	if err != nil {
		return 0, 0, err
	}
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(e.opts.Idle):
	}
	b, err := e.snap()
	if err != nil {
		return 0, 0, err
	}
	secs := b.At.Sub(a.At).Seconds()
	return b.Smsgate.Sub(a.Smsgate).Total().Seconds() / secs, b.Redis.Sub(a.Redis).Total().Seconds() / secs, nil
}

// profiler collects profiles during the measured window of a -profile run.
type profiler struct {
	e    *env
	perf *child
}

// startProfile starts the daemon's CPU profile (SIGUSR1) and, when perf is
// installed, a perf recording of redis-server.
func (e *env) startProfile() *profiler {
	if e.opts.Profile == "" {
		return nil
	}
	p := &profiler{e: e}
	if err := e.daemon.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		e.logf("profile: %v", err)
	}
	if perf, err := exec.LookPath("perf"); err == nil {
		p.perf, err = e.start("perf", nil, perf, "record", "-F", "499", "-g", "-p", strconv.Itoa(e.redis.pid()),
			"-o", filepath.Join(e.opts.Profile, "redis.perf.data"))
		if err != nil {
			e.logf("perf: %v", err)
		}
	}
	return p
}

// stop ends the profiles and writes text summaries next to them.
func (p *profiler) stop(ctx context.Context) {
	if p == nil {
		return
	}
	e := p.e
	if err := e.daemon.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		e.logf("profile: %v", err)
	}
	if p.perf != nil {
		_ = p.perf.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.perf.done:
		case <-time.After(30 * time.Second):
			_ = p.perf.cmd.Process.Kill()
		}
	}
	// The daemon writes allocs-end.pb.gz on SIGUSR2; wait for it.
	end := filepath.Join(e.opts.Profile, "allocs-end.pb.gz")
	_ = waitFor(ctx, nil, 10*time.Second, "allocs-end.pb.gz written", func() error {
		_, err := os.Stat(end)
		return err
	})
	time.Sleep(200 * time.Millisecond) // let the write finish
	dir := e.opts.Profile
	summaries := []struct {
		out  string
		bin  string
		args []string
	}{
		{"cpu.txt", "go", []string{"tool", "pprof", "-top", "-nodecount=60", filepath.Join(dir, "cpu.pb.gz")}},
		{"cpu-cum.txt", "go", []string{"tool", "pprof", "-top", "-cum", "-nodecount=60", filepath.Join(dir, "cpu.pb.gz")}},
		{"allocs.txt", "go", []string{"tool", "pprof", "-top", "-nodecount=60", "-sample_index=alloc_space",
			"-base", filepath.Join(dir, "allocs-start.pb.gz"), end}},
		{"allocs-objects.txt", "go", []string{"tool", "pprof", "-top", "-nodecount=60", "-sample_index=alloc_objects",
			"-base", filepath.Join(dir, "allocs-start.pb.gz"), end}},
		{"block.txt", "go", []string{"tool", "pprof", "-top", "-cum", "-nodecount=60",
			"-base", filepath.Join(dir, "block-start.pb.gz"), filepath.Join(dir, "block-end.pb.gz")}},
		{"mutex.txt", "go", []string{"tool", "pprof", "-top", "-nodecount=40",
			"-base", filepath.Join(dir, "mutex-start.pb.gz"), filepath.Join(dir, "mutex-end.pb.gz")}},
	}
	if p.perf != nil {
		summaries = append(summaries, struct {
			out  string
			bin  string
			args []string
		}{"redis-perf.txt", "perf", []string{"report", "-i", filepath.Join(dir, "redis.perf.data"), "--no-children",
			"--sort", "symbol", "--stdio", "--percent-limit", "0.5"}})
	}
	for _, s := range summaries {
		cmd := exec.CommandContext(ctx, s.bin, s.args...)
		out, err := cmd.Output()
		if err != nil {
			e.logf("profile summary %s: %v", s.out, err)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, s.out), out, 0o644); err != nil {
			e.logf("profile summary %s: %v", s.out, err)
		}
	}
	e.logf("profiles in %s (cpu.txt, allocs.txt, redis-perf.txt)", dir)
}

// usedMemory returns used_memory from INFO memory.
func (e *env) usedMemory(ctx context.Context) (int64, error) {
	info, err := e.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("info memory: %w", err)
	}
	return infoField(info, "used_memory")
}

// infoField returns an integer field of an INFO reply.
func infoField(info, field string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && k == field {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("info %s: %w", field, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("info: no field %s", field)
}

// cmdStat is one line of INFO commandstats.
type cmdStat struct {
	Name   string  `json:"cmd"`
	Calls  int64   `json:"calls"`
	Usec   int64   `json:"usec"`
	PerMsg float64 `json:"calls_per_msg"`
}

// parseCommandStats parses INFO commandstats lines such as
// "cmdstat_evalsha:calls=10,usec=250,usec_per_call=25.00,rejected_calls=0,failed_calls=0",
// most expensive first.
func parseCommandStats(info string) []cmdStat {
	var out []cmdStat
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		c := cmdStat{Name: strings.TrimPrefix(name, "cmdstat_")}
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				c.Calls = n
			case "usec":
				c.Usec = n
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b cmdStat) int { return cmp.Compare(b.Usec, a.Usec) })
	return out
}

// commandStats returns the commands Redis ran since resetStats (added over
// the cluster's nodes), with calls per user message (commands inside
// scripts count too).
func (e *env) commandStats(ctx context.Context, perMsg int) []cmdStat {
	var text strings.Builder
	for _, rdb := range e.rdbs {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			e.logf("info commandstats: %v", err)
			return nil
		}
		text.WriteString(info)
		text.WriteByte('\n')
	}
	cs := mergeCommandStats(parseCommandStats(text.String()))
	for i := range cs {
		cs[i].PerMsg = float64(cs[i].Calls) / float64(max(perMsg, 1))
	}
	return cs
}

// mergeCommandStats adds up the lines of one command (several nodes' INFO),
// most expensive first.
func mergeCommandStats(cs []cmdStat) []cmdStat {
	var out []cmdStat
	at := map[string]int{}
	for _, c := range cs {
		if i, ok := at[c.Name]; ok {
			out[i].Calls += c.Calls
			out[i].Usec += c.Usec
			continue
		}
		at[c.Name] = len(out)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b cmdStat) int { return cmp.Compare(b.Usec, a.Usec) })
	return out
}

// resetStats zeroes Redis' command statistics on every node.
func (e *env) resetStats(ctx context.Context) {
	for _, rdb := range e.rdbs {
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			e.logf("config resetstat: %v", err)
		}
	}
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// machine describes where the run happened.
func machine() Machine {
	return Machine{NProc: runtime.NumCPU(), CPU: cpuModel(), LoadAvg: loadAvg()}
}

// loadRun is the end-to-end run: send n messages, wait for every delivered
// event (user messages and notices), measure.
func (e *env) loadRun(ctx context.Context, p plan, n int) (*Result, error) {
	o := e.opts
	bodies := p.bodies(n)
	gen := newGenerator(e.messageURLs(), benchAPIKey, o.Concurrency, o.Rate)
	res := &Result{Mode: "e2e", Params: paramsOf(o, n), Machine: machine(), Profiled: o.Profile != ""}
	var err error
	if res.IdleCPU.Smsgate, res.IdleCPU.Redis, err = e.measureIdle(ctx); err != nil {
		return nil, err
	}
	e.resetStats(ctx)
	before, err := e.snap()
	if err != nil {
		return nil, err
	}
	prof := e.startProfile()
	pl := startPoller(ctx, 100*time.Millisecond, e.sink, func(ctx context.Context) (float64, error) {
		s, err := scrapeAll(ctx, e.http, e.metricsURLs)
		return submitsOK(s), err
	})
	e.logf("sending %d messages from %d numbers to %d daemon(s) on %s, concurrency %d, rate %s; load average %s",
		n, len(p.numbers), len(e.daemons), e.storeLabel(), o.Concurrency, rateLabel(o.Rate), res.Machine.LoadAvg)
	lr := gen.run(ctx, bodies)
	accepted := lr.Accepted()
	e.logf("accepted %d in %.2fs; waiting for delivered events", accepted, lr.End.Sub(lr.Start).Seconds())
	s, err := scrapeAll(ctx, e.http, e.metricsURLs)
	if err != nil {
		return nil, err
	}
	notices := int(sum(s, "smsgate_queue_enqueued_total", map[string]string{"kind": "notice"}))
	if want := p.conversations(accepted); notices != want {
		e.logf("%d notices queued, expected one per conversation: %d", notices, want)
	}

	c, complete := e.waitDelivered(ctx, lr.Start, accepted, notices)
	res.Complete = complete
	after, err := e.snap()
	if err != nil {
		return nil, err
	}
	points := pl.stop()
	res.Redis = e.commandStats(ctx, accepted)
	prof.stop(ctx)
	final, err := e.finalMetrics(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.fillEnd(res, lr); err != nil {
		return nil, err
	}
	res.Notices = notices

	submits := submitsOK(final)
	res.fillSubmits(points, after.At, submits, c, lr.Start)
	res.SubmitsOther = int(sum(final, "smsgate_smpp_submit_sm_total", nil) - submits)
	res.fillSink(c, lr.Start)
	res.Outcomes = map[string]int{}
	for _, x := range final {
		if x.name == "smsgate_dispatch_submissions_total" && x.value > 0 {
			res.Outcomes[x.labels["outcome"]] += int(x.value)
		}
	}
	res.WebhookRetries = int(sum(final, "smsgate_webhook_deliveries_total", map[string]string{"outcome": "retry"}))
	res.fillCPU(before, after)
	return res, nil
}

// waitDelivered waits until the sink has a delivered event for every one of
// accepted user messages and notices, the timeout counted from start passes,
// or a daemon exits. It returns the sink's counts and whether all arrived.
func (e *env) waitDelivered(ctx context.Context, start time.Time, accepted, notices int) (sinkCounts, bool) {
	deadline := start.Add(e.opts.Timeout)
	for {
		c := e.sink.counts()
		if c.UserDelivered >= accepted && c.NoticeDelivered >= notices {
			return c, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil || e.daemonExited() {
			return c, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memoryRun queues n messages with no bind up and measures Redis memory.
func (e *env) memoryRun(ctx context.Context, p plan, n int) (*Result, error) {
	o := e.opts
	bodies := p.bodies(n)
	gen := newGenerator(e.messageURLs(), benchAPIKey, o.Concurrency, o.Rate)
	res := &Result{Mode: "queue-only", Params: paramsOf(o, n), Machine: machine(), Profiled: o.Profile != ""}
	var err error
	if res.IdleCPU.Smsgate, res.IdleCPU.Redis, err = e.measureIdle(ctx); err != nil {
		return nil, err
	}
	mem0, err := e.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	keys0, err := e.rdb.DBSize(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("dbsize: %w", err)
	}
	e.resetStats(ctx)
	before, err := e.snap()
	if err != nil {
		return nil, err
	}
	prof := e.startProfile()
	e.logf("queueing %d messages from %d numbers with no bind up, concurrency %d; load average %s",
		n, len(p.numbers), o.Concurrency, res.Machine.LoadAvg)
	lr := gen.run(ctx, bodies)
	after, err := e.snap()
	if err != nil {
		return nil, err
	}
	res.Redis = e.commandStats(ctx, lr.Accepted())
	prof.stop(ctx)
	s, err := e.finalMetrics(ctx)
	if err != nil {
		return nil, err
	}
	mem1, err := e.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	keys1, err := e.rdb.DBSize(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("dbsize: %w", err)
	}
	if err := e.fillEnd(res, lr); err != nil {
		return nil, err
	}
	res.Notices = int(sum(s, "smsgate_queue_enqueued_total", map[string]string{"kind": "notice"}))
	queued := res.Accepted + res.Notices
	res.Memory = &Memory{
		UsedBefore: mem0, UsedAfter: mem1, Queued: queued, KeysAdded: keys1 - keys0,
		AOFBytes: dirSize(filepath.Join(e.tmp, "redis")),
	}
	if queued > 0 {
		res.Memory.PerMessage = float64(mem1-mem0) / float64(queued)
		res.Memory.AOFPerMessage = float64(res.Memory.AOFBytes) / float64(queued)
	}
	res.fillCPU(before, after)
	return res, nil
}

// finalMetrics scrapes every daemon's metrics and keeps the text in the
// temp dir (see -keep) and the profile dir.
func (e *env) finalMetrics(ctx context.Context) ([]sample, error) {
	var out []sample
	for i, url := range e.metricsURLs {
		text, err := scrapeText(ctx, e.http, url)
		if err != nil {
			return nil, err
		}
		file := "metrics-end.txt"
		if i > 0 {
			file = fmt.Sprintf("metrics-end-%d.txt", i+1)
		}
		for _, dir := range []string{e.tmp, e.opts.Profile} {
			if dir != "" {
				_ = os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644)
			}
		}
		s, err := parseMetrics(text)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// messageURLs are the daemons' POST /v1/messages URLs.
func (e *env) messageURLs() []string {
	out := make([]string, len(e.apis))
	for i, a := range e.apis {
		out[i] = a + "/v1/messages"
	}
	return out
}

// storeLabel describes the Redis store of the run.
func (e *env) storeLabel() string {
	if e.opts.Cluster {
		return fmt.Sprintf("a %d-master Redis Cluster", len(e.redisNodes))
	}
	return "one redis-server"
}

func rateLabel(r float64) string {
	if r <= 0 {
		return "closed loop"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + "/s open loop"
}
