package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/message"
)

// EnqueueRequest is one message to queue, with the checks to make atomically.
type EnqueueRequest struct {
	// Msg is the message (ID from NewMessageID, From, To, Segments, ExpiresAt…
	// set by the caller; a zero ExpiresAt never expires).
	Msg *message.Message
	// Interval is the sender's time per segment (1/rate). It is stored for the
	// sender, so a config reload changes rates without touching queued
	// messages. Zero means no limit; negative keeps the stored interval.
	Interval time.Duration
	// MaxDepth refuses the message with ErrQueueFull when the sender already
	// has that many messages waiting (0: no limit).
	MaxDepth int
	// IdempotencyKey (optional) with RequestHash and Response: a later
	// Enqueue with the same key for the same org and SENDER NUMBER within
	// Options.IdempotencyTTL returns Replayed and the stored Response when
	// RequestHash matches, ErrIdempotencyConflict otherwise. The key lives in
	// the sender's bucket (one slot per script), so the same key used from two
	// different numbers is not deduplicated; requests from different numbers
	// have different bodies anyway.
	IdempotencyKey, RequestHash string
	Response                    []byte
	// Notice is queued just before Msg iff the conversation (From, To) never
	// started (no earlier notice and no inbound message from To).
	Notice *message.Message
	// CheckOptOut refuses the message with ErrOptedOut if To opted out of From.
	CheckOptOut bool
	// StatusEvents, when not nil, are the only statuses (sent, delivered,
	// undelivered, failed, expired) whose message.status event is emitted for
	// Msg and Notice (nil: every change after queued, API.md section 3), as
	// config.StatusEventsFor gives them. The status history is kept whatever
	// it says.
	StatusEvents []string
	// Deadline (optional) is when Enqueue must have answered. A call that
	// Redis runs later than shortly before it (Redis stalled, or the call ran
	// from the buffer of a connection the client had given up on) stores
	// nothing, and Enqueue returns an error by Deadline, so an error then
	// means nothing was stored unless Redis stalled between running the
	// call and answering it (see enqueueGrace). Zero: the client's timeouts
	// bound the call.
	Deadline time.Time
}

// EnqueueResult is the outcome of a successful Enqueue.
type EnqueueResult struct {
	Replayed     bool   // the idempotency key was seen with the same request
	Response     []byte // the stored response when Replayed
	NoticeQueued bool   // the sender-identification notice was queued first
}

// Enqueue stores and queues a message, atomically with its checks. Only a nil
// error means the message is durably queued (or Replayed).
func (q *Queue) Enqueue(ctx context.Context, r EnqueueRequest) (EnqueueResult, error) {
	if r.Msg == nil {
		return EnqueueResult{}, errors.New("queue: enqueue: nil message")
	}
	b := q.Bucket(r.Msg.From)
	msgArgs, err := q.msgArgs(b, r.Msg)
	if err != nil {
		return EnqueueResult{}, err
	}
	noticeArgs := []any{"", "", 0, 0, ""}
	if r.Notice != nil {
		if r.Notice.From != r.Msg.From || r.Notice.To != r.Msg.To {
			return EnqueueResult{}, errors.New("queue: enqueue: notice must have the message's from and to")
		}
		if noticeArgs, err = q.msgArgs(b, r.Notice); err != nil {
			return EnqueueResult{}, err
		}
	}
	ev, err := eventFilter(r.StatusEvents)
	if err != nil {
		return EnqueueResult{}, err
	}
	interval := us(r.Interval)
	if r.Interval < 0 {
		interval = -1
	}
	args := []any{r.Msg.From, r.Msg.To, r.Msg.OrgID, r.IdempotencyKey, r.RequestHash, r.Response,
		r.MaxDepth, interval, boolArg(r.CheckOptOut), q.opts.IdempotencyTTL.Milliseconds()}
	args = append(append(args, msgArgs...), noticeArgs...)
	var kind string // field k of a message the daemon sends on its own
	if r.Msg.Kind != "" && r.Msg.Kind != message.KindUser {
		kind = string(r.Msg.Kind)
	}
	args = append(args, ev, kind)
	res, err := q.enqueue(ctx, b, args, r.Deadline)
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("queue: enqueue: %w", err)
	}
	switch res[0] {
	case "ok":
		if len(res) > 3 {
			score, _ := res[2].(int64)
			q.noteReady(b, score, res[3] == int64(1))
		}
		out := EnqueueResult{NoticeQueued: res[1] == int64(1)}
		if out.NoticeQueued {
			q.m.enqueued.WithLabelValues(kindLabel(r.Notice.Kind)).Inc()
		}
		q.m.enqueued.WithLabelValues(kindLabel(r.Msg.Kind)).Inc()
		return out, nil
	case "replay":
		s, _ := res[1].(string)
		return EnqueueResult{Replayed: true, Response: []byte(s)}, nil
	case "conflict":
		return EnqueueResult{}, ErrIdempotencyConflict
	case "optout":
		return EnqueueResult{}, ErrOptedOut
	case "full":
		return EnqueueResult{}, ErrQueueFull
	case "late":
		return EnqueueResult{}, fmt.Errorf("queue: enqueue: Redis ran it after its deadline: %w", ErrDeadline)
	}
	return EnqueueResult{}, fmt.Errorf("queue: enqueue: unexpected reply %v", res)
}

