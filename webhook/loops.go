package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ackItem is a stream entry to XACK.
type ackItem struct{ stream, id string }

// ackLoop acknowledges stream entries in batches: one pipeline with one XACK
// per stream. After the first entry of a batch it waits ackLinger on a timer
// alone, so the entries finished meanwhile wait in the channel's buffer
// instead of waking the loop one by one; then it takes what is there (at
// most ackBatch) and flushes. With a backlog, or once ctx is done, it does
// not wait. Acknowledging late is safe: an entry acknowledged late is at
// worst delivered again after a crash. It returns when acks is closed, after
// a last flush.
func (d *Dispatcher) ackLoop(ctx context.Context) {
	bg := context.WithoutCancel(ctx)
	batch := map[string][]string{}
	n := 0
	add := func(it ackItem) {
		batch[it.stream] = append(batch[it.stream], it.id)
		n++
	}
	flush := func() {
		if n == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(bg, 10*time.Second)
		_, err := d.rdb.Pipelined(fctx, func(p redis.Pipeliner) error {
			for st, ids := range batch {
				if len(ids) > 0 {
					// XACK as XAck sends it, the arguments made in one
					// allocation rather than appended one by one.
					args := make([]any, 0, 3+len(ids))
					args = append(args, "xack", st, d.opts.Group)
					for _, id := range ids {
						args = append(args, id)
					}
					p.Do(fctx, args...)
				}
			}
			return nil
		})
		cancel()
		if err != nil {
			d.logErr("ack", err) // entries stay pending and are delivered again: duplicates, not losses
		} else {
			d.clearErr("ack")
		}
		for st, ids := range batch {
			clear(ids) // drop the strings
			batch[st] = ids[:0]
		}
		n = 0
	}
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		it, ok := <-d.acks
		if !ok {
			return
		}
		add(it)
		if ctx.Err() == nil && len(d.acks) < ackBatch-1 {
			linger.Reset(d.ackLinger)
			select {
			case <-linger.C:
			case <-ctx.Done():
				linger.Stop()
			}
		}
		open := true
	take:
		for n < ackBatch {
			select {
			case it, ok := <-d.acks:
				if !ok {
					open = false
					break take
				}
				add(it)
			default:
				break take
			}
		}
		flush()
		if !open {
			return
		}
	}
}

// ackBatch is the most stream entries acknowledged in one pipeline.
const ackBatch = 1024

// streamMsg is an entry read from one of the streams.
type streamMsg struct {
	stream string
	msg    redis.XMessage
}

// maxBlock bounds one blocking XREADGROUP, so the reader also gets round to
// taking over abandoned entries (autoClaim) in time.
const maxBlock = time.Second

