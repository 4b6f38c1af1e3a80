package testharness

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// WebhookEvent is one request the sink received.
type WebhookEvent struct {
	Body   []byte
	Header http.Header
	At     time.Time
	Status int // what the sink answered

	// Decoded from Body when it is an API.md section 3 event.
	ID        string
	Type      string
	CreatedAt string
	Data      json.RawMessage
}

// WebhookSink is an HTTP server on 127.0.0.1 that records the events POSTed
// to it and answers 200, or a chosen failure status.
type WebhookSink struct {
	srv *httptest.Server

	mu       sync.Mutex
	failing  int
	delay    time.Duration
	waiting  int // requests held back by delay now
	accepted []WebhookEvent
	attempts []WebhookEvent
	changed  chan struct{} // closed and replaced on every request
}

// NewWebhookSink starts a sink. With a non-nil tb it is closed at tb.Cleanup;
// with nil the caller calls Close.
func NewWebhookSink(tb testing.TB) *WebhookSink {
	s := &WebhookSink{changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	if tb != nil {
		tb.Cleanup(s.Close)
	}
	return s
}

func (s *WebhookSink) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	status, delay := s.failing, s.delay
	s.waiting++
	s.mu.Unlock()
	gone := false
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			gone = true
		}
	}
	s.mu.Lock()
	s.waiting--
	s.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	if gone {
		// The sender gave up (or died) before the answer: it was not
		// delivered, whatever the sink would have answered.
		status = statusClientGone
	}
	ev := WebhookEvent{Body: body, Header: r.Header.Clone(), At: time.Now(), Status: status}
	var env struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		CreatedAt string          `json:"created_at"`
		Data      json.RawMessage `json:"data"`
	}
	if json.Unmarshal(body, &env) == nil {
		ev.ID, ev.Type, ev.CreatedAt, ev.Data = env.ID, env.Type, env.CreatedAt, env.Data
	}
	s.mu.Lock()
	s.attempts = append(s.attempts, ev)
	if status >= 200 && status < 300 {
		s.accepted = append(s.accepted, ev)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	w.WriteHeader(status)
}

// URL returns the sink's URL; any path is accepted.
func (s *WebhookSink) URL() string { return s.srv.URL }

// Close shuts the server down.
func (s *WebhookSink) Close() { s.srv.Close() }

// SetFailing makes the sink answer status to every request (0 = answer 200).
func (s *WebhookSink) SetFailing(status int) {
	s.mu.Lock()
	s.failing = status
	s.mu.Unlock()
}

// statusClientGone is the status an attempt is recorded with when its
// sender went away while the sink held the answer back (nginx's 499).
const statusClientGone = 499

// InFlight is how many requests the sink is holding back (SetDelay) now.
func (s *WebhookSink) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// SetDelay makes the sink wait d before answering (to exercise timeouts). A
// request whose sender goes away meanwhile is recorded as an attempt with
// status 499, not as an event.
func (s *WebhookSink) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Events returns the requests answered with 2xx, in arrival order.
func (s *WebhookSink) Events() []WebhookEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]WebhookEvent(nil), s.accepted...)
}

// Attempts returns every request, failed ones included, in arrival order.
func (s *WebhookSink) Attempts() []WebhookEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]WebhookEvent(nil), s.attempts...)
}

// WaitFor waits until at least n events were answered with 2xx and returns
// them; after timeout it returns what arrived and an error.
func (s *WebhookSink) WaitFor(n int, timeout time.Duration) ([]WebhookEvent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := len(s.accepted), s.changed
		evs := append([]WebhookEvent(nil), s.accepted...)
		s.mu.Unlock()
		if got >= n {
			return evs, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return evs, fmt.Errorf("webhook sink: %d of %d events after %v", got, n, timeout)
		}
	}
}

// VerifySignature checks a Smsgate-Signature header value
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>" (API.md section 3).
func VerifySignature(secret, header string, body []byte) error {
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	if ts == "" || sig == "" {
		return errors.New("signature: want t=<unix>,v1=<hex>")
	}
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return fmt.Errorf("signature: timestamp: %w", err)
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return fmt.Errorf("signature: v1: %w", err)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errors.New("signature: mismatch")
	}
	return nil
}
