package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/message"
)

// call is one script call queued on a pipeline.
type call struct {
	s    script
	keys []string
	args []any
	cmd  *redis.Cmd
}

// queueCall queues script s on pipe (EVALSHA).
func (q *Queue) queueCall(ctx context.Context, pipe redis.Pipeliner, s script, keys []string, args ...any) *call {
	return &call{s: s, keys: keys, args: args, cmd: q.pick(s).EvalSha(ctx, pipe, keys, args...)}
}

// bucketCall queues bucket script s on bucket b.
func (q *Queue) bucketCall(ctx context.Context, pipe redis.Pipeliner, s script, b int, args ...any) *call {
	return q.queueCall(ctx, pipe, s, q.buckets[b].keys, q.argv(b, args)...)
}

// result returns the call's reply once its pipeline ran, running it again
// alone (which loads the script) when the server did not know the script.
func (c *call) result(ctx context.Context, q *Queue) *redis.Cmd {
	err := c.cmd.Err()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		c.cmd = q.runScript(ctx, c.s, c.keys, c.args...)
	} else if err != nil && !errors.Is(err, redis.Nil) {
		q.m.scriptErrors.WithLabelValues(c.s.name).Inc()
	}
	return c.cmd
}

// AckItem is one message for AckMany: the claimed message and the carrier's
// message id of each of its segments, in order (normalized, see Ack).
type AckItem struct {
	Claimed    Claimed
	CarrierIDs []string
}

// AckMany is Ack for several messages in one round trip: the carrier-id
// index scripts (in the carrier ids' own slots) and the ack scripts (one per
// message, in its sender's bucket) go in one pipeline, each message's index
// entries before its ack, so an ack that ran always has its carrier ids
// indexed whatever part of the pipeline reached Redis; receipts that arrived
// before an ack are applied in a second round trip and only then removed
// (a daemon dying in between leaves them to SweepHeld). It returns one error
// per item, nil when that message was acked; an ack that ran but whose reply
// was lost succeeds when repeated. When an ack fails with ErrLeaseLost its
// index entries are removed again.
func (q *Queue) AckMany(ctx context.Context, items []AckItem) []error {
	errs := make([]error, len(items))
	type pending struct {
		b    int
		ack  *call
		cids []cidIndexCmds
		keys []cidKeySet
	}
	ps := make([]pending, len(items))
	ttl := q.opts.CarrierIDTTL
	pipe := q.rdb.Pipeline()
	for i, it := range items {
		c := it.Claimed
		b, ok := q.bucketOfID(c.Msg.ID)
		if !ok {
			errs[i] = fmt.Errorf("queue: ack %q: %w", c.Msg.ID, ErrBadID)
			continue
		}
		cids := []byte("[]")
		first := ""
		if len(it.CarrierIDs) > 0 {
			var err error
			if cids, err = json.Marshal(it.CarrierIDs); err != nil {
				errs[i] = fmt.Errorf("queue: ack: %w", err)
				continue
			}
			first = it.CarrierIDs[0]
		}
		p := pending{b: b}
		for k, cid := range it.CarrierIDs {
			ks := q.cidKeySet(cid)
			p.keys = append(p.keys, ks)
			p.cids = append(p.cids, indexCarrierID(ctx, pipe, ks, c.Msg.ID+"|"+strconv.Itoa(k), ttl))
		}
		p.ack = q.bucketCall(ctx, pipe, scriptAck, b, c.Msg.ID, c.Attempt, cids, first, len(it.CarrierIDs))
		ps[i] = p
	}
	if pipe.Len() == 0 {
		return errs
	}
	_, _ = pipe.Exec(ctx)

	var held []heldReceipt
	acked := 0
	for i, p := range ps {
		if p.ack == nil {
			continue
		}
		c := items[i].Claimed
		heldOf := make([][]string, len(p.cids))
		var ierrs []error
		for k, cc := range p.cids {
			if err := cc.set.Err(); err != nil {
				ierrs = append(ierrs, err)
				continue
			}
			rs, err := cc.held.Result()
			if err != nil {
				ierrs = append(ierrs, err)
				continue
			}
			heldOf[k] = rs
		}
		v, err := p.ack.result(ctx, q).Result()
		if err != nil {
			// The ack may or may not have run: its index entries stay (they
			// name the right message either way) and the caller may repeat it.
			q.forget(p.b)
			errs[i] = fmt.Errorf("queue: ack: %w", err)
			continue
		}
		if errs[i] = q.leaseReply("ack", p.b, c, v); errs[i] != nil {
			q.unindex(ctx, c.Msg.ID, p.cids)
			continue
		}
		acked++
		for k, rs := range heldOf {
			for _, h := range rs {
				var r Receipt
				if err := json.Unmarshal([]byte(h), &r); err != nil {
					ierrs = append(ierrs, err)
					continue
				}
				held = append(held, heldReceipt{id: c.Msg.ID, seg: k, r: r, raw: h, keys: p.keys[k]})
			}
		}
		// The message is sent whatever happens now: a failure to index its
		// carrier ids only loses its receipts, so it is logged, not returned
		// (an error would make the caller send it again).
		if err := errors.Join(ierrs...); err != nil {
			q.m.scriptErrors.WithLabelValues("cid_index").Inc()
			q.log.Warn("carrier ids not indexed; receipts for this message will be unmatched", "id", c.Msg.ID, "err", err)
		}
	}
	q.m.acked.Add(float64(acked))
	if len(held) > 0 {
		if _, err := q.applyHeld(ctx, held); err != nil {
			q.log.Warn("receipts held for acked messages not applied yet; the held sweep retries them", "err", err)
		}
	}
	return errs
}

