package testharness

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP proxy on a loopback port that forwards every connection to
// a target and plays network faults on command: Cut (reset every open
// connection), Blackhole (forward nothing until Restore, like a partition
// that later heals), HalfPDU (cut each open connection in the middle of its
// next chunk of data). Put it between smsgate and the simulator to break SMPP
// links at chosen moments. Safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	gate     chan struct{} // closed while forwarding; open (blocking) while blackholed
	conns    map[*proxyConn]struct{}
	accepted int
}

// proxyConn is one client connection and its upstream connection.
type proxyConn struct {
	client, upstream net.Conn
	done             chan struct{} // closed by shut
	once             sync.Once

	mu   sync.Mutex
	half bool // the next chunk, either direction, is forwarded in half, then the pair is cut
}

// NewProxy listens on 127.0.0.1:0 and forwards each accepted connection to
// target ("host:port"), dialled when the connection is accepted.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: listen: %w", err)
	}
	gate := make(chan struct{})
	close(gate)
	p := &Proxy{target: target, ln: ln, gate: gate, conns: make(map[*proxyConn]struct{})}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the proxy's listening address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Conns returns how many connections are open now.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Accepted returns how many connections were accepted since the start.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut resets every open connection (both sides see the connection drop).
// New connections are accepted and forwarded as before.
func (p *Proxy) Cut() {
	for _, c := range p.snapshot() {
		c.shut(true)
	}
}

// Blackhole stops forwarding in both directions: open connections stay open
// but carry nothing, new connections are accepted (and their target dialled)
// but carry nothing either. What is read meanwhile is held, not dropped, and
// delivered after Restore, as TCP retransmission would after a partition.
// A side that closes during the blackhole is seen by the other side after
// Restore.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default: // already blackholed
	}
}

// HalfPDU arms every open connection: the next chunk of data read on it, in
// either direction, is forwarded only in half (the first len/2 bytes, so an
// SMPP PDU arrives truncated), then both sides of that connection are cut.
// Connections opened later are not armed.
func (p *Proxy) HalfPDU() {
	for _, c := range p.snapshot() {
		c.mu.Lock()
		c.half = true
		c.mu.Unlock()
	}
}

// Restore forwards normally again after Blackhole (held data is delivered).
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// Close stops listening, closes every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	for _, c := range p.snapshot() {
		c.shut(false)
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("proxy: close: %w", err)
	}
	return nil
}

func (p *Proxy) snapshot() []*proxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		out = append(out, c)
	}
	return out
}

func (p *Proxy) currentGate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate
}

func (p *Proxy) acceptLoop() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

func (p *Proxy) serve(client net.Conn) {
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	c := &proxyConn{client: client, upstream: upstream, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.accepted++
	p.mu.Unlock()

	var pipes sync.WaitGroup
	pipes.Go(func() { p.pipe(c, client, upstream) })
	pipes.Go(func() { p.pipe(c, upstream, client) })
	pipes.Wait()
	c.shut(false)
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// pipe copies from src to dst chunk by chunk, holding each chunk while the
// proxy is blackholed and cutting the pair after a half chunk when armed.
func (p *Proxy) pipe(c *proxyConn, src, dst net.Conn) {
	defer c.shut(false)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			select {
			case <-p.currentGate():
			case <-c.done:
				return
			}
			c.mu.Lock()
			half := c.half
			c.half = false
			c.mu.Unlock()
			if half {
				_, _ = dst.Write(buf[:n/2])
				c.shut(true)
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if rerr != nil {
			// The source side closed: wait for the gate so that a close
			// during a blackhole is seen only after Restore.
			select {
			case <-p.currentGate():
			case <-c.done:
			}
			return
		}
	}
}

// shut closes both sides once; reset makes the close abortive (RST).
func (c *proxyConn) shut(reset bool) {
	c.once.Do(func() {
		if reset {
			for _, nc := range []net.Conn{c.client, c.upstream} {
				if tc, ok := nc.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
		}
		close(c.done)
		_ = c.client.Close()
		_ = c.upstream.Close()
	})
}
