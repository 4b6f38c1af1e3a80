package testharness

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a private Redis Cluster of redis-server processes on loopback
// ports, created with `redis-cli --cluster create` and killed at cleanup.
type Cluster struct {
	tb    testing.TB
	nodes []*RedisServer
}

// ClusterNodeTimeout is the cluster-node-timeout of the nodes StartCluster
// starts: a master unreachable this long is failed over to its replica.
const ClusterNodeTimeout = time.Second

// StartCluster starts masters × (1 + replicasPerMaster) redis-server nodes in
// cluster mode (no persistence, cluster-node-timeout ClusterNodeTimeout),
// joins them with redis-cli --cluster create, and waits until every node
// reports cluster_state:ok and every replica is in sync. masters must be at
// least 3 (redis-cli's minimum). The test is skipped when redis-server or
// redis-cli is not installed.
func StartCluster(tb testing.TB, masters, replicasPerMaster int) *Cluster {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("%s not installed: %v", bin, err)
		}
	}
	if masters < 3 || replicasPerMaster < 0 {
		tb.Fatalf("redis cluster: need at least 3 masters, got %d masters %d replicas each", masters, replicasPerMaster)
	}
	c := &Cluster{tb: tb}
	n := masters * (1 + replicasPerMaster)
	for range n {
		bus, err := freePort()
		if err != nil {
			tb.Fatalf("redis cluster: bus port: %v", err)
		}
		c.nodes = append(c.nodes, StartRedisServer(tb,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout/time.Millisecond)),
			"--appendonly", "no", "--save", ""))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis cluster: create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		tb.Fatalf("redis cluster: %v", err)
	}
	return c
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addrs returns the address of every node (masters and replicas), usable as
// the seed list of a cluster client.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Client returns a cluster client over the nodes, closed at cleanup.
func (c *Cluster) Client() *redis.ClusterClient {
	// A killed master answers no MOVED: reload the slot map every second
	// (as the daemon does), or the client dials the dead node for 60 s.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ClusterStateReloadInterval: time.Second})
	c.tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// Kill kills node i (an index into Addrs) without letting it save or hand
// over anything, as SIGKILL would.
func (c *Cluster) Kill(i int) { c.nodes[i].Stop() }

// Restart starts a killed node again on its port; it rejoins the cluster
// from its nodes.conf (as a replica when it was failed over meanwhile).
func (c *Cluster) Restart(i int) { c.nodes[i].Start() }

// NodeInfo is one line of CLUSTER NODES as seen by a live node.
type NodeInfo struct {
	Index  int    // index into Addrs, -1 when unknown
	ID     string // node id
	Addr   string
	Master bool
	Failed bool   // flagged fail or pfail
	Of     string // a replica's master id
}

// Nodes returns the cluster's view of its nodes, asked from the first live
// node.
func (c *Cluster) Nodes() ([]NodeInfo, error) {
	var lastErr error
	for _, n := range c.nodes {
		text, err := c.node(n.Addr(), func(ctx context.Context, r *redis.Client) (string, error) {
			return r.ClusterNodes(ctx).Result()
		})
		if err != nil {
			lastErr = err
			continue
		}
		return c.parseNodes(text), nil
	}
	return nil, fmt.Errorf("cluster nodes: no live node: %w", lastErr)
}

func (c *Cluster) parseNodes(text string) []NodeInfo {
	var out []NodeInfo
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		ni := NodeInfo{Index: -1, ID: f[0], Addr: addr, Of: f[3]}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				ni.Master = true
			case "fail", "fail?":
				ni.Failed = true
			}
		}
		if ni.Of == "-" {
			ni.Of = ""
		}
		for i, n := range c.nodes {
			if n.Addr() == addr {
				ni.Index = i
			}
		}
		out = append(out, ni)
	}
	return out
}

// Masters returns the indexes of the nodes that are masters now.
func (c *Cluster) Masters() []int {
	c.tb.Helper()
	ns, err := c.Nodes()
	if err != nil {
		c.tb.Fatalf("redis cluster: %v", err)
	}
	var out []int
	for _, n := range ns {
		if n.Master && !n.Failed && n.Index >= 0 {
			out = append(out, n.Index)
		}
	}
	return out
}