// readLoop reads the streams: first this consumer's own pending entries (a
// restart under the same name), then new entries, and periodically entries
// left pending by dead consumers.
func (d *Dispatcher) readLoop(ctx context.Context) {
	for _, st := range d.opts.Streams {
		// Retried while Redis fails: these entries would otherwise wait
		// ClaimIdle for autoClaim.
		for n := 1; !d.readPending(ctx, st); n++ {
			if !sleep(ctx, d.startupDelay(n)) {
				return
			}
		}
	}
	rd := d.newReader(ctx)
	defer rd.close()
	claimEvery := max(d.opts.ClaimIdle/2, 100*time.Millisecond)
	nextClaim := time.Now().Add(claimEvery)
	for ctx.Err() == nil {
		if time.Now().After(nextClaim) {
			d.autoClaim(ctx)
			nextClaim = time.Now().Add(claimEvery)
		}
		room := d.waitRoom(ctx)
		if room <= 0 {
			continue
		}
		msgs, err := rd.read(ctx, min(room, d.opts.ReadCount), min(maxBlock, max(time.Millisecond, time.Until(nextClaim))))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.logErr("read", err)
			if strings.Contains(err.Error(), "NOGROUP") {
				// A stream was deleted: one read names all streams, so
				// recreate what is missing rather than stall them all.
				if err := d.createGroups(ctx); err != nil && ctx.Err() == nil {
					d.logErr("read", err)
				}
			}
			sleep(ctx, d.opts.PollInterval)
			continue
		}
		d.clearErr("read")
		if len(msgs) > 0 {
			d.enqueue(ctx, msgs)
		}
		if len(msgs) > 0 && len(msgs) < d.opts.ReadCount/4 {
			// A trickle: let entries gather before the next read, so one
			// read (and one wake-up of a blocked read in Redis) serves
			// several events instead of each.
			sleep(ctx, d.linger)
		}
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

// streamReader reads new entries from all streams.
//
// On a single Redis server (*redis.Client) it sends one XREADGROUP naming
// every stream and blocks in it, on a connection of its own: CLIENT UNBLOCK
// from another connection ends the wait when ctx is done, so shutdown is
// prompt. Elsewhere (Redis Cluster, Ring) it pipelines one non-blocking
// XREADGROUP per hash slot (streams sharing a slot go in one command) and
// polls, backing off while the streams are empty.
type streamReader struct {
	d       *Dispatcher
	single  *redis.Client
	groups  [][]string // streams grouped by hash slot (cluster path)
	args    []string   // "s1 … sN > … >" (single path)
	hot     []string   // streams whose last read filled their COUNT: read again at once
	conn    *redis.Conn
	idle    time.Duration
	stop    chan struct{} // closed by close: the unblocker exits
	stopped chan struct{} // closed when the unblocker has exited

	mu     sync.Mutex
	connID int64 // CLIENT ID of conn, 0 when none
}

const minIdle = 5 * time.Millisecond

func (d *Dispatcher) newReader(ctx context.Context) *streamReader {
	r := &streamReader{d: d, idle: minIdle, stop: make(chan struct{}), stopped: make(chan struct{})}
	if c, ok := d.rdb.(*redis.Client); ok && supportsClientID(ctx, c) {
		r.single = c
		r.args = streamArgs(d.opts.Streams)
		go r.unblocker(ctx)
		return r
	}
	close(r.stopped)
	_, cluster := d.rdb.(*redis.ClusterClient)
	bySlot := map[int][]string{}
	var order []int
	for i, st := range d.opts.Streams {
		k := i // not a cluster: no grouping, one command per stream
		if cluster {
			k = slot(st)
		}
		if _, ok := bySlot[k]; !ok {
			order = append(order, k)
		}
		bySlot[k] = append(bySlot[k], st)
	}
	for _, k := range order {
		r.groups = append(r.groups, bySlot[k])
	}
	return r
}

// supportsClientID reports whether the server knows CLIENT ID (and so CLIENT
// UNBLOCK), which the blocking read needs for a prompt shutdown. The embedded
// store (miniredis) does not: there the reader polls like on a cluster. Any
// other error (Redis down at start) counts as supported; the read retries.
func supportsClientID(ctx context.Context, c *redis.Client) bool {
	err := c.ClientID(ctx).Err()
	return err == nil || !strings.Contains(strings.ToLower(err.Error()), "unknown")
}

// streamArgs returns the STREAMS arguments: every key, then ">" for each.
func streamArgs(streams []string) []string {
	out := make([]string, 0, 2*len(streams))
	out = append(out, streams...)
	for range streams {
		out = append(out, ">")
	}
	return out
}

// unblocker ends a blocking read in progress once ctx is done. CLIENT UNBLOCK
// is repeated until the reader has left, in case it raced the read's start.
func (r *streamReader) unblocker(ctx context.Context) {
	defer close(r.stopped)
	select {
	case <-r.stop:
		return
	case <-ctx.Done():
	}
	bg := context.WithoutCancel(ctx)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		r.mu.Lock()
		id := r.connID
		r.mu.Unlock()
		if id != 0 {
			uctx, cancel := context.WithTimeout(bg, time.Second)
			_ = r.single.ClientUnblock(uctx, id).Err()
			cancel()
		}
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// close stops the unblocker and releases the reader's connection.
func (r *streamReader) close() {
	close(r.stop)
	<-r.stopped
	r.dropConn()
}

func (r *streamReader) dropConn() {
	if r.conn != nil {
		_ = r.conn.Close()
	}
	r.conn = nil
	r.mu.Lock()
	r.connID = 0
	r.mu.Unlock()
}

// read returns up to about n new entries, waiting at most block for some.
func (r *streamReader) read(ctx context.Context, n int, block time.Duration) ([]streamMsg, error) {
	if r.single != nil {
		return r.readSingle(ctx, n, block)
	}
	return r.readPipelined(ctx, n)
}

func (r *streamReader) readSingle(ctx context.Context, n int, block time.Duration) ([]streamMsg, error) {
	if r.conn == nil {
		c := r.single.Conn()
		id, err := c.ClientID(ctx).Result()
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("client id: %w", err)
		}
		r.conn = c
		r.mu.Lock()
		r.connID = id
		r.mu.Unlock()
	}
	streams, per, full := r.args, max(1, n/len(r.d.opts.Streams)), true
	if len(r.hot) > 0 {
		// Streams that had more than their share last time: read them
		// again, without blocking, with the whole count split among them.
		streams, per, full = streamArgs(r.hot), max(1, n/len(r.hot)), false
		block = -1
	}
	r.hot = r.hot[:0]
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	res, err := r.conn.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: r.d.opts.Group, Consumer: r.d.opts.Consumer, Streams: streams,
		Count: int64(per), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		r.dropConn()
		return nil, fmt.Errorf("xreadgroup: %w", err)
	}
	return r.collect(res, per, full), nil
}

