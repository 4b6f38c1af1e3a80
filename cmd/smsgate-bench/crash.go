package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smsgate/smsgate/testharness"
)

// A crash run (-kill-after D) sends the load as usual, SIGKILLs the gateway
// (smsgate, or Kannel's bearerbox) D after the first request, starts it
// again at once with the same configuration, and then counts, per message,
// what reached the SMSC and the webhook. The simulator runs inside the bench
// so that it can record every submit_sm; a message is known at the SMSC by
// its source and destination, so a crash run sends at most one message per
// (number, recipient) pair (-n ≤ -numbers × -recipients; smsgate's notices,
// which share the pair, are told apart by their text).

// crashQuiet ends a crash run's wait for reports once none came for this
// long: longer than smsgate's default lease (30 s), after which the
// messages a killed daemon held are sent again.
const crashQuiet = 45 * time.Second

// crashNoticePrefix starts the text of smsgate's sender-ID notices.
const crashNoticePrefix = "You are messaging with "

// Crash is what a crash run found.
type Crash struct {
	KillAfterS float64 `json:"kill_after_s"`
	OutageS    float64 `json:"outage_s"` // from the SIGKILL until the restarted gateway was ready
	// From the SIGKILL until the SMSC received the first submit_sm on a
	// connection opened after it.
	SendGapS float64 `json:"send_gap_s"`
	// Accepted messages (202) the SMSC never received: lost.
	Lost int `json:"lost"`
	// Messages the SMSC received more than once, and the extra copies.
	Duplicated int `json:"duplicated"`
	Copies     int `json:"extra_copies"`
	// Accepted messages that reached the SMSC but whose delivered event (or
	// Kannel delivery report) never reached the webhook.
	NoReport int `json:"no_report"`
	// Messages the SMSC received whose request got no 202 (the gateway died
	// before answering): sent although the client was not told so.
	SentUnaccepted int `json:"sent_unaccepted"`
	// Requests that failed (transport error or non-202) while the gateway was down.
	Failed int `json:"failed_requests"`
}

// startSimulatorInProcess starts the simulator inside the bench, recording
// every submit, and returns its host and port.
func (e *env) startSimulatorInProcess() (string, int, error) {
	sim, err := testharness.NewSimulator(testharness.SimOptions{ReceiptDelay: e.opts.ReceiptDelay, RecordLimit: 10_000_000})
	if err != nil {
		return "", 0, fmt.Errorf("simulator: %w", err)
	}
	e.simInProcess = sim
	host, port, err := net.SplitHostPort(sim.Addr())
	pn, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		_ = sim.Close()
		return "", 0, fmt.Errorf("simulator address %q", sim.Addr())
	}
	return host, pn, nil
}

// restart starts c again with the same binary, arguments and log file, in
// its place among the children and daemons.
func (e *env) restart(c *child) (*child, error) {
	nc, err := startChild(c.name, filepath.Join(e.tmp, c.name+".log"), nil, c.cmd.Path, c.cmd.Args[1:]...)
	if err != nil {
		return nil, err
	}
	for i, x := range e.children {
		if x == c {
			e.children[i] = nc
		}
	}
	for i, x := range e.daemons {
		if x == c {
			e.daemons[i] = nc
		}
	}
	if e.daemon == c {
		e.daemon = nc
	}
	return nc, nil
}

