package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/testharness"
)

// env is one run's processes and temp directory.
type env struct {
	opts      options
	tmp       string
	stderr    io.Writer
	children  []*child // stopped in reverse order
	redis     *child   // the redis-server, or the first cluster node
	rdb       *redis.Client
	redisPort int
	sim       *child
	// simInProcess is the simulator of a crash run (-kill-after), inside
	// the bench so that it records every submit.
	simInProcess *testharness.Simulator
	daemon       *child // the first daemon
	sink         *sink
	api          string // http://127.0.0.1:port of the first daemon
	metrics      string // http://127.0.0.1:port/metrics of the first daemon
	http         *http.Client

	// Every redis-server (one, or the cluster's masters) with a plain
	// client each, and every daemon with its API and metrics URLs.
	redisNodes   []*child
	rdbs         []*redis.Client
	clusterSeeds []string
	daemons      []*child
	apis         []string
	metricsURLs  []string
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "smsgate-bench: "+format+"\n", args...)
}

// close stops every child (daemon first, Redis last) and removes the temp dir.
func (e *env) close() {
	if e.sink != nil {
		_ = e.sink.Close()
	}
	if e.simInProcess != nil {
		_ = e.simInProcess.Close()
	}
	for _, r := range e.rdbs {
		_ = r.Close()
	}
	for i := len(e.children) - 1; i >= 0; i-- {
		e.children[i].stop(15 * time.Second)
	}
	if e.opts.Keep {
		e.logf("kept %s", e.tmp)
		return
	}
	_ = os.RemoveAll(e.tmp)
}

func run(ctx context.Context, opts options, stdout, stderr io.Writer) (err error) {
	tmp, err := os.MkdirTemp("", "smsgate-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	e := &env{opts: opts, tmp: tmp, stderr: stderr, http: &http.Client{Timeout: 10 * time.Second}}
	defer e.close()

	if opts.Floor {
		if e.sink, err = newSink(opts.N); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
		var smsc string
		if opts.FloorFull {
			bin, err := e.smsgateBinary(ctx)
			if err != nil {
				return err
			}
			if err := e.startRedis(ctx); err != nil {
				return err
			}
			host, port, err := e.startSimulator(ctx, bin)
			if err != nil {
				return err
			}
			smsc = net.JoinHostPort(host, strconv.Itoa(port))
		}
		if err := e.startFloorGateway(ctx, smsc); err != nil {
			return err
		}
		res, err := e.floorRun(ctx, newPlan(opts.Numbers, opts.Recipients, opts.Text), opts.N)
		if err != nil {
			return err
		}
		return report(stdout, res)
	}
	bin, err := e.smsgateBinary(ctx)
	if err != nil {
		return err
	}
	if opts.Kannel {
		if e.sink, err = newSink(opts.N); err != nil {
			return fmt.Errorf("sink: %w", err)
		}
		if opts.KannelDLRRedis {
			if err := e.startRedis(ctx); err != nil {
				return err
			}
		}
		host, port, err := e.startSimulator(ctx, bin)
		if err != nil {
			return err
		}
		statusURL, err := e.startKannel(ctx, host, port)
		if err != nil {
			return err
		}
		p := newPlan(opts.Numbers, opts.Recipients, opts.Text)
		if opts.KillAfter > 0 {
			mask, err := kannelDLRMask(opts.StatusEvents)
			if err != nil {
				return err
			}
			res, err := e.crashRun(ctx, p, opts.N, p.kannelQueries(opts.N, mask, e.sink.KannelURL()), true, e.crashKannel(statusURL))
			if err != nil {
				return err
			}
			return report(stdout, res)
		}
		res, err := e.kannelRun(ctx, p, opts.N, statusURL)
		if err != nil {
			return err
		}
		return report(stdout, res)
	}
	if opts.Profile != "" {
		if err := os.MkdirAll(opts.Profile, 0o755); err != nil {
			return fmt.Errorf("profile dir: %w", err)
		}
	}
	if opts.Cluster {
		if err := e.startCluster(ctx); err != nil {
			return err
		}
	} else if err := e.startRedis(ctx); err != nil {
		return err
	}
	n := opts.N
	if opts.QueueOnly > 0 {
		n = opts.QueueOnly
	}
	p := newPlan(opts.Numbers, opts.Recipients, opts.Text)
	if e.sink, err = newSink(n); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	if err := e.startDaemons(ctx, bin, p, n); err != nil {
		return err
	}
	if opts.QueueOnly > 0 {
		res, err := e.memoryRun(ctx, p, n)
		if err != nil {
			return err
		}
		return report(stdout, res)
	}
	if opts.KillAfter > 0 {
		res, err := e.crashRun(ctx, p, n, p.bodies(n), false, e.crashSmsgate)
		if err != nil {
			return err
		}
		return report(stdout, res)
	}
	res, err := e.loadRun(ctx, p, n)
	if err != nil {
		return err
	}
	return report(stdout, res)
}

// smsgateBinary is -smsgate, or smsgate built into the temp dir.
func (e *env) smsgateBinary(ctx context.Context) (string, error) {
	if e.opts.Smsgate != "" {
		return e.opts.Smsgate, nil
	}
	bin := filepath.Join(e.tmp, "smsgate")
	e.logf("building %s", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/smsgate/smsgate/cmd/smsgate")
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build smsgate (run from the repository, or pass -smsgate): %w", err)
	}
	return bin, nil
}

func (e *env) start(name string, stdout *io.ReadCloser, bin string, args ...string) (*child, error) {
	c, err := startChild(name, filepath.Join(e.tmp, name+".log"), stdout, bin, args...)
	if err != nil {
		return nil, err
	}
	e.children = append(e.children, c)
	return c, nil
}

// startRedis starts a durable redis-server on a free port with its data in
// the temp dir.
func (e *env) startRedis(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.tmp, "redis")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("redis dir: %w", err)
	}
	e.redis, err = e.start("redis-server", nil, e.opts.RedisServer,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "", // no RDB snapshots: AOF is the durability, as configured in production
		"--daemonize", "no", "--logfile", "")
	if err != nil {
		return err
	}
	e.redisPort = port
	e.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	e.redisNodes, e.rdbs = []*child{e.redis}, []*redis.Client{e.rdb}
	return waitFor(ctx, e.redis, 10*time.Second, "redis-server answers PING", func() error {
		return e.rdb.Ping(ctx).Err()
	})
}