// cidIndexCmds index one carrier id in an ack pipeline: SET the index entry,
// then read the receipts held for it. Plain commands, no script: a receipt
// resolving the id (cid_resolve, atomic GET-or-hold) runs either before the
// SET, and its held receipt is in the LRANGE, or after it, and finds the
// entry. Receipts returned here are applied by AckMany at once; if the
// daemon dies first, the held sweep applies them at the time cid_resolve
// scheduled when it held them.
type cidIndexCmds struct {
	index string
	set   *redis.StatusCmd
	held  *redis.StringSliceCmd
}

func indexCarrierID(ctx context.Context, pipe redis.Pipeliner, ks cidKeySet, value string, ttl time.Duration) cidIndexCmds {
	return cidIndexCmds{
		index: ks.index,
		set:   pipe.Set(ctx, ks.index, value, ttl),
		held:  pipe.LRange(ctx, ks.held, 0, -1),
	}
}

// unindex undoes the carrier-id index entries made for message id in an ack
// pipeline whose ack found the lease lost.
func (q *Queue) unindex(ctx context.Context, id string, cids []cidIndexCmds) {
	for k, cc := range cids {
		if cc.set.Err() != nil {
			continue // not indexed
		}
		if err := q.runScript(ctx, scriptCIDUnset, []string{cc.index}, id+"|"+strconv.Itoa(k)).Err(); err != nil {
			q.log.Warn("carrier id of a failed ack left indexed", "id", id, "err", err)
		}
	}
}

// heldReceipt is a receipt whose message and segment are known; raw and
// keys are set when it is held (its JSON in the held list of keys).
type heldReceipt struct {
	id   string
	seg  int
	r    Receipt
	raw  string
	keys cidKeySet
}

// Held sweep schedule: a carrier id with held receipts is first looked at
// heldSweepMin after it was held, then again after as long as it has waited
// (at least heldSweepMin, at most heldSweepMax).
const (
	heldSweepMin   = time.Second
	heldSweepMax   = 10 * time.Minute
	heldSweepBatch = 500
)

