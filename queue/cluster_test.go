package queue

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

// TestCluster runs the queue's core integration tests against a private
// 3-master Redis Cluster (no replicas), through a redis.ClusterClient: every
// script must keep to the slot of its bucket and scans over buckets must
// reach every master.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Redis Cluster")
	}
	cl := testharness.StartCluster(t, 3, 0)
	client := cl.Client()

	// The shared test bodies range over backends; run them with the cluster
	// as their only backend. No test of this package runs in parallel, so
	// swapping the variable for the duration of this test is safe. The
	// cluster is private to this test: testPrefix's cleanup is not needed
	// (it scans one node only) and the cluster is killed at cleanup.
	saved := backends
	backends = []backend{{"cluster", func(testing.TB) redis.UniversalClient { return client }}}
	t.Cleanup(func() { backends = saved })

	t.Run("Lifecycle", TestLifecycle)
	t.Run("EnqueueChecks", TestEnqueueChecks)
	t.Run("NoticeOnce", TestNoticeOnce)
	t.Run("Leases", TestLeases)
	t.Run("Expiry", TestExpiry)
	t.Run("ReceiptBeforeAck", TestReceiptBeforeAck)
	t.Run("ThrottleAccuracy", func(t *testing.T) { clusterThrottle(t, client) })
	t.Run("SpreadAndReap", func(t *testing.T) { clusterSpreadAndReap(t, client) })
}

// clusterPrefix returns a unique key prefix; the cluster is private to the
// test, so nothing is cleaned.
func clusterPrefix() string {
	return "test:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
}

// clusterThrottle is TestThrottleAccuracy on the cluster with three
// queues (three daemons) claiming concurrently: FIFO per number and at most
// rate+1 segments in any second, for numbers whose buckets sit on different
// masters.
func clusterThrottle(t *testing.T, c *redis.ClusterClient) {
	prefix := clusterPrefix()
	qs := []*Queue{newQueue(t, c, prefix, Options{}), newQueue(t, c, prefix, Options{}), newQueue(t, c, prefix, Options{})}
	type number struct {
		from    string
		rate    float64
		backlog int
	}
	numbers := []number{
		{"+15550000001", 1, 6}, {"+15550000002", 1, 6}, {"+15550000003", 1, 6},
		{"+18005550001", 3, 12}, {"12345", 50, 150},
	}
	var wg sync.WaitGroup
	for _, n := range numbers {
		wg.Go(func() {
			for i := range n.backlog {
				enqueue(t, qs[i%len(qs)], msg(qs[0], n.from, "+15557654321", strconv.Itoa(i)), time.Duration(float64(time.Second)/n.rate))
			}
		})
	}
	wg.Wait()
	masters := map[string]bool{}
	for _, n := range numbers {
		addr, err := masterOf(c, qs[0].base(qs[0].Bucket(n.from))+"ready")
		require.NoError(t, err)
		masters[addr] = true
	}
	t.Logf("numbers spread over %d masters", len(masters))
	require.Greater(t, len(masters), 1, "test numbers should land on several masters")

	const run = 2500 * time.Millisecond
	stop := make(chan struct{})
	wait := runClaimers(t, qs, 20, stop)
	time.Sleep(run)
	close(stop)
	recs := wait()
	for _, n := range numbers {
		var mine []claimRecord
		for _, r := range recs {
			if r.from == n.from {
				mine = append(mine, r)
			}
		}
		slices.SortStableFunc(mine, func(a, b claimRecord) int { return a.at.Compare(b.at) })
		require.NotEmpty(t, mine, n.from)
		for i := range mine {
			require.Equal(t, i, mine[i].seq, "%s: FIFO order across queues", n.from)
			segs := 0
			for j := i; j < len(mine) && mine[j].at.Sub(mine[i].called) < time.Second; j++ {
				segs += mine[j].segs
			}
			require.LessOrEqual(t, float64(segs), n.rate+1, "%s: %d segments in the second after claim %d", n.from, segs, i)
		}
		want := min(n.backlog, int(n.rate*run.Seconds())+1)
		require.InDelta(t, want, len(mine), max(1.5, 0.1*float64(want)), "%s claims", n.from)
	}
}

// clusterSpreadAndReap queues messages from many senders (buckets on every
// master), claims them all from one queue, lets the leases lapse and has
// another queue reap and claim them again: Claim and Reap cover the buckets
// of every master.
func clusterSpreadAndReap(t *testing.T, c *redis.ClusterClient) {
	prefix := clusterPrefix()
	lease := 300 * time.Millisecond
	q1 := newQueue(t, c, prefix, Options{Lease: lease})
	q2 := newQueue(t, c, prefix, Options{Lease: lease})
	const senders = 40
	masters := map[string]bool{}
	for i := range senders {
		from := "+1555100" + strconv.Itoa(1000+i)
		enqueue(t, q1, msg(q1, from, "+15557654321", "x"), 0)
		addr, err := masterOf(c, q1.base(q1.Bucket(from))+"ready")
		require.NoError(t, err)
		masters[addr] = true
	}
	require.Len(t, masters, 3, "senders on every master")
	got := claimAll(t, q1, senders, 3*time.Second)
	require.Len(t, got, senders)
	time.Sleep(lease + 100*time.Millisecond)
	n, err := q2.Reap(context.Background())
	require.NoError(t, err)
	require.Equal(t, senders, n)
	again := claimAll(t, q2, senders, 3*time.Second)
	require.Len(t, again, senders)
	for _, c := range again {
		require.True(t, c.PossibleDuplicate)
		require.NoError(t, q2.Ack(context.Background(), c, nil))
	}
}

// masterOf returns the address of the master serving key's slot.
func masterOf(c *redis.ClusterClient, key string) (string, error) {
	ctx := context.Background()
	m, err := c.MasterForKey(ctx, key)
	if err != nil {
		return "", err
	}
	return m.Options().Addr, nil
}