// kill SIGKILLs c and waits until it is gone.
func kill(c *child) {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// crashRun sends n messages (queries, for Kannel, else request bodies)
// while the gateway is killed and restarted by crash, then waits for the
// reports and counts what happened to each message.
func (e *env) crashRun(ctx context.Context, p plan, n int, bodies [][]byte, get bool, crash func(context.Context) error) (*Result, error) {
	o := e.opts
	mode := "crash"
	if get {
		mode = "kannel-crash"
	}
	gen := newGenerator(e.messageURLs(), benchAPIKey, o.Concurrency, o.Rate)
	if get {
		gen = newGenerator(e.apis, "", o.Concurrency, o.Rate)
		gen.get = true
	}
	res := &Result{Mode: mode, Params: paramsOf(o, n), Machine: machine(), Crash: &Crash{KillAfterS: o.KillAfter.Seconds()}}
	e.logf("crash run: sending %d messages, rate %s, the gateway SIGKILLed after %v and restarted", n, rateLabel(o.Rate), o.KillAfter)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type crashed struct {
		at     time.Time // of the SIGKILL
		outage time.Duration
		err    error
	}
	done := make(chan crashed, 1)
	go func() {
		select {
		case <-time.After(o.KillAfter):
		case <-lctx.Done():
			done <- crashed{err: lctx.Err()}
			return
		}
		at := time.Now()
		err := crash(lctx)
		done <- crashed{at: at, outage: time.Since(at), err: err}
	}()
	lr := gen.run(ctx, bodies)
	c := <-done
	if c.err != nil {
		return nil, fmt.Errorf("kill and restart: %w", c.err)
	}
	res.Crash.OutageS = c.outage.Seconds()
	accepted := lr.Accepted()
	e.logf("accepted %d of %d; waiting for the reports (until every accepted message has one, or none came for %v)", accepted, n, crashQuiet)
	sc := e.waitQuiet(ctx, accepted, crashQuiet)
	res.Complete = sc.UserDelivered >= accepted
	res.fillAccept(lr)
	res.fillSink(sc, lr.Start)
	res.Crash.Failed = n - accepted
	index := map[string]int{}
	for i := range n {
		from, to := p.route(i)
		index[crashKey(from, to)] = i
	}
	copies := make([]int, n)
	subs := e.simInProcess.Submits()
	res.Crash.SendGapS = sendGap(subs, c.at).Seconds()
	for _, s := range subs {
		if s.MessageID == "" || strings.HasPrefix(string(s.ShortMessage), crashNoticePrefix) {
			continue
		}
		if i, ok := index[crashKey(s.Source, s.Dest)]; ok {
			copies[i]++
		}
	}
	res.Crash.count(lr.AcceptedAt, copies, e.sink.deliveredSet())
	return res, nil
}

// count fills the per-message counts from, by message index: whether its
// request got a 202, how many copies the SMSC accepted, and whether a
// delivered report reached the webhook.
func (c *Crash) count(accepted []bool, copies []int, delivered []bool) {
	for i := range copies {
		switch {
		case accepted[i] && copies[i] == 0:
			c.Lost++
		case !accepted[i] && copies[i] > 0:
			c.SentUnaccepted++
		}
		if copies[i] > 1 {
			c.Duplicated++
			c.Copies += copies[i] - 1
		}
		if accepted[i] && copies[i] > 0 && !delivered[i] {
			c.NoReport++
		}
	}
}

// sendGap is the time from kill until the first of subs on a connection
// opened after it: the connections open at the kill are those of the
// submits before it (a submit the dying gateway had already written may
// still arrive after it). It is 0 when there is none.
func sendGap(subs []testharness.Submit, kill time.Time) time.Duration {
	last := 0 // highest connection number used before the kill
	for _, s := range subs {
		if !s.At.After(kill) {
			last = max(last, s.Conn)
		}
	}
	var first time.Time
	for _, s := range subs {
		if s.Conn > last && (first.IsZero() || s.At.Before(first)) {
			first = s.At
		}
	}
	if first.IsZero() {
		return 0
	}
	return first.Sub(kill)
}

// crashKey names a message at the SMSC by its numbers, without "+".
func crashKey(from, to string) string {
	return strings.TrimPrefix(from, "+") + ">" + strings.TrimPrefix(to, "+")
}

// waitQuiet waits until the sink has a delivered event for accepted user
// messages, no event arrived for quiet, or the run's timeout passed.
func (e *env) waitQuiet(ctx context.Context, accepted int, quiet time.Duration) sinkCounts {
	deadline := time.Now().Add(e.opts.Timeout)
	last, at := -1, time.Now()
	for {
		c := e.sink.counts()
		if c.UserDelivered >= accepted || time.Now().After(deadline) || ctx.Err() != nil {
			return c
		}
		if c.Total != last {
			last, at = c.Total, time.Now()
		} else if time.Since(at) > quiet {
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// crashSmsgate SIGKILLs the daemon and restarts it, returning once its
// /readyz answers 200.
func (e *env) crashSmsgate(ctx context.Context) error {
	d := e.daemons[0]
	kill(d)
	nd, err := e.restart(d)
	if err != nil {
		return err
	}
	return waitFor(ctx, nd, 30*time.Second, "the restarted smsgate's /readyz answers 200", func() error {
		return httpOK(e.http, e.api+"/readyz")
	})
}

// crashKannel SIGKILLs bearerbox and restarts it (and smsbox, should it
// have ended with it), returning once bearerbox lists its binds and smsbox
// again and sendsms answers.
func (e *env) crashKannel(statusURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		bb, sb := e.daemons[0], e.daemons[1]
		kill(bb)
		nbb, err := e.restart(bb)
		if err != nil {
			return err
		}
		if err := waitFor(ctx, nbb, 30*time.Second, "the restarted bearerbox's status page answers", func() error {
			_, err := scrapeText(ctx, e.http, statusURL)
			return err
		}); err != nil {
			return err
		}
		// smsbox reconnects by itself, or ends: wait a moment to see which.
		select {
		case <-sb.done:
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		if sb.exited() {
			if _, err := e.restart(sb); err != nil {
				return err
			}
			e.logf("smsbox ended with bearerbox; restarted it")
		}
		return e.waitKannelReady(ctx, statusURL)
	}
}

// writeCrashTable prints a crash run.
func writeCrashTable(b *strings.Builder, r *Result) {
	gw := "smsgate (redis-server with AOF everysec)"
	if r.Mode == "kannel-crash" {
		gw = "Kannel (bearerbox SIGKILLed; file message store, internal DLR storage)"
		if r.Params.KannelDLRRedis {
			gw = "Kannel (bearerbox SIGKILLed; file message store, DLR storage in redis-server with AOF everysec)"
		}
	}
	fmt.Fprintf(b, "\nmachine: %d × %s; load average %s at start", r.Machine.NProc, r.Machine.CPU, r.Machine.LoadAvg)
	fmt.Fprintf(b, "\nrun: crash, %s, n=%d, %d numbers × %d recipients, concurrency %d, %s, %d binds × window %d, receipts %v after submit_sm_resp; SIGKILL %.1f s after the first request, ready again %.2f s later, the next submit_sm %.2f s after the SIGKILL\n\n",
		gw, r.Params.N, r.Params.Numbers, r.Params.Recipients, r.Params.Concurrency, rateLabel(r.Params.Rate), r.Params.Binds, r.Params.Window,
		time.Duration(r.Params.ReceiptDelayMs)*time.Millisecond, r.Crash.KillAfterS, r.Crash.OutageS, r.Crash.SendGapS)
	c := r.Crash
	b.WriteString("| measure | messages |\n|---|---:|\n")
	row := func(name string, v int) { fmt.Fprintf(b, "| %s | %d |\n", name, v) }
	row("accepted (202)", r.Accepted)
	row("requests that failed while the gateway was down", c.Failed)
	row("**accepted, never reached the SMSC (lost)**", c.Lost)
	row("reached the SMSC more than once", c.Duplicated)
	row("extra copies at the SMSC", c.Copies)
	row("reached the SMSC without a 202", c.SentUnaccepted)
	row("**accepted and sent, no delivered report at the webhook**", c.NoReport)
	row("delivered reports at the webhook (distinct messages)", r.UserDelivered)
	row("repeated delivered reports", r.DupDelivered)
	fmt.Fprintf(b, "\nevents at the sink %v\n\n", sortedMap(r.EventsByKind))
}