func (q *Queue) msgArgs(b int, m *message.Message) ([]any, error) {
	if ib, ok := q.bucketOfID(m.ID); !ok || ib != b {
		return nil, fmt.Errorf("queue: enqueue %q: %w", m.ID, ErrBadID)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("queue: enqueue: %w", err)
	}
	var exp int64
	if !m.ExpiresAt.IsZero() {
		exp = m.ExpiresAt.UnixMicro()
	}
	return []any{m.ID, body, exp, m.Segments, m.ClientRef}, nil
}

// filterable are the statuses a message.status event filter may name, each
// stored by its first letter (the scripts' finish checks it).
var filterable = [...]message.Status{message.StatusSent, message.StatusDelivered,
	message.StatusUndelivered, message.StatusFailed, message.StatusExpired}

// eventFilter encodes statuses as the message field ev: "" when nil or when
// every filterable status is named (the scripts then emit every event).
func eventFilter(statuses []string) (string, error) {
	if statuses == nil {
		return "", nil
	}
	var b []byte
	for _, f := range filterable {
		if slices.Contains(statuses, string(f)) {
			b = append(b, f[0])
		}
	}
	for _, s := range statuses {
		if !slices.Contains(filterable[:], message.Status(s)) {
			return "", fmt.Errorf("queue: enqueue: status %q cannot be filtered (want one of sent, delivered, undelivered, failed, expired)", s)
		}
	}
	if len(b) == len(filterable) {
		return "", nil
	}
	if len(b) == 0 {
		// No letter matches "ev" checks in finish; "-" is a filter that
		// emits nothing (a status history is still kept).
		return "-", nil
	}
	return string(b), nil
}

func kindLabel(k message.Kind) string {
	switch k {
	case message.KindNotice, message.KindReply:
		return string(k)
	}
	return string(message.KindUser)
}

