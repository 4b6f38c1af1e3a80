package queue

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The parts of a concatenated MO meet in Redis whichever daemon received
// each. The caller that completes one (or takes one still incomplete after
// the timeout) holds it until it reports it handed on; one whose hand-off
// failed or who died lets another take it; a late copy of a part of an MO
// handed on does not start a new one.
func TestMOParts(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			const carrier = "sim"
			add := func(key string, seq, total int, part string, timeout time.Duration) (StoredMO, bool) {
				t.Helper()
				mo, complete, err := q.AddMOPart(ctx, carrier, key, seq, total, []byte(part), timeout)
				require.NoError(t, err)
				return mo, complete
			}

			_, complete := add("a", 2, 3, "2", time.Hour)
			require.False(t, complete)
			_, complete = add("a", 1, 3, "1", time.Hour)
			require.False(t, complete)
			_, complete = add("a", 2, 3, "2", time.Hour) // redelivered: counts once
			require.False(t, complete)
			mo, complete := add("a", 3, 3, "3", time.Hour)
			require.True(t, complete)
			require.Equal(t, map[int][]byte{1: []byte("1"), 2: []byte("2"), 3: []byte("3")}, mo.Parts)
			require.WithinDuration(t, time.Now(), mo.First, 5*time.Second)
			// Held: a copy of a part completes nothing, nobody takes it.
			_, complete = add("a", 3, 3, "3", time.Hour)
			require.False(t, complete)
			taken, err := q.TakeMOs(ctx, carrier, 10)
			require.NoError(t, err)
			require.Empty(t, taken)
			require.NoError(t, q.DoneMO(ctx, carrier, "a"))
			// A late copy of a part of the MO handed on starts nothing.
			_, complete = add("a", 1, 3, "1", 0)
			require.False(t, complete)
			taken, err = q.TakeMOs(ctx, carrier, 10)
			require.NoError(t, err)
			require.Empty(t, taken, "a late copy is dropped, not handed on as a fragment")

			// Another carrier's MO of the same key is its own.
			_, complete, err = q.AddMOPart(ctx, "other", "a", 1, 2, []byte("x"), time.Hour)
			require.NoError(t, err)
			require.False(t, complete)

			// Incomplete past the timeout: taken once, with the parts received.
			_, complete = add("b", 1, 2, "first half", time.Millisecond)
			require.False(t, complete)
			time.Sleep(5 * time.Millisecond)
			taken, err = q.TakeMOs(ctx, carrier, 10)
			require.NoError(t, err)
			require.Len(t, taken, 1)
			require.Equal(t, "b", taken[0].Key)
			require.Equal(t, map[int][]byte{1: []byte("first half")}, taken[0].Parts)
			again, err := q.TakeMOs(ctx, carrier, 10)
			require.NoError(t, err)
			require.Empty(t, again, "held by the first taker")
			// Its hand-off failed: released, due again after the wait.
			require.NoError(t, q.ReleaseMO(ctx, carrier, "b", 0, time.Millisecond))
			time.Sleep(5 * time.Millisecond)
			again, err = q.TakeMOs(ctx, carrier, 10)
			require.NoError(t, err)
			require.Len(t, again, 1)
			require.NoError(t, q.DoneMO(ctx, carrier, "b"))

			// The completing part's hand-off failed: that part is dropped
			// (the carrier delivers it again) and its redelivery completes it.
			_, complete = add("c", 1, 2, "one", time.Hour)
			require.False(t, complete)
			_, complete = add("c", 2, 2, "two", time.Hour)
			require.True(t, complete)
			require.NoError(t, q.ReleaseMO(ctx, carrier, "c", 2, time.Hour))
			mo, complete = add("c", 2, 2, "two", time.Hour)
			require.True(t, complete)
			require.Equal(t, map[int][]byte{1: []byte("one"), 2: []byte("two")}, mo.Parts)
			require.NoError(t, q.DoneMO(ctx, carrier, "c"))
		})
	}
}
