// Package webhook delivers smsgate events from Redis streams to each org's
// HTTP webhook, signed, at least once, surviving restarts (API.md section 3).
//
// Fresh events are read from the streams with a consumer group and POSTed at
// once. On a single Redis server one blocking XREADGROUP covers every stream;
// on a cluster one non-blocking XREADGROUP per hash slot is pipelined and
// polled. Acknowledgements are batched: one XACK per stream per batch. An event that fails is put in its endpoint's retry set in Redis before
// its stream entry is acknowledged, so a crash loses nothing. Retries are
// spread with exponential backoff and full jitter until RetryFor has passed
// since the first attempt (a POST, not the time the event was held back); then
// the event becomes a dead letter that an operator can list and redeliver.
//
// Fairness: workers serve endpoints round-robin, at most PerEndpoint requests
// in flight to a healthy endpoint and one probe to a failing one. A failing
// endpoint's circuit opens for its backoff with equal jitter (between half and
// all of it); while open, its events wait in Redis and cost no worker, and
// their RetryFor horizon does not start before they are attempted. An org
// without a webhook (the Resolver says no) gets its events stored as dead
// letters with the reason "no webhook configured", never silently dropped.
//
// Every failed attempt is logged (warn). A webhook URL is POSTed to whole, but
// shown redacted everywhere else — logs, stored errors, Redis records, dead
// letters: its password and query-string values become "***" (redactURL).
// Redis may be down when Run starts: Run retries its set-up until Redis
// answers.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// Endpoint is where an org's events go and the secret that signs them.
type Endpoint struct {
	URL, Secret string
}

// Resolver finds an org's webhook endpoint. The app implements it from the
// live (reloadable) config; it is called for every attempt, so a reload takes
// effect on the next attempt.
type Resolver interface {
	Endpoint(org string) (Endpoint, bool)
}

// Options configure a Dispatcher. Zero values take the defaults noted.
type Options struct {
	Client   redis.UniversalClient // required
	Prefix   string                // key prefix, e.g. "smsgate:"
	Streams  []string              // full keys of the event streams, "<prefix>{b<N>}:events" (queue.EventStreams()); required
	Group    string                // consumer group; default "webhook"
	Consumer string                // consumer name; default "<hostname>-<pid>"
	Resolver Resolver              // required

	HTTPClient *http.Client  // default: a client that does not follow redirects
	Timeout    time.Duration // per attempt; default 5s
	RetryFor   time.Duration // horizon from the first attempt; default 24h
	MinBackoff time.Duration // default 1s
	MaxBackoff time.Duration // default 10m

	Workers     int // concurrent deliveries; default 8
	PerEndpoint int // requests in flight to one healthy endpoint; default 4

	PollInterval time.Duration // retry-set polling, and idle stream polling on a cluster; default 250ms
	ClaimIdle    time.Duration // stream entries pending this long on another consumer are taken over; default 60s
	ReadCount    int           // entries per read of the streams (split among them); default 128

	Logger     *slog.Logger          // default: discard
	Registerer prometheus.Registerer // default: a fresh registry
	Now        func() time.Time      // default time.Now (tests)
}

// Dispatcher delivers events. Create it with New, run it with Run.
type Dispatcher struct {
	opts      Options
	rdb       redis.UniversalClient
	keys      keys
	buckets   map[string]int // stream key -> bucket number N, for event ids
	http      *http.Client
	rt        http.RoundTripper // hc's transport when hc is ours, else nil
	log       *slog.Logger
	m         *metrics
	s         *sched
	now       func() time.Time
	randN     func(n time.Duration) time.Duration // uniform in [0, n), the jitter; rand.N unless a test sets it
	lease     time.Duration
	sweep     time.Duration
	linger    time.Duration // pause after a small read, for entries to gather
	ackLinger time.Duration // longest wait of a stream entry for its XACK
	acks      chan ackItem
	running   atomic.Bool
	signers   *signers
	targets   *targets
	hdrJSON   []string // shared, read-only header values
	hdrAgent  []string

	logMu   sync.Mutex
	lastErr map[string]string // per loop, last logged error (log a repeating failure once)
}

