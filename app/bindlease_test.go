package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

// leaseApp is an App with just what the leaser uses: a configuration and no
// pools.
func leaseApp(cfg *config.Config) *App {
	a := &App{root: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.state.Store(&state{cfg: cfg})
	return a
}

func leaseConfig(binds int) *config.Config {
	c := config.Carrier{Name: "sim"}
	for range binds {
		c.Binds = append(c.Binds, config.Bind{Host: "127.0.0.1", Port: 1, ResponseTimeout: 100 * time.Millisecond})
	}
	return &config.Config{Carriers: []config.Carrier{c, {Name: "other", Binds: []config.Bind{{Name: "b", Host: "127.0.0.1", Port: 2, ResponseTimeout: 100 * time.Millisecond}}}}}
}

func heldBy(ls []*leaser) (counts []int, total int) {
	for _, l := range ls {
		n := len(*l.view.Load())
		counts = append(counts, n)
		total += n
	}
	return counts, total
}

func TestBindLeases(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: testharness.SharedRedisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := testharness.RedisPrefix(t)
	const ttl = 300 * time.Millisecond
	cfg := leaseConfig(4) // 5 binds in all
	newL := func() *leaser {
		l := newLeaser(leaseApp(cfg), rdb, prefix, ttl, prometheus.NewRegistry())
		l.drainPad = 50 * time.Millisecond
		t.Cleanup(func() { _ = l.stop(context.Background()) })
		return l
	}

	// A lone daemon holds every bind, named as the pool names them.
	l1 := newL()
	l1.start()
	require.Len(t, *l1.view.Load(), 5)
	require.Equal(t, []string{"sim-0", "sim-1", "sim-2", "sim-3"}, bindNames(l1.filter(cfg.Carriers[0])))
	require.Equal(t, []string{"b"}, bindNames(l1.filter(cfg.Carriers[1])))

	// Two more join: the binds spread to at most ceil(5/3) = 2 each, and
	// no bind is ever held twice.
	l2, l3 := newL(), newL()
	l2.start()
	l3.start()
	ls := []*leaser{l1, l2, l3}
	require.Eventually(t, func() bool {
		counts, total := heldBy(ls)
		return total == 5 && counts[0] <= 2 && counts[1] >= 1 && counts[2] >= 1
	}, 5*time.Second, 20*time.Millisecond, "balanced: %v", func() []int { c, _ := heldBy(ls); return c }())
	for r := range *l1.view.Load() {
		require.False(t, (*l2.view.Load())[r] || (*l3.view.Load())[r], "bind %s held twice", r)
	}

	// A daemon dies without releasing: its binds lapse and the others take
	// them over, even above their share.
	dead := *l2.view.Load()
	l2.halt()
	require.Eventually(t, func() bool {
		for r := range dead {
			if !(*l1.view.Load())[r] && !(*l3.view.Load())[r] {
				return false
			}
		}
		return true
	}, 10*ttl, 10*time.Millisecond, "taken over")
	_, total := heldBy([]*leaser{l1, l3})
	require.Equal(t, 5, total)

	// A daemon that stops releases at once (well within one ttl).
	held3 := *l3.view.Load()
	require.NotEmpty(t, held3)
	require.NoError(t, l3.stop(context.Background()))
	require.Eventually(t, func() bool { return len(*l1.view.Load()) == 5 }, 2*ttl, 10*time.Millisecond)
	require.ErrorIs(t, rdb.ZScore(context.Background(), prefix+"daemons", l3.holder).Err(), redis.Nil, "heartbeat removed")

	// Readiness of a bind-less daemon: all held, some by others.
	l4 := newLeaser(leaseApp(cfg), rdb, prefix, ttl, prometheus.NewRegistry())
	require.NoError(t, l4.othersHold(context.Background()))
	require.Error(t, l1.othersHold(context.Background()), "l1 holds everything itself")
}

func bindNames(c config.Carrier) []string {
	var out []string
	for _, b := range c.Binds {
		out = append(out, b.Name)
	}
	return out
}

// Redis goes away: a daemon that was alone keeps its binds (nobody can take
// them over) and holds the leases again once Redis is back; a daemon that
// had company closes its binds before its leases could lapse.
func TestBindLeasesThroughRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private redis-server")
	}
	for _, alone := range []bool{true, false} {
		t.Run(fmt.Sprintf("alone=%v", alone), func(t *testing.T) {
			rs := testharness.StartRedisServer(t)
			rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
			t.Cleanup(func() { _ = rdb.Close() })
			const ttl = 300 * time.Millisecond
			cfg := leaseConfig(1) // 2 binds
			l := newLeaser(leaseApp(cfg), rdb, "sg:", ttl, prometheus.NewRegistry())
			t.Cleanup(func() { _ = l.stop(context.Background()) })
			if !alone {
				// Another daemon's heartbeat, fresh enough to count as alive.
				require.NoError(t, rdb.ZAdd(context.Background(), "sg:daemons", redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "other"}).Err())
			}
			l.start()
			require.Eventually(t, func() bool { return len(*l.view.Load()) >= 1 }, 2*time.Second, 10*time.Millisecond)
			held := len(*l.view.Load())

			rs.Stop()
			time.Sleep(4 * ttl)
			if alone {
				require.Len(t, *l.view.Load(), held, "kept through the outage")
				rs.Start()
				require.Eventually(t, func() bool {
					n, err := rdb.Exists(context.Background(), l.key(bindRef{carrier: "sim", bind: "sim-0"})).Result()
					return err == nil && n == 1
				}, 5*time.Second, 20*time.Millisecond, "lease taken again after the outage")
				require.Len(t, *l.view.Load(), held)
			} else {
				require.Empty(t, *l.view.Load(), "closed before another daemon could take over")
			}
		})
	}
}

// TestBindHandoverWhenClosed: a daemon handing a bind over to one that
// joined deletes the lease as soon as its pool has closed the bind, not
// after the bind's worst-case drain time (its response timeout, 10 s here),
// so the newcomer binds within a few lease rounds.
func TestBindHandoverWhenClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemonWith(t, func(s string) string {
		s = strings.Replace(s, "[redis]\n", "[redis]\nbind_lease_ttl = \"600ms\"\n", 1)
		// A second bind like the first (default 10 s response timeout).
		start := strings.Index(s, "  [[carrier.bind]]")
		end := strings.Index(s, "[[route]]")
		second := strings.Replace(s[start:end], "  [[carrier.bind]]\n", "  [[carrier.bind]]\n  name = \"second\"\n", 1)
		return s[:end] + second + s[end:]
	})
	require.Eventually(t, func() bool { return d.sim.ActiveBinds() == 2 }, 5*time.Second, 20*time.Millisecond, "the lone daemon holds both binds")

	joined := time.Now()
	b := startSecond(t, d.path, Options{})
	require.Eventually(t, func() bool { return len(*b.leases.view.Load()) == 1 }, 5*time.Second, 20*time.Millisecond,
		"the newcomer got a bind well before the 10 s drain bound")
	t.Logf("bind handed over %v after the second daemon started", time.Since(joined).Round(time.Millisecond))
	require.Eventually(t, func() bool { return d.sim.ActiveBinds() == 2 }, 5*time.Second, 20*time.Millisecond)
}
