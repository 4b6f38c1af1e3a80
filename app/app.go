// Package app is the one place where smsgate's components meet: it builds
// them from the configuration in dependency order, registers each teardown
// as it goes, reloads the configuration atomically and stops in reverse.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/api"
	"github.com/smsgate/smsgate/compliance"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/router"
	"github.com/smsgate/smsgate/smpp"
	"github.com/smsgate/smsgate/testharness"
	"github.com/smsgate/smsgate/webhook"
)

// Options configure a daemon.
type Options struct {
	// ConfigPath is the TOML file; reloads read it again.
	ConfigPath string
	// Logger overrides the logger the configuration describes (tests).
	Logger *slog.Logger
	// LogOutput is where the configured logger writes; default stderr.
	LogOutput io.Writer
	// LogFormat and LogLevel override [log] format and level when not
	// empty (the -log-format and -log-level flags).
	LogFormat, LogLevel string
	// Registry collects every component's metrics; default a new registry
	// with the Go and process collectors.
	Registry *prometheus.Registry
	// QueueStatsInterval is how often the queue depth statistics are
	// recomputed; default DefaultQueueStatsInterval.
	QueueStatsInterval time.Duration
	// LameDuck is how long Stop keeps serving with /readyz answering 503
	// before the API stops accepting, so load balancers see it first.
	// Default 0. It counts against [shutdown] grace.
	LameDuck time.Duration
	// BindLeaseTTL overrides [redis] bind_lease_ttl (tests).
	BindLeaseTTL time.Duration
}

// state is everything a configuration determines that is swapped as one.
type state struct {
	cfg   *config.Config
	rules *compliance.Rules
}

// idFormat is how carrier writes its message ids (auto when unknown).
func (s *state) idFormat(carrier string) smpp.IDFormat {
	for _, c := range s.cfg.Carriers {
		if c.Name == carrier {
			return smpp.IDFormat(c.MessageIDFormat)
		}
	}
	return smpp.IDFormatAuto
}