func boolArg(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// Claimed is a leased message. Pass it back to Ack, Retry, Requeue, Fail or Renew.
type Claimed struct {
	Msg               message.Message
	Attempt           int
	PossibleDuplicate bool // an earlier attempt may have reached the carrier
}

// maxDropPerSender bounds the expired heads one claim drops for one sender.
const maxDropPerSender = 100

// Claim leases up to max messages, at most one per sender per call, from
// senders whose next-allowed time has come, earliest first within a bucket.
//
// Claim keeps a hint per bucket — its earliest ready time and how many
// senders were due — learned from every script this Queue runs there (claim,
// enqueue, ack, retry, fail), and runs the claim script only on buckets the
// hints say are due: one round trip, none when nothing is due. Other daemons'
// changes are seen by a probe of every bucket's earliest time (one pipeline)
// at most every Options.ProbeInterval (up to idleProbeFactor times less often
// while there is nothing to claim). Buckets are served in turn from a
// cursor that moves on with every call, so every due sender is reached.
func (q *Queue) Claim(ctx context.Context, max int) ([]Claimed, error) {
	if max <= 0 {
		return nil, nil
	}
	start := time.Now()
	defer func() { q.m.claimLatency.Observe(time.Since(start).Seconds()) }()

	q.mu.Lock()
	probe := start.Sub(q.lastProbe) >= q.probeEvery
	if probe {
		q.lastProbe = start // other callers meanwhile use the old hints
	}
	q.mu.Unlock()
	if probe {
		if err := q.probe(ctx); err != nil {
			q.mu.Lock()
			q.lastProbe = time.Time{}
			q.mu.Unlock()
			return nil, err
		}
	}
	var out []Claimed
	var err error
	if buckets, limits, vers := q.plan(max); len(buckets) > 0 {
		out, err = q.claimBuckets(ctx, buckets, limits, vers)
		q.m.claimed.Add(float64(len(out)))
	}
	q.mu.Lock()
	switch {
	case len(out) > 0:
		q.probeEvery = q.opts.ProbeInterval
	case probe && err == nil:
		// Nothing to claim even after looking at every bucket: look
		// less often until something happens.
		q.probeEvery = min(2*q.probeEvery, idleProbeFactor*q.opts.ProbeInterval)
	}
	q.mu.Unlock()
	return out, err
}

// nowRedis is Redis's clock in µs as estimated from this host's clock.
func (q *Queue) nowRedis() int64 { return time.Now().UnixMicro() + q.offset.Load() }

// noteRedisTime updates the estimate of Redis's clock from a reply carrying
// Redis's time redisNow (µs), sent at sent with round trip rtt (half of it
// assumed each way). A slow round trip (a wait for a connection, a stall, a
// distant Redis) says little about when Redis read the time: it is used
// only while no fast one has been (the claim plan needs some estimate), and
// it does not make the estimate known, which enqueue deadlines need.
func (q *Queue) noteRedisTime(redisNow int64, sent time.Time, rtt time.Duration) {
	fast := rtt <= maxClockRTT
	if !fast && q.offsetKnown.Load() {
		return
	}
	q.offset.Store(redisNow - sent.Add(rtt/2).UnixMicro())
	if fast {
		q.offsetKnown.Store(true)
	}
}

// maxClockRTT is the slowest round trip that makes the estimate known: it is
// then within 50 ms, well inside enqueueGrace.
const maxClockRTT = 100 * time.Millisecond

// plan picks the buckets to claim from and how many senders to ask each
// for (at most max in all): first each due bucket's known due count, in turn
// from the cursor, then what is left spread over the chosen buckets, since
// more senders may have become due since their counts were read.
func (q *Queue) plan(want int) (buckets, limits []int, vers []uint64) {
	now := q.nowRedis()
	q.mu.Lock()
	defer q.mu.Unlock()
	left := want
	for i := 0; i < q.opts.Buckets && left > 0; i++ {
		b := (q.cursor + i) % q.opts.Buckets
		h := q.hints[b]
		if h.next > now && h.due == 0 {
			continue
		}
		n := max(min(left, h.due), 1)
		buckets = append(buckets, b)
		limits = append(limits, n)
		vers = append(vers, h.ver)
		left -= n
	}
	if len(buckets) == 0 {
		return nil, nil, nil
	}
	q.cursor = (buckets[len(buckets)-1] + 1) % q.opts.Buckets
	for j := range buckets {
		extra := (left + len(buckets) - j - 1) / (len(buckets) - j) // ceil(left / buckets still to serve)
		limits[j] += extra
		left -= extra
	}
	return buckets, limits, vers
}

// probe reads every bucket's earliest ready time in one pipeline, with
// Redis's clock to correct this host's (half the round trip assumed each way;
// a small error only shifts a sender to the next call, since the claim script
// decides with Redis's own time).
func (q *Queue) probe(ctx context.Context) error {
	q.mu.Lock()
	vers := make([]uint64, q.opts.Buckets)
	for b := range vers {
		vers[b] = q.hints[b].ver
	}
	q.mu.Unlock()
	sent := time.Now()
	pipe := q.rdb.Pipeline()
	tc := pipe.Time(ctx)
	cmds := make([]*redis.ZSliceCmd, q.opts.Buckets)
	for b := range cmds {
		cmds[b] = pipe.ZRangeWithScores(ctx, q.buckets[b].keys[0], 0, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("queue: claim probe: %w", err)
	}
	rtt := time.Since(sent)
	redisNow := tc.Val().UnixMicro()
	q.noteRedisTime(redisNow, sent, rtt)
	q.mu.Lock()
	defer q.mu.Unlock()
	for b, cmd := range cmds {
		h := &q.hints[b]
		next, due := int64(noSender), 0
		if z := cmd.Val(); len(z) > 0 {
			next = int64(z[0].Score)
			if next <= redisNow {
				due = max(h.due, 1) // at least one; keep a count learned from a claim
			}
		}
		if h.ver == vers[b] {
			h.next, h.due = next, due
		} else { // updated while the probe ran: keep what it learned
			h.next, h.due = min(h.next, next), max(h.due, due)
		}
		h.ver++
	}
	return nil
}

// noteReady records that a script of this Queue left a sender of bucket b in
// ready with this score (µs; negative: not in ready); added: the script put
// it there (so it was not counted yet).
func (q *Queue) noteReady(b int, score int64, added bool) {
	if score < 0 {
		return
	}
	now := q.nowRedis()
	q.mu.Lock()
	q.probeEvery = q.opts.ProbeInterval // activity: other daemons may be busy too
	h := &q.hints[b]
	h.ver++
	h.next = min(h.next, score)
	switch {
	case score > now:
	case added:
		h.due++
	default:
		h.due = max(h.due, 1) // at least; it may have been counted already
	}
	q.mu.Unlock()
}

// noteClaimed records what a claim script read of bucket b's ready set after
// claiming: its earliest score (-1: empty) and how many senders were due. A
// hint updated meanwhile (ver changed) is merged instead of replaced.
func (q *Queue) noteClaimed(b int, ver uint64, next int64, due int) {
	if next < 0 {
		next = noSender
	}
	q.mu.Lock()
	h := &q.hints[b]
	if h.ver == ver {
		h.next, h.due = next, due
	} else {
		h.next, h.due = min(h.next, next), max(h.due, due)
	}
	h.ver++
	q.mu.Unlock()
}

// forget makes the next Claim try bucket b (after an error or a reap).
func (q *Queue) forget(b int) {
	q.mu.Lock()
	h := &q.hints[b]
	h.ver++
	h.next = 0
	h.due = max(h.due, 1)
	q.mu.Unlock()
}

// claimBuckets runs the claim script on each bucket with its limit in one
// pipeline.
func (q *Queue) claimBuckets(ctx context.Context, buckets, limits []int, vers []uint64) ([]Claimed, error) {
	lease := us(q.opts.Lease)
	res := q.pipeScripts(ctx, scriptClaim, buckets, func(j int) []any {
		return []any{limits[j], lease, maxDropPerSender}
	})
	var out []Claimed
	var errs []error
	for j, r := range res {
		if r.err != nil {
			q.forget(buckets[j])
			errs = append(errs, r.err)
			continue
		}
		got, expired, next, due, perr := parseClaim(r.val, out)
		out = got
		if perr != nil {
			q.forget(buckets[j])
			errs = append(errs, perr)
			continue
		}
		q.noteClaimed(buckets[j], vers[j], next, due)
		q.m.expired.Add(float64(expired))
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("queue: claim: %w", errors.Join(errs...))
	}
	return out, nil
}

type scriptResult struct {
	val any
	err error
}

// pipeScripts runs script s on several buckets in one pipeline (EVALSHA),
// falling back to a single Run (which loads the script) on NOSCRIPT.
func (q *Queue) pipeScripts(ctx context.Context, s script, buckets []int, args func(j int) []any) []scriptResult {
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(buckets))
	for j, b := range buckets {
		cmds[j] = q.pick(s).EvalSha(ctx, pipe, q.buckets[b].keys, q.argv(b, args(j))...)
	}
	_, _ = pipe.Exec(ctx)
	out := make([]scriptResult, len(buckets))
	for j, cmd := range cmds {
		err := cmd.Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Not loaded yet (or the server restarted): Run loads it.
			cmd = q.run(ctx, s, buckets[j], args(j)...)
			err = cmd.Err()
		} else if err != nil && !errors.Is(err, redis.Nil) {
			q.m.scriptErrors.WithLabelValues(s.name).Inc()
		}
		out[j] = scriptResult{val: cmd.Val(), err: err}
	}
	return out
}

