package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// event is one stream entry as written by the queue package.
type event struct {
	ID   string // evt_…, stable across retries
	Type string // message.status | message.received
	Org  string
	Data []byte // raw JSON object, copied verbatim into the body
	At   string // RFC 3339 UTC, becomes created_at
}

// Stream entries come in two formats:
//
//   - old (written by older versions): fields id ("evt_<µs>_<bucket>_<seq>"),
//     type, org, data and at (RFC 3339). Their id and at are sent unchanged, so
//     entries queued before an upgrade are delivered with the ids they had.
//   - new: fields type, org and data only. The event id and created_at derive
//     from the bucket number N of the stream ("<prefix>{b<N>}:events") and the
//     stream entry ID "<ms>-<seq>": the id is "evt_b<N>_<ms>_<seq>" and
//     created_at is <ms> as RFC 3339 UTC with milliseconds
//     ("2026-11-30T00:15:54.123Z"). Each bucket has one stream and Redis never
//     reuses an entry ID within a stream, so the id is unique per Redis dataset
//     (barring a stream deleted and re-created under a clock set back); it is
//     the same whenever the entry is read again (pending re-read, claim by
//     another daemon), and retries and dead letters store it with the body.
//     The "evt_b" prefix keeps it apart from old ids, which start "evt_<digit>".

// parseEntry turns a stream entry into an event: bucket is the number of the
// stream's bucket (-1 when unknown), entryID the entry's stream ID. It checks
// every field the body needs so that a bad entry is refused before any
// delivery.
func parseEntry(bucket int, entryID string, values map[string]any) (event, error) {
	// org may be empty: an MO to a number no org owns (any more) goes to
	// the global webhook with org "" (app.inbound, API.md 3).
	get := func(name string) (string, error) {
		v, ok := values[name]
		if !ok {
			return "", fmt.Errorf("parse entry: missing field %q", name)
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("parse entry: field %q is %T, want string", name, v)
		}
		if s == "" && name != "org" {
			return "", fmt.Errorf("parse entry: empty field %q", name)
		}
		return s, nil
	}
	var e event
	var err error
	if _, old := values["id"]; old {
		if e.ID, err = get("id"); err != nil {
			return event{}, err
		}
		if e.At, err = get("at"); err != nil {
			return event{}, err
		}
		if _, err := time.Parse(time.RFC3339Nano, e.At); err != nil {
			return event{}, fmt.Errorf("parse entry: field \"at\": %w", err)
		}
	} else if e.ID, e.At, err = deriveID(bucket, entryID); err != nil {
		return event{}, err
	}
	if e.Type, err = get("type"); err != nil {
		return event{}, err
	}
	if e.Org, err = get("org"); err != nil {
		return event{}, err
	}
	data, err := get("data")
	if err != nil {
		return event{}, err
	}
	b := []byte(strings.TrimSpace(data))
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return event{}, errors.New("parse entry: field \"data\" is not a JSON object")
	}
	e.Data = b
	return e, nil
}

// maxEntryMS is the last millisecond of year 9999: created_at must have a
// four-digit year to be RFC 3339.
const maxEntryMS = 253402300799999

// deriveID returns the event id "evt_b<bucket>_<ms>_<seq>" and created_at of
// a new-format entry from its stream entry ID "<ms>-<seq>".
func deriveID(bucket int, entryID string) (id, at string, err error) {
	if bucket < 0 {
		return "", "", errors.New("parse entry: no id field and the stream names no bucket")
	}
	msPart, seqPart, ok := strings.Cut(entryID, "-")
	if !ok || !isDigits(msPart) || !isDigits(seqPart) {
		return "", "", fmt.Errorf("parse entry: bad stream entry ID %q", entryID)
	}
	msec, err := strconv.ParseInt(msPart, 10, 64)
	if err != nil || msec > maxEntryMS {
		return "", "", fmt.Errorf("parse entry: stream entry ID %q out of range", entryID)
	}
	if _, err := strconv.ParseUint(seqPart, 10, 64); err != nil {
		return "", "", fmt.Errorf("parse entry: stream entry ID %q out of range", entryID)
	}
	b := make([]byte, 0, len("evt_b_0_")+20+len(entryID))
	b = append(b, "evt_b"...)
	b = strconv.AppendInt(b, int64(bucket), 10)
	b = append(b, '_')
	b = append(b, msPart...)
	b = append(b, '_')
	b = append(b, seqPart...)
	id = string(b)
	b = time.UnixMilli(msec).UTC().AppendFormat(b[:0], "2006-01-02T15:04:05.000Z07:00")
	return id, string(b), nil
}

