package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// MOPartsTTL is how long the parts of an incomplete inbound message are kept
// in Redis at most; the pools hand them on long before (after their
// reassembly timeout), this only bounds what a deployment without any pool
// of that carrier left behind.
const MOPartsTTL = time.Hour

// StoredMO is an incomplete concatenated inbound message taken from Redis.
type StoredMO struct {
	Key   string         // the assembly key the parts were added under
	First time.Time      // arrival of its first part
	Parts map[int][]byte // by part number (1-based), as added
}

// moKeys returns the keys of a carrier's MO parts, all in one slot: the
// parts of the MO named key and the carrier's index of incomplete MOs.
// Inbound volume is small next to outbound, so one slot per carrier is no
// hot spot.
func (q *Queue) moKeys(carrier, key string) (parts, index, partsPrefix string) {
	base := q.opts.Prefix + "{mo:" + carrier + "}:"
	return base + "p:" + key, base + "index", base + "p:"
}

// AddMOPart stores part seq of total of the concatenated MO named key (of
// carrier), where every daemon sees it. When this part completes the MO it
// returns every part (removed from Redis) and complete true. A part stored
// is durable: the caller may acknowledge it to the carrier.
func (q *Queue) AddMOPart(ctx context.Context, carrier, key string, seq, total int, part []byte) (map[int][]byte, bool, error) {
	parts, index, _ := q.moKeys(carrier, key)
	v, err := q.runScript(ctx, scriptMOAdd, []string{parts, index}, seq, total, part, key, MOPartsTTL.Milliseconds()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("queue: add MO part: %w", err)
	}
	all, ok := v.([]any)
	if !ok {
		return nil, false, nil
	}
	out, err := moParts(all)
	if err != nil {
		return nil, false, fmt.Errorf("queue: add MO part: %w", err)
	}
	return out, true, nil
}

// PutMOParts puts parts of the MO named key back (its handler failed); parts
// stored meanwhile are kept, and the MO counts as incomplete from first.
func (q *Queue) PutMOParts(ctx context.Context, carrier, key string, first time.Time, parts map[int][]byte) error {
	if len(parts) == 0 {
		return nil
	}
	pk, index, _ := q.moKeys(carrier, key)
	args := []any{key, first.UnixMilli(), MOPartsTTL.Milliseconds()}
	for seq, p := range parts {
		args = append(args, seq, p)
	}
	if err := q.runScript(ctx, scriptMOPut, []string{pk, index}, args...).Err(); err != nil {
		return fmt.Errorf("queue: put MO parts back: %w", err)
	}
	return nil
}

// TakeExpiredMOs removes and returns at most n incomplete MOs of carrier
// whose first part arrived more than age ago; each is taken by one caller.
func (q *Queue) TakeExpiredMOs(ctx context.Context, carrier string, age time.Duration, n int) ([]StoredMO, error) {
	_, index, prefix := q.moKeys(carrier, "")
	v, err := q.runScript(ctx, scriptMOTake, []string{index}, age.Milliseconds(), n, prefix).Slice()
	if err != nil {
		return nil, fmt.Errorf("queue: take expired MOs: %w", err)
	}
	out := make([]StoredMO, 0, len(v))
	for _, e := range v {
		f, ok := e.([]any)
		if !ok || len(f) != 3 {
			return out, fmt.Errorf("queue: take expired MOs: unexpected entry %v", e)
		}
		key, _ := f[0].(string)
		first, _ := strconv.ParseInt(fmt.Sprint(f[1]), 10, 64)
		all, _ := f[2].([]any)
		parts, err := moParts(all)
		if err != nil {
			return out, fmt.Errorf("queue: take expired MOs: %w", err)
		}
		out = append(out, StoredMO{Key: key, First: time.UnixMilli(first), Parts: parts})
	}
	return out, nil
}

// moParts reads an HGETALL reply {seq, part, ...}.
func moParts(all []any) (map[int][]byte, error) {
	out := make(map[int][]byte, len(all)/2)
	for i := 0; i+1 < len(all); i += 2 {
		f, _ := all[i].(string)
		seq, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("part number %q", f)
		}
		p, _ := all[i+1].(string)
		out[seq] = []byte(p)
	}
	return out, nil
}
