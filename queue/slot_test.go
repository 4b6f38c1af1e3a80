package queue

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

// crc16 is the CRC16-CCITT (XModem) Redis Cluster uses for key slots.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is the Redis Cluster slot of key (hash tags included).
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16([]byte(key)) % 16384)
}

func TestKeySlotFunction(t *testing.T) {
	// Known values from the Redis Cluster specification and CLUSTER KEYSLOT.
	require.Equal(t, 12739, keySlot("123456789"))
	require.Equal(t, keySlot("foo"), keySlot("{foo}bar"))
	require.Equal(t, keySlot("{user1000}.following"), keySlot("{user1000}.followers"))
	require.Equal(t, keySlot("foo{}{bar}"), int(crc16([]byte("foo{}{bar}"))%16384))
}

// TestKeysOfOneSlot checks the keys Go builds for a bucket share its slot,
// and that the prefix cannot smuggle in a hash tag.
func TestKeysOfOneSlot(t *testing.T) {
	q := newQueue(t, miniClient(t), "smsgate:", Options{})
	for b := range q.Buckets() {
		base := q.base(b)
		want := keySlot(base + "ready")
		for _, suffix := range []string{"inflight", "events", "evseq", "q:+1555", "s:+1555", "m:msg_x", "idem:acme:k{x}", "optout:+1", "conv:+1"} {
			require.Equal(t, want, keySlot(base+suffix), suffix)
		}
	}
	index, held := q.cidKeys("abc{def}")
	require.Equal(t, keySlot(index), keySlot(held))
}

// startClusterRedis starts a single-node Redis Cluster owning every slot.
// Redis then refuses any script that touches a key outside its declared slot.
func startClusterRedis(t *testing.T) *redis.ClusterClient {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	dir := t.TempDir()
	cmd := exec.Command(path, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
		"--cluster-config-file", dir+"/nodes.conf", "--dir", dir, "--save", "", "--appendonly", "no")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	single := redis.NewClient(&redis.Options{Addr: addr})
	defer single.Close()
	ctx := context.Background()
	require.Eventually(t, func() bool { return single.Ping(ctx).Err() == nil }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, single.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err())
	require.Eventually(t, func() bool {
		info, err := single.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, 10*time.Second, 20*time.Millisecond)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestScriptsStayInOneSlot(t *testing.T) {
	c := startClusterRedis(t)
	ctx := context.Background()

	// Control: the server does refuse a script that leaves its slot.
	err := c.Eval(ctx, "#!lua\nredis.call('SET', KEYS[1], 1); return redis.call('SET', 'elsewhere', 1)", []string{"{a}k"}).Err()
	require.Error(t, err)
	require.Contains(t, err.Error(), "slot")

	q := newQueue(t, c, "smsgate:", Options{Lease: 300 * time.Millisecond})
	from, to := "+15550001111", "+15557654321"
	m1 := msg(q, from, to, "one")
	m1.Segments = 2
	res, err := q.Enqueue(ctx, EnqueueRequest{Msg: m1, Interval: time.Millisecond, MaxDepth: 10, CheckOptOut: true,
		IdempotencyKey: "k", RequestHash: "h", Response: []byte("r"), Notice: msg(q, from, to, "notice")})
	require.NoError(t, err)
	require.True(t, res.NoticeQueued)
	res, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "one"), IdempotencyKey: "k", RequestHash: "h"})
	require.NoError(t, err)
	require.True(t, res.Replayed)
	expired := msg(q, from, to, "expired")
	expired.ExpiresAt = time.Now().Add(-time.Second)
	enqueue(t, q, expired, -1)
	enqueue(t, q, msg(q, from, to, "three"), -1)
	require.NoError(t, q.SetRate(ctx, from, 0))
	require.NoError(t, q.OptOut(ctx, from, "+1999"))
	_, err = q.OptOuts(ctx, from)
	require.NoError(t, err)
	require.NoError(t, q.MarkInbound(ctx, from, "+1888"))
	require.NoError(t, q.AppendReceived(ctx, "acme", message.ReceivedData{ID: "mo", From: "+1888", To: from}))

	step := func() Claimed {
		got := claimAll(t, q, 1, 2*time.Second)
		require.Len(t, got, 1)
		return got[0]
	}
	notice := step()
	require.NoError(t, q.Renew(ctx, notice, time.Second))
	require.NoError(t, q.Retry(ctx, step2(t, q, notice), 0, message.Error{Code: "throttled"}))
	notice = step()
	require.NoError(t, q.Requeue(ctx, notice))
	notice = step()
	require.NoError(t, q.Fail(ctx, notice, message.Error{Code: "x", Message: "y"}))

	c1 := step()
	require.Equal(t, m1.ID, c1.Msg.ID)
	r, err := q.ApplyReceipt(ctx, Receipt{CarrierID: "seg-1", State: message.StatusDelivered})
	require.NoError(t, err)
	require.True(t, r.Held)
	require.NoError(t, q.Ack(ctx, c1, []string{"seg-0", "seg-1"}))
	r, err = q.ApplyReceipt(ctx, Receipt{CarrierID: "seg-0", State: message.StatusDelivered})
	require.NoError(t, err)
	require.Equal(t, message.StatusDelivered, r.Status)
	_, _, ok, err := q.LookupCarrierID(ctx, "seg-0")
	require.NoError(t, err)
	require.True(t, ok)

	c3 := step() // the expired message was dropped on the way
	require.Equal(t, "three", c3.Msg.Text)
	time.Sleep(350 * time.Millisecond)
	n, err := q.Reap(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	rec, err := q.Get(ctx, expired.ID)
	require.NoError(t, err)
	require.Equal(t, message.StatusExpired, rec.Status)
}

// step2 returns c unchanged; it exists to keep the sequence above readable.
func step2(_ *testing.T, _ *Queue, c Claimed) Claimed { return c }
