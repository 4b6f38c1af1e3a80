// Command smsgate is the SMS gateway daemon: it accepts messages over HTTP,
// enforces carrier compliance rules, queues them in Redis and sends them to
// carriers over SMPP. Run `smsgate -help` for the sub-commands.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/app"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

const usage = `smsgate — SMPP/carrier SMS gateway with compliance at the edge.

Usage:
  smsgate [serve] [flags]              run the daemon ("serve" may be left out)
  smsgate check-config -config FILE    validate FILE; print every problem with its key path, exit 1 on error
  smsgate hash-key                     read an API key or admin token on stdin, print its SHA-256
  smsgate simulate [flags]             run the SMSC simulator (a carrier stand-in)
  smsgate help                         this text; "smsgate CMD -help" shows a command's flags

Flags of serve:
  -config FILE         configuration file (TOML); default smsgate.toml
  -log-format FORMAT   text | json; overrides [log] format
  -log-level LEVEL     debug | info | warn | error; overrides [log] level
  -lame-duck DURATION  on SIGTERM keep serving with /readyz 503 this long before
                       closing the API (counts against [shutdown] grace); default 0s

Flags of simulate:
  -listen ADDR (127.0.0.1:2775)  -system-id ID (smsgate)  -password PW (secret)
  -receipt-delay D  -decimal-ids  -data-sm  -max-tps N  -max-window N  -window-status 0x58
  -error-rate F  -error-status 0x45  -lost-response-rate F  -deliver-attempts N (50)

Signals while serving: SIGHUP reloads the configuration (a bad file changes
nothing, see smsgate_config_last_reload_successful); SIGTERM or SIGINT drain
and stop within [shutdown] grace (readiness fails first, the SMPP window in
flight finishes, binds unbind); a second SIGTERM/SIGINT exits at once.

Exit status: 0 after a clean stop, 1 on error, 2 on an unknown command, bad
flags or extra arguments.
Operations guide: docs/OPERATIONS.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		// After the first signal started a graceful stop, restore the
		// default action: a second SIGTERM/SIGINT ends the process at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var ec exitCode
	switch {
	case err == nil:
	case errors.As(err, &ec):
		os.Exit(int(ec))
	default:
		fmt.Fprintln(os.Stderr, "smsgate:", err)
		os.Exit(1)
	}
}

// exitCode ends the program with a status after the command printed its own output.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "check-config":
		return checkConfig(args, stdout, stderr)
	case "hash-key":
		return hashKey(args, stdin, stdout, stderr)
	case "simulate":
		if err := testharness.RunSimulate(ctx, args, stdout); !errors.Is(err, flag.ErrHelp) {
			return err
		}
		return nil // -h: the flags were printed
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "smsgate: unknown command %q; the commands are serve, check-config, hash-key, simulate and help (smsgate help)\n", cmd)
		return exitCode(2)
	}
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		if name != "serve" { // serve's flags are in usage already
			fmt.Fprintf(stderr, "\nFlags of %s:\n", name)
			fs.PrintDefaults()
		}
	}
	return fs
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "smsgate.toml", "configuration `file` (TOML)")
	logFormat := fs.String("log-format", "", "log `format`: text or json (default: [log] format)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (default: [log] level)")
	lameDuck := fs.Duration("lame-duck", 0, "on stop, keep serving with /readyz 503 this `long` before closing the API")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitCode(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q\n", fs.Arg(0))
		return exitCode(2)
	}
	a, err := app.New(app.Options{ConfigPath: *path, LogOutput: stderr, LogFormat: *logFormat, LogLevel: *logLevel, LameDuck: *lameDuck})
	if err != nil {
		return err
	}
	// go-redis logs its own connection troubles through a process-wide
	// logger; route them into the daemon's (format, masking, de-duplication).
	redis.SetLogger(redisLogger{a.Logger().With("component", "redis")})
	a.Start()
	if sim := a.Simulator(); sim != nil {
		fmt.Fprintf(stderr, "\n%s\n\n", devBanner("http://"+a.APIAddr(), "http://"+a.MetricsAddr(), a.Config()))
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return a.Stop()
		case <-hup:
			// A failed reload is logged and counted by Reload itself.
			_ = a.Reload(ctx)
		}
	}
}

// redisLogger writes go-redis's log lines as warnings of the daemon's log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}

// devBanner tells a newcomer running with the simulator how to send a
// message to it and where the receipt will show up, from the configuration:
// the first org's first registered number, and the example's API key when
// the org accepts it.
func devBanner(api, metrics string, cfg *config.Config) string {
	store := "Redis at " + cfg.Redis.Addr
	switch {
	case cfg.Redis.Embedded():
		store = "the embedded store"
	case len(cfg.Redis.Cluster) > 0:
		store = "a Redis Cluster"
	}
	lines := []string{"smsgate is running with " + store + " and an embedded simulator carrier."}
	from, key := "", "<your API key>"
	if len(cfg.Orgs) > 0 {
		o := cfg.Orgs[0]
		for _, n := range o.Numbers {
			if n.Registered {
				from = n.E164
				break
			}
		}
		if slices.Contains(o.APIKeySHA256, config.HashKey(exampleAPIKey)) {
			key = exampleAPIKey
		}
	}
	if from != "" {
		lines = append(lines, "Send a message:",
			"  curl -s "+api+"/v1/messages -H 'Authorization: Bearer "+key+"' \\",
			`    -H 'Content-Type: application/json' -d '{"from":"`+from+`","to":"+15557654321","text":"Hello from smsgate"}'`)
	}
	lines = append(lines,
		"Watch its status events and the delivery receipt: "+api+"/dev/ (JSON: "+api+"/dev/events)",
		"Metrics: "+metrics+"/metrics")
	return strings.Join(lines, "\n")
}

// exampleAPIKey is the API key of smsgate.example.toml's org.
const exampleAPIKey = "dev-key-acme"

func checkConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", stderr)
	path := fs.String("config", "smsgate.toml", "configuration `file` (TOML) to validate")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitCode(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "check-config: unexpected argument %q; name the file with -config FILE\n", fs.Arg(0))
		return exitCode(2)
	}
	cfg, err := app.CheckConfig(*path)
	if err != nil {
		var verr *config.ValidationError
		if errors.As(err, &verr) {
			for _, p := range verr.Problems {
				fmt.Fprintf(stdout, "%s: %s\n", *path, p)
			}
		} else {
			fmt.Fprintf(stdout, "%s: %v\n", *path, err)
		}
		return exitCode(1)
	}
	fmt.Fprintln(stdout, cfg.Summary())
	return nil
}

func hashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("hash-key", stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitCode(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "hash-key reads the key from standard input, not from arguments (they would stay in the shell history): echo -n \"$KEY\" | smsgate hash-key")
		return exitCode(2)
	}
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "API key or admin token (then Enter): ")
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read key from stdin: %w", err)
	}
	key := strings.TrimSpace(line)
	if key == "" {
		return errors.New("no key on stdin: pipe the API key or admin token in, e.g. `echo -n \"$KEY\" | smsgate hash-key`")
	}
	fmt.Fprintln(stdout, config.HashKey(key))
	return nil
}
