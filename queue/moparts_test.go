package queue

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The parts of a concatenated MO meet in Redis whichever daemon received
// each; an incomplete MO is taken by one caller after its timeout, and a
// failed hand-off puts its parts back.
func TestMOParts(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			const carrier = "sim"

			for _, seq := range []int{2, 1} {
				parts, complete, err := q.AddMOPart(ctx, carrier, "a", seq, 3, []byte{byte('0' + seq)})
				require.NoError(t, err)
				require.False(t, complete)
				require.Nil(t, parts)
			}
			// A part delivered twice (the carrier redelivered it) counts once.
			_, complete, err := q.AddMOPart(ctx, carrier, "a", 2, 3, []byte("2"))
			require.NoError(t, err)
			require.False(t, complete)
			parts, complete, err := q.AddMOPart(ctx, carrier, "a", 3, 3, []byte("3"))
			require.NoError(t, err)
			require.True(t, complete)
			require.Equal(t, map[int][]byte{1: []byte("1"), 2: []byte("2"), 3: []byte("3")}, parts)

			// Another carrier's MO of the same key is its own.
			_, complete, err = q.AddMOPart(ctx, "other", "b", 1, 2, []byte("x"))
			require.NoError(t, err)
			require.False(t, complete)

			start := time.Now()
			_, complete, err = q.AddMOPart(ctx, carrier, "b", 1, 2, []byte("first half"))
			require.NoError(t, err)
			require.False(t, complete)
			got, err := q.TakeExpiredMOs(ctx, carrier, time.Hour, 10)
			require.NoError(t, err)
			require.Empty(t, got, "not expired yet")
			time.Sleep(5 * time.Millisecond)
			got, err = q.TakeExpiredMOs(ctx, carrier, time.Millisecond, 10)
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Equal(t, "b", got[0].Key)
			require.Equal(t, map[int][]byte{1: []byte("first half")}, got[0].Parts)
			require.WithinDuration(t, start, got[0].First, time.Second)
			again, err := q.TakeExpiredMOs(ctx, carrier, time.Millisecond, 10)
			require.NoError(t, err)
			require.Empty(t, again, "taken once")

			// The hand-off failed: back, and the last part completes it.
			require.NoError(t, q.PutMOParts(ctx, carrier, "b", got[0].First, got[0].Parts))
			parts, complete, err = q.AddMOPart(ctx, carrier, "b", 2, 2, []byte("second half"))
			require.NoError(t, err)
			require.True(t, complete)
			require.Equal(t, map[int][]byte{1: []byte("first half"), 2: []byte("second half")}, parts)
			left, err := q.TakeExpiredMOs(ctx, carrier, 0, 10)
			require.NoError(t, err)
			require.Empty(t, left)
		})
	}
}