// startSimulator starts `smsgate simulate` on a free port and returns its
// address; a crash run starts the simulator inside the bench instead.
func (e *env) startSimulator(ctx context.Context, bin string) (string, int, error) {
	if e.opts.KillAfter > 0 {
		return e.startSimulatorInProcess()
	}
	var out io.ReadCloser
	var err error
	args := []string{"simulate", "-listen", "127.0.0.1:0"}
	if e.opts.ReceiptDelay > 0 {
		args = append(args, "-receipt-delay", e.opts.ReceiptDelay.String())
	}
	e.sim, err = e.start("simulator", &out, bin, args...)
	if err != nil {
		return "", 0, err
	}
	addrc := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		addrc <- strings.TrimSpace(line)
		if f, err := os.OpenFile(filepath.Join(e.tmp, "simulator.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, _ = io.Copy(f, br)
			_ = f.Close()
		} else {
			_, _ = io.Copy(io.Discard, br)
		}
	}()
	select {
	case a := <-addrc:
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return "", 0, fmt.Errorf("simulator printed %q, want its address: %w", a, err)
		}
		pn, _ := strconv.Atoi(port)
		return host, pn, nil
	case <-time.After(10 * time.Second):
		return "", 0, errors.New("simulator printed no address within 10s")
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
}

// startDaemons starts the simulator (or picks an unreachable carrier port
// for the memory run), then every daemon, each with its own configuration
// file and ports, waiting until each is ready.
func (e *env) startDaemons(ctx context.Context, bin string, p plan, n int) error {
	var cfg daemonConfig
	var err error
	if e.opts.QueueOnly > 0 {
		cfg.SMSCHost = "127.0.0.1"
		if cfg.SMSCPort, err = freePort(); err != nil { // nothing listens there
			return err
		}
		cfg.Unreachable = true
	} else if cfg.SMSCHost, cfg.SMSCPort, err = e.startSimulator(ctx, bin); err != nil {
		return err
	}
	cfg.RedisPort = e.redisPort
	cfg.RedisCluster = e.clusterSeeds
	cfg.SinkURL = e.sink.URL()
	cfg.Binds, cfg.Window = e.opts.Binds, e.opts.Window
	cfg.WebhookWorkers = e.opts.WebhookWorkers
	if e.opts.StatusEvents != "" {
		cfg.StatusEvents = strings.Split(e.opts.StatusEvents, ",")
	}
	cfg.Numbers = p.numbers
	// Room for every message of the run on one number, notices included.
	cfg.MaxPerNumber = max(100000, 2*(n/len(p.numbers)+p.recipients))
	for i := range e.opts.Daemons {
		if err := e.startDaemon(ctx, bin, cfg, i); err != nil {
			return err
		}
	}
	e.daemon, e.api, e.metrics = e.daemons[0], e.apis[0], e.metricsURLs[0]
	return nil
}