// App is a running daemon.
type App struct {
	opts     Options
	log      *slog.Logger // the app's own lines (component=app)
	root     *slog.Logger // handed to components, which add their component
	logh     *LogHandler  // nil when Options.Logger was given
	reg      *prometheus.Registry
	regs     *trackingRegisterer
	stats    *queueStats
	state    atomic.Pointer[state]
	rdb      redis.UniversalClient
	queue    *queue.Queue
	sim      *testharness.Simulator
	api      *api.Server
	metricsL net.Listener
	metricsS *http.Server
	dispatch *router.Dispatcher
	hooks    *webhook.Dispatcher
	in       *inbound
	leases   *leaser // which configured binds this daemon opens

	poolsMu sync.Mutex
	pools   map[string]*smpp.Pool

	reloadMu  sync.Mutex
	reloadSeq int // reload attempts so far, named in their log lines (guarded by reloadMu)
	reloadOK  prometheus.Gauge
	reloadTS  prometheus.Gauge
	reloads   *prometheus.CounterVec

	// teardown runs in reverse order of registration on Stop.
	teardown []func(ctx context.Context) error

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// loadState reads and validates the configuration and its screening rules.
func loadState(path string) (*state, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	rules := compliance.DefaultRules()
	if cfg.Screening.Rules != "" {
		if rules, err = compliance.LoadRules(cfg.Screening.Rules); err != nil {
			return nil, fmt.Errorf("screening.rules: %w", err)
		}
	}
	if err := checkOverrides(cfg, rules); err != nil {
		return nil, err
	}
	return &state{cfg: cfg, rules: rules}, nil
}

// checkOverrides refuses an org's screening override of a category the
// rules do not have: a misspelt category would otherwise leave the
// override silently without effect.
func checkOverrides(cfg *config.Config, rules *compliance.Rules) error {
	var names []string
	known := map[string]bool{}
	for _, c := range rules.Categories() {
		names = append(names, c.Name)
		known[c.Name] = true
	}
	var errs []error
	for i, o := range cfg.Orgs {
		for _, cat := range slices.Sorted(maps.Keys(o.Screening)) {
			if !known[cat] {
				errs = append(errs, fmt.Errorf("org[%d].screening.%s: no such category in the screening rules (they have: %s)",
					i, cat, strings.Join(names, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// CheckConfig validates a configuration file and its screening rules the way
// the daemon would at start, without starting anything.
func CheckConfig(path string) (*config.Config, error) {
	st, err := loadState(path)
	if err != nil {
		return nil, err
	}
	return st.cfg, nil
}

// New builds every component from the configuration file and binds the
// listeners; Start runs them.
func New(opts Options) (_ *App, err error) {
	st, err := loadState(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	cfg := st.cfg
	if opts.LameDuck > 0 && opts.LameDuck >= cfg.Shutdown.Grace {
		// As shutdown.lame_duck must be: a stop would spend its whole grace
		// period serving and then fail, with nothing drained.
		return nil, fmt.Errorf("-lame-duck %s must be shorter than [shutdown] grace (%s)", opts.LameDuck, cfg.Shutdown.Grace)
	}
	log := opts.Logger
	var logh *LogHandler
	if log == nil {
		format, level := cfg.Log.Format, cfg.Log.Level
		if opts.LogFormat != "" {
			format = opts.LogFormat
		}
		if opts.LogLevel != "" {
			level = opts.LogLevel
		}
		if log, logh, err = NewLogger(format, level, opts.LogOutput); err != nil {
			return nil, err
		}
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	a := &App{opts: opts, log: log.With("component", "app"), root: log, logh: logh, reg: reg,
		regs: &trackingRegisterer{Registerer: reg}, pools: make(map[string]*smpp.Pool)}
	a.state.Store(st)
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = a.runTeardown(ctx)
		}
	}()
	// From here on log is the app's own logger and regs the registerer.
	root := log
	log = a.log
	regs := a.regs

	f := promauto.With(regs)
	a.reloadOK = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_config_last_reload_successful",
		Help: "Whether the last configuration reload succeeded (1) or failed and changed nothing (0).",
	})
	a.reloadTS = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful configuration load.",
	})
	a.reloads = f.NewCounterVec(prometheus.CounterOpts{
		Name: "smsgate_config_reloads_total",
		Help: "Configuration reloads attempted, by result (success, failure).",
	}, []string{"result"})
	a.reloads.WithLabelValues("success")
	a.reloads.WithLabelValues("failure")
	a.reloadOK.Set(1)
	a.reloadTS.SetToCurrentTime()

	// Store.
	if cfg.Redis.Embedded() {
		log.Warn("no [redis] addr configured: using the embedded in-process store; it is for development only and keeps nothing across restarts")
		client, stop, err := queue.NewEmbedded()
		if err != nil {
			return nil, fmt.Errorf("start embedded store: %w", err)
		}
		a.rdb = client
		a.onStop(func(context.Context) error { stop(); return nil })
	} else {
		a.rdb = newRedis(cfg.Redis)
		a.onStop(func(context.Context) error { return a.rdb.Close() })
	}

	// Embedded SMSC simulator for development (make run).
	if cfg.Simulator.Enabled {
		sim, err := testharness.NewSimulator(testharness.SimOptions{
			Addr:         cfg.Simulator.Listen,
			SystemID:     cfg.Simulator.SystemID,
			Password:     cfg.Simulator.Password,
			ReceiptDelay: cfg.Simulator.ReceiptDelay,
			Logger:       root,
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded simulator on %s: %w", cfg.Simulator.Listen, err)
		}
		a.sim = sim
		log.Warn("embedded SMSC simulator enabled: messages go to a simulated carrier, not a real one", "listen", sim.Addr())
		a.onStop(func(context.Context) error { return sim.Close() })
	}

	a.queue, err = queue.New(queue.Options{
		Client:      a.rdb,
		Prefix:      cfg.Redis.KeyPrefix,
		Buckets:     cfg.Queue.Buckets,
		Lease:       cfg.Queue.Lease,
		NormalizeID: smpp.NormalizeID,
		Logger:      root,
		Registerer:  regs,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	a.stats = newQueueStats(a.rdb, cfg.Redis.KeyPrefix, a.queue.Buckets(), root.With("component", "queue-stats"), regs)

	// Carriers. The dispatcher tracks the carrier ids whose ack is in
	// progress and the receipt handler waits for them (router.Settling):
	// one tracker for the daemon's lifetime (a reload swaps only the plan).
	settling := router.NewSettling(router.SettlingOptions{Normalize: smpp.NormalizeID})
	a.in = &inbound{app: a, log: root.With("component", "inbound"), metrics: newInboundMetrics(regs), settled: settling}
	leaseTTL := cfg.Redis.BindLeaseTTL
	if opts.BindLeaseTTL > 0 {
		leaseTTL = opts.BindLeaseTTL
	}
	a.leases = newLeaser(a, a.rdb, cfg.Redis.KeyPrefix, leaseTTL, regs)
	a.onStop(a.leases.stop) // after closePools: leases go once the binds are closed
	for _, c := range cfg.Carriers {
		p, err := a.newPool(c)
		if err != nil {
			return nil, fmt.Errorf("carrier %q: %w", c.Name, err)
		}
		a.pools[c.Name] = p
	}
	a.onStop(a.closePools) // Start's stop closes them right after the dispatcher; this covers New without Start

	a.dispatch, err = router.NewDispatcher(router.DispatcherOptions{
		Queue:           a.queue,
		Plan:            a.plan(cfg),
		Lease:           cfg.Queue.Lease,
		RetryBackoff:    cfg.Queue.RetryBackoff,
		MaxRetryBackoff: cfg.Queue.MaxRetryBackoff,
		Workers:         workersFor(cfg),
		DrainTimeout:    cfg.Shutdown.Grace / 2,
		Settling:        settling,
		Logger:          root,
		Registerer:      regs,
	})
	if err != nil {
		return nil, err
	}

	a.hooks, err = webhook.New(webhook.Options{
		Client:     a.rdb,
		Prefix:     cfg.Redis.KeyPrefix,
		Consumer:   webhookConsumer(cfg.HTTP.Listen),
		Streams:    a.queue.EventStreams(),
		Resolver:   resolver{app: a},
		Timeout:    cfg.Webhook.Timeout,
		RetryFor:   cfg.Webhook.RetryFor,
		MinBackoff: cfg.Webhook.MinBackoff,
		MaxBackoff: cfg.Webhook.MaxBackoff,
		Workers:    cfg.Webhook.Workers,
		Logger:     root,
		Registerer: regs,
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}

	a.api, err = api.New(api.Options{
		State:       api.NewState(cfg, st.rules),
		Queue:       a.queue,
		Ready:       a.ready,
		Reload:      a.Reload,
		DeadLetters: deadLetters{hooks: a.hooks},
		QueueStats:  func(context.Context) (any, error) { return a.QueueStats(), nil },
		DevSink:     cfg.Simulator.Enabled,
		Logger:      root,
		Registerer:  regs,
	})
	if err != nil {
		return nil, err // "api: listen …" already
	}

	a.metricsL, err = net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", cfg.Metrics.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.Metrics.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.metricsS = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// workersFor sizes the dispatcher: enough submissions in progress to fill
// every bind's window twice over (a transmitter+receiver pair counts once).
func workersFor(cfg *config.Config) int {
	n := 0
	for _, c := range cfg.Carriers {
		for _, b := range c.Binds {
			n += b.Window
		}
	}
	return max(2*n, 16)
}

func (a *App) onStop(f func(ctx context.Context) error) { a.teardown = append(a.teardown, f) }

func (a *App) runTeardown(ctx context.Context) error {
	var errs []error
	for i := len(a.teardown) - 1; i >= 0; i-- {
		if err := a.teardown[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.teardown = nil
	return errors.Join(errs...)
}

// APIAddr is the submission API's bound address.
func (a *App) APIAddr() string { return a.api.Addr() }

// MetricsAddr is the metrics listener's bound address.
func (a *App) MetricsAddr() string { return a.metricsL.Addr().String() }

// Simulator is the embedded simulator, or nil when it is not enabled.
func (a *App) Simulator() *testharness.Simulator { return a.sim }

// Config is the configuration in force (it changes on reload; do not modify).
func (a *App) Config() *config.Config { return a.state.Load().cfg }

// Logger is the daemon's logger (its handler masks numbers and
// de-duplicates repeats); components add their own component attribute.
func (a *App) Logger() *slog.Logger { return a.root }

// Start runs every component in the background.
func (a *App) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	dispatchCtx, stopDispatch := context.WithCancel(ctx)
	hooksCtx, stopHooks := context.WithCancel(ctx)
	statsCtx, stopStats := context.WithCancel(ctx)

	a.wg.Go(func() {
		if err := a.api.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server stopped", "err", err)
		}
	})
	a.wg.Go(func() {
		if err := a.metricsS.Serve(a.metricsL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	})
	a.leases.start()
	var dispatchDone, hooksDone, statsDone sync.WaitGroup
	dispatchDone.Go(func() { _ = a.dispatch.Run(dispatchCtx) })
	hooksDone.Go(func() {
		if err := a.hooks.Run(hooksCtx); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("webhook dispatcher stopped", "err", err)
		}
	})
	interval := a.opts.QueueStatsInterval
	if interval <= 0 {
		interval = DefaultQueueStatsInterval
	}
	statsDone.Go(func() { a.stats.run(statsCtx, interval) })

	// Stop order (registered in reverse): readiness fails, lame duck, the
	// API stops accepting and finishes its requests, the dispatcher stops
	// claiming and lets the windows finish (what was claimed but not
	// submitted by the drain timeout goes back to the head of its queue),
	// binds unbind at once so the carrier can use other daemons' binds,
	// webhook posts in flight finish (the rest stays scheduled in Redis),
	// statistics, metrics; then what New registered: the bind leases
	// (closePools, registered there too, has nothing left to do), the
	// simulator, the store.
	a.onStop(func(ctx context.Context) error { return a.metricsS.Shutdown(ctx) })
	a.onStop(func(context.Context) error { stopStats(); statsDone.Wait(); return nil })
	a.onStop(func(context.Context) error { stopHooks(); hooksDone.Wait(); return nil })
	a.onStop(func(context.Context) error {
		a.log.Info("stopping: draining the SMPP windows")
		stopDispatch()
		dispatchDone.Wait()
		a.log.Info("stopping: unbinding")
		return a.closePools(ctx)
	})
	a.onStop(func(ctx context.Context) error { return a.api.Shutdown(ctx) })
	a.onStop(func(ctx context.Context) error {
		a.api.SetNotReady()
		d := a.opts.LameDuck
		if d <= 0 {
			d = a.state.Load().cfg.Shutdown.LameDuck
		}
		if d > 0 {
			a.log.Info("stopping: readiness fails, still serving", "lame_duck", d)
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		return nil
	})
	a.log.Info("smsgate started", "api", a.APIAddr(), "metrics", a.MetricsAddr(), "summary", a.state.Load().cfg.Summary())
}

// Stop drains and stops everything within the configured grace period
// ([shutdown] grace): readiness fails first, the API stops accepting,
// claimed messages are submitted while the windows drain (those not started
// by the drain timeout return to the head of their queues), binds unbind,
// webhook posts in flight finish or stay scheduled. When the grace
// period runs out Stop returns an error without waiting for the rest; what
// was not settled is recovered from Redis by the next daemon (leases).
func (a *App) Stop() error {
	var err error
	a.once.Do(func() {
		grace := a.state.Load().cfg.Shutdown.Grace
		start := time.Now()
		a.log.Info("stopping", "grace", grace)
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- a.runTeardown(ctx) }()
		select {
		case err = <-done:
			if a.cancel != nil {
				a.cancel()
			}
			a.wg.Wait()
		case <-ctx.Done():
			if a.cancel != nil {
				a.cancel()
			}
			err = fmt.Errorf("stop: grace period of %s exceeded; unsettled messages will be retried from Redis when their lease expires", grace)
		}
		if err != nil {
			a.log.Error("stopped with errors", "err", err, "took", time.Since(start).Round(time.Millisecond))
		} else {
			a.log.Info("smsgate stopped", "took", time.Since(start).Round(time.Millisecond))
		}
		if a.logh != nil {
			a.logh.Flush(context.Background())
		}
	})
	return err
}

// QueueStats returns the last snapshot of the queue depth statistics,
// including the deepest sender queues (which are not metric labels).
func (a *App) QueueStats() QueueStats { return a.stats.Snapshot() }

// ready is the readiness check: Redis answers and a carrier bind is bound
// here, or every bind is leased and some by other daemons (bindlease.go).
func (a *App) ready(ctx context.Context) error {
	if err := a.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis is unreachable: %w", err)
	}
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	for _, p := range a.pools {
		if p.Up() {
			return nil
		}
	}
	return a.leases.othersHold(ctx)
}

func (a *App) closePools(ctx context.Context) error {
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	var errs []error
	for name, p := range a.pools {
		if err := p.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("carrier %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// plan builds the dispatcher's routing plan over the current pools.
func (a *App) plan(cfg *config.Config) *router.Plan {
	p := &router.Plan{Table: router.NewTable(cfg), Carriers: make(map[string]router.Carrier, len(a.pools))}
	for name, pool := range a.pools {
		p.Carriers[name] = pool
	}
	return p
}

func newRedis(c config.Redis) redis.UniversalClient {
	if len(c.Cluster) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Cluster, Password: c.Password,
			// A killed master answers no MOVED: without a periodic reload the
			// client keeps dialling it for the default 60 s after a failover.
			ClusterStateReloadInterval: time.Second,
			// Callers' deadlines bound the socket reads and writes too (by
			// default only the client's own 3 s timeouts do, retries on top):
			// a stalled Redis must not hold an API request past its answer.
			ContextTimeoutEnabled: true})
	}
	return redis.NewClient(&redis.Options{Addr: c.Addr, Password: c.Password, DB: c.DB,
		ContextTimeoutEnabled: true}) // see above
}

// newPool starts a carrier's bind pool wired to the inbound handler.
func (a *App) newPool(c config.Carrier) (*smpp.Pool, error) {
	return smpp.NewPool(smpp.PoolOptions{
		Carrier:    a.leases.filter(c), // only the binds this daemon holds the lease of
		Handler:    a.in,
		Logger:     a.root,
		Registerer: a.regs,
		// The parts of a long MO may reach binds held by other daemons.
		Parts: moParts{a.queue},
	})
}

// moParts is the queue's store of MO parts as smpp.PartStore.
type moParts struct{ q *queue.Queue }

func (m moParts) AddMOPart(ctx context.Context, carrier, key string, seq, total int, part []byte, timeout time.Duration) (smpp.StoredMO, bool, error) {
	mo, complete, err := m.q.AddMOPart(ctx, carrier, key, seq, total, part, timeout)
	return smpp.StoredMO(mo), complete, err
}

func (m moParts) TakeMOs(ctx context.Context, carrier string, n int) ([]smpp.StoredMO, error) {
	mos, err := m.q.TakeMOs(ctx, carrier, n)
	out := make([]smpp.StoredMO, len(mos))
	for i, s := range mos {
		out[i] = smpp.StoredMO(s)
	}
	return out, err
}

func (m moParts) DoneMO(ctx context.Context, carrier, key string) error {
	return m.q.DoneMO(ctx, carrier, key)
}

func (m moParts) ReleaseMO(ctx context.Context, carrier, key string, drop int, wait time.Duration) error {
	return m.q.ReleaseMO(ctx, carrier, key, drop, wait)
}

// trackingRegisterer registers on the daemon's registry and remembers every
// collector, so a test can check the name of every metric family, including
// vectors that have no series yet.
type trackingRegisterer struct {
	prometheus.Registerer
	mu         sync.Mutex
	collectors []prometheus.Collector
}

// Register implements prometheus.Registerer.
func (t *trackingRegisterer) Register(c prometheus.Collector) error {
	err := t.Registerer.Register(c)
	if err == nil {
		t.mu.Lock()
		t.collectors = append(t.collectors, c)
		t.mu.Unlock()
	}
	return err
}

// MustRegister implements prometheus.Registerer.
func (t *trackingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

// descs returns the descriptors of every collector registered through t.
func (t *trackingRegisterer) descs() []*prometheus.Desc {
	t.mu.Lock()
	cs := slices.Clone(t.collectors)
	t.mu.Unlock()
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []*prometheus.Desc
	for d := range ch {
		out = append(out, d)
	}
	return out
}

// resolver finds an org's webhook endpoint in the live configuration.
type resolver struct{ app *App }

// Endpoint implements webhook.Resolver.
func (r resolver) Endpoint(org string) (webhook.Endpoint, bool) {
	cfg := r.app.state.Load().cfg
	ep := webhook.Endpoint{URL: cfg.Webhook.URL, Secret: cfg.Webhook.Secret}
	if o, ok := cfg.OrgByID(org); ok {
		if o.WebhookURL != "" {
			ep.URL = o.WebhookURL
		}
		if o.WebhookSecret != "" {
			ep.Secret = o.WebhookSecret
		}
	}
	return ep, ep.URL != ""
}

// webhookConsumer names this daemon in the event streams' consumer group:
// its host name and API listen address, so that a daemon restarted on the
// same host and address (after a crash, an OOM kill, a SIGKILL) delivers at
// once the events its previous process had read and not finished. Under a
// name per process (the webhook default, host and pid) they waited for
// another consumer to claim them after ClaimIdle, a minute. Two daemons
// cannot listen on one address of one host, so live daemons share a name
// only when hosts share a host name (then a restart re-POSTs the others'
// events in flight; OPERATIONS.md says so). "" (the webhook default) when
// the port is picked at random (":0").
func webhookConsumer(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return ""
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return ""
	}
	return host + "-" + listen
}
