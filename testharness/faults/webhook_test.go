package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// Scenario 6: the webhook receiver is down (503) for the whole burst and a
// while after (the 10 minutes, compressed: backoff 50ms..500ms),
// and the daemon is SIGKILLed and restarted during the outage. When the
// receiver is back, every event arrives (each status of each message and
// every MO), and the event id of each (message, status) is the same on
// every attempt, before and after the restart.
func TestFaultWebhookDownAcrossRestart(t *testing.T) {
	everyRun(t)
	nNums := envInt(t, envNumbers, 200) / 10
	per := 10
	const rate = 2.0
	const nMO = 5

	e := newEnv(t)
	e.sink.SetFailing(http.StatusServiceUnavailable)
	sim := newSim(t, fastCarrier)
	from, to := numbers(nNums)
	cfg := e.config([]bindSpec{{Addr: sim.Addr()}}, from, rate)
	d := startDaemon(t, "gw", cfg)
	outageStart := time.Now()

	l := newLoader(cfg.API)
	loadDone := startLoad(t, l, from, to, per, 8, 0)
	var moTexts []string
	for i := range nMO {
		text := fmt.Sprintf("inbound during the webhook outage %d", i)
		moTexts = append(moTexts, text)
		require.NoError(t, sim.InjectMO(testharness.MO{From: fmt.Sprintf("+1777%07d", i), To: from[i%len(from)], Text: text}))
	}
	// SIGKILL mid-burst, while events are being produced and attempted.
	require.True(t, waitFor(60*time.Second, func() bool { return sim.SubmitCount() >= nNums*per/2 }))
	failedBefore := len(e.sink.Attempts())
	require.Positive(t, failedBefore, "events were attempted and refused")
	d.kill()
	time.Sleep(300 * time.Millisecond)
	d.start()
	<-loadDone
	acc := l.ledger()
	require.Zero(t, e.waitFinal(acc, 60*time.Second), "every message delivered at the carrier")
	time.Sleep(time.Until(outageStart.Add(6 * time.Second)))
	e.sink.SetFailing(0)
	outage := time.Since(outageStart)
	backAt := time.Now()

	// Expected: one event per status after queued of every accepted message
	// (from its history), and one per MO.
	type statusKey struct{ id, status string }
	want := map[statusKey]bool{}
	ctx := context.Background()
	for _, a := range acc {
		rec, err := e.q.Get(ctx, a.ID)
		require.NoError(t, err)
		for _, h := range rec.History {
			if h.Status != "queued" {
				want[statusKey{a.ID, string(h.Status)}] = true
			}
		}
	}
	got := func() (map[statusKey]bool, map[string]bool) {
		st, mo := map[statusKey]bool{}, map[string]bool{}
		for _, ev := range e.sink.Events() {
			switch ev.Type {
			case "message.status":
				var data struct{ ID, Status string }
				require.NoError(t, json.Unmarshal(ev.Data, &data))
				st[statusKey{data.ID, data.Status}] = true
			case "message.received":
				var data struct{ Text string }
				require.NoError(t, json.Unmarshal(ev.Data, &data))
				mo[data.Text] = true
			}
		}
		return st, mo
	}
	complete := func() bool {
		st, mo := got()
		for k := range want {
			if !st[k] {
				return false
			}
		}
		for _, text := range moTexts {
			if !mo[text] {
				return false
			}
		}
		return true
	}
	ok := waitFor(120*time.Second, complete)
	st, mo := got()
	missing := 0
	for k := range want {
		if !st[k] {
			missing++
		}
	}
	for _, text := range moTexts {
		if !mo[text] {
			missing++
		}
	}
	drained := time.Since(backAt)
	require.True(t, ok, "%d of %d events never delivered", missing, len(want)+nMO)

	// Ids stable: every attempt of one (message, status) carried one event
	// id, and every attempted id was finally delivered; signatures verify.
	ids := map[statusKey]map[string]bool{}
	delivered := map[string]bool{}
	for _, ev := range e.sink.Events() {
		delivered[ev.ID] = true
		require.NoError(t, testharness.VerifySignature(hookSecret, ev.Header.Get("Smsgate-Signature"), ev.Body))
	}
	unstable, undelivered := 0, 0
	for _, ev := range e.sink.Attempts() {
		if !delivered[ev.ID] {
			undelivered++
		}
		if ev.Type != "message.status" {
			continue
		}
		var data struct{ ID, Status string }
		require.NoError(t, json.Unmarshal(ev.Data, &data))
		k := statusKey{data.ID, data.Status}
		if ids[k] == nil {
			ids[k] = map[string]bool{}
		}
		ids[k][ev.ID] = true
	}
	for _, set := range ids {
		if len(set) > 1 {
			unstable++
		}
	}
	dupDeliveries := len(e.sink.Events()) - len(delivered)
	t.Logf("RESULT webhook-outage: outage %.1fs with a SIGKILL restart; %d refused attempts before the restart, %d attempts in all; all %d events delivered %.1fs after the receiver came back; unstable ids=%d attempted-never-delivered=%d duplicate deliveries=%d",
		outage.Seconds(), failedBefore, len(e.sink.Attempts()), len(want)+nMO, drained.Seconds(), unstable, undelivered, dupDeliveries)
	require.Zero(t, unstable, "one event id per (message, status) across attempts and restarts")
	require.Zero(t, undelivered, "every attempted event id was delivered in the end")
}

// Scenario 6b: the daemon is SIGKILLed while its webhook POSTs are in
// flight (the receiver answers slowly) and restarted at once on the same
// address. The events the dead process had read are delivered by the new
// one straight away: it takes up the same consumer name and so its
// predecessor's pending entries, rather than leaving them to be claimed as
// abandoned after a minute (webhook ClaimIdle).
func TestFaultSIGKILLWithEventsInFlight(t *testing.T) {
	everyRun(t)
	const nMO = 20
	e := newEnv(t)
	e.sink.SetDelay(5 * time.Second)
	sim := newSim(t, fastCarrier)
	from, _ := numbers(2)
	cfg := e.config([]bindSpec{{Addr: sim.Addr()}}, from, 1)
	d := startDaemon(t, "gw", cfg)

	var texts []string
	for i := range nMO {
		text := fmt.Sprintf("inbound while the webhook is slow %d", i)
		texts = append(texts, text)
		require.NoError(t, sim.InjectMO(testharness.MO{From: fmt.Sprintf("+1999%07d", i), To: from[i%len(from)], Text: text}))
	}
	// Wait until POSTs are in flight (read from the streams, not acked).
	require.True(t, waitFor(10*time.Second, func() bool { return len(e.sink.Attempts()) > 0 || e.sink.InFlight() > 0 }))
	d.kill()
	e.sink.SetDelay(0)
	d.start()
	restarted := time.Now()

	received := func() map[string]bool {
		got := map[string]bool{}
		for _, ev := range e.sink.Events() {
			if ev.Type == "message.received" {
				var data struct{ Text string }
				require.NoError(t, json.Unmarshal(ev.Data, &data))
				got[data.Text] = true
			}
		}
		return got
	}
	ok := waitFor(20*time.Second, func() bool { return len(received()) == nMO })
	got := received()
	t.Logf("RESULT events-in-flight: %d of %d MO events delivered %.1fs after the restart", len(got), nMO, time.Since(restarted).Seconds())
	require.True(t, ok, "events in flight at the SIGKILL wait for another consumer to claim them (%d of %d after 20s)", len(got), nMO)
}