// collect flattens a reply. After a read of all streams it notes those that
// filled their count (the next read takes more from them; the one after
// reads all streams again, so no stream starves).
func (r *streamReader) collect(res []redis.XStream, per int, full bool) []streamMsg {
	total := 0
	for _, s := range res {
		total += len(s.Messages)
	}
	out := make([]streamMsg, 0, total)
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, streamMsg{stream: s.Stream, msg: m})
		}
		if full && len(s.Messages) >= per && len(r.d.opts.Streams) > 1 {
			r.hot = append(r.hot, s.Stream)
		}
	}
	return out
}

func (r *streamReader) readPipelined(ctx context.Context, n int) ([]streamMsg, error) {
	streams := len(r.d.opts.Streams)
	per := max(1, n/streams)
	groups, full := r.groups, true
	if len(r.hot) > 0 {
		groups, per, full = nil, max(1, n/len(r.hot)), false
		for _, st := range r.hot {
			groups = append(groups, []string{st})
		}
	}
	r.hot = r.hot[:0]
	cmds := make([]*redis.XStreamSliceCmd, len(groups))
	_, _ = r.d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, g := range groups {
			cmds[i] = p.XReadGroup(ctx, &redis.XReadGroupArgs{
				Group: r.d.opts.Group, Consumer: r.d.opts.Consumer, Streams: streamArgs(g),
				Count: int64(per), Block: -1,
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
		out = append(out, r.collect(res, per, full)...)
	}
	if len(out) == 0 && len(r.hot) == 0 {
		sleep(ctx, r.idle)
		r.idle = min(2*r.idle, r.d.opts.PollInterval)
	} else {
		r.idle = minIdle
	}
	return out, nil
}

// slot is the Redis Cluster hash slot of key (CRC16/XMODEM of its hash tag).
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
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
// It reports false when Redis failed before it was done (it logged the
// error); entries read before are with the scheduler, so reading again from
// the start is harmless.
func (d *Dispatcher) readPending(ctx context.Context, st string) bool {
	start := "0"
	for ctx.Err() == nil {
		if d.waitRoom(ctx) <= 0 {
			return true
		}
		res, err := d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: d.opts.Group, Consumer: d.opts.Consumer, Streams: []string{st, start},
			Count: int64(d.opts.ReadCount), Block: -1,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return true
			}
			d.logErr("read", fmt.Errorf("xreadgroup pending: %w", err))
			if strings.Contains(err.Error(), "NOGROUP") {
				// The stream was deleted since Run created its group.
				if err := d.createGroups(ctx); err != nil && ctx.Err() == nil {
					d.logErr("read", err)
				}
			}
			return false
		}
		d.clearErr("read")
		msgs := flatten(res)
		if len(msgs) == 0 {
			return true
		}
		d.enqueue(ctx, msgs)
		start = msgs[len(msgs)-1].msg.ID
	}
	return true
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
	var wait *time.Timer // made at the first wait, for all of them
	defer func() {
		if wait != nil {
			wait.Stop()
		}
	}()
	for _, m := range msgs {
		bucket, ok := d.buckets[m.stream]
		if !ok {
			bucket = -1
		}
		ev, err := parseEntry(bucket, m.msg.ID, m.msg.Values)
		if err != nil {
			d.m.malformed.Inc()
			d.log.Error("malformed stream entry acknowledged without delivery", "stream", m.stream, "entry", m.msg.ID, "err", err)
			d.acks <- ackItem{stream: m.stream, id: m.msg.ID}
			continue
		}
		j := &job{
			rec:    record{ID: ev.ID, Type: ev.Type, Org: ev.Org},
			body:   ev.body(),
			stream: m.stream, entry: m.msg.ID,
		}
		d.resolve(j)
		for {
			added, dup := d.s.addFresh(j, d.now(), !time.Now().Before(deadline))
			if added || dup {
				break
			}
			if wait == nil {
				wait = time.NewTimer(time.Until(deadline))
			}
			select {
			case <-ctx.Done():
				return // the entry stays pending in the stream
			case <-d.s.freed:
			case <-wait.C:
			}
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
	j.tgt = d.targets.get(ep.URL)
	j.target, j.ep = ep, j.tgt.id
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
// even when their endpoint's circuit keeps them from being attempted again.
// Events never attempted have no first attempt and are not swept.
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
			var jobs []*job
			var untried []string
			for _, c := range got {
				if c.first.IsZero() { // stored by an older version when it held the event back
					untried = append(untried, c.rec.ID)
					continue
				}
				j := &job{rec: c.rec, first: c.first, home: ep, ep: ep}
				if j.rec.LastError == "" {
					j.rec.LastError = "retry horizon passed before a retry"
				}
				jobs = append(jobs, j)
			}
			if len(jobs) > 0 {
				d.kill(ctx, jobs, now)
			}
			if err := d.setIndex(ctx, ep, next); err != nil {
				d.logErr("sweep", err)
			}
			// After setIndex, which would raise the index hint over their
			// new due time.
			if err := d.forgetFirst(ctx, ep, untried, now); err != nil {
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
