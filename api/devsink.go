package api

import (
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"sync"
	"time"
)

// devSinkSize is how many webhook events the development sink keeps.
const devSinkSize = 200

// devSinkMaxBody bounds one stored event.
const devSinkMaxBody = 1 << 20

// DevEvent is one webhook request received by the development sink.
type DevEvent struct {
	ReceivedAt time.Time       `json:"received_at"`
	EventID    string          `json:"event_id,omitempty"`
	Signature  string          `json:"signature,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"` // the body when it is JSON
	Text       string          `json:"text,omitempty"` // the body when it is not JSON
}

// devSink keeps the last events in a ring. It verifies nothing: it is a
// place for `make run` to point the webhook at so a newcomer sees receipts.
type devSink struct {
	mu     sync.Mutex
	events []DevEvent // ring
	next   int
	full   bool
}

func newDevSink(size int) *devSink { return &devSink{events: make([]DevEvent, size)} }

func (d *devSink) add(e DevEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events[d.next] = e
	d.next = (d.next + 1) % len(d.events)
	if d.next == 0 {
		d.full = true
	}
}

// list returns the stored events, newest first.
func (d *devSink) list() []DevEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.next
	if d.full {
		n = len(d.events)
	}
	out := make([]DevEvent, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, d.events[(d.next-i+len(d.events))%len(d.events)])
	}
	return out
}

func (d *devSink) handlePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, devSinkMaxBody))
	if err != nil {
		writeError(w, invalid("", "The event body could not be read (at most 1 MiB): "+err.Error()+"."))
		return
	}
	e := DevEvent{
		ReceivedAt: time.Now().UTC(),
		EventID:    r.Header.Get("Smsgate-Event-Id"),
		Signature:  r.Header.Get("Smsgate-Signature"),
	}
	if json.Valid(body) {
		e.Body = body
	} else {
		e.Text = string(body)
	}
	d.add(e)
	w.WriteHeader(http.StatusNoContent)
}

func (d *devSink) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.list())
}

var devPage = template.Must(template.New("dev").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>smsgate dev events</title>
<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}small{color:#666}</style>
</head><body>
<h1>Webhook events received ({{len .}})</h1>
<p><small>Newest first, last 200 kept in memory, refreshed every 2 s. JSON: <a href="/dev/events">/dev/events</a>.</small></p>
{{range .}}<div><small>{{.ReceivedAt.Format "2006-01-02T15:04:05.000Z07:00"}} {{.EventID}}</small>
<pre>{{if .Body}}{{printf "%s" .Body}}{{else}}{{.Text}}{{end}}</pre></div>
{{else}}<p>No events yet. Send a message and its status events appear here.</p>{{end}}
</body></html>
`))

func (d *devSink) handlePage(w http.ResponseWriter, r *http.Request) {
	events := d.list()
	for i := range events {
		if len(events[i].Body) > 0 {
			var v any
			if json.Unmarshal(events[i].Body, &v) == nil {
				if b, err := json.MarshalIndent(v, "", "  "); err == nil {
					events[i].Body = b
				}
			}
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = devPage.Execute(w, events)
}
