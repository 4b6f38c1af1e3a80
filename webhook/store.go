package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key layout (P = Options.Prefix). Every per-endpoint key carries the hash tag
// {<endpoint id>} so the claim script touches one Redis Cluster slot.
//
//	P webhook:endpoints          ZSET  endpoint id -> earliest time (ms) it may have due work (a hint)
//	P webhook:{<ep>}:due         ZSET  event id -> due time (ms); a claimed event is leased by moving its due time ahead
//	P webhook:{<ep>}:first       ZSET  event id -> time (ms) of its first attempt (RetryFor counts from here); none until attempted
//	P webhook:{<ep>}:ev          HASH  event id -> record JSON (body bytes, org, attempts, last error)
//	P webhook:{dead}             HASH  event id -> record JSON of a dead letter
//	P webhook:{dead}:at          ZSET  event id -> time (ms) it died, for listing newest first
//
// <ep> is the first 16 hex digits of SHA-256(webhook URL).
type keys struct{ prefix string }

func (k keys) index() string          { return k.prefix + "webhook:endpoints" }
func (k keys) due(ep string) string   { return k.prefix + "webhook:{" + ep + "}:due" }
func (k keys) first(ep string) string { return k.prefix + "webhook:{" + ep + "}:first" }
func (k keys) ev(ep string) string    { return k.prefix + "webhook:{" + ep + "}:ev" }
func (k keys) dead() string           { return k.prefix + "webhook:{dead}" }
func (k keys) deadAt() string         { return k.prefix + "webhook:{dead}:at" }

// endpointID names an endpoint in Redis keys.
func endpointID(url string) string {
	h := sha256.Sum256([]byte(url))
	return hex.EncodeToString(h[:8])
}

// record is what Redis keeps of an event awaiting a retry, or of a dead letter.
type record struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Org       string `json:"org"`
	Body      string `json:"body"` // exact bytes POSTed on every attempt
	URL       string `json:"url,omitempty"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	FirstAt   int64  `json:"first_at,omitempty"` // ms, dead letters only
	DeadAt    int64  `json:"dead_at,omitempty"`  // ms, dead letters only
}

func ms(t time.Time) int64 { return t.UnixMilli() }

// claimScript leases up to ARGV[2] events of one endpoint and returns
// {next due score or "", id, record, first or "", id, record, first or "", ...}.
// Mode "due" takes events whose due time passed; mode "expired" takes events
// whose first attempt is older than ARGV[5] and that are not leased.
// KEYS: due, first, ev. ARGV: now, n, lease until, mode, cutoff.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local ids
if ARGV[4] == 'expired' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[5], 'LIMIT', 0, ARGV[2])
else
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
end
local out = {''}
for _, id in ipairs(ids) do
  local due = redis.call('ZSCORE', KEYS[1], id)
  if (due and tonumber(due) <= now) or (not due and ARGV[4] == 'expired') then
    local rec = redis.call('HGET', KEYS[3], id)
    if rec then
      redis.call('ZADD', KEYS[1], ARGV[3], id)
      local first = redis.call('ZSCORE', KEYS[2], id)
      out[#out+1] = id
      out[#out+1] = rec
      out[#out+1] = first or ''
    else
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
    end
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then out[1] = nxt[2] end
return out
`)

// claimed is one event leased from an endpoint's retry set.
type claimed struct {
	rec   record
	first time.Time // first attempt; zero when never attempted
}

// claim leases events of endpoint ep. next is the earliest due time left in the
// set (including leases), zero when the set is empty.
func (d *Dispatcher) claim(ctx context.Context, ep string, n int, now time.Time, expired bool) (got []claimed, next time.Time, err error) {
	mode, cutoff := "due", int64(0)
	if expired {
		mode, cutoff = "expired", ms(now.Add(-d.opts.RetryFor))
	}
	res, err := claimScript.Run(ctx, d.rdb, []string{d.keys.due(ep), d.keys.first(ep), d.keys.ev(ep)},
		ms(now), n, ms(now.Add(d.lease)), mode, cutoff).StringSlice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("webhook claim: %w", err)
	}
	if len(res) == 0 {
		return nil, time.Time{}, errors.New("webhook claim: empty script reply")
	}
	if res[0] != "" {
		f, _ := strconv.ParseFloat(res[0], 64)
		next = time.UnixMilli(int64(f))
	}
	for i := 1; i+2 < len(res); i += 3 {
		var r record
		if err := json.Unmarshal([]byte(res[i+1]), &r); err != nil {
			d.log.Error("dropping unreadable retry record", "event_id", res[i], "err", err)
			_ = d.remove(ctx, ep, res[i])
			continue
		}
		c := claimed{rec: r}
		// A record without attempts has no first attempt, whatever is
		// stored: versions before this one stored the time they held an
		// event back (spilled it) as its first attempt.
		if res[i+2] != "" && r.Attempts > 0 {
			f, _ := strconv.ParseFloat(res[i+2], 64)
			c.first = time.UnixMilli(int64(f))
		}
		got = append(got, c)
	}
	return got, next, nil
}

