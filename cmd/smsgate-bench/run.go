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
)

// env is one run's processes and temp directory.
type env struct {
	opts      options
	tmp       string
	stderr    io.Writer
	children  []*child // stopped in reverse order
	redis     *child
	rdb       *redis.Client
	redisPort int
	sim       *child
	daemon    *child
	sink      *sink
	api       string // http://127.0.0.1:port
	metrics   string // http://127.0.0.1:port/metrics
	http      *http.Client
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "smsgate-bench: "+format+"\n", args...)
}

// close stops every child (daemon first, Redis last) and removes the temp dir.
func (e *env) close() {
	if e.sink != nil {
		_ = e.sink.Close()
	}
	if e.rdb != nil {
		_ = e.rdb.Close()
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

	bin := opts.Smsgate
	if bin == "" {
		bin = filepath.Join(tmp, "smsgate")
		e.logf("building %s", bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/smsgate/smsgate/cmd/smsgate")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build smsgate (run from the repository, or pass -smsgate): %w", err)
		}
	}
	if opts.Profile != "" {
		if err := os.MkdirAll(opts.Profile, 0o755); err != nil {
			return fmt.Errorf("profile dir: %w", err)
		}
	}
	if err := e.startRedis(ctx); err != nil {
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
	if err := e.startDaemon(ctx, bin, p, n); err != nil {
		return err
	}
	if opts.QueueOnly > 0 {
		res, err := e.memoryRun(ctx, p, n)
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
	return waitFor(ctx, e.redis, 10*time.Second, "redis-server answers PING", func() error {
		return e.rdb.Ping(ctx).Err()
	})
}

// startSimulator starts `smsgate simulate` on a free port and returns its address.
func (e *env) startSimulator(ctx context.Context, bin string) (string, int, error) {
	var out io.ReadCloser
	var err error
	e.sim, err = e.start("simulator", &out, bin, "simulate", "-listen", "127.0.0.1:0")
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

// startDaemon writes the configuration and starts smsgate (or, for a
// profiled run, this binary's daemon mode), then waits until it is ready.
func (e *env) startDaemon(ctx context.Context, bin string, p plan, n int) error {
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
	for _, port := range []*int{&cfg.HTTPPort, &cfg.MetricsPort} {
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	cfg.RedisPort = e.redisPort
	cfg.SinkURL = e.sink.URL()
	cfg.Binds, cfg.Window = e.opts.Binds, e.opts.Window
	cfg.WebhookWorkers = e.opts.WebhookWorkers
	cfg.Numbers = p.numbers
	// Room for every message of the run on one number, notices included.
	cfg.MaxPerNumber = max(100000, 2*(n/len(p.numbers)+p.recipients))
	path := filepath.Join(e.tmp, "smsgate.toml")
	if err := os.WriteFile(path, []byte(configTOML(cfg)), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	e.api = fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort)
	e.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", cfg.MetricsPort)
	if e.opts.Profile != "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("profiled daemon: %w", err)
		}
		e.daemon, err = e.start("smsgate", nil, self, daemonCommand, "-config", path, "-profile-dir", e.opts.Profile)
		if err != nil {
			return err
		}
	} else if e.daemon, err = e.start("smsgate", nil, bin, "-config", path); err != nil {
		return err
	}
	probe := "/readyz" // Redis answers and a bind is bound
	if e.opts.QueueOnly > 0 {
		probe = "/healthz" // no bind will come up
	}
	return waitFor(ctx, e.daemon, 30*time.Second, "smsgate "+probe+" answers 200", func() error {
		resp, err := e.http.Get(e.api + probe)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("http status %d", resp.StatusCode)
		}
		return nil
	})
}
