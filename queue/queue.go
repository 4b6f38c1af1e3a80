package queue

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Errors returned by the queue. Test with errors.Is.
var (
	ErrQueueFull           = errors.New("queue: sender queue is full")
	ErrOptedOut            = errors.New("queue: recipient opted out")
	ErrIdempotencyConflict = errors.New("queue: idempotency key reused with a different request")
	ErrNotFound            = errors.New("queue: message not found")
	// ErrDeadline: an Enqueue with a Deadline did not run in time, so it
	// stored nothing.
	ErrDeadline = errors.New("queue: deadline passed before the call ran; nothing was stored")
	// ErrLeaseLost: Ack, Retry, Requeue, Fail or Renew of a message whose
	// lease expired or that was claimed again (stale attempt).
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrBadID: the message id does not carry the sender's bucket (make ids
	// with Queue.NewMessageID).
	ErrBadID = errors.New("queue: message id does not belong to the sender's bucket")
)

// Defaults of Options.
const (
	DefaultBuckets        = 64
	DefaultLease          = 30 * time.Second
	DefaultSenderWindow   = 1
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultCarrierIDTTL   = 34 * time.Hour
	DefaultStreamMaxLen   = 1_000_000
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultProbeInterval  = 50 * time.Millisecond
	// idleProbeFactor bounds how far the probe interval grows while idle.
	idleProbeFactor = 8
	// MaxBuckets is the largest bucket count a message id can carry.
	MaxBuckets = 32768
)

// Options configure a Queue. Zero values take the defaults.
type Options struct {
	Client redis.UniversalClient
	// Prefix starts every key (e.g. "smsgate:"); it must not contain '{' or '}'.
	Prefix string
	// Buckets is the number of sender buckets (default 64, at most MaxBuckets).
	// Changing it strands queued messages.
	Buckets int
	// Lease is how long a claimed message stays leased (default 30s).
	Lease time.Duration
	// SenderWindow is how many messages of one sender may be in flight at
	// once (default 1: strict per-number order even across retries). A larger
	// window lets a high-rate number keep its rate over a slow carrier link;
	// submission order stays FIFO but a retried message may be overtaken.
	SenderWindow int
	// Retention is how long a message's record is kept after it was sent or
	// finished (default 7 days).
	Retention time.Duration
	// CarrierIDTTL is how long a carrier message id maps back to its message
	// (default 34h: max validity 10h + 1 day).
	CarrierIDTTL time.Duration
	// StreamMaxLen caps each bucket's event stream, approximately (default 1,000,000).
	StreamMaxLen int
	// IdempotencyTTL is how long an idempotency key is remembered (default 24h).
	IdempotencyTTL time.Duration
	// NormalizeID maps a carrier message id to the form under which it is
	// indexed and looked up, so the forms a carrier uses in submit_sm_resp and
	// in receipts match (smpp.NormalizeID). Ids are stored and shown as the
	// carrier sent them. Nil: ids are used as they are.
	NormalizeID func(string) string
	// ProbeInterval bounds how stale Claim's view of the buckets may get:
	// Claim skips buckets it knows have no due sender, learning the earliest
	// due time of a bucket from every script this Queue runs on it, and looks
	// at every bucket's earliest time (one pipeline) at most this often, to
	// see what other daemons queued or released (default 50ms). While the
	// probes find nothing to claim the interval doubles, up to
	// idleProbeFactor times it, so an idle daemon costs little; a claim
	// that gets a message, or a script of this Queue leaving a sender ready,
	// brings it back.
	ProbeInterval time.Duration
	// Logger receives the queue's logs (nil: discarded).
	Logger *slog.Logger
	// Registerer receives the smsgate_queue_* metrics (nil: a fresh registry).
	Registerer prometheus.Registerer
}

// Queue is the Redis-backed outbound queue. It is safe for concurrent use;
// several Queues (in several daemons) may share one Redis.
type Queue struct {
	rdb  redis.UniversalClient
	opts Options
	log  *slog.Logger
	m    *metrics

	buckets []bucketKeys // per bucket, built once
	all     []int        // every bucket number, in order (read-only)

	heldMin time.Duration // first look of the held sweep (heldSweepMin; tests shorten it)

	plain atomic.Bool // the server refused "#!lua" (miniredis)

	comb combiner // batches concurrent Enqueue calls

	offset      atomic.Int64 // Redis clock minus this host's clock, microseconds
	offsetKnown atomic.Bool  // offset was measured (a probe or an enqueue reply)

	expMu      sync.Mutex
	expFrom    []int // per bucket: the offset into the due senders of the next ExpireHeads
	expSenders int   // due senders one ExpireHeads looks at per bucket (tests lower it)
	expDrops   int   // heads one ExpireHeads drops per bucket (tests lower it)

	mu         sync.Mutex
	cursor     int           // round-robin start of the next Claim
	hints      []hint        // per bucket: what Claim knows of its ready senders
	lastProbe  time.Time     // when every bucket was last looked at
	probeEvery time.Duration // the probe interval now: ProbeInterval, longer while idle
}