// startDaemon writes daemon i's configuration and starts smsgate (or, for
// a profiled run, this binary's daemon mode), then waits until it is ready.
func (e *env) startDaemon(ctx context.Context, bin string, cfg daemonConfig, i int) error {
	var err error
	for _, port := range []*int{&cfg.HTTPPort, &cfg.MetricsPort} {
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	name, file := "smsgate", "smsgate.toml"
	if i > 0 {
		name, file = fmt.Sprintf("smsgate-%d", i+1), fmt.Sprintf("smsgate-%d.toml", i+1)
	}
	path := filepath.Join(e.tmp, file)
	if err := os.WriteFile(path, []byte(configTOML(cfg)), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	api := fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort)
	var d *child
	if e.opts.Profile != "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("profiled daemon: %w", err)
		}
		d, err = e.start(name, nil, self, daemonCommand, "-config", path, "-profile-dir", e.opts.Profile)
		if err != nil {
			return err
		}
	} else if d, err = e.start(name, nil, bin, "-config", path); err != nil {
		return err
	}
	e.daemons = append(e.daemons, d)
	e.apis = append(e.apis, api)
	e.metricsURLs = append(e.metricsURLs, fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.MetricsPort))
	// /readyz: Redis answers and a bind is bound (by this daemon or, with
	// bind leases, by another one).
	probe := "/readyz"
	if e.opts.QueueOnly > 0 {
		probe = "/healthz" // no bind will come up
	}
	return waitFor(ctx, d, 30*time.Second, name+" "+probe+" answers 200", func() error {
		return httpOK(e.http, api+probe)
	})
}

// httpOK GETs url and wants a 200.
func httpOK(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("http status %d", resp.StatusCode)
	}
	return nil
}

// startCluster starts clusterMasters redis-server nodes in cluster mode
// (AOF everysec like the single server, each in its own directory), joins
// them with redis-cli --cluster create (no replicas: the run measures the
// write path, and replication would double Redis' CPU), and waits until
// every node reports cluster_state:ok.
func (e *env) startCluster(ctx context.Context) error {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return fmt.Errorf("-cluster needs redis-cli: %w", err)
	}
	var addrs []string
	for i := range clusterMasters {
		port, err := freePort()
		if err != nil {
			return err
		}
		bus, err := freePort()
		if err != nil {
			return err
		}
		dir := filepath.Join(e.tmp, fmt.Sprintf("redis-%d", i+1))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fmt.Errorf("redis dir: %w", err)
		}
		node, err := e.start(fmt.Sprintf("redis-server-%d", i+1), nil, e.opts.RedisServer,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "5000",
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
			"--daemonize", "no", "--logfile", "")
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		e.redisNodes, e.rdbs = append(e.redisNodes, node), append(e.rdbs, rdb)
		addrs = append(addrs, addr)
		if err := waitFor(ctx, node, 10*time.Second, node.name+" answers PING", func() error {
			return rdb.Ping(ctx).Err()
		}); err != nil {
			return err
		}
	}
	e.redis, e.rdb, e.clusterSeeds = e.redisNodes[0], e.rdbs[0], addrs
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	for i, rdb := range e.rdbs {
		err := waitFor(ctx, e.redisNodes[i], 30*time.Second, e.redisNodes[i].name+" reports cluster_state:ok", func() error {
			info, err := rdb.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return errors.New("cluster_state not ok")
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	e.logf("redis cluster of %d masters: %s", clusterMasters, strings.Join(addrs, " "))
	return nil
}
