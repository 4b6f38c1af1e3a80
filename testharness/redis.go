package testharness

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedRedisAddr is the team's shared Redis, isolated by key prefix.
const SharedRedisAddr = "127.0.0.1:6379"

// RedisServer is a private redis-server process on a loopback port.
type RedisServer struct {
	tb   testing.TB
	addr string
	args []string
	dir  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// StartRedis starts a private redis-server on a free port, with
// `--save "" --appendonly no` unless extraArgs set them, and kills it at
// tb.Cleanup. It fails the test when redis-server is not installed.
func StartRedis(tb testing.TB, extraArgs ...string) (addr string) {
	tb.Helper()
	return StartRedisServer(tb, extraArgs...).Addr()
}

// StartRedisServer is StartRedis returning a handle that can stop and
// restart the server on the same port (data survives only with persistence on).
func StartRedisServer(tb testing.TB, extraArgs ...string) *RedisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redis-server not installed: %v", err)
	}
	args := slices.Clone(extraArgs)
	if !slices.Contains(args, "--save") {
		args = append(args, "--save", "")
	}
	if !slices.Contains(args, "--appendonly") {
		args = append(args, "--appendonly", "no")
	}
	r := &RedisServer{tb: tb, args: args, dir: tb.TempDir()}
	tb.Cleanup(r.Stop)
	var err error
	for range 3 { // the free port may be taken between probe and start
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			break
		}
		r.addr = l.Addr().String()
		_ = l.Close()
		if err = r.start(); err == nil {
			return r
		}
	}
	tb.Fatalf("start redis-server: %v", err)
	return nil
}

// Addr returns "127.0.0.1:port".
func (r *RedisServer) Addr() string { return r.addr }

// Stop kills the server and waits for it (no-op when stopped).
func (r *RedisServer) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd, r.exited = nil, nil
}

// Pause freezes the server (SIGSTOP), as a Redis stalled by its host: it
// accepts connections and buffers commands but answers nothing until
// Resume. Stop still kills it.
func (r *RedisServer) Pause() { r.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT); it then runs what it
// buffered meanwhile, also from connections closed since.
func (r *RedisServer) Resume() { r.signal(syscall.SIGCONT) }

func (r *RedisServer) signal(sig syscall.Signal) {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		r.tb.Fatalf("redis-server: %v to a stopped server", sig)
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.tb.Fatalf("redis-server: %v: %v", sig, err)
	}
}

// Start starts a stopped server again on the same port; it fails the test on error.
func (r *RedisServer) Start() {
	r.tb.Helper()
	if err := r.start(); err != nil {
		r.tb.Fatalf("restart redis-server: %v", err)
	}
}

func (r *RedisServer) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	_, port, _ := net.SplitHostPort(r.addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", r.dir}, r.args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redis: start: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pingRedis(r.addr) == nil {
			r.cmd, r.exited = cmd, exited
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis: exited before answering: %v", waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis: no answer on %s", r.addr)
		}
	}
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("redis: ping answered %q", line)
	}
	return nil
}

var unsafeKeyChars = regexp.MustCompile(`[^A-Za-z0-9_/-]+`)

// RedisPrefix returns a key prefix unique to this test run,
// "test:<TestName>:<random>:", and at tb.Cleanup deletes every key with that
// prefix from the shared Redis (127.0.0.1:6379) with SCAN.
func RedisPrefix(tb testing.TB) string {
	tb.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := "test:" + unsafeKeyChars.ReplaceAllString(tb.Name(), "_") + ":" + hex.EncodeToString(rnd[:]) + ":"
	tb.Cleanup(func() {
		if err := DeleteKeys(context.Background(), SharedRedisAddr, prefix); err != nil {
			tb.Logf("redis prefix cleanup: %v", err)
		}
	})
	return prefix
}

// DeleteKeys deletes every key starting with prefix (which must contain no
// glob characters) from the Redis at addr.
func DeleteKeys(ctx context.Context, addr, prefix string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	batch := make([]string, 0, 500)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return fmt.Errorf("redis: delete keys: %w", err)
			}
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("redis: scan: %w", err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("redis: delete keys: %w", err)
	}
	return nil
}
