package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// sink is the webhook receiver: it counts events by type and status and
// which user messages (by client_ref) were delivered. It checks nothing
// heavy (no signature verification): it stands in for a cheap consumer.
type sink struct {
	srv *http.Server
	ln  net.Listener

	mu        sync.Mutex
	byKind    map[string]int // "message.status:sent", "message.received", …
	delivered []bool         // by message index (client_ref b<i>)
	user      int            // distinct user messages delivered
	dups      int            // repeated delivered events of a user message
	notices   int            // delivered events without a bench client_ref (notices)
	bad       int            // bodies that did not parse
	firstDlv  time.Time
	lastDlv   time.Time
	lastEvent time.Time
	total     int
}

// sinkCounts is a snapshot of a sink's counters.
type sinkCounts struct {
	ByKind          map[string]int
	UserDelivered   int
	DupDelivered    int
	NoticeDelivered int
	Bad             int
	Total           int
	FirstDelivered  time.Time
	LastDelivered   time.Time
	LastEvent       time.Time
}

func newSink(n int) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{ln: ln, byKind: map[string]int{}, delivered: make([]bool, n)}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL is where the daemon should POST events.
func (s *sink) URL() string { return "http://" + s.ln.Addr().String() + "/events" }

// KannelURL is the dlr-url of Kannel's delivery reports (-kannel).
func (s *sink) KannelURL() string { return "http://" + s.ln.Addr().String() + "/kannel" }

// Close stops the server.
func (s *sink) Close() error { return s.srv.Close() }

type sinkEvent struct {
	Type string `json:"type"`
	Data struct {
		Status    string `json:"status"`
		ClientRef string `json:"client_ref"`
	} `json:"data"`
}

// ServeHTTP counts one event and answers 204 (or, at /kannel, one Kannel
// delivery report).
func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/kannel" {
		s.handleKannelDLR(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	now := time.Now()
	var ev sinkEvent
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	s.mu.Lock()
	s.record(now, ev, err == nil)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) record(now time.Time, ev sinkEvent, ok bool) {
	s.total++
	s.lastEvent = now
	if !ok {
		s.bad++
		return
	}
	kind := ev.Type
	if ev.Data.Status != "" {
		kind += ":" + ev.Data.Status
	}
	s.byKind[kind]++
	if ev.Type != "message.status" || ev.Data.Status != "delivered" {
		return
	}
	if s.firstDlv.IsZero() {
		s.firstDlv = now
	}
	s.lastDlv = now
	i, isUser := parseClientRef(ev.Data.ClientRef)
	switch {
	case !isUser:
		s.notices++
	case i >= len(s.delivered):
		s.bad++
	case s.delivered[i]:
		s.dups++
	default:
		s.delivered[i] = true
		s.user++
	}
}

// deliveredSet is, by message index, whether a delivered event came.
func (s *sink) deliveredSet() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.delivered...)
}

// counts returns a snapshot.
func (s *sink) counts() sinkCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := sinkCounts{ByKind: make(map[string]int, len(s.byKind)), UserDelivered: s.user, DupDelivered: s.dups,
		NoticeDelivered: s.notices, Bad: s.bad, Total: s.total,
		FirstDelivered: s.firstDlv, LastDelivered: s.lastDlv, LastEvent: s.lastEvent}
	for k, v := range s.byKind {
		c.ByKind[k] = v
	}
	return c
}
