package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// serveFloorRaw is serveFloor with hand-written HTTP/1.1 on net.Conn instead
// of net/http, on both sides: a goroutine per client connection that reads
// a request (request line, headers, Content-Length body) and writes the
// answer, and per worker one keep-alive connection to the webhook that
// writes a POST and reads its answer. It implements only what the
// load generator and the sink use (no chunked bodies, no pipelining, no
// timeouts), so it is a bench reference, not a server: what the contract's
// HTTP traffic costs with the least Go can do above the sockets.
func serveFloorRaw(ctx context.Context, ln net.Listener, webhook string, core *floorCore, workers int) error {
	u, err := url.Parse(webhook)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		core.drain()
		return fmt.Errorf("-webhook %q: want http://host:port/path", webhook)
	}
	var posters sync.WaitGroup
	for range workers {
		posters.Go(func() {
			p := &rawPoster{host: u.Host, path: u.RequestURI()}
			defer p.close()
			for ev := range core.events {
				if err := p.post(ev); err != nil {
					fmt.Fprintln(os.Stderr, "floor-gateway: post:", err)
				}
			}
		})
	}

	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	var handlers sync.WaitGroup
	accepted := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			handlers.Go(func() {
				serveRawConn(c, core)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				_ = c.Close()
			})
		}
	}()
	var serveErr error
	select {
	case <-ctx.Done():
		_ = ln.Close()
		<-accepted // the accept loop has stopped: every connection is in conns
	case serveErr = <-accepted: // the listener failed
		_ = ln.Close()
	}
	mu.Lock()
	for c := range conns {
		_ = c.SetReadDeadline(time.Now()) // ends the handler's wait for a request
	}
	mu.Unlock()
	handlers.Wait()
	core.drain()
	posters.Wait()
	return serveErr
}

// serveRawConn answers requests on c until it closes or sends something
// this minimal server does not read.
func serveRawConn(c net.Conn, core *floorCore) {
	br := bufio.NewReaderSize(c, 8192)
	bw := bufio.NewWriterSize(c, 4096)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		ok := bytes.HasPrefix(line, []byte("POST /v1/messages "))
		n, err := readRawHeaders(br)
		if err != nil || n < 0 || n > 64<<10 {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		var resp []byte
		err = errFloorBody
		if ok {
			resp, err = core.accept(body)
		}
		switch {
		case err == nil:
			fmt.Fprintf(bw, "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(resp))
			_, _ = bw.Write(resp)
		case errors.Is(err, errFloorBody):
			_, _ = bw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nbad request\n")
		default:
			_, _ = bw.WriteString("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nunavailable\n")
		}
		if bw.Flush() != nil {
			return
		}
	}
}

// readRawHeaders reads header lines up to the blank line and returns the
// Content-Length (0 when there is none).
func readRawHeaders(br *bufio.Reader) (int, error) {
	n := 0
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			return n, nil
		}
		name, value, found := bytes.Cut(h, []byte(":"))
		if found && bytes.EqualFold(name, []byte("Content-Length")) {
			if n, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, fmt.Errorf("content-length %q: %w", value, err)
			}
		}
	}
}

// rawPoster POSTs events over one keep-alive connection, dialled again
// after an error.
type rawPoster struct {
	host, path string
	c          net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
}

func (p *rawPoster) close() {
	if p.c != nil {
		_ = p.c.Close()
		p.c = nil
	}
}

// post sends one event; a failed connection is dialled again once.
func (p *rawPoster) post(ev floorEvent) error {
	body, id, sig := floorEventBody(ev)
	var err error
	for range 2 {
		if err = p.roundTrip(body, id, sig); err == nil {
			return nil
		}
		p.close()
		var status statusError
		if errors.As(err, &status) {
			return err // an answer, not a broken connection
		}
	}
	return err
}

type statusError int

func (s statusError) Error() string { return "http status " + strconv.Itoa(int(s)) }

func (p *rawPoster) roundTrip(body []byte, id, sig string) error {
	if p.c == nil {
		c, err := net.Dial("tcp", p.host)
		if err != nil {
			return err
		}
		p.c, p.br, p.bw = c, bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)
	}
	fmt.Fprintf(p.bw, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: smsgate-webhook\r\nContent-Type: application/json\r\nSmsgate-Event-Id: %s\r\nSmsgate-Signature: %s\r\nContent-Length: %d\r\n\r\n",
		p.path, p.host, id, sig, len(body))
	_, _ = p.bw.Write(body)
	if err := p.bw.Flush(); err != nil {
		return err
	}
	line, err := p.br.ReadSlice('\n')
	if err != nil {
		return err
	}
	// "HTTP/1.1 204 No Content"
	_, rest, _ := bytes.Cut(line, []byte(" "))
	code, _, _ := bytes.Cut(rest, []byte(" "))
	status, err := strconv.Atoi(string(bytes.TrimSpace(code)))
	if err != nil {
		return fmt.Errorf("status line %q", line)
	}
	n, err := readRawHeaders(p.br)
	if err != nil {
		return err
	}
	if _, err := p.br.Discard(n); err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return statusError(status)
	}
	return nil
}
