package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const burstNumber = `
  [[org.number]]
  e164 = "+15550004444"
  kind = "short_code"
  registered = true
  rate = 500
`

// burst fires messages from both numbers as fast as two clients per number
// can, until stop; it returns the texts that were accepted (202).
func burst(apiAddr func() string, tag string) (stop func() []string) {
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	done := make(chan struct{})
	client := &http.Client{Timeout: 5 * time.Second}
	for w, from := range []string{"+15550001111", "+15550001111", "+15550004444", "+15550004444"} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				text := fmt.Sprintf("%s w%d #%d", tag, w, i)
				ok, err := postText(client, apiAddr(), from, "+15557654321", text)
				if err != nil {
					time.Sleep(5 * time.Millisecond) // the API is closed: nothing more is accepted
					continue
				}
				if ok {
					mu.Lock()
					accepted = append(accepted, text)
					mu.Unlock()
				}
			}
		})
	}
	return func() []string {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return accepted
	}
}

// startSecond starts another daemon on the same configuration file (same
// Redis prefix, same simulator) and stops it at cleanup.
func startSecond(t *testing.T, path string, opts Options) *App {
	t.Helper()
	opts.ConfigPath = path
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := New(opts)
	require.NoError(t, err)
	b.Start()
	t.Cleanup(func() { _ = b.Stop() })
	return b
}

func TestStopDuringBurstLosesNothingAndDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	d := startDaemon(t)
	d.writeConfigWith("500", burstNumber)
	code, raw := d.reload()
	require.Equal(t, http.StatusOK, code, raw)

	stop := burst(d.app.APIAddr, "burst")
	require.Eventually(t, func() bool { return d.sim.SubmitCount() >= 40 }, 10*time.Second, 2*time.Millisecond)
	stopped := time.Now()
	require.NoError(t, d.app.Stop())
	took := time.Since(stopped)
	accepted := stop()
	sentBefore := d.sim.SubmitCount()
	t.Logf("accepted %d, submitted before the stop finished %d, stop took %s", len(accepted), sentBefore, took)
	require.Less(t, took, 5*time.Second, "the stop is bounded")
	require.Zero(t, d.sim.ActiveBinds(), "the bind unbound")

	// A second daemon on the same Redis prefix sends what was left, and
	// nothing twice.
	startSecond(t, d.path, Options{})
	requireSentOnce(t, d.sim, accepted, 10*time.Second)
	require.Greater(t, len(accepted), 40)
}

// TestStopFailsReadinessFirst: on Stop, /readyz answers 503 while the API
// still serves for the lame-duck time, given by the option (the -lame-duck
// flag) or by [shutdown] lame_duck.
func TestStopFailsReadinessFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, tc := range []struct {
		name   string
		opts   Options
		config bool
	}{
		{name: "option", opts: Options{LameDuck: 400 * time.Millisecond}},
		{name: "config", config: true},
	} {
		t.Run(tc.name, func(t *testing.T) { stopFailsReadinessFirst(t, tc.opts, tc.config) })
	}
}

func stopFailsReadinessFirst(t *testing.T, opts Options, lameDuckInConfig bool) {
	d := startDaemon(t)
	path := d.path
	if lameDuckInConfig {
		raw, err := os.ReadFile(d.path)
		require.NoError(t, err)
		text := strings.Replace(string(raw), "[shutdown]\n", "[shutdown]\nlame_duck = \"400ms\"\n", 1)
		require.Contains(t, text, "lame_duck")
		path = filepath.Join(t.TempDir(), "lame.toml")
		require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	}
	b := startSecond(t, path, opts)
	get := func(path string) int {
		resp, err := http.Get("http://" + b.APIAddr() + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return get("/readyz") == http.StatusOK }, 5*time.Second, 20*time.Millisecond)
	// The second daemon shares the config: its one bind stays leased by the
	// first daemon, so only one bind is open, and it is ready all the same.
	require.Never(t, func() bool { return d.sim.ActiveBinds() > 1 }, 300*time.Millisecond, 20*time.Millisecond)

	done := make(chan error, 1)
	go func() { done <- b.Stop() }()
	require.Eventually(t, func() bool { return get("/readyz") == http.StatusServiceUnavailable }, 2*time.Second, 5*time.Millisecond)
	require.Equal(t, http.StatusOK, get("/healthz"), "still serving while not ready")
	require.NoError(t, <-done)
	require.Zero(t, get("/healthz"), "the API is closed after Stop")
	require.Equal(t, 1, d.sim.ActiveBinds(), "the stopped daemon unbound, the other stays")
}

