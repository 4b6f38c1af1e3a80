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
	At   string // RFC 3339 nano UTC, becomes created_at
}

// parseEntry turns the fields of a stream entry into an event. It checks every
// field the body needs so that a bad entry is refused before any delivery.
func parseEntry(values map[string]any) (event, error) {
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
	if e.ID, err = get("id"); err != nil {
		return event{}, err
	}
	if e.Type, err = get("type"); err != nil {
		return event{}, err
	}
	if e.Org, err = get("org"); err != nil {
		return event{}, err
	}
	if e.At, err = get("at"); err != nil {
		return event{}, err
	}
	if _, err := time.Parse(time.RFC3339Nano, e.At); err != nil {
		return event{}, fmt.Errorf("parse entry: field \"at\": %w", err)
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