// parseClaim appends the messages of a claim script's reply to out.
func parseClaim(v any, out []Claimed) ([]Claimed, int64, int64, int, error) {
	top, ok := v.([]any)
	if !ok || len(top) != 4 {
		return out, 0, 0, 0, fmt.Errorf("unexpected claim reply %T", v)
	}
	expired, _ := top[1].(int64)
	next, _ := top[2].(int64)
	due, _ := top[3].(int64)
	items, _ := top[0].([]any)
	out = slices.Grow(out, len(items))
	for _, it := range items {
		f, ok := it.([]any)
		if !ok || len(f) != 4 {
			return out, expired, next, int(due), fmt.Errorf("unexpected claim item %v", it)
		}
		body, _ := f[1].(string)
		var c Claimed
		if err := json.Unmarshal([]byte(body), &c.Msg); err != nil {
			return out, expired, next, int(due), fmt.Errorf("message %v: %w", f[0], err)
		}
		att, _ := f[2].(int64)
		c.Attempt = int(att)
		c.PossibleDuplicate = f[3] == "1"
		out = append(out, c)
	}
	return out, expired, next, int(due), nil
}

// leaseOp runs a script that checks the lease of c and returns 0 (lease
// lost) or {1, the sender's score in ready}.
func (q *Queue) leaseOp(ctx context.Context, name string, s script, c Claimed, args ...any) error {
	b, ok := q.bucketOfID(c.Msg.ID)
	if !ok {
		return fmt.Errorf("queue: %s %q: %w", name, c.Msg.ID, ErrBadID)
	}
	v, err := q.run(ctx, s, b, append([]any{c.Msg.ID, c.Attempt}, args...)...).Result()
	if err != nil {
		q.forget(b) // the script may have run
		return fmt.Errorf("queue: %s: %w", name, err)
	}
	return q.leaseReply(name, b, c, v)
}

