package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// MOPartsTTL is how long the parts of an incomplete inbound message are
	// kept in Redis at most; the pools hand them on long before (after their
	// reassembly timeout), this only bounds what a deployment without any
	// pool of that carrier left behind.
	MOPartsTTL = time.Hour
	// MOLease is how long a caller holds an MO it completed or took before
	// another may take it (the holder died, or its hand-off failed).
	MOLease = 2 * time.Minute
	// moDoneTTL is how long a late copy of a part of an MO already handed
	// on is recognised (and dropped) rather than starting a new MO.
	moDoneTTL = 10 * time.Minute
)

// StoredMO is a concatenated inbound message held from Redis.
type StoredMO struct {
	Key   string         // the assembly key the parts were added under
	First time.Time      // arrival of its first part
	Parts map[int][]byte // by part number (1-based), as added
}

// moKeys returns the keys of a carrier's MO parts, all in one slot: the
// parts of the MO named key, the carrier's index of MOs waiting, the
// marker of an MO handed on, and the prefix of parts keys. Inbound volume
// is small next to outbound, so one slot per carrier is no hot spot.
func (q *Queue) moKeys(carrier, key string) (parts, index, done, partsPrefix string) {
	base := q.opts.Prefix + "{mo:" + carrier + "}:"
	return base + "p:" + key, base + "index", base + "done:" + key, base + "p:"
}

// AddMOPart stores part seq of total of the concatenated MO named key (of
// carrier), where every daemon sees it; a part stored is durable, so the
// caller may acknowledge it to the carrier. When this part completes the MO,
// it returns the MO (complete true), held by the caller for MOLease: the
// caller calls DoneMO once it handed it on, or ReleaseMO. A late copy of a
// part of an MO handed on is dropped (complete false, nothing stored).
// timeout is the reassembly timeout, after which TakeMOs hands on an MO
// still incomplete.
func (q *Queue) AddMOPart(ctx context.Context, carrier, key string, seq, total int, part []byte, timeout time.Duration) (StoredMO, bool, error) {
	parts, index, done, _ := q.moKeys(carrier, key)
	v, err := q.runScript(ctx, scriptMOAdd, []string{parts, index, done}, seq, total, part, key,
		MOPartsTTL.Milliseconds(), timeout.Milliseconds(), MOLease.Milliseconds()).Slice()
	if err != nil {
		return StoredMO{}, false, fmt.Errorf("queue: add MO part: %w", err)
	}
	if len(v) != 3 || v[0] != "complete" {
		return StoredMO{}, false, nil
	}
	mo, err := storedMO(key, v[1], v[2])
	if err != nil {
		return StoredMO{}, false, fmt.Errorf("queue: add MO part: %w", err)
	}
	return mo, true, nil
}

// TakeMOs holds and returns at most n MOs of carrier whose time came: still
// incomplete after the reassembly timeout, or not handed on within the lease
// of whoever held them. The caller calls DoneMO for each it handed on.
func (q *Queue) TakeMOs(ctx context.Context, carrier string, n int) ([]StoredMO, error) {
	_, index, _, prefix := q.moKeys(carrier, "")
	v, err := q.runScript(ctx, scriptMOTake, []string{index}, n, MOLease.Milliseconds(), prefix).Slice()
	if err != nil {
		return nil, fmt.Errorf("queue: take MOs: %w", err)
	}
	out := make([]StoredMO, 0, len(v))
	for _, e := range v {
		f, ok := e.([]any)
		if !ok || len(f) != 3 {
			return out, fmt.Errorf("queue: take MOs: unexpected entry %v", e)
		}
		key, _ := f[0].(string)
		mo, err := storedMO(key, f[1], f[2])
		if err != nil {
			return out, fmt.Errorf("queue: take MOs: %w", err)
		}
		out = append(out, mo)
	}
	return out, nil
}

// DoneMO ends the holding of an MO handed on: its parts go.
func (q *Queue) DoneMO(ctx context.Context, carrier, key string) error {
	parts, index, done, _ := q.moKeys(carrier, key)
	if err := q.runScript(ctx, scriptMOPut, []string{parts, index, done}, key, "done", moDoneTTL.Milliseconds()).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("queue: MO done: %w", err)
	}
	return nil
}

// ReleaseMO ends the holding of an MO whose hand-off failed: part drop (0:
// none; the part that completed it, which the carrier delivers again) is
// dropped, and the MO waits again, for the rest or for TakeMOs after wait.
func (q *Queue) ReleaseMO(ctx context.Context, carrier, key string, drop int, wait time.Duration) error {
	parts, index, done, _ := q.moKeys(carrier, key)
	d := ""
	if drop > 0 {
		d = strconv.Itoa(drop)
	}
	if err := q.runScript(ctx, scriptMOPut, []string{parts, index, done}, key, "release", 0, d, wait.Milliseconds()).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("queue: MO release: %w", err)
	}
	return nil
}

// storedMO reads an MO of a script's reply: its first arrival (ms) and its
// parts {seq, part, ...}.
func storedMO(key string, first, parts any) (StoredMO, error) {
	f, err := strconv.ParseInt(fmt.Sprint(first), 10, 64)
	if err != nil {
		return StoredMO{}, fmt.Errorf("first arrival %v", first)
	}
	all, _ := parts.([]any)
	out := StoredMO{Key: key, First: time.UnixMilli(f), Parts: make(map[int][]byte, len(all)/2)}
	for i := 0; i+1 < len(all); i += 2 {
		s, _ := all[i].(string)
		seq, err := strconv.Atoi(s)
		if err != nil {
			return StoredMO{}, fmt.Errorf("part number %q", s)
		}
		p, _ := all[i+1].(string)
		out.Parts[seq] = []byte(p)
	}
	return out, nil
}