// bucketKeys are the strings every script call on a bucket needs.
type bucketKeys struct {
	base  string   // "<prefix>{b<N>}:"
	keys  []string // {base+"ready"}: KEYS of every bucket script (read-only)
	argv5 []any    // ARGV[1..5]: base, bucket, stream MAXLEN, window, retention (read-only)
}

// hint is what Claim knows of a bucket's ready set: the earliest score
// (Redis µs; noSender when empty) and how many senders were due when it was
// read (a lower bound later, as more become due). ver counts updates, so a
// claim result read before a later update does not overwrite it.
type hint struct {
	next int64
	due  int
	ver  uint64
}

// noSender is the hint of a bucket with no ready sender.
const noSender = math.MaxInt64

//go:embed scripts/*.lua
var scriptFS embed.FS

// scripts are immutable after package initialisation (no mutable state).
var (
	scriptEnqueue    = bucketScript("enqueue")
	scriptClaim      = bucketScript("claim")
	scriptAck        = bucketScript("ack")
	scriptRetry      = bucketScript("retry")
	scriptFail       = bucketScript("fail")
	scriptRenew      = bucketScript("renew")
	scriptReap       = bucketScript("reap")
	scriptExpHeads   = bucketScript("expire_heads")
	scriptSetRate    = bucketScript("setrate")
	scriptReceived   = bucketScript("received")
	scriptReceipt    = bucketScript("receipt")
	scriptCIDResolve = plainScript("cid_resolve")
	scriptCIDUnset   = plainScript("cid_unset")
	scriptCIDHold    = plainScript("cid_hold")
	scriptCIDDone    = plainScript("cid_done")
	scriptHeldSweep  = plainScript("held_sweep")
	scriptMOAdd      = plainScript("mo_add")
	scriptMOTake     = plainScript("mo_take")
	scriptMOPut      = plainScript("mo_put")
)

func readScript(name string) string {
	b, err := scriptFS.ReadFile("scripts/" + name + ".lua")
	if err != nil {
		panic(fmt.Sprintf("queue: embedded script %s: %v", name, err))
	}
	return string(b)
}

// script is one Lua script in two forms: with the "#!lua" header, so Redis 7
// refuses any key outside the declared slot (and refuses writes under OOM
// before the script starts), and without it for miniredis, which cannot
// parse the header.
type script struct {
	name          string
	header, plain *redis.Script
}

func bucketScript(name string) script {
	return newScript(name, readScript("common")+"\n"+readScript(name))
}

func plainScript(name string) script { return newScript(name, readScript(name)) }

func newScript(name, src string) script {
	return script{name: name, header: redis.NewScript("#!lua\n" + src), plain: redis.NewScript(src)}
}

// pick returns the form of s the server understands.
func (q *Queue) pick(s script) *redis.Script {
	if q.plain.Load() {
		return s.plain
	}
	return s.header
}

// compileRefused reports whether err says the server could not compile a
// script: with sc being the "#!lua" form, the server (miniredis) does not
// parse the header, and the queue switches to plain scripts for good.
func (q *Queue) compileRefused(s script, sc *redis.Script, err error) bool {
	if err == nil || sc != s.header || !strings.Contains(err.Error(), "Error compiling script") {
		return false
	}
	if !q.plain.Swap(true) {
		q.log.Info("redis does not parse script headers; using plain scripts (embedded store?)")
	}
	return true
}

// runScript runs s with keys and args (EVALSHA, loading it on NOSCRIPT).
func (q *Queue) runScript(ctx context.Context, s script, keys []string, args ...any) *redis.Cmd {
	sc := q.pick(s)
	cmd := sc.Run(ctx, q.rdb, keys, args...)
	if q.compileRefused(s, sc, cmd.Err()) {
		cmd = s.plain.Run(ctx, q.rdb, keys, args...)
	}
	if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
		q.m.scriptErrors.WithLabelValues(s.name).Inc()
	}
	return cmd
}

