package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultDedupWindow is how long a repeated identical warning or error is
// held back (and counted) after it was logged once.
const DefaultDedupWindow = time.Minute

// LogHandlerOptions configure a LogHandler.
type LogHandlerOptions struct {
	// DedupWindow: a warning or error identical to one logged less than this
	// long ago is counted instead of written; the count is written as
	// "<message> (repeated N times)" once the window has passed (at the next
	// log line) or on Flush. Default DefaultDedupWindow; negative disables.
	DedupWindow time.Duration
	// DefaultComponent is the component key added to lines that carry none.
	// Default "smsgate".
	DefaultComponent string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// LogHandler wraps a slog.Handler with smsgate's logging rules:
//
//   - at info level and above, E.164-looking values ("+" then 7 to 15 digits)
//     are masked wherever they appear in the message or in an attribute
//     (+15551231111 becomes +1555***1111) and message text is dropped
//     (attributes named text, body, message_text or short_message);
//     debug lines are written as they are;
//   - every line carries a component key;
//   - a warning or error identical to one written within the dedup window
//     (same logger scope, level, message and attributes, ignoring id-like
//     keys) is counted instead of written, and the count is written once as
//     "<message> (repeated N times)".
type LogHandler struct {
	raw, masked slog.Handler // inner handler with raw / masked WithAttrs
	shared      *logShared
	scope       string // rendered WithAttrs/WithGroup chain, part of the dedup key
	component   bool   // a component attribute is already in scope
	grouped     bool   // a group is open: attributes added now land inside it
}

type logShared struct {
	window    time.Duration
	component string
	now       func() time.Time

	mu        sync.Mutex
	seen      map[string]*dupEntry
	lastSweep time.Time
}

type dupEntry struct {
	first      time.Time
	suppressed int
	rec        slog.Record // the masked record as first written
	h          slog.Handler
}

// NewLogHandler wraps inner.
func NewLogHandler(inner slog.Handler, opts LogHandlerOptions) *LogHandler {
	if opts.DedupWindow == 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	if opts.DefaultComponent == "" {
		opts.DefaultComponent = "smsgate"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &LogHandler{
		raw:    inner,
		masked: inner,
		shared: &logShared{window: opts.DedupWindow, component: opts.DefaultComponent, now: opts.Now, seen: make(map[string]*dupEntry)},
	}
}

// NewLogger builds the daemon's logger: format "text" or "json", level
// "debug", "info", "warn" or "error", written to w (stderr when nil),
// through a LogHandler.
func NewLogger(format, level string, w io.Writer) (*slog.Logger, *LogHandler, error) {
	if w == nil {
		w = os.Stderr
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(level)) {
		return nil, nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	var inner slog.Handler
	switch format {
	case "text", "":
		inner = slog.NewTextHandler(w, ho)
	case "json":
		inner = slog.NewJSONHandler(w, ho)
	default:
		return nil, nil, fmt.Errorf("log format %q: want text or json", format)
	}
	h := NewLogHandler(inner, LogHandlerOptions{})
	return slog.New(h), h, nil
}

// Enabled implements slog.Handler.
func (h *LogHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.raw.Enabled(ctx, l) }

// WithAttrs implements slog.Handler. A second component attribute (a
// component adding its own to a logger that already names it) is dropped.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	n := *h
	kept := make([]slog.Attr, 0, len(attrs))
	masked := make([]slog.Attr, 0, len(attrs))
	var sb strings.Builder
	sb.WriteString(h.scope)
	for _, a := range attrs {
		if a.Key == "component" && !h.grouped {
			if n.component {
				continue
			}
			n.component = true
		}
		kept = append(kept, a)
		m := maskAttr(a)
		masked = append(masked, m)
		writeAttr(&sb, m)
	}
	n.raw = h.raw.WithAttrs(kept)
	n.masked = h.masked.WithAttrs(masked)
	n.scope = sb.String()
	return &n
}

// WithGroup implements slog.Handler.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.raw = h.raw.WithGroup(name)
	n.masked = h.masked.WithGroup(name)
	n.scope = h.scope + "[" + name + "]"
	n.grouped = true
	return &n
}

// Handle implements slog.Handler.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	needComponent := !h.component && !h.grouped
	if r.Level < slog.LevelInfo {
		if needComponent && !hasAttr(r, "component") {
			r = r.Clone()
			r.AddAttrs(slog.String("component", h.shared.component))
		}
		return h.raw.Handle(ctx, r)
	}
	m := slog.NewRecord(r.Time, r.Level, maskString(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" {
			needComponent = false
		}
		m.AddAttrs(maskAttr(a))
		return true
	})
	if needComponent {
		m.AddAttrs(slog.String("component", h.shared.component))
	}
	if r.Level < slog.LevelWarn || h.shared.window < 0 {
		return h.masked.Handle(ctx, m)
	}
	var errs []error
	for _, s := range h.shared.admit(h, m) {
		errs = append(errs, s.h.Handle(ctx, s.rec))
	}
	return errors.Join(errs...)
}

