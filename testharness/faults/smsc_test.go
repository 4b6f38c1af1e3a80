package faults_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
	"github.com/smsgate/smsgate/testharness/faults"
)

// cmdBindTransceiver is the SMPP command_id of bind_transceiver.
const cmdBindTransceiver = 0x00000009

// bindTimes returns when the simulator received each bind_transceiver.
func bindTimes(sim *testharness.Simulator) []time.Time {
	var out []time.Time
	for _, p := range sim.Received() {
		if p.CommandID == cmdBindTransceiver {
			out = append(out, p.At)
		}
	}
	return out
}

// Scenario 4: the SMSC connection drops mid-window (reset), a PDU is cut in
// half (both directions), and the network blackholes for three seconds,
// all during a burst, through a TCP proxy. Nothing lost; duplicates at most
// window × binds per fault, each flagged; binds come back with backoff (no
// reconnect storm while the carrier is unreachable).
func TestFaultSMSCConnectionDrops(t *testing.T) {
	everyRun(t)
	total := envInt(t, envMessages, 2000) / 2
	nNums := envInt(t, envNumbers, 200) / 2
	per := max(1, total/nNums)
	const rate, window, nBinds = 2.0, 10, 2
	reconnectMin := 100 * time.Millisecond
	bindTimeout := time.Second

	e := newEnv(t)
	sim := newSim(t, testharness.Faults{Latency: 50 * time.Millisecond})
	proxy, err := testharness.NewProxy(sim.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	bs := bindSpec{Addr: proxy.Addr(), Window: window, EnquireLink: 500 * time.Millisecond, ResponseTimeout: time.Second,
		BindTimeout: bindTimeout, ReconnectMin: reconnectMin, ReconnectMax: 800 * time.Millisecond}
	from, to := numbers(nNums)
	cfg := e.config([]bindSpec{bs, bs}, from, rate)
	d := startDaemon(t, "gw", cfg)
	_ = d

	l := newLoader(cfg.API)
	loadDone := startLoad(t, l, from, to, per, 16, 30*time.Millisecond)
	require.True(t, waitFor(60*time.Second, func() bool { return sim.SubmitCount() >= nNums*per/5 }))

	faultsPlayed := 0
	bindsBefore := len(bindTimes(sim))
	cutAt := time.Now()
	proxy.Cut()
	faultsPlayed++
	require.True(t, waitFor(5*time.Second, func() bool { return len(bindTimes(sim)) >= bindsBefore+nBinds }), "rebound after the cut")
	firstRebind := bindTimes(sim)[bindsBefore].Sub(cutAt)

	for range 2 {
		time.Sleep(time.Second)
		proxy.HalfPDU()
		faultsPlayed++
	}

	time.Sleep(time.Second)
	acceptedConns := proxy.Accepted()
	lastConn := 0
	for _, p := range sim.Received() {
		lastConn = max(lastConn, p.Conn)
	}
	proxy.Blackhole()
	faultsPlayed++
	time.Sleep(3 * time.Second)
	dialsInBlackhole := proxy.Accepted() - acceptedConns
	restoredAt := time.Now()
	proxy.Restore()
	require.True(t, waitFor(10*time.Second, func() bool { return sim.ActiveBinds() == nBinds }), "binds back after the blackhole")
	t.Logf("first rebind %.0fms after the cut (reconnect_min %v); %d connection attempts during a 3s blackhole (bind_timeout %v); %d binds in all",
		firstRebind.Seconds()*1000, reconnectMin, dialsInBlackhole, bindTimeout, len(bindTimes(sim)))

	<-loadDone
	// What the daemon wrote before the blackhole reaches the carrier only
	// when the network heals, bunched: when TCP delivers is not the
	// daemon's choice, so those do not count against the rate.
	delayed := 0
	rep := e.verdictWith("smsc-drops", cfg.API, l, map[string]*testharness.Simulator{"sim": sim}, rate, 60*time.Second,
		func(a *faults.Attempt, s testharness.Submit) {
			if s.Conn <= lastConn && !s.At.Before(restoredAt) {
				a.NetworkDelayed = true
				delayed++
			}
		})
	t.Logf("%d submit_sm held by the blackhole reached the carrier after it healed", delayed)
	requireNoLoss(t, rep, l)
	require.Zero(t, rep.RateViolations, "per-number rate")
	require.LessOrEqual(t, rep.Duplicates, faultsPlayed*window*nBinds, "duplicates bounded by window × binds per fault")
	require.GreaterOrEqual(t, firstRebind, reconnectMin/2, "rebind waits the backoff (equal jitter: at least half of reconnect_min)")
	// While unreachable each bind tries at most once per bind_timeout + backoff.
	require.LessOrEqual(t, dialsInBlackhole, nBinds*int(3*time.Second/(bindTimeout+reconnectMin/2))+nBinds, "no reconnect storm")
	require.Equal(t, nBinds, sim.ActiveBinds())
}

// Scenario 5: the SMSC answers every submit_sm with ESME_RTHROTTLED, then
// with ESME_RMSGQFUL, for 2.5 s each (the 30 s, compressed) during a
// burst: nothing fails permanently, nothing is lost, per-number FIFO holds.
func TestFaultSMSCThrottles(t *testing.T) {
	everyRun(t)
	total := envInt(t, envMessages, 2000) / 4
	nNums := envInt(t, envNumbers, 200) / 4
	per := max(1, total/nNums)
	const rate, window, nBinds = 5.0, 10, 2
	phase := 2500 * time.Millisecond

	e := newEnv(t)
	sim := newSim(t, fastCarrier)
	from, to := numbers(nNums)
	cfg := e.config([]bindSpec{{Addr: sim.Addr(), Window: window}, {Addr: sim.Addr(), Window: window}}, from, rate)
	startDaemon(t, "gw", cfg)

	l := newLoader(cfg.API)
	loadDone := startLoad(t, l, from, to, per, 8, 10*time.Millisecond)
	require.True(t, waitFor(60*time.Second, func() bool { return sim.SubmitCount() >= nNums*per/10 }))
	for _, status := range []uint32{testharness.StatusThrottled, testharness.StatusMsgQFul} {
		f := fastCarrier
		f.ErrorRate, f.ErrorStatus = 1, status
		sim.SetFaults(f)
		time.Sleep(phase)
	}
	sim.SetFaults(fastCarrier)
	stoppedAt := time.Now()

	<-loadDone
	rep := e.verdict("smsc-throttle", cfg.API, l, map[string]*testharness.Simulator{"sim": sim}, rate, 60*time.Second)
	requireNoLoss(t, rep, l)
	require.Zero(t, rep.RateViolations, "per-number rate")
	require.Positive(t, rep.Refused, "the carrier refused submissions")
	// A refused submission is not a duplicate; a flagged duplicate can
	// still happen when a submission waits for the bind's throughput (lowered
	// by the throttling) until just before its deadline, is sent, and is
	// abandoned before the answer: bounded by the window like any other.
	require.LessOrEqual(t, rep.Duplicates, window*nBinds)
	var lastOK time.Time
	for _, s := range sim.Submits() {
		if s.Status == testharness.StatusOK && s.At.After(lastOK) {
			lastOK = s.At
		}
	}
	t.Logf("RESULT smsc-throttle extra: %d submit_sm refused (throttled, queue full); last message out %.1fs after the throttling stopped; %d duplicates", rep.Refused, lastOK.Sub(stoppedAt).Seconds(), rep.Duplicates)
}

// Scenario 4b: the SMSC misbehaves in every way at once during a burst, as
// a loaded carrier does: answers slowly, refuses some submissions with a
// temporary error (ESME_RSYSERR), throttles (ESME_RTHROTTLED) everything
// beyond a window smaller than the bind's and beyond an account rate below
// what the load asks, swallows a few submissions without an answer, loses
// a few answers to submissions it did take, and sends each receipt before
// its submit_sm_resp with the id in the text only. Nothing is lost or
// fails, every message ends delivered, per-number order and rate hold, and
// every duplicate is flagged and comes from an answer that was lost.
func TestFaultSMSCMisbehavesAtOnce(t *testing.T) {
	everyRun(t)
	total := envInt(t, envMessages, 2000) / 4
	nNums := envInt(t, envNumbers, 200) / 4
	per := max(1, total/nNums)
	const rate, window, nBinds = 5.0, 10, 2

	e := newEnv(t)
	sim := newSim(t, testharness.Faults{
		Latency:          20 * time.Millisecond,
		ErrorRate:        0.05,
		ErrorStatus:      testharness.StatusSysErr,
		NoResponseRate:   0.01,
		LostResponseRate: 0.02,
		MaxWindow:        window - 4,
		MaxTPS:           150,
		ReceiptFirst:     true,
		ReceiptID:        "text",
	})
	bs := bindSpec{Addr: sim.Addr(), Window: window, ResponseTimeout: time.Second}
	from, to := numbers(nNums)
	cfg := e.config([]bindSpec{bs, bs}, from, rate)
	startDaemon(t, "gw", cfg)

	l := newLoader(cfg.API)
	<-startLoad(t, l, from, to, per, 8, 10*time.Millisecond)
	rep := e.verdict("smsc-misbehaves", cfg.API, l, map[string]*testharness.Simulator{"sim": sim}, rate, 90*time.Second)
	requireNoLoss(t, rep, l)
	require.Zero(t, rep.RateViolations, "per-number rate")
	require.Equal(t, rep.Accepted, rep.Statuses["delivered"], "every message delivered")
	var refused, swallowed, lost int
	for _, s := range sim.Submits() {
		switch {
		case s.Status != testharness.StatusOK:
			refused++
		case !s.Answered && s.MessageID == "":
			swallowed++
		case !s.Answered:
			lost++
		}
	}
	require.Positive(t, refused, "the carrier refused submissions")
	require.Positive(t, lost+swallowed, "the carrier left submissions unanswered")
	// A submission whose answer was lost was taken by the carrier: sending
	// it again is the only way not to lose it, and the copy is flagged. A
	// swallowed one was never taken: its resend is no duplicate.
	require.LessOrEqual(t, rep.Duplicates, lost, "duplicates come only from lost answers")
	t.Logf("RESULT smsc-misbehaves extra: %d submit_sm refused, %d swallowed, %d answers lost; %d duplicates, all flagged", refused, swallowed, lost, rep.Duplicates)
}
