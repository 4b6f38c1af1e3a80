package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// BindIdempotencyKey ties an org's Idempotency-Key to the sender number of
// the first request that used it, for IdempotencyTTL. Enqueue deduplicates
// within the sender's bucket; this org-wide record is what makes the same key
// used with another sender number (and so another body) an
// ErrIdempotencyConflict, as the API promises per org. Calling it again with
// the same sender is a no-op, so a retried request goes on to Enqueue, which
// replays the first response.
func (q *Queue) BindIdempotencyKey(ctx context.Context, org, key, from string) error {
	k := q.idemOrgKey(org, key)
	set, err := q.rdb.SetNX(ctx, k, from, q.opts.IdempotencyTTL).Result()
	if err != nil {
		return fmt.Errorf("queue: idempotency key: %w", err)
	}
	if set {
		return nil
	}
	bound, err := q.rdb.Get(ctx, k).Result()
	if errors.Is(err, redis.Nil) {
		// Expired between the two calls: take it now.
		return q.BindIdempotencyKey(ctx, org, key, from)
	}
	if err != nil {
		return fmt.Errorf("queue: idempotency key: %w", err)
	}
	if bound != from {
		return fmt.Errorf("queue: idempotency key used with another sender number: %w", ErrIdempotencyConflict)
	}
	return nil
}

// idemOrgKey is the key of the org-wide record of an Idempotency-Key.
func (q *Queue) idemOrgKey(org, key string) string {
	sum := sha256.Sum256([]byte(org + "\x00" + key))
	return q.opts.Prefix + "idemorg:" + hex.EncodeToString(sum[:16])
}

// Replay returns the response stored for an org's Idempotency-Key whose
// first request had the hash requestHash (found false when there is none, or
// the key was used with another request). Enqueue replays by itself; this is
// for a request that would now be refused before reaching Enqueue (the
// configuration changed since its first attempt was accepted), which must
// still get the first response.
func (q *Queue) Replay(ctx context.Context, org, key, requestHash string) (response []byte, found bool, err error) {
	from, err := q.rdb.Get(ctx, q.idemOrgKey(org, key)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("queue: replay: %w", err)
	}
	v, err := q.rdb.HMGet(ctx, q.base(q.Bucket(from))+"idem:"+org+":"+key, "h", "r").Result()
	if err != nil {
		return nil, false, fmt.Errorf("queue: replay: %w", err)
	}
	h, _ := v[0].(string)
	r, _ := v[1].(string)
	if h == "" || h != requestHash {
		return nil, false, nil
	}
	return []byte(r), true, nil
}