// applyHeld applies held receipts and removes from their held lists those
// that are done: applied, or for a message no longer stored. Those whose
// message is not acked yet, or that failed to apply, stay for the sweep.
// It returns how many were removed.
func (q *Queue) applyHeld(ctx context.Context, hs []heldReceipt) (int, error) {
	res := make([]ReceiptResult, len(hs))
	q.applyResolved(ctx, hs, res)
	type done struct {
		keys cidKeySet
		raws []any
	}
	var order []string
	byKey := map[string]*done{}
	var errs []error
	n := 0
	for j, r := range res {
		switch {
		case r.Err == nil && r.Held: // not acked yet
			continue
		case r.Err != nil && !errors.Is(r.Err, ErrNotFound) && !errors.Is(r.Err, ErrBadID):
			errs = append(errs, r.Err)
			continue
		}
		d := byKey[hs[j].keys.held]
		if d == nil {
			d = &done{keys: hs[j].keys, raws: []any{hs[j].keys.cid}}
			byKey[hs[j].keys.held] = d
			order = append(order, hs[j].keys.held)
		}
		d.raws = append(d.raws, hs[j].raw)
		n++
	}
	if len(order) > 0 {
		pipe := q.rdb.Pipeline()
		calls := make([]*call, len(order))
		for i, k := range order {
			d := byKey[k]
			calls[i] = q.queueCall(ctx, pipe, scriptCIDDone, []string{d.keys.held, d.keys.set}, d.raws...)
		}
		_, _ = pipe.Exec(ctx)
		for _, c := range calls {
			if err := c.result(ctx, q).Err(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("queue: held receipts: %w", errors.Join(errs...))
	}
	return n, nil
}

// SweepHeld applies receipts held for carrier ids that are indexed by now:
// receipts held before an ack whose daemon died before applying them, and
// receipts that arrived between the indexing and the ack of their message.
// Held receipts whose carrier id is never indexed expire after an hour.
// Every daemon runs it periodically (one pipelined script per carrier-id
// bucket, plus one round trip per batch found); it returns how many receipts
// it applied (or found for messages no longer stored).
func (q *Queue) SweepHeld(ctx context.Context) (int, error) {
	pipe := q.rdb.Pipeline()
	calls := make([]*call, q.opts.Buckets)
	for c := range calls {
		base := q.cidBase(c)
		calls[c] = q.queueCall(ctx, pipe, scriptHeldSweep, []string{base + "heldset"}, base, heldSweepBatch,
			holdTTL.Milliseconds(), us(q.heldMin), us(heldSweepMax))
	}
	_, _ = pipe.Exec(ctx)
	var hs []heldReceipt
	var errs []error
	for c, cl := range calls {
		v, err := cl.result(ctx, q).Slice()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		base := q.cidBase(c)
		for _, it := range v {
			f, ok := it.([]any)
			if !ok || len(f) != 3 {
				errs = append(errs, fmt.Errorf("unexpected sweep item %v", it))
				continue
			}
			cid, _ := f[0].(string)
			val, _ := f[1].(string)
			raws, _ := f[2].([]any)
			keys := cidKeySet{cid: cid, index: base + "cid:" + cid, held: base + "held:" + cid, set: base + "heldset"}
			id, seg, ok := parseCIDValue(val)
			for _, raw := range raws {
				h, _ := raw.(string)
				var r Receipt
				if err := json.Unmarshal([]byte(h), &r); err != nil || !ok {
					// Unreadable: drop it, or it is looked at forever.
					_ = q.runScript(ctx, scriptCIDDone, []string{keys.held, keys.set}, cid, h).Err()
					errs = append(errs, fmt.Errorf("held receipt for %q: bad entry %q (index %q)", cid, h, val))
					continue
				}
				hs = append(hs, heldReceipt{id: id, seg: seg, r: r, raw: h, keys: keys})
			}
		}
	}
	n := 0
	if len(hs) > 0 {
		var err error
		if n, err = q.applyHeld(ctx, hs); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("queue: sweep held receipts: %w", errors.Join(errs...))
	}
	return n, nil
}

// RenewMany is Renew for several messages in one round trip: it extends
// each lease to d from now. It returns one error per message (ErrLeaseLost
// when that lease expired or the attempt is stale).
func (q *Queue) RenewMany(ctx context.Context, cs []Claimed, d time.Duration) []error {
	errs := make([]error, len(cs))
	calls := make([]*call, len(cs))
	bs := make([]int, len(cs))
	pipe := q.rdb.Pipeline()
	for i, c := range cs {
		b, ok := q.bucketOfID(c.Msg.ID)
		if !ok {
			errs[i] = fmt.Errorf("queue: renew %q: %w", c.Msg.ID, ErrBadID)
			continue
		}
		bs[i] = b
		calls[i] = q.bucketCall(ctx, pipe, scriptRenew, b, c.Msg.ID, c.Attempt, us(d))
	}
	if pipe.Len() == 0 {
		return errs
	}
	_, _ = pipe.Exec(ctx)
	for i, cl := range calls {
		if cl == nil {
			continue
		}
		v, err := cl.result(ctx, q).Result()
		if err != nil {
			errs[i] = fmt.Errorf("queue: renew: %w", err)
			continue
		}
		errs[i] = q.leaseReply("renew", bs[i], cs[i], v)
	}
	return errs
}

// ApplyReceipts applies several receipts (see ApplyReceipt) in two round
// trips: one pipeline reading every carrier id's index entry, one applying
// the receipt scripts. Receipts whose carrier id is not indexed yet take a
// third (the resolve script, which reads the index again and holds the
// receipt when it is still missing), and a fourth when some message is
// indexed but not acked yet. Results are in the order of rs, each with its
// own Err; the error joins those errors (nil when every receipt was applied
// or held).
func (q *Queue) ApplyReceipts(ctx context.Context, rs []Receipt) ([]ReceiptResult, error) {
	out := make([]ReceiptResult, len(rs))
	gets := make([]*redis.StringCmd, len(rs))
	keys := make([]cidKeySet, len(rs))
	pipe := q.rdb.Pipeline()
	for i, r := range rs {
		if r.State != message.StatusDelivered && r.State != message.StatusUndelivered {
			out[i].Err = fmt.Errorf("queue: receipt: state %q", r.State)
			continue
		}
		keys[i] = q.cidKeySet(r.CarrierID)
		gets[i] = pipe.Get(ctx, keys[i].index)
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx)
	}
	values := make([]string, len(rs))
	var misses []int
	for i, c := range gets {
		if c == nil {
			continue
		}
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
			misses = append(misses, i)
		case err != nil:
			out[i].Err = fmt.Errorf("queue: receipt: %w", err)
		default:
			values[i] = v
		}
	}
	q.resolveMisses(ctx, misses, rs, keys, values, out)

	var found []heldReceipt
	var at []int
	for i, v := range values {
		if v == "" {
			continue
		}
		id, seg, ok := parseCIDValue(v)
		if !ok {
			out[i].Err = fmt.Errorf("queue: receipt: bad index value %q", v)
			continue
		}
		found = append(found, heldReceipt{id: id, seg: seg, r: rs[i], keys: keys[i]})
		at = append(at, i)
	}
	if len(found) > 0 {
		res := make([]ReceiptResult, len(found))
		q.applyResolved(ctx, found, res)
		for j, i := range at {
			out[i] = res[j]
		}
		q.holdUnacked(ctx, found, res, at, out)
	}
	var errs []error
	for _, r := range out {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return out, errors.Join(errs...)
}

// resolveMisses runs the resolve script for the receipts rs[i], i in misses,
// whose carrier id was not indexed when read: it reads the index again
// (an ack may have run since) and holds the receipt when it is still missing
// (out[i].Held), atomically, so an ack indexing the id in between cannot
// miss it. Found index values go to values[i].
func (q *Queue) resolveMisses(ctx context.Context, misses []int, rs []Receipt, keys []cidKeySet, values []string, out []ReceiptResult) {
	if len(misses) == 0 {
		return
	}
	hold := holdTTL.Milliseconds()
	firstLook := us(q.heldMin)
	calls := make([]*call, len(misses))
	pipe := q.rdb.Pipeline()
	for j, i := range misses {
		raw, err := json.Marshal(rs[i])
		if err != nil {
			out[i].Err = fmt.Errorf("queue: receipt: %w", err)
			continue
		}
		calls[j] = q.queueCall(ctx, pipe, scriptCIDResolve, []string{keys[i].index, keys[i].held, keys[i].set},
			raw, hold, keys[i].cid, firstLook)
	}
	if pipe.Len() == 0 {
		return
	}
	_, _ = pipe.Exec(ctx)
	for j, i := range misses {
		if calls[j] == nil {
			continue
		}
		v, err := calls[j].result(ctx, q).Text()
		switch {
		case errors.Is(err, redis.Nil):
			out[i].Held = true
		case err != nil:
			out[i].Err = fmt.Errorf("queue: receipt: %w", err)
		default:
			values[i] = v
		}
	}
}

// holdUnacked holds the receipts whose message was not acked yet (res[j]
// Held, result out[at[j]]) for the held sweep, one pipeline; a receipt that
// could not be held gets an error, so the carrier delivers it again.
func (q *Queue) holdUnacked(ctx context.Context, hs []heldReceipt, res []ReceiptResult, at []int, out []ReceiptResult) {
	pipe := q.rdb.Pipeline()
	calls := make([]*call, len(hs))
	for j, h := range hs {
		if res[j].Err != nil || !res[j].Held {
			continue
		}
		raw, err := json.Marshal(h.r) // only now: most receipts are never held
		if err != nil {
			out[at[j]].Err = fmt.Errorf("queue: receipt: hold: %w", err)
			continue
		}
		calls[j] = q.queueCall(ctx, pipe, scriptCIDHold, []string{h.keys.held, h.keys.set},
			holdTTL.Milliseconds(), h.keys.cid, us(q.heldMin), raw)
	}
	if pipe.Len() == 0 {
		return
	}
	_, _ = pipe.Exec(ctx)
	for j, c := range calls {
		if c == nil {
			continue
		}
		if err := c.result(ctx, q).Err(); err != nil {
			out[at[j]].Err = fmt.Errorf("queue: receipt: hold: %w", err)
		}
	}
}

// applyResolved runs the receipt script of each receipt in one pipeline.
func (q *Queue) applyResolved(ctx context.Context, hs []heldReceipt, out []ReceiptResult) {
	calls := make([]*call, len(hs))
	pipe := q.rdb.Pipeline()
	for j, h := range hs {
		out[j] = ReceiptResult{MessageID: h.id, Segment: h.seg}
		b, ok := q.bucketOfID(h.id)
		if !ok {
			out[j].Err = fmt.Errorf("queue: receipt %q: %w", h.id, ErrBadID)
			continue
		}
		var code, msg string
		if h.r.Err != nil {
			code, msg = h.r.Err.Code, h.r.Err.Message
		}
		calls[j] = q.bucketCall(ctx, pipe, scriptReceipt, b, h.id, h.seg, string(h.r.State), code, msg, h.r.CarrierID)
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx)
	}
	for j, c := range calls {
		if c == nil {
			continue
		}
		res, err := c.result(ctx, q).Slice()
		if err != nil {
			out[j].Err = fmt.Errorf("queue: receipt: %w", err)
			continue
		}
		n, _ := res[0].(int64)
		if n == -2 { // not acked yet: hold it
			out[j].Held = true
			out[j].Status = message.StatusQueued
			continue
		}
		if n < 0 {
			out[j].Err = fmt.Errorf("queue: receipt %q: %w", hs[j].id, ErrNotFound)
			continue
		}
		out[j].Recorded = n == 1
		st, _ := res[1].(string)
		out[j].Status = message.Status(st)
	}
}