// leaseReply interprets the reply of a lease script on bucket b.
func (q *Queue) leaseReply(name string, b int, c Claimed, v any) error {
	switch r := v.(type) {
	case int64:
		if r == 1 { // renew
			return nil
		}
	case []any:
		if len(r) == 3 && r[0] == int64(1) {
			score, _ := r[1].(int64)
			q.noteReady(b, score, r[2] == int64(1))
			return nil
		}
	}
	return fmt.Errorf("queue: %s %s attempt %d: %w", name, c.Msg.ID, c.Attempt, ErrLeaseLost)
}

// Ack records that every segment of c was accepted by the carrier (status
// sent) with the carrier's message id of each segment, in order, indexes the
// carrier ids for receipts and applies receipts that arrived before the ack
// (see ApplyReceipt), all in one round trip (two when receipts were held);
// a failure to index is logged and counted, not returned. ErrLeaseLost: the
// lease expired or the attempt is stale. carrierIDs should be normalized by
// the caller (smpp.NormalizeID) so receipts find them. AckMany acks several
// messages at once.
func (q *Queue) Ack(ctx context.Context, c Claimed, carrierIDs []string) error {
	return q.AckMany(ctx, []AckItem{{Claimed: c, CarrierIDs: carrierIDs}})[0]
}

// Retry puts c back at the head of its sender's list after a temporary error;
// the sender sends nothing before delay has passed.
func (q *Queue) Retry(ctx context.Context, c Claimed, delay time.Duration, e message.Error) error {
	if err := q.leaseOp(ctx, "retry", scriptRetry, c, us(delay), e.Code, e.Message, "0"); err != nil {
		return err
	}
	q.m.retried.Inc()
	return nil
}

// Requeue puts c back at the head of its sender's list when the outcome of
// its submission is unknown; it is flagged as a possible duplicate.
func (q *Queue) Requeue(ctx context.Context, c Claimed) error {
	if err := q.leaseOp(ctx, "requeue", scriptRetry, c, 0, "outcome_unknown",
		"the carrier did not answer; the message will be sent again", "1"); err != nil {
		return err
	}
	q.m.requeued.Inc()
	return nil
}

