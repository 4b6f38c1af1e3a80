package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestSign(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	body := []byte(`{"id":"evt_1","type":"message.status","created_at":"x","data":{}}`)
	got := Sign("s3cret", at, body)

	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write([]byte("1700000000." + string(body)))
	require.Equal(t, "t=1700000000,v1="+hex.EncodeToString(m.Sum(nil)), got)

	require.NoError(t, Verify("s3cret", got, body, time.Minute, at.Add(30*time.Second)))
	require.ErrorIs(t, Verify("other", got, body, 0, at), ErrBadSignature)
	require.ErrorIs(t, Verify("s3cret", got, append([]byte{' '}, body...), 0, at), ErrBadSignature)
	require.ErrorIs(t, Verify("s3cret", got, body, time.Minute, at.Add(2*time.Minute)), ErrBadSignature)
	require.ErrorIs(t, Verify("s3cret", "garbage", body, 0, at), ErrBadSignature)
}

func goodEntry() map[string]any {
	return map[string]any{
		"id": "evt_1", "type": "message.status", "org": "acme",
		"data": `{"id": "msg_1", "status": "delivered"}`,
		"at":   "2025-01-02T03:04:05.123456789Z",
	}
}

// goodNewEntry is a new-format entry: no id, no at (they derive from the
// stream entry ID and the bucket).
func goodNewEntry() map[string]any {
	return map[string]any{
		"type": "message.status", "org": "acme",
		"data": `{"id": "msg_1", "status": "delivered"}`,
	}
}

func TestParseEntry(t *testing.T) {
	const data = `"data":{"id": "msg_1", "status": "delivered"}}`
	const oldBody = `{"id":"evt_1","type":"message.status","created_at":"2025-01-02T03:04:05.123456789Z",` + data
	const newBody = `{"id":"evt_b3_1795997754123_7","type":"message.status","created_at":"2026-11-30T00:15:54.123Z",` + data
	tests := []struct {
		name     string
		entry    func() map[string]any
		bucket   int
		entryID  string
		edit     func(map[string]any)
		wantErr  string
		wantID   string
		wantBody string
	}{
		{name: "old: good", entry: goodEntry, wantID: "evt_1", wantBody: oldBody},
		{name: "old: id and at kept whatever the bucket and entry ID", entry: goodEntry, bucket: 5, entryID: "1795997754123-7",
			wantID: "evt_1", wantBody: oldBody},
		{name: "old: empty org (global webhook)", entry: goodEntry, edit: func(m map[string]any) { m["org"] = "" },
			wantID: "evt_1", wantBody: strings.Replace(oldBody, "acme", "", 1)},
		{name: "old: empty id", entry: goodEntry, edit: func(m map[string]any) { m["id"] = "" }, wantErr: `empty field "id"`},
		{name: "old: missing at", entry: goodEntry, edit: func(m map[string]any) { delete(m, "at") }, wantErr: `missing field "at"`},
		{name: "old: bad at", entry: goodEntry, edit: func(m map[string]any) { m["at"] = "yesterday" }, wantErr: `field "at"`},
		{name: "old: missing org", entry: goodEntry, edit: func(m map[string]any) { delete(m, "org") }, wantErr: `missing field "org"`},
		{name: "old: empty type", entry: goodEntry, edit: func(m map[string]any) { m["type"] = "" }, wantErr: `empty field "type"`},
		{name: "old: non-string type", entry: goodEntry, edit: func(m map[string]any) { m["type"] = 5 }, wantErr: `field "type" is int`},
		{name: "old: data not json", entry: goodEntry, edit: func(m map[string]any) { m["data"] = `{"a":` }, wantErr: "not a JSON object"},
		{name: "old: data array", entry: goodEntry, edit: func(m map[string]any) { m["data"] = `[1]` }, wantErr: "not a JSON object"},

		{name: "new: good", entry: goodNewEntry, bucket: 3, entryID: "1795997754123-7",
			wantID: "evt_b3_1795997754123_7", wantBody: newBody},
		{name: "new: a stray at field is ignored", entry: goodNewEntry, bucket: 3, entryID: "1795997754123-7",
			edit: func(m map[string]any) { m["at"] = "yesterday" }, wantID: "evt_b3_1795997754123_7", wantBody: newBody},
		{name: "new: bucket 0, epoch, seq 0", entry: goodNewEntry, bucket: 0, entryID: "0-0", wantID: "evt_b0_0_0",
			wantBody: `{"id":"evt_b0_0_0","type":"message.status","created_at":"1970-01-01T00:00:00.000Z",` + data},
		{name: "new: last millisecond of year 9999", entry: goodNewEntry, bucket: 63, entryID: "253402300799999-18446744073709551615",
			wantID:   "evt_b63_253402300799999_18446744073709551615",
			wantBody: `{"id":"evt_b63_253402300799999_18446744073709551615","type":"message.status","created_at":"9999-12-31T23:59:59.999Z",` + data},
		{name: "new: whole second keeps .000", entry: goodNewEntry, bucket: 1, entryID: "1795997754000-0", wantID: "evt_b1_1795997754000_0",
			wantBody: `{"id":"evt_b1_1795997754000_0","type":"message.status","created_at":"2026-11-30T00:15:54.000Z",` + data},
		{name: "new: unknown bucket", entry: goodNewEntry, bucket: -1, entryID: "1-0", wantErr: "names no bucket"},
		{name: "new: entry ID without seq", entry: goodNewEntry, bucket: 1, entryID: "1795997754123", wantErr: "bad stream entry ID"},
		{name: "new: entry ID not numeric", entry: goodNewEntry, bucket: 1, entryID: "12a-0", wantErr: "bad stream entry ID"},
		{name: "new: negative entry ID", entry: goodNewEntry, bucket: 1, entryID: "-1-0", wantErr: "bad stream entry ID"},
		{name: "new: empty entry ID", entry: goodNewEntry, bucket: 1, entryID: "", wantErr: "bad stream entry ID"},
		{name: "new: ms past year 9999", entry: goodNewEntry, bucket: 1, entryID: "253402300800000-0", wantErr: "out of range"},
		{name: "new: seq past uint64", entry: goodNewEntry, bucket: 1, entryID: "1-18446744073709551616", wantErr: "out of range"},
		{name: "new: missing type", entry: goodNewEntry, bucket: 1, entryID: "1-0", edit: func(m map[string]any) { delete(m, "type") },
			wantErr: `missing field "type"`},
		{name: "new: missing org", entry: goodNewEntry, bucket: 1, entryID: "1-0", edit: func(m map[string]any) { delete(m, "org") },
			wantErr: `missing field "org"`},
		{name: "new: data not an object", entry: goodNewEntry, bucket: 1, entryID: "1-0", edit: func(m map[string]any) { m["data"] = `"x"` },
			wantErr: "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.entry()
			if tc.edit != nil {
				tc.edit(m)
			}
			e, err := parseEntry(tc.bucket, tc.entryID, m)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantID, e.ID)
			// The body is valid JSON and carries data byte for byte.
			require.Equal(t, tc.wantBody, string(e.body()))
		})
	}
}