// MasterWithReplica returns the index of a master that has a live replica,
// and that replica's index; ok is false when there is none.
func (c *Cluster) MasterWithReplica() (master, replica int, ok bool) {
	c.tb.Helper()
	ns, err := c.Nodes()
	if err != nil {
		c.tb.Fatalf("redis cluster: %v", err)
	}
	byID := map[string]NodeInfo{}
	for _, n := range ns {
		byID[n.ID] = n
	}
	for _, n := range ns {
		if n.Master || n.Failed || n.Of == "" {
			continue
		}
		if m, found := byID[n.Of]; found && m.Master && !m.Failed && m.Index >= 0 && n.Index >= 0 {
			return m.Index, n.Index, true
		}
	}
	return -1, -1, false
}

// Failover makes replica i take over from its master with CLUSTER FAILOVER
// (coordinated: no write acknowledged by the old master is lost) and waits
// until the cluster is healthy again.
func (c *Cluster) Failover(i int) {
	c.tb.Helper()
	_, err := c.node(c.nodes[i].Addr(), func(ctx context.Context, r *redis.Client) (string, error) {
		return r.ClusterFailover(ctx).Result()
	})
	if err != nil {
		c.tb.Fatalf("redis cluster: failover to node %d: %v", i, err)
	}
	// CLUSTER FAILOVER answers OK at once and the replica takes over some
	// time later: until then the cluster is healthy in its old roles, so
	// wait for the node to be a master before waiting for health.
	deadline := time.Now().Add(30 * time.Second)
	for {
		role, err := c.node(c.nodes[i].Addr(), func(ctx context.Context, r *redis.Client) (string, error) {
			v, err := r.Do(ctx, "ROLE").Slice()
			if err != nil || len(v) == 0 {
				return "", err
			}
			s, _ := v[0].(string)
			return s, nil
		})
		if err == nil && role == "master" {
			break
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("redis cluster: node %d not a master 30s after CLUSTER FAILOVER (role %q, %v)", i, role, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		c.tb.Fatalf("redis cluster: after failover: %v", err)
	}
}

// WaitHealthy waits until every live node reports cluster_state:ok with all
// slots assigned, every live node agrees on which nodes are masters, and
// every live replica's link to its master is up.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why error
	for {
		if why = c.healthy(); why == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %w", timeout, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) healthy() error {
	var view string
	live := 0
	for i, n := range c.nodes {
		info, err := c.node(n.Addr(), func(ctx context.Context, r *redis.Client) (string, error) {
			return r.ClusterInfo(ctx).Result()
		})
		if err != nil {
			continue // killed
		}
		live++
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_assigned:16384") {
			return fmt.Errorf("node %d (%s): cluster state not ok", i, n.Addr())
		}
		nodes, err := c.node(n.Addr(), func(ctx context.Context, r *redis.Client) (string, error) {
			return r.ClusterNodes(ctx).Result()
		})
		if err != nil {
			return fmt.Errorf("node %d: cluster nodes: %w", i, err)
		}
		var masters []string
		for _, ni := range c.parseNodes(nodes) {
			if ni.Master && !ni.Failed {
				masters = append(masters, ni.Addr)
			}
		}
		slices.Sort(masters)
		v := fmt.Sprint(masters)
		if view == "" {
			view = v
		} else if v != view {
			return fmt.Errorf("nodes disagree on the masters: %s vs %s", view, v)
		}
		repl, err := c.node(n.Addr(), func(ctx context.Context, r *redis.Client) (string, error) {
			return r.Info(ctx, "replication").Result()
		})
		if err != nil {
			return fmt.Errorf("node %d: info: %w", i, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("node %d (%s): replica not in sync", i, n.Addr())
		}
	}
	if live == 0 {
		return fmt.Errorf("no live node")
	}
	return nil
}

// node runs f against one node with a short-lived plain client.
func (c *Cluster) node(addr string, f func(ctx context.Context, r *redis.Client) (string, error)) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer r.Close()
	return f(ctx, r)
}