// Fail ends c as failed with error e.
func (q *Queue) Fail(ctx context.Context, c Claimed, e message.Error) error {
	if err := q.leaseOp(ctx, "fail", scriptFail, c, e.Code, e.Message); err != nil {
		return err
	}
	q.m.failed.Inc()
	return nil
}

// Renew extends the lease of c to d from now.
func (q *Queue) Renew(ctx context.Context, c Claimed, d time.Duration) error {
	return q.leaseOp(ctx, "renew", scriptRenew, c, us(d))
}

// reapBatch bounds the leases one reap script returns per bucket.
const reapBatch = 1000

// Reap returns messages whose lease expired to the head of their sender's
// list, flagged as possible duplicates, and ends as expired the queued
// messages whose validity passed while they waited behind messages that
// expire later (the heads are claim's). Any daemon may call it
// periodically. It returns how many leases it reaped.
func (q *Queue) Reap(ctx context.Context) (int, error) {
	total, expired := 0, 0
	var errs []error
	for _, r := range q.pipeScripts(ctx, scriptReap, q.all, func(int) []any { return []any{reapBatch} }) {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		v, _ := r.val.([]any)
		if len(v) != 2 {
			errs = append(errs, fmt.Errorf("unexpected reap reply %v", r.val))
			continue
		}
		n, _ := v[0].(int64)
		x, _ := v[1].(int64)
		total += int(n)
		expired += int(x)
	}
	q.m.reaped.Add(float64(total))
	q.m.expired.Add(float64(expired))
	if len(errs) > 0 {
		return total, fmt.Errorf("queue: reap: %w", errors.Join(errs...))
	}
	return total, nil
}

// ExpireHeads bound the work of one ExpireHeads call per bucket: due
// senders looked at, and heads dropped.
const (
	expireHeadsSenders = 500
	expireHeadsDrops   = 1000
)

// ExpireHeads ends as expired the queued messages at the head of due
// senders' queues whose validity passed, as Claim would, without leasing
// anything. Claim only runs while a carrier can take messages, so the
// dispatcher calls this periodically while none can: messages then still
// expire on time, with their events. One call looks at up to 500 due
// senders per bucket and drops up to 1,000 heads there; the next call goes
// on from where it stopped, so every sender's head is looked at in turn.
// It returns how many messages it ended.
func (q *Queue) ExpireHeads(ctx context.Context) (int, error) {
	q.expMu.Lock()
	defer q.expMu.Unlock()
	if q.expFrom == nil {
		q.expFrom = make([]int, q.opts.Buckets)
	}
	total := 0
	var errs []error
	res := q.pipeScripts(ctx, scriptExpHeads, q.all, func(b int) []any { // q.all[b] is b
		return []any{q.expFrom[b], q.expSenders, q.expDrops}
	})
	for b, r := range res {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		v, _ := r.val.([]any)
		if len(v) != 4 {
			errs = append(errs, fmt.Errorf("unexpected expire_heads reply %v", r.val))
			continue
		}
		n, _ := v[0].(int64)
		looked, _ := v[1].(int64)
		left, _ := v[2].(int64)
		returned, _ := v[3].(int64)
		total += int(n)
		if returned < int64(q.expSenders) && looked == returned {
			q.expFrom[b] = 0 // reached the end of the due senders: start over
		} else {
			// Senders that left ready moved the later ones forward.
			q.expFrom[b] += int(looked - left)
		}
	}
	q.m.expired.Add(float64(total))
	if len(errs) > 0 {
		return total, fmt.Errorf("queue: expire heads: %w", errors.Join(errs...))
	}
	return total, nil
}

// SetRate stores the sender's time per segment (1/rate; 0 = no limit).
func (q *Queue) SetRate(ctx context.Context, from string, interval time.Duration) error {
	if err := q.run(ctx, scriptSetRate, q.Bucket(from), from, us(interval)).Err(); err != nil {
		return fmt.Errorf("queue: set rate: %w", err)
	}
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
