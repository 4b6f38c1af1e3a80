// Command smsgate-bench is the end-to-end load benchmark of smsgate. It runs
// the processes a user would run — the built smsgate binary, a durable
// redis-server (appendonly yes, appendfsync everysec), the SMSC simulator as
// its own process (smsgate simulate) — plus a webhook sink and a Go load
// generator inside this process, all on 127.0.0.1, and reports HTTP accept
// rate and latency, submit_sm and delivery-event rates, CPU per 1,000
// messages from /proc and smsgate's peak RSS. With -queue-only N it instead
// measures Redis memory per queued message with no carrier bind up. With
// -cluster the store is a 3-master Redis Cluster of redis-server processes
// (created with redis-cli --cluster create) and -daemons N runs N smsgate
// processes on it that share the carrier's binds through bind leases; the
// load generator spreads requests round-robin over their APIs. With -floor
// a minimal gateway that does only the API contract's HTTP work (floor.go)
// stands in for smsgate, Redis and the simulator: the CPU floor of that
// traffic on the machine; -floor-raw runs it on hand-written HTTP/1.1
// (floorraw.go) to show what net/http itself costs; -floor-full adds the
// least carrier and store work (floorfull.go): each message stored in the
// same durable redis-server and submitted to the same simulator, its events
// posted as its answer and receipt come. With -kannel the same
// load goes through an installed Kannel (bearerbox and smsbox, kannel.go)
// to the same simulator and sink: the reference gateway on this machine.
//
// Usage:
//
//	smsgate-bench [-quick] [-n 50000] [-numbers 1000] [-concurrency 64] [-rate R] …
//	smsgate-bench -queue-only 1000000
//	smsgate-bench -quick -cluster -daemons 3
//	smsgate-bench -floor
//	smsgate-bench -floor-raw
//	smsgate-bench -floor-full [-floor-raw]
//	smsgate-bench -kannel [-kannel-dir /usr/sbin]
//
// Every child process is killed when the command exits. The last line of
// output is the result as one JSON object.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == daemonCommand {
		// Hidden mode used by -profile: the daemon in this process with
		// runtime/pprof (smsgate has no pprof endpoint).
		if err := runProfiledDaemon(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "smsgate-bench daemon:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		// Hidden mode used by -floor: the floor gateway (floor.go).
		if err := runFloorGateway(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "smsgate-bench floor-gateway:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smsgate-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, opts, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "smsgate-bench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	Smsgate        string        // smsgate binary; "" builds one
	N              int           // messages of the load run
	Numbers        int           // sender numbers
	Recipients     int           // recipients per sender number
	Concurrency    int           // requests in flight
	Rate           float64       // open-loop target rate (0: closed loop)
	Binds          int           // SMPP binds to the simulator
	Window         int           // window of each bind
	WebhookWorkers int           // [webhook] workers (0: the daemon's default)
	StatusEvents   string        // [webhook] status_events, comma-separated ("": every status)
	RedisServer    string        // redis-server binary
	QueueOnly      int           // memory run: queue this many messages with no bind up
	Quick          bool          // short development preset
	Timeout        time.Duration // bound on the whole load run
	Idle           time.Duration // idle CPU measurement before the load
	Profile        string        // directory for CPU/alloc profiles (profiled run)
	Keep           bool          // keep the temporary directory
	Text           string        // message text
	Cluster        bool          // store: a Redis Cluster of clusterMasters masters
	Daemons        int           // smsgate processes
	Floor          bool          // reference run: the floor gateway instead of smsgate
	FloorRaw       bool          // the floor gateway on hand-written HTTP/1.1 instead of net/http
	FloorFull      bool          // the floor gateway also stores in Redis and submits to the simulator
	Kannel         bool          // reference run: Kannel (bearerbox + smsbox) instead of smsgate and Redis
	KannelDir      string        // where bearerbox and smsbox are
	ReceiptDelay   time.Duration // the simulator's delay of delivery receipts
	KillAfter      time.Duration // crash run: SIGKILL the gateway this long after the first request
	KannelDLRRedis bool          // Kannel keeps its DLRs in a redis-server instead of memory
}

// clusterMasters is the number of masters of the -cluster store.
const clusterMasters = 3

// quickN is the message count of -quick (fits in well under 60 s).
const quickN = 10000

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("smsgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Smsgate, "smsgate", "", "smsgate `binary` to run (default: go build ./cmd/smsgate into a temp dir)")
	fs.IntVar(&o.N, "n", 50000, "messages to send")
	fs.IntVar(&o.Numbers, "numbers", 1000, "sender numbers (short codes, rate 1000/s each: rates do not bind)")
	fs.IntVar(&o.Recipients, "recipients", 5, "recipients per sender number (the first message of each pair is preceded by a notice)")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "HTTP requests in flight")
	fs.Float64Var(&o.Rate, "rate", 0, "open-loop target rate in requests/s (0: closed loop); latency is measured from each request's scheduled time")
	fs.IntVar(&o.Binds, "binds", 2, "SMPP binds to the simulator")
	fs.IntVar(&o.Window, "window", 50, "window of each bind")
	fs.IntVar(&o.WebhookWorkers, "webhook-workers", 0, "[webhook] workers of the daemon (0: its default)")
	fs.StringVar(&o.StatusEvents, "status-events", "", "[webhook] status_events of the daemon, comma-separated, e.g. `delivered,undelivered,failed,expired` (Kannel-style: no sent event); empty: every status event")
	fs.StringVar(&o.RedisServer, "redis-server", "/usr/bin/redis-server", "redis-server `binary`")
	fs.IntVar(&o.QueueOnly, "queue-only", 0, "memory run: queue `N` messages with no carrier bind up and report Redis memory per message")
	fs.BoolVar(&o.Quick, "quick", false, fmt.Sprintf("development preset: -n %d unless -n is given", quickN))
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up waiting for the last event after this long")
	fs.DurationVar(&o.Idle, "idle", 2*time.Second, "measure the idle CPU of smsgate and redis-server for this long before the load (0: skip)")
	fs.StringVar(&o.Profile, "profile", "", "profiled run: write daemon CPU and allocation profiles (and a perf profile of redis-server when perf is installed) to `dir`; figures are then not representative")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (config, logs, redis data)")
	fs.StringVar(&o.Text, "text", "Reminder: your appointment is tomorrow at 10:00. Reply C to confirm.", "message text")
	fs.BoolVar(&o.Cluster, "cluster", false, fmt.Sprintf("store: a %d-master Redis Cluster (redis-server processes, AOF everysec; needs redis-cli) instead of one redis-server", clusterMasters))
	fs.IntVar(&o.Daemons, "daemons", 1, "smsgate processes on the same store and key prefix, sharing the binds through bind leases; requests go round-robin over them")
	fs.BoolVar(&o.Floor, "floor", false, "reference run: instead of smsgate, Redis and the simulator, a minimal gateway that does only the HTTP work the API contract asks per message (read the request, answer 202, POST each status event, signed); its CPU per message is the floor of that traffic on this machine")
	fs.BoolVar(&o.FloorRaw, "floor-raw", false, "-floor with the floor gateway's HTTP hand-written on net.Conn (server and webhook client) instead of net/http: what the same traffic costs with the least Go does above the sockets")
	fs.BoolVar(&o.FloorFull, "floor-full", false, "-floor plus the least carrier and store work a gateway that keeps what it accepts needs: each message (and notice) stored in the run's durable redis-server before its 202 (group-committed), submitted to the run's simulator over the same binds, its carrier id indexed and its status stored as its submit_sm_resp and receipt come, and only then its events POSTed; no queue, rates, retries or checks")
	fs.BoolVar(&o.Kannel, "kannel", false, "reference run: the same load through Kannel (bearerbox + smsbox with its file message store, e.g. Debian's kannel package) to the same simulator, delivery reports by dlr-url to the same sink; -status-events picks the dlr-mask")
	fs.StringVar(&o.KannelDir, "kannel-dir", "/usr/sbin", "`directory` holding Kannel's bearerbox and smsbox")
	fs.DurationVar(&o.ReceiptDelay, "receipt-delay", 0, "the simulator sends each delivery receipt this long after its submit_sm_resp (default 0; 1s with -kannel, which drops receipts that overtake their submit_sm_resp)")
	fs.BoolVar(&o.KannelDLRRedis, "kannel-dlr-redis", false, "with -kannel: Kannel keeps its delivery-report entries in a redis-server of the run (AOF everysec, as smsgate's) instead of in memory (dlr-storage = redis), so they outlive a restart of bearerbox; its CPU is reported")
	fs.DurationVar(&o.KillAfter, "kill-after", 0, "crash run: SIGKILL the gateway (smsgate, or with -kannel bearerbox) this long after the first request, start it again at once, and count per message what reached the SMSC and the webhook (lost, duplicated, reports missing); the simulator then runs inside the bench, and -n may not exceed -numbers × -recipients")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.FloorRaw || o.FloorFull {
		o.Floor = true
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var errs []error
	nSet, delaySet := false, false
	fs.Visit(func(f *flag.Flag) {
		nSet = nSet || f.Name == "n"
		delaySet = delaySet || f.Name == "receipt-delay"
	})
	if o.Quick && !nSet {
		o.N = quickN
	}
	if o.Kannel && !delaySet {
		o.ReceiptDelay = time.Second
	}
	if o.KannelDLRRedis && !o.Kannel {
		errs = append(errs, errors.New("-kannel-dlr-redis configures Kannel: it needs -kannel"))
	}
	if o.KillAfter < 0 {
		errs = append(errs, fmt.Errorf("-kill-after must not be negative, got %v", o.KillAfter))
	}
	if o.KillAfter > 0 {
		if o.Floor || o.QueueOnly > 0 || o.Cluster || o.Daemons > 1 || o.Profile != "" {
			errs = append(errs, errors.New("-kill-after kills one smsgate on one redis-server, or Kannel: no -floor, -queue-only, -cluster, -daemons or -profile"))
		}
		if o.N > o.Numbers*o.Recipients {
			errs = append(errs, fmt.Errorf("-kill-after knows a message at the SMSC by its numbers: -n %d must not exceed -numbers × -recipients = %d", o.N, o.Numbers*o.Recipients))
		}
	}
	if o.ReceiptDelay < 0 {
		errs = append(errs, fmt.Errorf("-receipt-delay must not be negative, got %v", o.ReceiptDelay))
	}
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("-%s must be positive, got %d", name, v))
		}
	}
	positive("n", o.N)
	positive("numbers", o.Numbers)
	positive("recipients", o.Recipients)
	positive("concurrency", o.Concurrency)
	positive("binds", o.Binds)
	positive("window", o.Window)
	positive("daemons", o.Daemons)
	if o.Daemons > 1 || o.Cluster {
		if o.QueueOnly > 0 {
			errs = append(errs, errors.New("-queue-only runs one daemon on one redis-server: no -cluster or -daemons"))
		}
		if o.Profile != "" {
			errs = append(errs, errors.New("-profile runs one daemon on one redis-server: no -cluster or -daemons"))
		}
	}
	if o.Floor && (o.QueueOnly > 0 || o.Cluster || o.Daemons > 1 || o.Profile != "") {
		errs = append(errs, errors.New("-floor, -floor-raw and -floor-full run the floor gateway alone: no -queue-only, -cluster, -daemons or -profile"))
	}
	if o.Floor && !o.FloorFull && o.ReceiptDelay > 0 {
		errs = append(errs, errors.New("-receipt-delay needs a simulator: -floor and -floor-raw run none (-floor-full does)"))
	}
	if o.Kannel {
		if o.Floor || o.QueueOnly > 0 || o.Cluster || o.Daemons > 1 || o.Profile != "" {
			errs = append(errs, errors.New("-kannel runs Kannel alone: no -floor, -queue-only, -cluster, -daemons or -profile"))
		}
		if _, err := kannelDLRMask(o.StatusEvents); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("-rate must not be negative, got %v", o.Rate))
	}
	if o.QueueOnly < 0 {
		errs = append(errs, fmt.Errorf("-queue-only must not be negative, got %d", o.QueueOnly))
	}
	if o.WebhookWorkers < 0 {
		errs = append(errs, fmt.Errorf("-webhook-workers must not be negative, got %d", o.WebhookWorkers))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout must be positive, got %v", o.Timeout))
	}
	if o.Text == "" {
		errs = append(errs, errors.New("-text must not be empty"))
	}
	return o, errors.Join(errs...)
}
