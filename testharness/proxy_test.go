package testharness

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer echoes every byte back on each connection it accepts.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c); _ = c.Close() })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newTestProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := NewProxy(echoServer(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

func dialProxy(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.Eventually(t, func() bool { return p.Conns() >= 1 }, 2*time.Second, time.Millisecond)
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within d.
func roundTrip(c net.Conn, msg string, d time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func TestProxyForwards(t *testing.T) {
	p := newTestProxy(t)
	c := dialProxy(t, p)
	got, err := roundTrip(c, "hello through the proxy", time.Second)
	require.NoError(t, err)
	require.Equal(t, "hello through the proxy", got)
	require.Equal(t, 1, p.Accepted())
}

func TestProxyCutResetsOpenConnectionsOnly(t *testing.T) {
	p := newTestProxy(t)
	c := dialProxy(t, p)
	_, err := roundTrip(c, "before", time.Second)
	require.NoError(t, err)

	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the cut connection must be closed")
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed, not merely silent: %v", err)
	require.Eventually(t, func() bool { return p.Conns() == 0 }, 2*time.Second, time.Millisecond)

	c2 := dialProxy(t, p)
	got, err := roundTrip(c2, "after", time.Second)
	require.NoError(t, err)
	require.Equal(t, "after", got)
	require.Equal(t, 2, p.Accepted())
}

func TestProxyBlackholeHoldsUntilRestore(t *testing.T) {
	p := newTestProxy(t)
	c := dialProxy(t, p)
	p.Blackhole()
	p.Blackhole() // idempotent

	_, err := roundTrip(c, "held", 150*time.Millisecond)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "nothing may come back while blackholed: %v", err)

	// A connection opened during the blackhole is accepted but silent too.
	c2 := dialProxy(t, p)
	_, err = roundTrip(c2, "x", 100*time.Millisecond)
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "new connections are blackholed: %v", err)

	p.Restore()
	p.Restore() // idempotent
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "held", string(buf), "held data is delivered after Restore")
	_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = io.ReadFull(c2, buf[:1])
	require.NoError(t, err)
	require.Equal(t, "x", string(buf[:1]))
}

func TestProxyHalfPDUCutsInTheMiddle(t *testing.T) {
	p := newTestProxy(t)
	c := dialProxy(t, p)
	p.HalfPDU()
	msg := "0123456789abcdef" // one 16-byte "PDU"
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := io.ReadAll(bufio.NewReader(c))
	// The upstream got 8 bytes and echoed at most those before the cut.
	require.LessOrEqual(t, len(got), len(msg)/2, "at most half came through: %q (%v)", got, err)
	require.Equal(t, msg[:len(got)], string(got))
	require.Eventually(t, func() bool { return p.Conns() == 0 }, 2*time.Second, time.Millisecond)

	// A new connection is not armed.
	c2 := dialProxy(t, p)
	got2, err := roundTrip(c2, msg, time.Second)
	require.NoError(t, err)
	require.Equal(t, msg, got2)
}

func TestProxyCloseEndsEverything(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	require.NoError(t, err)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return p.Conns() == 1 }, 2*time.Second, time.Millisecond)
	p.Blackhole() // Close must not hang on held data
	_, _ = c.Write([]byte("stuck"))
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	_, err = net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond)
	require.Error(t, err, "no longer listening")
}

func TestProxyUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	p, err := NewProxy(dead)
	require.NoError(t, err)
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the client is closed when the target cannot be dialled")
	require.Equal(t, 0, p.Accepted())
}