func TestBucketOf(t *testing.T) {
	tests := []struct {
		stream string
		want   int
		ok     bool
	}{
		{"smsgate:{b0}:events", 0, true},
		{"smsgate:{b63}:events", 63, true},
		{"{b7}:events", 7, true},
		{"a{b}c:{b12}:events", 12, true},   // the last {b…} counts
		{"smsgate:{b07}:events", 0, false}, // not canonical: would alias {b7}
		{"smsgate:{b-1}:events", 0, false},
		{"smsgate:{b}:events", 0, false},
		{"smsgate:{bx}:events", 0, false},
		{"smsgate:{c3}:events", 0, false},
		{"smsgate:{b3}:events:x", 0, false},
		{"smsgate:events:0", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.stream, func(t *testing.T) {
			n, ok := bucketOf(tc.stream)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, n)
		})
	}
}

// FuzzParseEntry checks that whatever an entry holds, in either format, a
// parsed event has a body that is valid JSON carrying its fields, and a
// new-format event the id and created_at its stream entry ID names.
func FuzzParseEntry(f *testing.F) {
	f.Add(false, 0, "1-0", "evt_1", "message.status", "acme", `{"a":1}`, "2025-01-02T03:04:05Z")
	f.Add(false, 0, "", "evt_\"<x>", "message.received", "o\u00e9", ` {"text":"h\u00e9"} `, "2025-01-02T03:04:05.1+01:00")
	f.Add(false, 0, "", "", "", "", "", "")
	f.Add(true, 3, "1795997754123-7", "", "message.status", "acme", `{"a":1}`, "")
	f.Add(true, 0, "0-0", "", "message.received", "", `{}`, "")
	f.Add(true, 63, "253402300799999-18446744073709551615", "", "t", "o", `{"b":[1,{"c":null}]}`, "")
	f.Add(true, 1, "253402300800000-0", "", "t", "o", `{}`, "")
	f.Add(true, -1, "1-0", "", "t", "o", `{}`, "")
	f.Add(true, 2, "01-2", "", "t", "o", `{}`, "")
	f.Fuzz(func(t *testing.T, newFormat bool, bucket int, entryID, id, typ, org, data, at string) {
		values := map[string]any{"type": typ, "org": org, "data": data}
		if !newFormat {
			values["id"], values["at"] = id, at
		}
		e, err := parseEntry(bucket, entryID, values)
		if err != nil {
			return
		}
		var doc struct {
			ID        string          `json:"id"`
			Type      string          `json:"type"`
			CreatedAt string          `json:"created_at"`
			Data      json.RawMessage `json:"data"`
		}
		b := e.body()
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("body %q is not JSON: %v", b, err)
		}
		if !json.Valid(b) {
			t.Fatalf("body %q is not valid JSON", b)
		}
		if !bytes.Equal(doc.Data, e.Data) {
			t.Fatalf("data changed: %q != %q", doc.Data, e.Data)
		}
		if !newFormat {
			// Strings survive JSON escaping unless they hold invalid UTF-8.
			if utf8.ValidString(id+typ+at) && (doc.ID != id || doc.Type != typ || doc.CreatedAt != at) {
				t.Fatalf("round trip changed fields: %+v", doc)
			}
			return
		}
		if utf8.ValidString(typ) && doc.Type != typ {
			t.Fatalf("round trip changed type: %+v", doc)
		}
		msPart, seqPart, ok := strings.Cut(entryID, "-")
		if !ok || bucket < 0 {
			t.Fatalf("entry ID %q, bucket %d accepted", entryID, bucket)
		}
		if want := fmt.Sprintf("evt_b%d_%s_%s", bucket, msPart, seqPart); doc.ID != want {
			t.Fatalf("id %q, want %q", doc.ID, want)
		}
		msec, err := strconv.ParseInt(msPart, 10, 64)
		if err != nil {
			t.Fatalf("entry ID %q accepted: %v", entryID, err)
		}
		at2, err := time.Parse(time.RFC3339Nano, doc.CreatedAt)
		if err != nil || !at2.Equal(time.UnixMilli(msec)) || len(doc.CreatedAt) != len("2006-01-02T15:04:05.000Z") {
			t.Fatalf("created_at %q for entry ID %q (%v)", doc.CreatedAt, entryID, err)
		}
	})
}

