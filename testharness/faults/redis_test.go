package faults_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// Scenario 3: Redis (AOF on, appendfsync everysec) is restarted mid-burst.
// The stop is clean (SHUTDOWN flushes and fsyncs the AOF); a crash of the
// Redis host could lose the last second of writes with everysec, which no
// gateway can make up for, so it is not what this scenario checks. While
// Redis is down the API answers 503 and an inbound MO is refused with
// ESME_RX_T_APPN (the carrier delivers it again later); the daemon is ready
// again within 10 s of Redis coming back; nothing that got a 202 is lost.
func TestFaultRedisRestartMidBurst(t *testing.T) {
	everyRun(t)
	total := envInt(t, envMessages, 2000) / 2
	nNums := envInt(t, envNumbers, 200) / 2
	per := max(1, total/nNums)
	const rate, window, nBinds = 2.0, 10, 2
	outage := 2 * time.Second

	e := newEnv(t, "--appendonly", "yes", "--appendfsync", "everysec")
	sim := newSim(t, fastCarrier)
	from, to := numbers(nNums)
	cfg := e.config([]bindSpec{{Addr: sim.Addr(), Window: window}, {Addr: sim.Addr(), Window: window}}, from, rate)
	d := startDaemon(t, "gw", cfg)

	l := newLoader(cfg.API)
	loadDone := startLoad(t, l, from, to, per, 16, 60*time.Millisecond)
	require.True(t, waitFor(60*time.Second, func() bool { return sim.SubmitCount() >= nNums*per/4 }))

	acceptedBefore := l.count()
	e.redisShutdown()
	downAt := time.Now()

	// The API refuses with 503 unavailable, never a 202.
	c := newClient()
	var probe sendResult
	require.True(t, waitFor(5*time.Second, func() bool {
		var err error
		probe, err = c.send(context.Background(), cfg.API, from[0], to[0], "probe while redis is down", "")
		return err == nil && probe.code != http.StatusAccepted
	}))
	require.Equal(t, http.StatusServiceUnavailable, probe.code, probe.raw)
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(probe.raw), &body))
	require.Equal(t, "unavailable", body.Error.Code)
	resp, err := http.Get("http://" + cfg.API + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready without Redis")

	// An MO cannot be stored: the daemon answers ESME_RX_T_APPN.
	moText := "hello while redis is down"
	require.NoError(t, sim.InjectMO(testharness.MO{From: to[0], To: from[0], Text: moText}))
	require.True(t, waitFor(5*time.Second, func() bool {
		for _, p := range sim.Received() {
			if p.CommandID == 0x80000005 && p.CommandStatus == testharness.StatusXTAppn {
				return true
			}
		}
		return false
	}), "deliver_sm refused with ESME_RX_T_APPN while Redis is down")

	time.Sleep(time.Until(downAt.Add(outage)))
	e.redis.Start()
	upAt := time.Now()
	readyIn := d.waitReady(10 * time.Second)
	var after sendResult
	require.True(t, waitFor(10*time.Second, func() bool {
		after, err = c.send(context.Background(), cfg.API, from[0], to[0], "probe after redis is back", "")
		return err == nil && after.code == http.StatusAccepted
	}), "202 again after Redis is back: %d %s", after.code, after.raw)
	firstAccept := time.Since(upAt)
	t.Logf("redis down %.1fs (%d accepted before); daemon ready %.2fs and accepting %.2fs after Redis came back",
		upAt.Sub(downAt).Seconds(), acceptedBefore, readyIn.Seconds(), firstAccept.Seconds())

	<-loadDone
	rep := e.verdict("redis-restart", cfg.API, l, map[string]*testharness.Simulator{"sim": sim}, rate, 60*time.Second)
	requireNoLoss(t, rep, l)
	require.Zero(t, rep.RateViolations, "per-number rate")
	require.LessOrEqual(t, rep.Duplicates, window*nBinds, "duplicates bounded by window × binds")
	for code := range l.codes {
		require.Equal(t, http.StatusServiceUnavailable, code, "the only refusal is 503: %v", l.codes)
	}

	// The MO refused during the outage is delivered again and reaches the webhook.
	require.True(t, waitFor(15*time.Second, func() bool {
		for _, ev := range e.sink.Events() {
			var data struct {
				Text string `json:"text"`
			}
			if ev.Type == "message.received" && json.Unmarshal(ev.Data, &data) == nil && data.Text == moText {
				return true
			}
		}
		return false
	}), "the MO refused during the outage reaches the webhook")
	t.Logf("RESULT redis-restart extra: 503s seen by the load=%d, ready %.2fs after restart", l.codes[http.StatusServiceUnavailable], readyIn.Seconds())
}
