package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ackItem is a stream entry to XACK.
type ackItem struct{ stream, id string }

// ackLoop acknowledges stream entries in batches: whatever accumulated while
// the previous XACK pipeline ran goes in the next. It returns when acks is
// closed, after a last flush.
func (d *Dispatcher) ackLoop(ctx context.Context) {
	bg := context.WithoutCancel(ctx)
	batch := map[string][]string{}
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(bg, 10*time.Second)
		_, err := d.rdb.Pipelined(fctx, func(p redis.Pipeliner) error {
			for st, ids := range batch {
				p.XAck(fctx, st, d.opts.Group, ids...)
			}
			return nil
		})
		cancel()
		if err != nil {
			d.logErr("ack", err) // entries stay pending and are delivered again: duplicates, not losses
		} else {
			d.clearErr("ack")
		}
		clear(batch)
		n = 0
	}
	for {
		it, ok := <-d.acks
		if !ok {
			return
		}
		batch[it.stream] = append(batch[it.stream], it.id)
		n++
	more:
		for n < 1024 {
			select {
			case it, ok := <-d.acks:
				if !ok {
					flush()
					return
				}
				batch[it.stream] = append(batch[it.stream], it.id)
				n++
			default:
				break more
			}
		}
		flush()
	}
}

// streamMsg is an entry read from one of the streams.
type streamMsg struct {
	stream string
	msg    redis.XMessage
}

// readLoop reads the streams: first this consumer's own pending entries (a
// restart under the same name), then new entries, and periodically entries
// left pending by dead consumers.
func (d *Dispatcher) readLoop(ctx context.Context) {
	for _, st := range d.opts.Streams {
		d.readPending(ctx, st)
	}
	claimEvery := max(d.opts.ClaimIdle/2, 100*time.Millisecond)
	nextClaim := time.Now().Add(claimEvery)
	const minIdle = 5 * time.Millisecond
	idle := minIdle
	for ctx.Err() == nil {
		if time.Now().After(nextClaim) {
			d.autoClaim(ctx)
			nextClaim = time.Now().Add(claimEvery)
		}
		room := d.waitRoom(ctx)
		if room <= 0 {
			continue
		}
		msgs, err := d.readNew(ctx, min(room, d.opts.ReadCount))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.logErr("read", err)
			sleep(ctx, d.opts.PollInterval)
			continue
		}
		d.clearErr("read")
		if len(msgs) == 0 {
			if len(d.opts.Streams) > 1 { // a single stream blocks in XREADGROUP instead
				sleep(ctx, idle)
				idle = min(2*idle, d.opts.PollInterval)
			}
			continue
		}
		idle = minIdle
		d.enqueue(ctx, msgs)
	}
}

// waitRoom waits until the scheduler has room for fresh jobs (or ctx ends).
func (d *Dispatcher) waitRoom(ctx context.Context) int {
	for {
		if r := d.s.room(); r > 0 || ctx.Err() != nil {
			return r
		}
		select {
		case <-ctx.Done():
		case <-d.s.freed:
		}
	}
}

// readNew reads up to n new entries: one blocking XREADGROUP on a single
// stream, else a pipeline of non-blocking XREADGROUP, one per stream (go-redis
// splits it per node on a cluster).
func (d *Dispatcher) readNew(ctx context.Context, n int) ([]streamMsg, error) {
	if len(d.opts.Streams) == 1 {
		st := d.opts.Streams[0]
		res, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: d.opts.Group, Consumer: d.opts.Consumer, Streams: []string{st, ">"},
			Count: int64(n), Block: min(time.Second, max(d.opts.PollInterval, 100*time.Millisecond)),
		}).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("xreadgroup: %w", err)
		}
		return flatten(res), nil
	}
	per := int64(max(8, n/len(d.opts.Streams)))
	cmds := make([]*redis.XStreamSliceCmd, len(d.opts.Streams))
	_, _ = d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, st := range d.opts.Streams {
			cmds[i] = p.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: d.opts.Group, Consumer: d.opts.Consumer, Streams: []string{st, ">"},
				Count: per, Block: -1,
			})
		}
		return nil
	})
	var out []streamMsg
	for _, c := range cmds {
		res, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("xreadgroup: %w", err)
		}
		out = append(out, flatten(res)...)
	}
	return out, nil
}

func flatten(res []redis.XStream) []streamMsg {
	var out []streamMsg
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, streamMsg{stream: s.Stream, msg: m})
		}
	}
	return out
}

// readPending re-reads entries delivered to this consumer but never acked.
func (d *Dispatcher) readPending(ctx context.Context, st string) {
	start := "0"
	for ctx.Err() == nil {
		if d.waitRoom(ctx) <= 0 {
			return
		}
		res, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: d.opts.Group, Consumer: d.opts.Consumer, Streams: []string{st, start},
			Count: int64(d.opts.ReadCount), Block: -1,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			d.logErr("read", fmt.Errorf("xreadgroup pending: %w", err))
			return
		}
		msgs := flatten(res)
		if len(msgs) == 0 {
			return
		}
		d.enqueue(ctx, msgs)
		start = msgs[len(msgs)-1].msg.ID
	}
}

