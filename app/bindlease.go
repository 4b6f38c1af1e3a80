package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/config"
)

// DefaultBindLeaseTTL is how long a bind lease lives without renewal: a
// daemon that dies loses its binds to the others within about this long.
const DefaultBindLeaseTTL = 6 * time.Second

// Bind leases.
//
// A carrier allows only so many binds per system_id, so each bind of the
// configuration is opened by exactly one daemon at a time. The daemon holds
// it through a lease in Redis, "<prefix>bindlease:{<carrier>/<bind>}" = the
// holder's id, SET NX PX ttl, renewed every ttl/3 with a compare-and-pexpire
// script. The App opens only the binds it holds (Pool.Update with the held
// subset), so N daemons never open more binds than configured.
//
// Balance: live daemons heartbeat into the sorted set "<prefix>daemons"
// (scored by last-seen ms; entries older than 3 × ttl are dropped). A daemon
// takes a free bind while it holds fewer than ceil(binds / live daemons), and
// any free bind it saw free on two consecutive rounds even over that share,
// so every bind is held while any daemon lives (and then keeps it for three
// ttls, until a dead holder's heartbeat aged out, rather than flap). A daemon holding more than
// its share (a new daemon joined) lets go of one bind per round: it closes
// the bind first and keeps the lease until its pool has closed it (or for
// the bind's worst-case drain time), then deletes it, so the next holder
// never overlaps. On Stop the binds are closed first,
// then the leases deleted (compare-and-del), so another daemon takes over at
// once. With one daemon (or the embedded store) it simply holds every bind.
type leaser struct {
	app    *App
	rdb    redis.UniversalClient
	prefix string
	holder string
	ttl    time.Duration
	log    *slog.Logger
	// drainPad is added to a bind's response timeout to bound how long it
	// may stay open after its pool let go of it (smpp.Pool.Update).
	drainPad time.Duration

	// Owned by the loop goroutine (and by release once the loop exited).
	held      map[bindRef]time.Time // bind -> local conservative lease expiry
	releasing map[bindRef]time.Time // closed locally; lease deleted at that time
	free      map[bindRef]int       // consecutive rounds a bind was seen free
	applied   *config.Config        // configuration the pools were last updated for
	steady    time.Time             // no handing over for balance before this
	lastLive  int                   // live daemons at the last successful heartbeat

	view atomic.Pointer[map[bindRef]bool] // binds the pools may open

	heldG   prometheus.Gauge
	changes *prometheus.CounterVec

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// bindRef names one configured bind.
type bindRef struct{ carrier, bind string }

func (r bindRef) String() string { return r.carrier + "/" + r.bind }

var (
	renewScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	// keepScript renews a held lease, or takes it again when it lapsed
	// and nobody took it (e.g. Redis restarted while this daemon kept its
	// bind): 1 when this daemon holds it afterwards, 0 when another does.
	keepScript = redis.NewScript(`local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

func newLeaser(a *App, rdb redis.UniversalClient, prefix string, ttl time.Duration, reg prometheus.Registerer) *leaser {
	if ttl <= 0 {
		ttl = DefaultBindLeaseTTL
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	host, _ := os.Hostname()
	l := &leaser{
		app: a, rdb: rdb, prefix: prefix, ttl: ttl,
		holder:    host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:]),
		log:       a.root.With("component", "bindlease"),
		drainPad:  5 * time.Second,
		held:      map[bindRef]time.Time{},
		releasing: map[bindRef]time.Time{},
		free:      map[bindRef]int{},
	}
	l.view.Store(&map[bindRef]bool{})
	f := promauto.With(reg)
	l.heldG = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_bindlease_held_binds",
		Help: "Configured binds this daemon holds the lease of (and opens).",
	})
	l.changes = f.NewCounterVec(prometheus.CounterOpts{
		Name: "smsgate_bindlease_changes_total",
		Help: "Bind lease changes of this daemon, by event (acquired, released, lost).",
	}, []string{"event"})
	for _, e := range []string{"acquired", "released", "lost"} {
		l.changes.WithLabelValues(e)
	}
	return l
}

func (l *leaser) key(r bindRef) string { return l.prefix + "bindlease:{" + r.String() + "}" }
func (l *leaser) daemonsKey() string   { return l.prefix + "daemons" }

// bindName is the bind's name as the pool names it.
func bindName(c config.Carrier, i int) string {
	if n := c.Binds[i].Name; n != "" {
		return n
	}
	return fmt.Sprintf("%s-%d", c.Name, i)
}

// configured lists every bind of cfg in configuration order.
func configured(cfg *config.Config) []bindRef {
	var out []bindRef
	for _, c := range cfg.Carriers {
		for i := range c.Binds {
			out = append(out, bindRef{c.Name, bindName(c, i)})
		}
	}
	return out
}

// filter returns c with only the binds this daemon may open, each named
// explicitly (a bind's default name depends on its index).
func (l *leaser) filter(c config.Carrier) config.Carrier {
	view := *l.view.Load()
	out := c
	out.Binds = nil
	for i, b := range c.Binds {
		b.Name = bindName(c, i)
		if view[bindRef{c.Name, b.Name}] {
			out.Binds = append(out.Binds, b)
		}
	}
	return out
}

// start runs one round at once (so a lone daemon opens its binds without
// delay) and then every ttl/3 until stop.
func (l *leaser) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.done = make(chan struct{})
	l.round(ctx)
	go func() {
		defer close(l.done)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.round(ctx)
			}
		}
	}()
}

// halt stops the loop without releasing anything (the leases lapse after
// ttl, as when the process is killed).
func (l *leaser) halt() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	<-l.done
}

// stop halts the loop and deletes this daemon's leases and heartbeat. The
// App calls it after the pools are closed.
func (l *leaser) stop(ctx context.Context) error {
	var err error
	l.stopOnce.Do(func() {
		l.halt()
		if l.cancel == nil {
			return // never started
		}
		var errs []error
		for _, m := range []map[bindRef]time.Time{l.held, l.releasing} {
			for r := range m {
				if e := releaseScript.Run(ctx, l.rdb, []string{l.key(r)}, l.holder).Err(); e != nil {
					errs = append(errs, fmt.Errorf("release bind lease %s: %w", r, e))
				}
				l.changes.WithLabelValues("released").Inc()
				delete(m, r)
			}
		}
		if e := l.rdb.ZRem(ctx, l.daemonsKey(), l.holder).Err(); e != nil {
			errs = append(errs, fmt.Errorf("bind lease heartbeat: %w", e))
		}
		l.publish()
		err = errors.Join(errs...)
	})
	return err
}

// round renews, releases and acquires leases, then brings the pools in line.
func (l *leaser) round(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, l.ttl/3)
	defer cancel()
	cfg := l.app.state.Load().cfg
	all := configured(cfg)
	changed := l.renew(ctx, cfg, all)

	live, err := l.heartbeat(ctx)
	if err != nil {
		l.log.Warn("bind lease heartbeat failed", "err", err)
	} else {
		l.lastLive = live
		changed = l.acquire(ctx, all, live) || changed
	}
	if changed || cfg != l.applied {
		l.publish()
		l.apply(cfg)
	}
}

// renew extends every lease held or being released. A lease found taken by
// another daemon is dropped at once (one that lapsed untaken is taken again);
// one that cannot be renewed (Redis unreachable) is dropped a third of a ttl
// before it would lapse in Redis, so the bind is closed before another daemon
// can take it over — unless no other daemon was alive at the last heartbeat,
// in which case the bind stays open through the outage.
func (l *leaser) renew(ctx context.Context, cfg *config.Config, all []bindRef) bool {
	changed := false
	configuredNow := make(map[bindRef]bool, len(all))
	for _, r := range all {
		configuredNow[r] = true
	}
	now := time.Now()
	for r, at := range l.releasing {
		if now.After(at) || l.closedHere(r) {
			if err := releaseScript.Run(ctx, l.rdb, []string{l.key(r)}, l.holder).Err(); err != nil {
				l.log.Warn("bind lease release failed; it lapses on its own", "bind", r.String(), "err", err)
			}
			delete(l.releasing, r)
			l.changes.WithLabelValues("released").Inc()
			continue
		}
		if n, err := renewScript.Run(ctx, l.rdb, []string{l.key(r)}, l.holder, l.ttl.Milliseconds()).Int(); err == nil && n == 0 {
			delete(l.releasing, r)
		}
	}
	for r, exp := range l.held {
		if !configuredNow[r] {
			// Removed from the configuration: the reload closes it; keep
			// the lease for its drain time.
			delete(l.held, r)
			l.releasing[r] = now.Add(l.drain(cfg, r))
			changed = true
			continue
		}
		sent := time.Now()
		n, err := keepScript.Run(ctx, l.rdb, []string{l.key(r)}, l.holder, l.ttl.Milliseconds()).Int()
		switch {
		case err == nil && n == 1:
			l.held[r] = sent.Add(l.ttl)
		case err == nil:
			l.log.Warn("bind lease lost to another daemon; closing the bind", "bind", r.String())
			delete(l.held, r)
			l.changes.WithLabelValues("lost").Inc()
			changed = true
		case time.Now().After(exp.Add(-l.ttl/3)) && l.lastLive <= 1:
			// No other daemon was alive at the last heartbeat, so none can
			// take the bind over: keep it open through the Redis outage, so
			// the carrier is answered (ESME_RX_T_APPN) rather than unbound,
			// and take the lease again when Redis is back.
			l.log.Warn("bind lease cannot be renewed (Redis unreachable); keeping the bind since no other daemon is alive", "bind", r.String(), "err", err)
		case time.Now().After(exp.Add(-l.ttl / 3)):
			l.log.Warn("bind lease cannot be renewed and is about to lapse; closing the bind", "bind", r.String(), "err", err)
			delete(l.held, r)
			l.changes.WithLabelValues("lost").Inc()
			changed = true
		default:
			l.log.Warn("bind lease renewal failed, will retry", "bind", r.String(), "err", err)
		}
	}
	return changed
}

// heartbeat records this daemon as alive and returns how many are.
func (l *leaser) heartbeat(ctx context.Context) (int, error) {
	now := time.Now().UnixMilli()
	var card *redis.IntCmd
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, l.daemonsKey(), redis.Z{Score: float64(now), Member: l.holder})
		p.ZRemRangeByScore(ctx, l.daemonsKey(), "-inf", strconv.FormatInt(now-3*l.ttl.Milliseconds(), 10))
		card = p.ZCard(ctx, l.daemonsKey())
		return nil
	})
	if err != nil {
		return 0, err
	}
	return max(1, int(card.Val())), nil
}

// acquire takes free binds up to this daemon's share (and any bind free for
// two rounds), and lets go of one bind when it holds more than its share.
func (l *leaser) acquire(ctx context.Context, all []bindRef, live int) bool {
	var unheld []bindRef
	for _, r := range all {
		if _, ok := l.held[r]; !ok {
			if _, rel := l.releasing[r]; !rel {
				unheld = append(unheld, r)
			}
		}
	}
	share := (len(all) + live - 1) / live
	changed := false
	if len(unheld) > 0 {
		cmds := make([]*redis.StringCmd, len(unheld))
		_, _ = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range unheld {
				cmds[i] = p.Get(ctx, l.key(r))
			}
			return nil
		})
		for i, r := range unheld {
			err := cmds[i].Err()
			if err != nil && !errors.Is(err, redis.Nil) {
				continue
			}
			if err == nil {
				delete(l.free, r)
				continue
			}
			l.free[r]++
			if len(l.held) >= share && l.free[r] < 2 {
				continue
			}
			sent := time.Now()
			ok, err := l.rdb.SetNX(ctx, l.key(r), l.holder, l.ttl).Result()
			if err != nil || !ok {
				continue
			}
			delete(l.free, r)
			if len(l.held) >= share {
				// Taken over above the share (its holder died, and may
				// still count as live until its heartbeat ages out): keep
				// it until the live count is right again, not flap.
				l.steady = time.Now().Add(3 * l.ttl)
			}
			l.held[r] = sent.Add(l.ttl)
			l.changes.WithLabelValues("acquired").Inc()
			l.log.Info("bind lease acquired", "bind", r.String(), "held", len(l.held), "share", share, "daemons", live)
			changed = true
		}
	}
	if len(l.held) > share && len(l.releasing) == 0 && time.Now().After(l.steady) {
		// Let go of the excess, the last held binds in configuration order.
		for i := len(all) - 1; i >= 0 && len(l.held) > share; i-- {
			if _, ok := l.held[all[i]]; ok {
				r := all[i]
				delete(l.held, r)
				l.releasing[r] = time.Now().Add(l.drain(l.app.state.Load().cfg, r))
				l.log.Info("bind lease handed over to balance the daemons", "bind", r.String(), "share", share, "daemons", live)
				changed = true
			}
		}
	}
	return changed
}

// closedHere reports whether bind r, being released, is known closed in this
// daemon: its pool no longer has it, not even shutting down. Its lease can
// then go at once instead of after the worst-case drain time. A carrier
// without a pool (removed by a reload) waits for the drain time.
func (l *leaser) closedHere(r bindRef) bool {
	a := l.app
	a.poolsMu.Lock()
	p := a.pools[r.carrier]
	a.poolsMu.Unlock()
	return p != nil && !p.Open(r.bind)
}

// drain bounds how long a bind removed from its pool may still be open
// (smpp.Pool.Update gives a retired bind its response timeout + 5s).
func (l *leaser) drain(cfg *config.Config, r bindRef) time.Duration {
	rt := 10 * time.Second
	for _, c := range cfg.Carriers {
		for i, b := range c.Binds {
			if c.Name == r.carrier && bindName(c, i) == r.bind && b.ResponseTimeout > 0 {
				rt = b.ResponseTimeout
			}
		}
	}
	return rt + l.drainPad
}

// publish makes the held set visible to filter and the metrics.
func (l *leaser) publish() {
	view := make(map[bindRef]bool, len(l.held))
	for r := range l.held {
		view[r] = true
	}
	l.view.Store(&view)
	l.heldG.Set(float64(len(view)))
}

// apply updates every pool to the binds held.
func (l *leaser) apply(cfg *config.Config) {
	a := l.app
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	for _, c := range cfg.Carriers {
		p, ok := a.pools[c.Name]
		if !ok {
			continue
		}
		if err := p.Update(l.filter(c)); err != nil {
			l.log.Warn("the binds this daemon leased for a carrier could not be set up; they stay down", "carrier", c.Name, "err", err)
		}
	}
	l.applied = cfg
}

// othersHold is the readiness rule for a daemon with no bound bind: it is
// ready when every configured bind is leased by a live daemon and at least
// one by another daemon (which reports its own bind state on its /readyz).
// A lone daemon whose binds are down is not ready.
func (l *leaser) othersHold(ctx context.Context) error {
	all := configured(l.app.state.Load().cfg)
	cmds := make([]*redis.StringCmd, len(all))
	_, _ = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range all {
			cmds[i] = p.Get(ctx, l.key(r))
		}
		return nil
	})
	others := 0
	for i, r := range all {
		v, err := cmds[i].Result()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("no carrier bind is bound here and bind %s is held by no daemon", r)
		}
		if err != nil {
			return fmt.Errorf("bind lease %s: %w", r, err)
		}
		if v != l.holder {
			others++
		}
	}
	if others == 0 {
		return errors.New("no carrier bind is bound")
	}
	return nil
}
