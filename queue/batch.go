package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

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

// AckMany is Ack for several messages in one round trip: the ack scripts
// (one per message, in its sender's bucket) and the carrier-id index scripts
// (in the carrier ids' own slots) go in one pipeline; receipts that arrived
// before an ack are applied in a second round trip. It returns one error per
// item, nil when that message was acked. A carrier id is indexed in the same
// pipeline as its ack, so when the ack fails (lease lost) the index entry is
// removed again and the receipts it took are held again.
func (q *Queue) AckMany(ctx context.Context, items []AckItem) []error {
	errs := make([]error, len(items))
	type pending struct {
		b    int
		ack  *call
		cids []*call
	}
	ps := make([]pending, len(items))
	ttl := q.opts.CarrierIDTTL.Milliseconds()
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
		p := pending{b: b, ack: q.bucketCall(ctx, pipe, scriptAck, b, c.Msg.ID, c.Attempt, cids, first, len(it.CarrierIDs))}
		for k, cid := range it.CarrierIDs {
			index, held := q.cidKeys(cid)
			p.cids = append(p.cids, q.queueCall(ctx, pipe, scriptCIDSet, []string{index, held}, c.Msg.ID+"|"+strconv.Itoa(k), ttl))
		}
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
		v, err := p.ack.result(ctx, q).Result()
		if err != nil {
			q.forget(p.b)
			errs[i] = fmt.Errorf("queue: ack: %w", err)
		} else {
			errs[i] = q.leaseReply("ack", p.b, c, v)
		}
		if errs[i] != nil {
			q.unindex(ctx, c.Msg.ID, p.cids)
			continue
		}
		acked++
		// The message is sent whatever happens now: a failure to index its
		// carrier ids only loses its receipts, so it is logged, not returned
		// (an error would make the caller send it again).
		var ierrs []error
		for k, cc := range p.cids {
			rs, err := cc.result(ctx, q).StringSlice()
			if err != nil {
				ierrs = append(ierrs, err)
				continue
			}
			for _, h := range rs {
				var r Receipt
				if err := json.Unmarshal([]byte(h), &r); err != nil {
					ierrs = append(ierrs, err)
					continue
				}
				held = append(held, heldReceipt{id: c.Msg.ID, seg: k, r: r})
			}
		}
		if err := errors.Join(ierrs...); err != nil {
			q.m.scriptErrors.WithLabelValues("cid_index").Inc()
			q.log.Warn("carrier ids not indexed; receipts for this message will be unmatched", "id", c.Msg.ID, "err", err)
		}
	}
	q.m.acked.Add(float64(acked))
	if len(held) > 0 {
		res := make([]ReceiptResult, len(held))
		q.applyResolved(ctx, held, res)
		for j, r := range res {
			if r.Err != nil {
				q.m.scriptErrors.WithLabelValues("cid_index").Inc()
				q.log.Warn("a receipt held for a carrier id was not applied", "id", held[j].id, "err", r.Err)
			}
		}
	}
	return errs
}

// unindex undoes the carrier-id index entries made for message id in an ack
// pipeline whose ack failed, holding again the receipts they took.
func (q *Queue) unindex(ctx context.Context, id string, cids []*call) {
	for k, cc := range cids {
		rs, err := cc.result(ctx, q).StringSlice()
		if err != nil {
			continue // not indexed
		}
		args := []any{id + "|" + strconv.Itoa(k), holdTTL.Milliseconds()}
		for _, r := range rs {
			args = append(args, r)
		}
		if err := q.runScript(ctx, scriptCIDUnset, cc.keys, args...).Err(); err != nil {
			q.log.Warn("carrier id of a failed ack left indexed", "id", id, "err", err)
		}
	}
}

// heldReceipt is a receipt whose message and segment are known.
type heldReceipt struct {
	id  string
	seg int
	r   Receipt
}

// ApplyReceipts applies several receipts (see ApplyReceipt) in two round
// trips: one pipeline resolving every carrier id, one applying the receipt
// scripts. Results are in the order of rs, each with its own Err; the error
// joins those errors (nil when every receipt was applied or held).
func (q *Queue) ApplyReceipts(ctx context.Context, rs []Receipt) ([]ReceiptResult, error) {
	out := make([]ReceiptResult, len(rs))
	resolves := make([]*call, len(rs))
	hold := holdTTL.Milliseconds()
	pipe := q.rdb.Pipeline()
	for i, r := range rs {
		if r.State != message.StatusDelivered && r.State != message.StatusUndelivered {
			out[i].Err = fmt.Errorf("queue: receipt: state %q", r.State)
			continue
		}
		raw, err := json.Marshal(r)
		if err != nil {
			out[i].Err = fmt.Errorf("queue: receipt: %w", err)
			continue
		}
		index, held := q.cidKeys(r.CarrierID)
		resolves[i] = q.queueCall(ctx, pipe, scriptCIDResolve, []string{index, held}, raw, hold)
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx)
	}
	var found []heldReceipt
	var at []int
	for i, c := range resolves {
		if c == nil {
			continue
		}
		v, err := c.result(ctx, q).Text()
		if errors.Is(err, redis.Nil) {
			out[i].Held = true
			continue
		}
		if err != nil {
			out[i].Err = fmt.Errorf("queue: receipt: %w", err)
			continue
		}
		id, seg, ok := parseCIDValue(v)
		if !ok {
			out[i].Err = fmt.Errorf("queue: receipt: bad index value %q", v)
			continue
		}
		found = append(found, heldReceipt{id: id, seg: seg, r: rs[i]})
		at = append(at, i)
	}
	if len(found) > 0 {
		res := make([]ReceiptResult, len(found))
		q.applyResolved(ctx, found, res)
		for j, i := range at {
			out[i] = res[j]
		}
	}
	var errs []error
	for _, r := range out {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return out, errors.Join(errs...)
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
		if n < 0 {
			out[j].Err = fmt.Errorf("queue: receipt %q: %w", hs[j].id, ErrNotFound)
			continue
		}
		out[j].Recorded = n == 1
		st, _ := res[1].(string)
		out[j].Status = message.Status(st)
	}
}