// autoClaim takes over entries pending longer than ClaimIdle on any consumer
// (a daemon that died). Entries this dispatcher already holds are skipped.
func (d *Dispatcher) autoClaim(ctx context.Context) {
	for _, st := range d.opts.Streams {
		start := "0-0"
		for range 10 {
			msgs, next, err := d.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream: st, Group: d.opts.Group, Consumer: d.opts.Consumer,
				MinIdle: d.opts.ClaimIdle, Start: start, Count: int64(d.opts.ReadCount),
			}).Result()
			if err != nil {
				if ctx.Err() == nil {
					d.logErr("claim", fmt.Errorf("xautoclaim: %w", err))
				}
				return
			}
			sm := make([]streamMsg, len(msgs))
			for i, m := range msgs {
				sm[i] = streamMsg{stream: st, msg: m}
			}
			d.enqueue(ctx, sm)
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
}

// enqueue hands entries to the scheduler. When an endpoint's queue is full the
// reader waits a little (at most 50ms per batch) for room, then spills the
// entry to Redis so one slow endpoint cannot stop the stream for the others.
func (d *Dispatcher) enqueue(ctx context.Context, msgs []streamMsg) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for _, m := range msgs {
		ev, err := parseEntry(m.msg.Values)
		if err != nil {
			d.m.malformed.Inc()
			d.log.Error("malformed stream entry acknowledged without delivery", "stream", m.stream, "entry", m.msg.ID, "err", err)
			d.acks <- ackItem{stream: m.stream, id: m.msg.ID}
			continue
		}
		j := &job{
			rec:    record{ID: ev.ID, Type: ev.Type, Org: ev.Org, Body: string(ev.body())},
			stream: m.stream, entry: m.msg.ID,
		}
		d.resolve(j)
		for {
			added, dup := d.s.addFresh(j, d.now(), !time.Now().Before(deadline))
			if added || dup {
				break
			}
			wait := time.NewTimer(time.Until(deadline))
			select {
			case <-ctx.Done():
				wait.Stop()
				return // the entry stays pending in the stream
			case <-d.s.freed:
			case <-wait.C:
			}
			wait.Stop()
		}
	}
}

// resolve sets the job's target from its org's current endpoint.
func (d *Dispatcher) resolve(j *job) {
	ep, ok := d.opts.Resolver.Endpoint(j.rec.Org)
	if !ok || ep.URL == "" {
		j.deadReason = reasonNoEndpoint
		return
	}
	j.target, j.ep = ep, endpointID(ep.URL)
}

// pollLoop leases due retries for endpoints that can take them, and every
// sweep interval dead-letters events past their horizon.
func (d *Dispatcher) pollLoop(ctx context.Context) {
	t := time.NewTicker(d.opts.PollInterval)
	defer t.Stop()
	nextSweep := time.Now()
	for {
		d.pollOnce(ctx)
		if time.Now().After(nextSweep) {
			d.sweepOnce(ctx)
			d.s.prune()
			nextSweep = time.Now().Add(d.sweep)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.s.kick:
		}
	}
}

func (d *Dispatcher) pollOnce(ctx context.Context) {
	now := d.now()
	eps, err := d.rdb.ZRangeByScore(ctx, d.keys.index(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(ms(now), 10), Count: 1000,
	}).Result()
	if err != nil {
		if ctx.Err() == nil {
			d.logErr("poll", err)
		}
		return
	}
	d.clearErr("poll")
	for _, ep := range eps {
		n := d.s.claimable(ep, now)
		if n == 0 {
			continue
		}
		got, next, err := d.claim(ctx, ep, n, now, false)
		if err != nil {
			d.logErr("poll", err)
			continue
		}
		if err := d.setIndex(ctx, ep, next); err != nil {
			d.logErr("poll", err)
		}
		jobs := make([]*job, len(got))
		for i, c := range got {
			jobs[i] = &job{rec: c.rec, first: c.first, home: ep}
			d.resolve(jobs[i])
		}
		d.s.addRetries(jobs, now)
	}
}

// sweepOnce dead-letters events whose first attempt is older than RetryFor,
// even when their endpoint's circuit keeps them from being attempted.
func (d *Dispatcher) sweepOnce(ctx context.Context) {
	eps, err := d.rdb.ZRange(ctx, d.keys.index(), 0, -1).Result()
	if err != nil {
		if ctx.Err() == nil {
			d.logErr("sweep", err)
		}
		return
	}
	for _, ep := range eps {
		for range 10 {
			now := d.now()
			got, next, err := d.claim(ctx, ep, 100, now, true)
			if err != nil {
				d.logErr("sweep", err)
				break
			}
			if len(got) == 0 {
				break
			}
			jobs := make([]*job, len(got))
			for i, c := range got {
				jobs[i] = &job{rec: c.rec, first: c.first, home: ep, ep: ep}
				if jobs[i].rec.LastError == "" {
					jobs[i].rec.LastError = "retry horizon passed before an attempt"
				}
			}
			d.kill(ctx, jobs, now)
			if err := d.setIndex(ctx, ep, next); err != nil {
				d.logErr("sweep", err)
			}
		}
	}
	if n, err := d.rdb.HLen(ctx, d.keys.dead()).Result(); err == nil {
		d.m.dead.Set(float64(n))
	}
}

func decodeRecord(s string) (record, error) {
	var r record
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return record{}, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}