// scheduled is one event to put in an endpoint's retry set.
type scheduled struct {
	ep    string
	rec   record
	first time.Time // first attempt; zero when never attempted: none is stored
	due   time.Time
}

// schedule writes events to their endpoints' retry sets and updates the
// endpoint index. Per event the commands run in order (record, first, due), so
// a crash part-way leaves at worst a record without a due time: the expiry
// sweep finds it by its first attempt, and an event never attempted is still
// where it came from (its stream entry, its old retry set or dead letter) and
// is written again from there.
func (d *Dispatcher) schedule(ctx context.Context, items []scheduled) error {
	if len(items) == 0 {
		return nil
	}
	earliest := map[string]time.Time{}
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, it := range items {
			b, err := json.Marshal(it.rec)
			if err != nil {
				return fmt.Errorf("encode record: %w", err)
			}
			p.HSet(ctx, d.keys.ev(it.ep), it.rec.ID, b)
			if !it.first.IsZero() {
				// Not NX: a first attempt replaces a time stored for the
				// event before it had one (by an older version).
				p.ZAdd(ctx, d.keys.first(it.ep), redis.Z{Score: float64(ms(it.first)), Member: it.rec.ID})
			}
			p.ZAdd(ctx, d.keys.due(it.ep), redis.Z{Score: float64(ms(it.due)), Member: it.rec.ID})
			if e, ok := earliest[it.ep]; !ok || it.due.Before(e) {
				earliest[it.ep] = it.due
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook schedule: %w", err)
	}
	return d.touchIndex(ctx, earliest)
}

// touchIndex lowers the index hint of each endpoint to the given time.
func (d *Dispatcher) touchIndex(ctx context.Context, earliest map[string]time.Time) error {
	members := make([]redis.Z, 0, len(earliest))
	for ep, t := range earliest {
		members = append(members, redis.Z{Score: float64(ms(t)), Member: ep})
	}
	if err := d.rdb.ZAddArgs(ctx, d.keys.index(), redis.ZAddArgs{LT: true, Members: members}).Err(); err != nil {
		return fmt.Errorf("webhook index: %w", err)
	}
	return nil
}

// setIndex records the earliest due time of ep after a claim, or removes ep
// from the index when its set is empty. Removal re-checks the set afterwards
// so an event scheduled concurrently is never left without an index entry.
func (d *Dispatcher) setIndex(ctx context.Context, ep string, next time.Time) error {
	if !next.IsZero() {
		return d.rdb.ZAdd(ctx, d.keys.index(), redis.Z{Score: float64(ms(next)), Member: ep}).Err()
	}
	if err := d.rdb.ZRem(ctx, d.keys.index(), ep).Err(); err != nil {
		return err
	}
	left, err := d.rdb.ZRangeWithScores(ctx, d.keys.due(ep), 0, 0).Result()
	if err != nil || len(left) == 0 {
		return err
	}
	return d.rdb.ZAddArgs(ctx, d.keys.index(), redis.ZAddArgs{LT: true, Members: []redis.Z{{Score: left[0].Score, Member: ep}}}).Err()
}

// remove deletes an event from an endpoint's retry set (delivered or dead).
func (d *Dispatcher) remove(ctx context.Context, ep, id string) error {
	_, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, d.keys.due(ep), id)
		p.ZRem(ctx, d.keys.first(ep), id)
		p.HDel(ctx, d.keys.ev(ep), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook remove: %w", err)
	}
	return nil
}

// release makes leased events due again at t (shutdown, circuit opened).
func (d *Dispatcher) release(ctx context.Context, ep string, ids []string, t time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	members := make([]redis.Z, len(ids))
	for i, id := range ids {
		members[i] = redis.Z{Score: float64(ms(t)), Member: id}
	}
	if err := d.rdb.ZAddArgs(ctx, d.keys.due(ep), redis.ZAddArgs{XX: true, Members: members}).Err(); err != nil {
		return fmt.Errorf("webhook release: %w", err)
	}
	return d.touchIndex(ctx, map[string]time.Time{ep: t})
}

// forgetFirst drops the first-attempt times stored for leased events never
// attempted (versions before this one stored the time they held an event back)
// and makes the events due at t: their RetryFor horizon starts at their first
// attempt.
func (d *Dispatcher) forgetFirst(ctx context.Context, ep string, ids []string, t time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	if err := d.rdb.ZRem(ctx, d.keys.first(ep), members...).Err(); err != nil {
		return fmt.Errorf("webhook forget first: %w", err)
	}
	return d.release(ctx, ep, ids, t)
}

// bury stores dead letters. It runs before the events leave the stream or
// their retry set, so a crash in between yields a duplicate, never a loss.
func (d *Dispatcher) bury(ctx context.Context, recs []record) error {
	if len(recs) == 0 {
		return nil
	}
	_, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range recs {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode record: %w", err)
			}
			p.HSet(ctx, d.keys.dead(), r.ID, b)
			p.ZAdd(ctx, d.keys.deadAt(), redis.Z{Score: float64(r.DeadAt), Member: r.ID})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("webhook dead letter: %w", err)
	}
	return nil
}