// New validates opts and returns a Queue. It does not contact Redis.
func New(opts Options) (*Queue, error) {
	if opts.Client == nil {
		return nil, errors.New("queue: nil redis client")
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("queue: prefix %q must not contain '{' or '}'", opts.Prefix)
	}
	if opts.Buckets == 0 {
		opts.Buckets = DefaultBuckets
	}
	if opts.Buckets < 1 || opts.Buckets > MaxBuckets {
		return nil, fmt.Errorf("queue: buckets %d out of range 1..%d", opts.Buckets, MaxBuckets)
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.SenderWindow <= 0 {
		opts.SenderWindow = DefaultSenderWindow
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.CarrierIDTTL <= 0 {
		opts.CarrierIDTTL = DefaultCarrierIDTTL
	}
	if opts.StreamMaxLen <= 0 {
		opts.StreamMaxLen = DefaultStreamMaxLen
	}
	if opts.IdempotencyTTL <= 0 {
		opts.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	q := &Queue{
		rdb:  opts.Client,
		opts: opts,
		log:  log.With("component", "queue"),
		m:    newMetrics(reg),

		heldMin:    heldSweepMin,
		expSenders: expireHeadsSenders,
		expDrops:   expireHeadsDrops,
	}
	q.buckets = make([]bucketKeys, opts.Buckets)
	q.hints = make([]hint, opts.Buckets)
	q.probeEvery = opts.ProbeInterval
	q.all = make([]int, opts.Buckets)
	for b := range q.all {
		q.all[b] = b
	}
	for b := range q.buckets {
		base := fmt.Sprintf("%s{b%d}:", opts.Prefix, b)
		q.buckets[b] = bucketKeys{
			base: base,
			keys: []string{base + "ready"},
			argv5: []any{base, strconv.Itoa(b), strconv.Itoa(opts.StreamMaxLen),
				strconv.Itoa(opts.SenderWindow), strconv.FormatInt(opts.Retention.Milliseconds(), 10)},
		}
	}
	return q, nil
}

// Buckets returns the number of sender buckets.
func (q *Queue) Buckets() int { return q.opts.Buckets }

// Bucket returns the bucket of a sender number (CRC-32 IEEE mod Buckets).
func (q *Queue) Bucket(from string) int {
	return int(crc32.ChecksumIEEE([]byte(from)) % uint32(q.opts.Buckets))
}

// base returns the key prefix of bucket b: "<prefix>{b<N>}:".
func (q *Queue) base(b int) string { return q.buckets[b].base }

// cidKeys returns the index key and the held-receipts key of a carrier id.
func (q *Queue) cidKeys(cid string) (index, held string) {
	k := q.cidKeySet(cid)
	return k.index, k.held
}

// cidKeySet is the keys of one carrier id, all in its carrier-id bucket.
type cidKeySet struct {
	cid   string // normalized
	index string // STRING "msgID|segment"
	held  string // LIST receipts held
	set   string // the bucket's ZSET of carrier ids with held receipts
}

func (q *Queue) cidKeySet(cid string) cidKeySet {
	if q.opts.NormalizeID != nil {
		cid = q.opts.NormalizeID(cid)
	}
	p := q.cidBase(int(crc32.ChecksumIEEE([]byte(cid)) % uint32(q.opts.Buckets)))
	return cidKeySet{cid: cid, index: p + "cid:" + cid, held: p + "held:" + cid, set: p + "heldset"}
}

// cidBase returns the key prefix of carrier-id bucket c: "<prefix>{c<N>}:".
func (q *Queue) cidBase(c int) string {
	return q.opts.Prefix + "{c" + strconv.Itoa(c) + "}:"
}

// EventStreams returns the keys of the per-bucket event streams. Entries
// have the fields type, org and data (JSON); the event's id and time come
// from the entry id (older entries also have id and at fields).
func (q *Queue) EventStreams() []string {
	s := make([]string, q.opts.Buckets)
	for b := range s {
		s[b] = q.base(b) + "events"
	}
	return s
}

// run runs a bucket script on bucket b with the script-specific args.
func (q *Queue) run(ctx context.Context, s script, b int, args ...any) *redis.Cmd {
	return q.runScript(ctx, s, q.buckets[b].keys, q.argv(b, args)...)
}

func (q *Queue) argv(b int, args []any) []any {
	a := make([]any, 0, 5+len(args))
	a = append(a, q.buckets[b].argv5...)
	return append(a, args...)
}

// us converts a duration to whole microseconds.
func us(d time.Duration) int64 { return d.Microseconds() }

type metrics struct {
	enqueued     *prometheus.CounterVec
	claimed      prometheus.Counter
	acked        prometheus.Counter
	retried      prometheus.Counter
	requeued     prometheus.Counter
	failed       prometheus.Counter
	expired      prometheus.Counter
	reaped       prometheus.Counter
	claimLatency prometheus.Histogram
	scriptErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Name: "smsgate_queue_" + name + "_total", Help: help})
	}
	return &metrics{
		enqueued: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_queue_enqueued_total", Help: "Messages queued, by kind (user, notice, reply).",
		}, []string{"kind"}),
		claimed:  c("claimed", "Messages leased to a sender."),
		acked:    c("acked", "Messages acknowledged as sent."),
		retried:  c("retried", "Messages put back after a temporary error."),
		requeued: c("requeued", "Messages put back with an unknown outcome (possible duplicates)."),
		failed:   c("failed", "Messages ended as failed."),
		expired:  c("expired", "Messages whose validity passed in the queue."),
		reaped:   c("reaped", "Expired leases returned to their queue."),
		claimLatency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "smsgate_queue_claim_duration_seconds",
			Help:    "Duration of one Claim call.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		scriptErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_queue_script_errors_total", Help: "Redis script calls that failed, by script.",
		}, []string{"script"}),
	}
}
