package queue

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBindIdempotencyKey(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			require.NoError(t, q.BindIdempotencyKey(ctx, "acme", "k1", "+15550001111"))
			require.NoError(t, q.BindIdempotencyKey(ctx, "acme", "k1", "+15550001111"), "same sender again: a retry")
			require.ErrorIs(t, q.BindIdempotencyKey(ctx, "acme", "k1", "+15550002222"), ErrIdempotencyConflict)
			require.NoError(t, q.BindIdempotencyKey(ctx, "other-org", "k1", "+15550002222"), "keys are per org")
			require.NoError(t, q.BindIdempotencyKey(ctx, "acme", "k2", "+15550002222"))
		})
	}
}