// TestSIGTERMBinaryDuringBurst builds the real binary, sends a burst, sends
// SIGTERM, and checks the process exits 0 within the grace period and that
// every accepted message is then sent exactly once (by an in-process daemon
// on the same Redis prefix).
func TestSIGTERMBinaryDuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	d := startDaemon(t)
	d.writeConfigWith("500", burstNumber)
	code, raw := d.reload()
	require.Equal(t, http.StatusOK, code, raw)
	require.NoError(t, d.app.Stop()) // the binary does the sending

	bin := filepath.Join(t.TempDir(), "smsgate")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/smsgate/smsgate/cmd/smsgate")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	cmd := exec.Command(bin, "-config", d.path, "-log-format", "json")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	apiAddr := make(chan string, 1)
	var logMu sync.Mutex
	var logLines []string
	var readDone sync.WaitGroup
	readDone.Go(func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logLines = append(logLines, line)
			logMu.Unlock()
			var m struct {
				Msg string `json:"msg"`
				API string `json:"api"`
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "smsgate started" {
				apiAddr <- m.API
			}
		}
	})
	var addr string
	select {
	case addr = <-apiAddr:
	case <-time.After(10 * time.Second):
		t.Fatal("the binary did not start")
	}

	// SIGHUP with a broken file: every problem logged with its key path,
	// nothing changes; then the good file again.
	logged := func(sub string) bool {
		logMu.Lock()
		defer logMu.Unlock()
		for _, l := range logLines {
			if strings.Contains(l, sub) {
				return true
			}
		}
		return false
	}
	good, err := os.ReadFile(d.path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(d.path, []byte(strings.Replace(string(good), "window = 10", "window = 0", 1)), 0o600))
	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return logged(`"key":"carrier[0].bind[0].window"`) }, 5*time.Second, 10*time.Millisecond)
	require.True(t, logged("configuration reload failed; nothing changed"))
	require.NoError(t, os.WriteFile(d.path, good, 0o600))

	before := d.sim.SubmitCount()
	stop := burst(func() string { return addr }, "sigterm")
	require.Eventually(t, func() bool { return d.sim.SubmitCount() >= before+40 }, 10*time.Second, 2*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	start := time.Now()
	exited := make(chan error, 1)
	go func() { readDone.Wait(); exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status")
	case <-time.After(12 * time.Second): // [shutdown] grace is 10s
		t.Fatal("the binary did not exit within the grace period")
	}
	accepted := stop()
	t.Logf("accepted %d, stop took %s", len(accepted), time.Since(start))

	logMu.Lock()
	logs := strings.Join(logLines, "\n")
	logMu.Unlock()
	require.Contains(t, logs, `"msg":"smsgate stopped"`)
	require.NotContains(t, logs, "+15557654321", "phone numbers are masked at info level")
	for _, line := range logLines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		require.NotEmpty(t, m["component"], "component key on every line: %s", line)
	}
	require.Zero(t, d.sim.ActiveBinds(), "the binary unbound")

	startSecond(t, d.path, Options{})
	requireSentOnce(t, d.sim, accepted, 10*time.Second)
	require.Greater(t, len(accepted), 40)
	_ = os.Remove(bin)
}

// A -lame-duck at least as long as the grace period is refused at start,
// as [shutdown] lame_duck is: every stop would spend its grace serving and
// then fail.
func TestLameDuckFlagNotShorterThanGrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smsgate.toml")
	require.NoError(t, os.WriteFile(path, []byte(configText("127.0.0.1:2775", "http://127.0.0.1:9/events", "lameduck:", "")), 0o600))
	cfg, err := CheckConfig(path)
	require.NoError(t, err)
	_, err = New(Options{ConfigPath: path, LameDuck: cfg.Shutdown.Grace})
	require.EqualError(t, err, fmt.Sprintf("-lame-duck %s must be shorter than [shutdown] grace (%s)", cfg.Shutdown.Grace, cfg.Shutdown.Grace))
}
