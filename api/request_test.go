package api

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

var testLimits = requestLimits{DefaultValidity: 4 * time.Hour, MaxValidity: 10 * time.Hour}

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		field    string // "" with ok
		ok       bool
		validity time.Duration
	}{
		{name: "minimal", body: `{"from":"+15550001111","to":"+15557654321","text":"hi"}`, ok: true, validity: 4 * time.Hour},
		{name: "all fields", body: `{"from":"+15550001111","to":"+447700900123","text":"hi","media":[{"url":"https://x/y.png","content_type":"image/png","size":10}],"client_ref":"r","validity":"10h"}`, ok: true, validity: 10 * time.Hour},
		{name: "media only", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"http://x/y.pdf","content_type":"application/pdf"}]}`, ok: true, validity: 4 * time.Hour},
		{name: "nulls are absent", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","media":null,"client_ref":null}`, ok: true, validity: 4 * time.Hour},
		{name: "client_ref 128 runes", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","client_ref":"` + strings.Repeat("é", 128) + `"}`, ok: true, validity: 4 * time.Hour},
		{name: "client_ref 129 runes", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","client_ref":"` + strings.Repeat("é", 129) + `"}`, field: "client_ref"},
		{name: "unknown nested field", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x","content_type":"image/png","caption":"c"}]}`, field: "caption"},
		{name: "media not array", body: `{"from":"+15550001111","to":"+15557654321","media":{}}`, field: "media"},
		{name: "media bad url", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"ftp://x","content_type":"image/png"}]}`, field: "media[0].url"},
		{name: "media no type", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x"}]}`, field: "media[0].content_type"},
		{name: "media negative size", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x","content_type":"image/png","size":-1}]}`, field: "media[0].size"},
		{name: "too many media", body: `{"from":"+15550001111","to":"+15557654321","media":[` + strings.TrimSuffix(strings.Repeat(`{"url":"https://x","content_type":"image/png"},`, 11), ",") + `]}`, field: "media"},
		{name: "validity zero", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","validity":"0s"}`, field: "validity"},
		{name: "validity negative", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","validity":"-1h"}`, field: "validity"},
		{name: "validity number", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","validity":3600}`, field: "validity"},
		{name: "from leading zero", body: `{"from":"+05550001111","to":"+15557654321","text":"hi"}`, field: "from"},
		{name: "from too long", body: `{"from":"+1555000111122223","to":"+15557654321","text":"hi"}`, field: "from"},
		{name: "to letters", body: `{"from":"+15550001111","to":"+1555765432a","text":"hi"}`, field: "to"},
		{name: "syntax", body: `{"from":}`, field: ""},
		{name: "trailing garbage", body: `{"from":"+15550001111","to":"+15557654321","text":"hi"} x`, field: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, v, e := decodeRequest([]byte(tc.body), testLimits)
			if tc.ok {
				require.Nil(t, e)
				require.Equal(t, tc.validity, v)
				return
			}
			require.NotNil(t, e)
			require.Equal(t, http.StatusBadRequest, e.Status)
			require.Equal(t, CodeInvalidRequest, e.Code)
			require.Equal(t, tc.field, e.Field, e.Message)
			require.NotEmpty(t, e.Message)
		})
	}
}

func TestValidE164(t *testing.T) {
	for s, want := range map[string]bool{
		"+15550001111": true, "+44": true, "+123456789012345": true,
		"+1234567890123456": false, "+4": false, "15550001111": false, "+0123": false,
		"": false, "+": false, "+1 555": false, "+1555000111１": false,
	} {
		require.Equal(t, want, ValidE164(s), s)
	}
}

// FuzzDecodeRequest checks that decoding never panics and that whatever it
// accepts satisfies the documented invariants.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"from":"+15550001111","to":"+15557654321","text":"hi"}`,
		`{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x","content_type":"image/png","size":1}],"client_ref":"r","validity":"1h"}`,
		`{"from":"+1","to":"+2","text":"","validity":"99999999999h"}`,
		`{"from":"+15550001111","to":"+15557654321","text":"\ud83d"}`,
		`{"text":{"a":[1,2,{}]}}`, `[]`, `null`, `{}`, `{"from":1e999}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, validity, e := decodeRequest(body, testLimits)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Code != CodeInvalidRequest || e.Message == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if !ValidE164(req.From) || !ValidE164(req.To) {
			t.Fatalf("accepted invalid numbers %q %q", req.From, req.To)
		}
		if req.Text == "" && len(req.Media) == 0 {
			t.Fatal("accepted empty message")
		}
		if utf8.RuneCountInString(req.ClientRef) > MaxClientRef {
			t.Fatal("accepted long client_ref")
		}
		if validity <= 0 || validity > testLimits.MaxValidity {
			t.Fatalf("accepted validity %s", validity)
		}
		for _, m := range req.Media {
			if m.URL == "" || m.ContentType == "" || m.Size < 0 {
				t.Fatalf("accepted media %+v", m)
			}
		}
	})
}
