package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

func TestParseEntry(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(map[string]any)
		wantErr string
	}{
		{name: "good", edit: func(map[string]any) {}},
		{name: "missing id", edit: func(m map[string]any) { delete(m, "id") }, wantErr: `missing field "id"`},
		{name: "empty org (global webhook)", edit: func(m map[string]any) { m["org"] = "" }},
		{name: "missing org", edit: func(m map[string]any) { delete(m, "org") }, wantErr: `missing field "org"`},
		{name: "empty type", edit: func(m map[string]any) { m["type"] = "" }, wantErr: `empty field "type"`},
		{name: "non-string type", edit: func(m map[string]any) { m["type"] = 5 }, wantErr: `field "type" is int`},
		{name: "bad at", edit: func(m map[string]any) { m["at"] = "yesterday" }, wantErr: `field "at"`},
		{name: "data not json", edit: func(m map[string]any) { m["data"] = `{"a":` }, wantErr: "not a JSON object"},
		{name: "data array", edit: func(m map[string]any) { m["data"] = `[1]` }, wantErr: "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := goodEntry()
			tc.edit(m)
			e, err := parseEntry(m)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "evt_1", e.ID)
			// The body is valid JSON and carries data byte for byte.
			b := e.body()
			require.Equal(t, `{"id":"evt_1","type":"message.status","created_at":"2025-01-02T03:04:05.123456789Z","data":{"id": "msg_1", "status": "delivered"}}`, string(b))
		})
	}
}

func FuzzParseEntry(f *testing.F) {
	f.Add("evt_1", "message.status", "acme", `{"a":1}`, "2025-01-02T03:04:05Z")
	f.Add("evt_\"<x>", "message.received", "o\u00e9", ` {"text":"h\u00e9"} `, "2025-01-02T03:04:05.1+01:00")
	f.Add("", "", "", "", "")
	f.Fuzz(func(t *testing.T, id, typ, org, data, at string) {
		e, err := parseEntry(map[string]any{"id": id, "type": typ, "org": org, "data": data, "at": at})
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
		// Strings survive JSON escaping unless they hold invalid UTF-8.
		if utf8.ValidString(id+typ+at) && (doc.ID != id || doc.Type != typ || doc.CreatedAt != at) {
			t.Fatalf("round trip changed fields: %+v", doc)
		}
		if !bytes.Equal(doc.Data, e.Data) {
			t.Fatalf("data changed: %q != %q", doc.Data, e.Data)
		}
	})
}

func TestBackoff(t *testing.T) {
	d := &Dispatcher{opts: Options{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}}
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
