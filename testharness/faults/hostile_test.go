package faults_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
	"github.com/smsgate/smsgate/testharness/faults"
)

// slowloris holds n connections to addr, each sending a request header one
// line per second and never finishing it, reconnecting when the server
// closes one. It stops when ctx ends.
type slowloris struct {
	open, reconnects atomic.Int64
	wg               sync.WaitGroup
}

func startSlowloris(ctx context.Context, addr string, n int) *slowloris {
	s := &slowloris{}
	for i := range n {
		s.wg.Go(func() {
			for ctx.Err() == nil {
				s.hold(ctx, addr, i)
				s.reconnects.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		})
	}
	return s
}

func (s *slowloris) hold(ctx context.Context, addr string, i int) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	s.open.Add(1)
	defer s.open.Add(-1)
	if _, err := fmt.Fprintf(c, "POST /v1/messages HTTP/1.1\r\nHost: %s\r\n", addr); err != nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for line := 0; ; line++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := fmt.Fprintf(c, "X-Slow-%d-%d: x\r\n", i, line); err != nil {
			return
		}
	}
}

// traffic is normal API traffic: workers each owning their senders (so each
// sender's accept order is its sequence order), one request after another
// with a short pause, every latency measured.
type traffic struct {
	c        *client
	api      string
	from, to []string
	workers  int
	seq      []int // per sender, owned by the sender's worker

	mu       sync.Mutex
	accepted []faults.Accepted
	failures []string
}

// phase sends for d and returns the sorted latencies of this phase.
func (tr *traffic) phase(d time.Duration) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	per := len(tr.from) / tr.workers
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range tr.workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				n := w*per + i%per
				tr.seq[n]++
				seq := tr.seq[n]
				start := time.Now()
				res, err := tr.c.send(context.Background(), tr.api, tr.from[n], tr.to[n], faults.Text(seq), "")
				took := time.Since(start)
				mu.Lock()
				lat = append(lat, took)
				mu.Unlock()
				tr.mu.Lock()
				if err != nil || res.code != http.StatusAccepted {
					tr.failures = append(tr.failures, fmt.Sprintf("%v %d %s", err, res.code, res.raw))
				} else {
					tr.accepted = append(tr.accepted, faults.Accepted{ID: res.id, From: tr.from[n], Seq: seq, At: start})
				}
				tr.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return lat
}

// pct returns the q-quantile of sorted latencies.
func pct(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)-1, int(q*float64(len(lat))))]
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// Scenario 7: hostile input. Hundreds of slowloris connections (the issue's
// 1,000, scaled to what two cores allow: SMSGATE_FAULTS_SLOW, default 500)
// do not stop normal requests, whose latency (p50, p99) is measured before
// and during the attack; a SIGHUP with an invalid configuration during the
// attack changes nothing (reload refused and reported, binds untouched,
// traffic unaffected).
func TestFaultHostileInputAndBadReload(t *testing.T) {
	everyRun(t)
	nSlow := envInt(t, "SMSGATE_FAULTS_SLOW", 500)
	const workers, sendersPerWorker = 8, 2
	const rate = 50.0
	// Longer than the API's read_header_timeout (5s), so the server closes
	// slow connections and the attacker reconnects during the measurement.
	attack := 8 * time.Second

	e := newEnv(t)
	sim := newSim(t, fastCarrier)
	from, to := numbers(workers * sendersPerWorker)
	cfg := e.config([]bindSpec{{Addr: sim.Addr()}}, from, rate)
	d := startDaemon(t, "gw", cfg)
	tr := &traffic{c: newClient(), api: cfg.API, from: from, to: to, workers: workers, seq: make([]int, len(from))}
	base := tr.phase(2 * time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	slow := startSlowloris(ctx, cfg.API, nSlow)
	t.Cleanup(func() { cancel(); slow.wg.Wait() })
	require.True(t, waitFor(30*time.Second, func() bool { return slow.open.Load() >= int64(nSlow)*9/10 }),
		"slowloris connections open: %d of %d", slow.open.Load(), nSlow)

	// During the attack, a reload with a configuration that fails validation.
	bindsBefore := len(bindTimes(sim))
	hupDone := make(chan struct{})
	go func() {
		defer close(hupDone)
		time.Sleep(attack / 3)
		broken := cfg
		broken.Broken = true
		d.writeConfig(broken)
		d.hup()
	}()
	lat := tr.phase(attack)
	<-hupDone
	slowOpen, slowRe := slow.open.Load(), slow.reconnects.Load()
	cancel()
	slow.wg.Wait()
	reloadFailed, ok := d.metric("smsgate_config_last_reload_successful")
	d.writeConfig(cfg)

	t.Logf("RESULT hostile: %d slowloris connections (open at the end %d, reconnects %d); normal requests before the attack: %d, p50 %.1fms p99 %.1fms; during: %d, p50 %.1fms p99 %.1fms max %.1fms; bad SIGHUP refused (metric %v), binds untouched",
		nSlow, slowOpen, slowRe, len(base), ms(pct(base, .5)), ms(pct(base, .99)),
		len(lat), ms(pct(lat, .5)), ms(pct(lat, .99)), ms(pct(lat, 1)), reloadFailed)
	require.Empty(t, tr.failures, "normal requests before and during the attack and the bad reload")
	require.True(t, ok && reloadFailed == 0, "the failed reload is reported by smsgate_config_last_reload_successful 0")
	require.Equal(t, 1, d.logCount("configuration reload failed"), "the failed reload is logged")
	require.Equal(t, bindsBefore, len(bindTimes(sim)), "the bad reload did not touch the binds")
	require.Equal(t, 1, sim.ActiveBinds())
	require.Less(t, pct(lat, .99), time.Second, "p99 of normal requests under attack")

	// What was accepted under attack goes out like anything else.
	l := &loader{accepted: tr.accepted, codes: map[int]int{}}
	rep := e.verdict("hostile", cfg.API, l, map[string]*testharness.Simulator{"sim": sim}, rate, 60*time.Second)
	requireNoLoss(t, rep, l)
	require.Zero(t, rep.Duplicates)
}