func TestBackoff(t *testing.T) {
	d := &Dispatcher{opts: Options{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}, randN: rand.N[time.Duration]}
	require.Equal(t, time.Second, d.backoff(1))
	require.Equal(t, 2*time.Second, d.backoff(2))
	require.Equal(t, 8*time.Second, d.backoff(4))
	require.Equal(t, 10*time.Second, d.backoff(5))
	require.Equal(t, 10*time.Second, d.backoff(500))
	for n := 1; n < 8; n++ {
		for range 50 {
			r := d.retryDelay(n)
			require.GreaterOrEqual(t, r, time.Duration(0))
			require.LessOrEqual(t, r, d.backoff(n))
		}
	}
}

func TestSignersMatchSign(t *testing.T) {
	s := newSigners()
	at := time.Unix(1700000000, 0)
	for i := range 3 { // reused states give the same answers
		for _, secret := range []string{"a", "b", "", "a long secret longer than the sha256 block size of sixty-four bytes......"} {
			body := []byte(`{"id":"evt_` + string(rune('0'+i)) + `"}`)
			require.Equal(t, Sign(secret, at, body), s.sign(secret, at, body))
			require.NoError(t, Verify(secret, s.sign(secret, at, body), body, 0, at))
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "evt_1", `a"b`, `a\b`, "<&>", "\x00\x1f", "h\u00e9", "\u2028", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendJSONString([]byte("x"), s))[1:])
	})
}

// TestTargetRequest: a request made from a cached target is the one
// http.NewRequestWithContext makes, and requests share no header.
func TestTargetRequest(t *testing.T) {
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, 1)
	body := []byte(`{"id":"evt_b1_2_3"}`)
	for _, u := range []string{"http://127.0.0.1:9000/events?x=1", "http://hook:pa%20ss@example.com:/in", "https://example.com/a%2Fb", "http://[::1]:80/", ":bad", "http://a b/"} {
		t.Run(u, func(t *testing.T) {
			ts := newTargets()
			tg := ts.get(u)
			require.Same(t, tg, ts.get(u), "cached")
			require.Equal(t, endpointID(u), tg.id)
			want, wantErr := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
			got, err := tg.request(ctx, body, 4)
			if wantErr != nil {
				// The same error, but for the URL it names: url.Parse names
				// it whole, secrets included.
				require.EqualError(t, err, redactError(wantErr).Error())
				require.NotContains(t, err.Error(), u)
				return
			}
			require.NoError(t, err)
			require.Equal(t, want.Method, got.Method)
			require.Equal(t, want.URL.String(), got.URL.String())
			require.Equal(t, want.Host, got.Host)
			require.Equal(t, want.Proto, got.Proto)
			require.Equal(t, want.ContentLength, got.ContentLength)
			require.Equal(t, want.Context(), got.Context())
			require.Empty(t, got.Header)
			b, err := io.ReadAll(got.Body)
			require.NoError(t, err)
			require.Equal(t, body, b)
			rb, err := got.GetBody()
			require.NoError(t, err)
			b, err = io.ReadAll(rb)
			require.NoError(t, err)
			require.Equal(t, body, b, "GetBody gives the whole body again")

			other, err := tg.request(context.Background(), []byte("x"), 4)
			require.NoError(t, err)
			got.Header.Set("Smsgate-Event-Id", "a")
			require.Empty(t, other.Header, "requests share no header")
			require.Empty(t, tg.tmpl.Header, "the template's header stays empty")
		})
	}
}