// pending is a record to write after the dedup lock is released.
type pending struct {
	h   slog.Handler
	rec slog.Record
}

// admit decides whether m is written, and collects the summaries of
// windows that have passed. It returns what to write, in order.
func (s *logShared) admit(h *LogHandler, m slog.Record) []pending {
	now := s.now()
	key := dedupKey(h.scope, m)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []pending
	if now.Sub(s.lastSweep) >= time.Second || s.seen[key] != nil {
		s.lastSweep = now
		out = s.sweepLocked(now, false)
	}
	if e := s.seen[key]; e != nil {
		e.suppressed++
		return out
	}
	s.seen[key] = &dupEntry{first: now, rec: m.Clone(), h: h.masked}
	return append(out, pending{h: h.masked, rec: m})
}

// sweepLocked removes the entries whose window passed (all of them when
// all is set) and returns the summaries of those that were repeated.
func (s *logShared) sweepLocked(now time.Time, all bool) []pending {
	var out []pending
	for k, e := range s.seen {
		if !all && now.Sub(e.first) < s.window {
			continue
		}
		delete(s.seen, k)
		if e.suppressed == 0 {
			continue
		}
		rec := slog.NewRecord(now, e.rec.Level, fmt.Sprintf("%s (repeated %d times)", e.rec.Message, e.suppressed), e.rec.PC)
		e.rec.Attrs(func(a slog.Attr) bool { rec.AddAttrs(a); return true })
		rec.AddAttrs(slog.Int("repeated", e.suppressed), slog.Duration("since", now.Sub(e.first).Round(time.Millisecond)))
		out = append(out, pending{h: e.h, rec: rec})
	}
	slices.SortFunc(out, func(a, b pending) int { return strings.Compare(a.rec.Message, b.rec.Message) })
	return out
}

// Flush writes the pending "repeated N times" lines (at shutdown).
func (h *LogHandler) Flush(ctx context.Context) {
	s := h.shared
	s.mu.Lock()
	out := s.sweepLocked(s.now(), true)
	s.mu.Unlock()
	for _, p := range out {
		_ = p.h.Handle(ctx, p.rec)
	}
}

// volatileKeys are left out of the dedup key: they differ between
// repetitions of one failure.
var volatileKeys = map[string]bool{"id": true, "message_id": true, "event_id": true, "attempt": true, "count": true, "in_flight": true, "seq": true}

func dedupKey(scope string, r slog.Record) string {
	var sb strings.Builder
	sb.WriteString(scope)
	sb.WriteString("|")
	sb.WriteString(r.Level.String())
	sb.WriteString("|")
	sb.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if !volatileKeys[a.Key] {
			writeAttr(&sb, a)
		}
		return true
	})
	return sb.String()
}

func writeAttr(sb *strings.Builder, a slog.Attr) {
	sb.WriteString(" ")
	sb.WriteString(a.Key)
	sb.WriteString("=")
	sb.WriteString(a.Value.String())
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// textKeys name attributes that may hold message text: dropped at info.
var textKeys = map[string]bool{"text": true, "body": true, "message_text": true, "short_message": true}

// maskAttr masks phone numbers in an attribute and drops message text.
func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if textKeys[strings.ToLower(a.Key)] {
		return slog.String(a.Key, "[redacted]")
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, maskString(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]slog.Attr, len(g))
		for i, ga := range g {
			out[i] = maskAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, maskString(x.Error()))
		case []string:
			out := make([]string, len(x))
			for i, s := range x {
				out[i] = maskString(s)
			}
			return slog.Any(a.Key, out)
		case fmt.Stringer:
			return slog.String(a.Key, maskString(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

var e164Re = regexp.MustCompile(`\+[1-9][0-9]{6,14}`)

// maskString replaces every E.164-looking number in s by a masked form:
// the first four and last four digits of a number of ten digits or more
// (+15551231111 -> +1555***1111), else the first and the last two.
func maskString(s string) string {
	if !strings.Contains(s, "+") {
		return s
	}
	return e164Re.ReplaceAllStringFunc(s, MaskNumber)
}

// MaskNumber masks one E.164 number for logs: "+1555***1111".
func MaskNumber(n string) string {
	digits := strings.TrimPrefix(n, "+")
	if _, err := strconv.ParseUint(digits, 10, 64); err != nil || len(digits) < 7 {
		return n
	}
	if len(digits) >= 10 {
		return "+" + digits[:4] + "***" + digits[len(digits)-4:]
	}
	return "+" + digits[:1] + "***" + digits[len(digits)-2:]
}