func isDigits(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// bucketOf returns N of a bucket stream key "<prefix>{b<N>}:events"
// (queue.EventStreams), N in canonical decimal form.
func bucketOf(stream string) (int, bool) {
	rest, ok := strings.CutSuffix(stream, "}:events")
	if !ok {
		return 0, false
	}
	i := strings.LastIndex(rest, "{b")
	if i < 0 {
		return 0, false
	}
	digits := rest[i+2:]
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || strconv.Itoa(n) != digits {
		return 0, false
	}
	return n, true
}

// body builds the JSON document POSTed to the webhook (API.md section 3):
// {"id","type","created_at","data"}. It is built once per event and stored,
// so every retry sends the same bytes.
func (e event) body() []byte {
	b := make([]byte, 0, len(e.Data)+len(e.ID)+len(e.Type)+len(e.At)+48)
	b = append(b, `{"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	b = append(b, `,"created_at":`...)
	b = appendJSONString(b, e.At)
	b = append(b, `,"data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, byte for byte as json.Marshal
// writes it (which also escapes <, > and &).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Sign returns the Smsgate-Signature header value for body sent at time t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

// signers signs bodies, keeping keyed HMAC states per secret for reuse
// (hmac.New costs several allocations; Reset returns a state to its key).
type signers struct {
	mu    sync.Mutex
	pools map[string]*sync.Pool
}

// macState is a keyed HMAC-SHA256 and scratch space for one signature.
type macState struct {
	h   hash.Hash
	buf []byte
}

// maxSigners bounds the states kept: secrets change only on reload.
const maxSigners = 256

func newSigners() *signers { return &signers{pools: map[string]*sync.Pool{}} }

// sign returns Sign(secret, t, body).
func (s *signers) sign(secret string, t time.Time, body []byte) string {
	s.mu.Lock()
	p, ok := s.pools[secret]
	if !ok {
		if len(s.pools) >= maxSigners {
			clear(s.pools)
		}
		p = &sync.Pool{New: func() any {
			return &macState{h: hmac.New(sha256.New, []byte(secret)), buf: make([]byte, 0, 64)}
		}}
		s.pools[secret] = p
	}
	s.mu.Unlock()
	st := p.Get().(*macState)
	st.h.Reset()
	st.buf = strconv.AppendInt(st.buf[:0], t.Unix(), 10)
	ts := len(st.buf)
	st.buf = append(st.buf, '.')
	st.h.Write(st.buf)
	st.h.Write(body)
	st.buf = st.h.Sum(st.buf[:ts])
	var out strings.Builder
	out.Grow(2 + ts + 4 + 2*sha256.Size)
	out.WriteString("t=")
	out.Write(st.buf[:ts])
	out.WriteString(",v1=")
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], st.buf[ts:])
	out.Write(hx[:])
	p.Put(st)
	return out.String()
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ErrBadSignature is returned by Verify when a signature header does not match.
var ErrBadSignature = errors.New("webhook: bad signature")

// Verify checks a Smsgate-Signature header against body and secret, as a
// receiver would. A non-zero tolerance also refuses a timestamp further than
// tolerance from now (replay protection).
func Verify(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			if s, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, s)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header", ErrBadSignature)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: timestamp outside tolerance", ErrBadSignature)
		}
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrBadSignature
}
