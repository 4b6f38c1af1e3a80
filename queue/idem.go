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
	sum := sha256.Sum256([]byte(org + "\x00" + key))
	k := q.opts.Prefix + "idemorg:" + hex.EncodeToString(sum[:16])
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