// ErrNotFound is returned by Redeliver for an unknown dead letter.
var ErrNotFound = errors.New("webhook: dead letter not found")

// ErrNoEndpoint is returned by Redeliver when the org has no webhook configured.
var ErrNoEndpoint = errors.New("webhook: no webhook configured")

// New checks opts, fills defaults and returns a Dispatcher.
func New(opts Options) (*Dispatcher, error) {
	if opts.Client == nil {
		return nil, errors.New("webhook: Client is required")
	}
	if len(opts.Streams) == 0 {
		return nil, errors.New("webhook: Streams is required")
	}
	if opts.Resolver == nil {
		return nil, errors.New("webhook: Resolver is required")
	}
	// Event ids of new-format entries name the bucket (event.go): each
	// stream must name one, and no two streams the same.
	buckets := make(map[string]int, len(opts.Streams))
	byBucket := make(map[int]string, len(opts.Streams))
	for _, st := range opts.Streams {
		n, ok := bucketOf(st)
		if !ok {
			return nil, fmt.Errorf("webhook: stream %q is not a bucket stream \"<prefix>{b<N>}:events\"", st)
		}
		if other, dup := byBucket[n]; dup && other != st {
			return nil, fmt.Errorf("webhook: streams %q and %q are both bucket %d", other, st, n)
		}
		buckets[st], byBucket[n] = n, st
	}
	if opts.Group == "" {
		opts.Group = "webhook"
	}
	if opts.Consumer == "" {
		host, _ := os.Hostname()
		opts.Consumer = host + "-" + strconv.Itoa(os.Getpid())
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.Timeout, 5*time.Second)
	def(&opts.RetryFor, 24*time.Hour)
	def(&opts.MinBackoff, time.Second)
	def(&opts.MaxBackoff, 10*time.Minute)
	def(&opts.PollInterval, 250*time.Millisecond)
	def(&opts.ClaimIdle, 60*time.Second)
	if opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("webhook: MaxBackoff %v below MinBackoff %v", opts.MaxBackoff, opts.MinBackoff)
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.PerEndpoint <= 0 {
		opts.PerEndpoint = 4
	}
	if opts.ReadCount <= 0 {
		opts.ReadCount = 128
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := opts.HTTPClient
	var rt http.RoundTripper
	if hc == nil {
		// One transport for the dispatcher's life: connections are kept
		// alive, as many idle per host as there are workers.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = opts.Workers
		tr.MaxIdleConns = max(tr.MaxIdleConns, 2*opts.Workers)
		tr.DisableCompression = true // bodies are not read: no gzip negotiation
		hc = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		rt = tr
	}
	d := &Dispatcher{
		opts:      opts,
		rdb:       opts.Client,
		keys:      keys{prefix: opts.Prefix},
		buckets:   buckets,
		http:      hc,
		rt:        rt,
		log:       opts.Logger.With("component", "webhook"),
		m:         newMetrics(opts.Registerer),
		now:       opts.Now,
		randN:     rand.N[time.Duration],
		lease:     2*opts.Timeout + 30*time.Second,
		sweep:     max(opts.PollInterval, min(time.Minute, opts.RetryFor/10)),
		linger:    min(opts.PollInterval/4, 5*time.Millisecond),
		ackLinger: min(opts.PollInterval, 50*time.Millisecond),
		lastErr:   map[string]string{},
		signers:   newSigners(),
		targets:   newTargets(),
		hdrJSON:   []string{"application/json"},
		hdrAgent:  []string{"smsgate-webhook"},
	}
	d.s = newSched(opts.PerEndpoint, 32*opts.PerEndpoint, max(256, 2*opts.ReadCount), d.openFor)
	return d, nil
}

// backoff is the upper bound of the n-th wait: MinBackoff doubling up to MaxBackoff.
func (d *Dispatcher) backoff(n int) time.Duration {
	b := d.opts.MinBackoff
	for i := 1; i < n && b < d.opts.MaxBackoff; i++ {
		b *= 2
	}
	return min(b, d.opts.MaxBackoff)
}

// retryDelay is the wait after the n-th failed attempt: full jitter over backoff(n).
func (d *Dispatcher) retryDelay(n int) time.Duration {
	return d.randN(d.backoff(n) + 1)
}

// openFor is how long an endpoint's circuit stays open after its streak-th
// consecutive failure: equal jitter over backoff(streak), in [backoff/2,
// backoff]. Not full jitter like retryDelay: the circuit is what spaces the
// probes of a failing endpoint, and a near-zero opening would let the next
// event probe it at once. Jitter keeps the dispatchers sharing a failing
// endpoint from probing it in step.
func (d *Dispatcher) openFor(streak int) time.Duration {
	b := d.backoff(streak)
	half := b / 2
	return b - half + d.randN(half+1)
}

// maxStartupBackoff caps the wait between tries of a Redis step the
// dispatcher cannot run without (creating its consumer groups).
const maxStartupBackoff = 5 * time.Second

// startupDelay is the wait after the n-th failed try of a start-up step:
// PollInterval doubling up to maxStartupBackoff, with equal jitter (between
// half and all of it), so daemons started together do not retry in step.
func (d *Dispatcher) startupDelay(n int) time.Duration {
	b := min(d.opts.PollInterval, maxStartupBackoff)
	for i := 1; i < n && b < maxStartupBackoff; i++ {
		b *= 2
	}
	b = min(b, maxStartupBackoff)
	half := b / 2
	return b - half + d.randN(half+1)
}

// Run consumes the streams and delivers until ctx is done. Requests in flight
// then finish (bounded by Timeout); everything else stays in Redis (pending
// stream entries, retry sets) for the next Run or another daemon.
//
// Redis may be unreachable when Run starts: Run then retries its set-up
// (creating the consumer groups) with capped, jittered backoff, logging and
// counting each failure, until it succeeds or ctx is done. It returns an
// error only when called while already running.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("webhook: Run called twice")
	}
	defer d.running.Store(false)
	if !d.setUp(ctx) {
		return nil // ctx done before Redis answered: nothing was started
	}
	d.acks = make(chan ackItem, 4*ackBatch) // room for what gathers while ackLoop lingers
	var ackWG sync.WaitGroup
	ackWG.Go(func() { d.ackLoop(ctx) })

	var wg sync.WaitGroup
	wg.Go(func() { d.readLoop(ctx) })
	wg.Go(func() { d.pollLoop(ctx) })
	for range d.opts.Workers {
		wg.Go(func() { d.workLoop(ctx) })
	}
	wg.Wait()

	// Retries leased but not attempted become due again at once.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	byHome := map[string][]string{}
	for _, j := range d.s.leftovers() {
		byHome[j.home] = append(byHome[j.home], j.rec.ID)
	}
	now := d.now()
	for home, ids := range byHome {
		if err := d.release(bg, home, ids, now); err != nil {
			d.log.Warn("release leased retries", "err", err)
		}
	}
	close(d.acks)
	ackWG.Wait()
	return nil
}

