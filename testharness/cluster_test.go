package testharness

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestStartCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := StartCluster(t, 3, 1)
	require.Len(t, c.Addrs(), 6)
	require.Len(t, c.Masters(), 3)
	ctx := context.Background()
	cc := c.Client()

	// Keys spread over every master.
	for i := range 50 {
		require.NoError(t, cc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err())
	}
	var holding atomic.Int32
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if n > 0 {
			holding.Add(1)
		}
		return err
	}))
	require.Equal(t, int32(3), holding.Load())

	// A coordinated failover keeps the data and swaps the roles.
	master, replica, ok := c.MasterWithReplica()
	require.True(t, ok)
	c.Failover(replica)
	require.Contains(t, c.Masters(), replica)
	require.NotContains(t, c.Masters(), master)
	require.Eventually(t, func() bool {
		for i := range 50 {
			if v, err := cc.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || v != i {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond)

	// Killing a master with a replica: the replica is promoted.
	master, replica, ok = c.MasterWithReplica()
	require.True(t, ok)
	c.Kill(master)
	require.Eventually(t, func() bool {
		return c.WaitHealthy(100*time.Millisecond) == nil && len(c.Masters()) == 3
	}, 20*time.Second, 100*time.Millisecond, "cluster not healthy after killing node %d", master)
	require.Contains(t, c.Masters(), replica)
	require.Eventually(t, func() bool { return cc.Set(ctx, "after", 1, 0).Err() == nil }, 10*time.Second, 50*time.Millisecond)
}
