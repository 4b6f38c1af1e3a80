package message

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewID(t *testing.T) {
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	seen := map[string]bool{}
	for range 1000 {
		id := NewID("msg_")
		require.True(t, strings.HasPrefix(id, "msg_"), id)
		rest := strings.TrimPrefix(id, "msg_")
		require.Len(t, rest, 26)
		for _, c := range rest {
			require.True(t, strings.ContainsRune(alphabet, c), "id %q has %q", id, c)
		}
		require.False(t, seen[id], "duplicate id %q", id)
		seen[id] = true
	}

	// Ids made in a later millisecond sort after earlier ones.
	a := NewID("")
	time.Sleep(2 * time.Millisecond)
	b := NewID("")
	require.Less(t, a, b)
}