// setUp creates the consumer groups, trying again after startupDelay while
// Redis fails (it may be down, or still loading, when the daemon starts). It
// reports false when ctx is done first.
func (d *Dispatcher) setUp(ctx context.Context) bool {
	for n := 1; ; n++ {
		err := d.createGroups(ctx)
		if err == nil {
			if n > 1 {
				d.log.Info("webhook dispatcher started", "failed_tries", n-1)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.m.redisErrors.Inc()
		d.log.Warn("webhook dispatcher cannot start, retrying", "attempt", n, "err", err)
		if !sleep(ctx, d.startupDelay(n)) {
			return false
		}
	}
}

// createGroups creates the consumer group (and the stream) where missing.
func (d *Dispatcher) createGroups(ctx context.Context) error {
	for _, st := range d.opts.Streams {
		err := d.rdb.XGroupCreateMkStream(ctx, st, d.opts.Group, "0").Err()
		if err != nil && !isBusyGroup(err) {
			return fmt.Errorf("webhook create group on %s: %w", st, err)
		}
	}
	return nil
}

func isBusyGroup(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP")
}

// logErr logs a repeating failure of a loop once per distinct error.
func (d *Dispatcher) logErr(loop string, err error) {
	d.m.redisErrors.Inc()
	d.logMu.Lock()
	seen := d.lastErr[loop] == err.Error()
	d.lastErr[loop] = err.Error()
	d.logMu.Unlock()
	if !seen {
		d.log.Error("webhook "+loop+" failing", "err", err)
	}
}

func (d *Dispatcher) clearErr(loop string) {
	d.logMu.Lock()
	delete(d.lastErr, loop)
	d.logMu.Unlock()
}

// sleep waits for t or ctx; it reports whether ctx is still live.
func sleep(ctx context.Context, t time.Duration) bool {
	tm := time.NewTimer(t)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

// workLoop runs jobs from the scheduler until ctx is done.
func (d *Dispatcher) workLoop(ctx context.Context) {
	bg := context.WithoutCancel(ctx) // an attempt begun finishes, and its outcome is recorded
	for {
		spills, j := d.s.next(ctx)
		switch {
		case spills != nil:
			d.spill(ctx, spills)
		case j != nil:
			d.attempt(bg, j)
		default:
			return
		}
	}
}

// attempt POSTs one event and records the outcome in Redis. ctx is not
// cancelled at shutdown (an attempt begun is finished).
func (d *Dispatcher) attempt(ctx context.Context, j *job) {
	defer d.s.forget(j)

	start := d.now()
	if j.first.IsZero() {
		j.first = start // the RetryFor horizon starts here, at the first POST
	}
	if j.tgt == nil { // resolve sets it; a job built elsewhere may lack it
		j.tgt = d.targets.get(j.target.URL)
	}
	j.rec.URL = j.tgt.shown
	err := d.post(ctx, j)
	now := d.now()
	d.s.finishAttempt(j, err == nil, now)

	if err == nil {
		d.m.success.Inc()
		if j.fresh() {
			d.acks <- ackItem{stream: j.stream, id: j.entry}
			return
		}
		bg, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		d.done(bg, j)
		return
	}
	bg, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	j.rec.Attempts++
	j.rec.LastError = failureText(err)
	// The same line for every event of an endpoint failing one way but for
	// event_id and attempt, which the app's log handler ignores when it
	// folds repeated warnings.
	d.log.Warn("webhook delivery attempt failed", "org", j.rec.Org, "endpoint", j.rec.URL, "type", j.rec.Type,
		"event_id", j.rec.ID, "attempt", j.rec.Attempts, "err", j.rec.LastError)
	if now.Sub(j.first) >= d.opts.RetryFor {
		d.kill(bg, []*job{j}, now)
		return
	}
	due := now.Add(d.retryDelay(j.rec.Attempts))
	// Not before the endpoint's circuit reopens, and just behind the events
	// held back until then: its probe tries one of those, so an event that
	// keeps failing does not keep the others from their first attempt.
	if _, open := d.s.circuit(j.ep); !due.After(open) {
		due = open.Add(time.Millisecond)
	}
	if err := d.schedule(bg, []scheduled{{ep: j.ep, rec: j.record(), first: j.first, due: due}}); err != nil {
		d.logErr("schedule", err)
		return // fresh: stays pending in the stream; retry: its lease expires
	}
	d.clearErr("schedule")
	d.m.retry.Inc()
	d.m.retryFailure.Inc()
	d.moved(bg, j)
}

// done finishes a delivered event: ack the stream entry or drop the retry.
func (d *Dispatcher) done(ctx context.Context, j *job) {
	if j.fresh() {
		d.acks <- ackItem{stream: j.stream, id: j.entry}
		return
	}
	if err := d.remove(ctx, j.home, j.rec.ID); err != nil {
		d.logErr("remove", err) // the lease expires and the event is sent again: a duplicate, not a loss
	}
}

// moved finishes an event now safe elsewhere in Redis (retry set of j.ep or
// dead letters): ack its stream entry, or drop it from its old retry set.
func (d *Dispatcher) moved(ctx context.Context, j *job) {
	if j.fresh() {
		d.acks <- ackItem{stream: j.stream, id: j.entry}
		return
	}
	if j.home != j.ep {
		if err := d.remove(ctx, j.home, j.rec.ID); err != nil {
			d.logErr("remove", err)
		}
	}
}

// kill turns jobs into dead letters.
func (d *Dispatcher) kill(ctx context.Context, js []*job, now time.Time) {
	recs := make([]record, len(js))
	for i, j := range js {
		r := j.record()
		r.redact() // a record stored by an older version holds its URL in clear
		if j.deadReason != "" {
			r.LastError = j.deadReason
		}
		if !j.first.IsZero() {
			r.FirstAt = ms(j.first)
		}
		r.DeadAt = ms(now)
		recs[i] = r
	}
	if err := d.bury(ctx, recs); err != nil {
		d.logErr("dead letter", err)
		return
	}
	for i, j := range js {
		outcome := "dead"
		if j.deadReason == reasonNoEndpoint {
			outcome = "no_endpoint"
		}
		d.m.deliveries.WithLabelValues(outcome).Inc()
		d.m.dead.Inc()
		d.log.Warn("webhook event dead-lettered", "event_id", j.rec.ID, "org", j.rec.Org, "attempts", j.rec.Attempts, "reason", recs[i].LastError)
		if j.fresh() {
			d.acks <- ackItem{stream: j.stream, id: j.entry}
		} else if err := d.remove(ctx, j.home, j.rec.ID); err != nil {
			d.logErr("remove", err)
		}
	}
}

const reasonNoEndpoint = "no webhook configured"

// spill writes jobs to Redis without attempting them: dead letters for orgs
// without a webhook, retry sets for endpoints whose circuit is open or whose
// queue is full.
func (d *Dispatcher) spill(ctx context.Context, js []*job) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	now := d.now()
	var dead, later []*job
	var items []scheduled
	for _, j := range js {
		if j.deadReason != "" {
			dead = append(dead, j)
			continue
		}
		// j.first stays zero for an event never attempted: being held back
		// does not start its RetryFor horizon, its first attempt will.
		due := j.due
		if due.IsZero() {
			due = now
		}
		items = append(items, scheduled{ep: j.ep, rec: j.record(), first: j.first, due: due})
		later = append(later, j)
	}
	if len(dead) > 0 {
		d.kill(bg, dead, now)
	}
	if err := d.schedule(bg, items); err != nil {
		d.logErr("schedule", err)
	} else {
		for _, j := range later {
			d.m.retryDeferred.Inc()
			d.moved(bg, j)
		}
	}
	for _, j := range js {
		d.s.forget(j)
	}
}

// target is what every attempt to one webhook URL shares: its endpoint id
// and a request template (method and parsed URL), so neither the SHA-256 of
// the URL nor the URL parsing is redone per event.
type target struct {
	id    string        // endpointID(URL)
	shown string        // redactURL(URL): what logs, errors, Redis and dead letters show
	tmpl  *http.Request // POST to URL without context, header or body; nil when err is set
	err   error         // the URL does not make a request (its URL redacted)
}

// targets caches a target per URL.
type targets struct {
	mu sync.Mutex
	m  map[string]*target
}

// maxTargets bounds the targets kept: URLs change only on reload.
const maxTargets = 256

func newTargets() *targets { return &targets{m: map[string]*target{}} }

func (ts *targets) get(url string) *target {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, ok := ts.m[url]; ok {
		return t
	}
	if len(ts.m) >= maxTargets {
		clear(ts.m)
	}
	t := &target{id: endpointID(url), shown: redactURL(url)}
	// The template's URL is shared, read-only, by every request made from it.
	t.tmpl, t.err = http.NewRequest(http.MethodPost, url, nil)
	if t.err != nil {
		t.err = redactError(t.err) // url.Parse's error names the URL whole
	}
	ts.m[url] = t
	return t
}

// request returns a POST of body to t's URL with ctx, as
// http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body)) would
// make it (GetBody included, so a request on a connection the server closed
// meanwhile is retried), and an empty header of room for n keys.
func (t *target) request(ctx context.Context, body []byte, n int) (*http.Request, error) {
	if t.err != nil {
		return nil, t.err
	}
	req := t.tmpl.WithContext(ctx)
	req.Header = make(http.Header, n)
	// An io.NopCloser around a *bytes.Reader, which net/http knows to be in
	// memory: the headers and the body then go out in one write.
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return req, nil
}

// post makes one attempt. A nil error means a 2xx answer.
func (d *Dispatcher) post(ctx context.Context, j *job) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	body := j.payload()
	if j.tgt == nil { // resolve sets it; a job built elsewhere may lack it
		j.tgt = d.targets.get(j.target.URL)
	}
	req, err := j.tgt.request(ctx, body, 4)
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	// Canonical keys set directly; the constant values are shared
	// read-only slices, the two per-event values share one allocation.
	vals := make([]string, 2)
	vals[0], vals[1] = j.rec.ID, d.signers.sign(j.target.Secret, d.now(), body)
	req.Header["Content-Type"] = d.hdrJSON
	req.Header["User-Agent"] = d.hdrAgent
	req.Header["Smsgate-Event-Id"] = vals[0:1:1]
	req.Header["Smsgate-Signature"] = vals[1:2:2]

	d.m.inflight.Inc()
	start := time.Now()
	resp, err := d.do(req)
	err = classify(resp, err)
	d.m.inflight.Dec()
	if err != nil {
		d.m.durFailure.Observe(time.Since(start).Seconds())
	} else {
		d.m.durSuccess.Observe(time.Since(start).Seconds())
	}
	return err
}

// do sends req. With the dispatcher's own client (no redirects followed, no
// cookie jar, no client timeout) it goes straight to the transport, which is
// what Client.Do would end up doing, minus the header copy Client.Do makes
// for redirects. An error names the URL redacted (redactURL), unlike
// Client.Do's, which shows the query string.
func (d *Dispatcher) do(req *http.Request) (*http.Response, error) {
	if d.rt == nil {
		resp, err := d.http.Do(req)
		if err != nil {
			return nil, redactError(err)
		}
		return resp, nil
	}
	if u := req.URL.User; u != nil { // as Client.Do: credentials in the URL become basic auth
		pw, _ := u.Password()
		req.SetBasicAuth(u.Username(), pw)
	}
	resp, err := d.rt.RoundTrip(req)
	if err != nil {
		return nil, &url.Error{Op: "Post", URL: redactURL(req.URL.String()), Err: err}
	}
	return resp, nil
}

// stripPassword returns u as a string with any password masked, as net/http
// reports URLs in errors (its query string in clear: see redactURL).
func stripPassword(u *url.URL) string {
	if _, ok := u.User.Password(); ok {
		return strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1)
	}
	return u.String()
}

// classify turns an HTTP outcome into nil (2xx: delivered) or the error to
// retry with. It drains and closes the body so the connection is reused.
func classify(resp *http.Response, err error) error {
	if err != nil {
		return fmt.Errorf("webhook post: %w", err)
	}
	if resp.ContentLength != 0 {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook post: http status %d", resp.StatusCode)
	}
	return nil
}

// DeadLetter is an event that could not be delivered.
type DeadLetter struct {
	EventID        string
	Type           string
	Org            string
	URL            string // last endpoint tried, redacted (no password, query values "***"); empty if none was configured
	Body           []byte // the exact body that was (or would have been) POSTed
	Attempts       int
	LastError      string // last failure (URLs in it redacted), or "no webhook configured"
	FirstAttemptAt time.Time
	DeadAt         time.Time
}

// DeadLetters lists up to limit dead letters, newest first.
func (d *Dispatcher) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, nil
	}
	ids, err := d.rdb.ZRevRange(ctx, d.keys.deadAt(), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("webhook dead letters: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	vals, err := d.rdb.HMGet(ctx, d.keys.dead(), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("webhook dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(ids))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // removed meanwhile
		}
		r, err := decodeRecord(s)
		if err != nil {
			return nil, fmt.Errorf("webhook dead letters: %w", err)
		}
		r.redact() // stored by an older version: URL and error in clear
		dl := DeadLetter{EventID: r.ID, Type: r.Type, Org: r.Org, URL: r.URL, Body: []byte(r.Body),
			Attempts: r.Attempts, LastError: r.LastError, DeadAt: time.UnixMilli(r.DeadAt).UTC()}
		if r.FirstAt != 0 {
			dl.FirstAttemptAt = time.UnixMilli(r.FirstAt).UTC()
		}
		out = append(out, dl)
	}
	return out, nil
}

// Redeliver moves a dead letter back to its org's current endpoint, due now,
// with a fresh RetryFor horizon that starts at its next attempt. The event id
// and body are unchanged.
func (d *Dispatcher) Redeliver(ctx context.Context, eventID string) error {
	s, err := d.rdb.HGet(ctx, d.keys.dead(), eventID).Result()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("webhook redeliver: %w", err)
	}
	r, err := decodeRecord(s)
	if err != nil {
		return fmt.Errorf("webhook redeliver: %w", err)
	}
	ep, ok := d.opts.Resolver.Endpoint(r.Org)
	if !ok {
		return ErrNoEndpoint
	}
	now := d.now()
	r.redact()
	r.FirstAt, r.DeadAt, r.URL = 0, 0, redactURL(ep.URL)
	if err := d.schedule(ctx, []scheduled{{ep: endpointID(ep.URL), rec: r, due: now}}); err != nil {
		return fmt.Errorf("webhook redeliver: %w", err)
	}
	_, err = d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, d.keys.dead(), eventID)
		p.ZRem(ctx, d.keys.deadAt(), eventID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook redeliver: %w", err)
	}
	d.m.dead.Dec()
	signal(d.s.kick)
	return nil
}

type metrics struct {
	deliveries  *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	dead        prometheus.Gauge
	inflight    prometheus.Gauge
	malformed   prometheus.Counter
	redisErrors prometheus.Counter

	// Children resolved once, for the per-event path.
	success, retry, retryFailure, retryDeferred prometheus.Counter
	durSuccess, durFailure                      prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_webhook_deliveries_total",
			Help: "Webhook events by outcome of their handling: success, retry (attempt failed, retry scheduled), dead, no_endpoint.",
		}, []string{"outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsgate_webhook_attempt_duration_seconds",
			Help:    "Duration of webhook POST attempts by result (success, failure).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"result"}),
		retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_webhook_retries_scheduled_total",
			Help: "Webhook events put in a retry set: after a failed attempt (failure) or without an attempt because the endpoint's circuit was open or its queue full (deferred).",
		}, []string{"reason"}),
		dead: f.NewGauge(prometheus.GaugeOpts{
			Name: "smsgate_webhook_dead_letters",
			Help: "Webhook dead letters stored in Redis.",
		}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "smsgate_webhook_in_flight_requests",
			Help: "Webhook POSTs in flight.",
		}),
		malformed: f.NewCounter(prometheus.CounterOpts{
			Name: "smsgate_webhook_malformed_entries_total",
			Help: "Stream entries that could not be read as events (logged and acknowledged).",
		}),
		redisErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "smsgate_webhook_redis_errors_total",
			Help: "Redis commands of the webhook dispatcher that failed.",
		}),
	}
	for _, o := range []string{"success", "retry", "dead", "no_endpoint"} {
		m.deliveries.WithLabelValues(o)
	}
	for _, r := range []string{"failure", "deferred"} {
		m.retries.WithLabelValues(r)
	}
	m.success, m.retry = m.deliveries.WithLabelValues("success"), m.deliveries.WithLabelValues("retry")
	m.retryFailure, m.retryDeferred = m.retries.WithLabelValues("failure"), m.retries.WithLabelValues("deferred")
	m.durSuccess, m.durFailure = m.duration.WithLabelValues("success"), m.duration.WithLabelValues("failure")
	return m
}
