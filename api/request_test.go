package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
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
		{name: "unknown nested field", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x","content_type":"image/png","caption":"c"}]}`, field: "media[0].caption"},
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

// TestDecodeRequestStrict covers what encoding/json alone lets through:
// field names in another case, duplicate fields, invalid UTF-8, and the
// naming of media fields in errors.
func TestDecodeRequestStrict(t *testing.T) {
	const head = `"from":"+15550001111","to":"+15557654321"`
	const media = `"media":[{"url":"https://x/a.png","content_type":"image/png"},`
	cases := []struct {
		name  string
		body  string
		field string
		msg   string // a part of the message
	}{
		// 1. field names are exact
		{name: "capitalised names", body: `{"From":"+15550001111","TO":"+15557651501","Text":"case"}`, field: "From",
			msg: `Unknown field "From"; accepted fields are from, to, text, media, client_ref and validity. Field names are case-sensitive: write "from".`},
		{name: "upper-case to", body: `{"from":"+15550001111","TO":"+15557651501","text":"case"}`, field: "TO"},
		{name: "Client_Ref", body: `{` + head + `,"text":"hi","Client_Ref":"r"}`, field: "Client_Ref", msg: `write "client_ref"`},
		{name: "VALIDITY", body: `{` + head + `,"text":"hi","VALIDITY":"1h"}`, field: "VALIDITY", msg: "accepted fields are from, to, text, media, client_ref and validity."},
		{name: "escaped capital", body: `{"\u0046rom":"+15550001111","to":"+15557654321","text":"hi"}`, field: "From"},
		{name: "long s folds to s in encoding/json", body: `{` + media + `{"url":"https://x","content_type":"image/png","\u017fize":1}]}`, field: "media[1].ſize"},
		{name: "media URL", body: `{` + head + `,"media":[{"URL":"https://x","content_type":"image/png"}]}`, field: "media[0].URL",
			msg: `Unknown field "URL" in media[0]; accepted fields of a media entry are url, content_type and size. Field names are case-sensitive: write "url".`},
		{name: "unknown plain", body: `{` + head + `,"text":"hi","priority":1}`, field: "priority",
			msg: `Unknown field "priority"; accepted fields are from, to, text, media, client_ref and validity.`},

		// 2. duplicates
		{name: "duplicate text", body: `{` + head + `,"text":"buy marijuana","text":"hello"}`, field: "text",
			msg: `Field "text" appears twice; send each field once.`},
		{name: "duplicate from by case", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","FROM":"+1"}`, field: "FROM"},
		{name: "duplicate by escape", body: `{` + head + `,"text":"buy marijuana","t\u0065xt":"hello"}`, field: "text", msg: "appears twice"},
		{name: "duplicate null", body: `{` + head + `,"text":"hi","client_ref":null,"client_ref":"r"}`, field: "client_ref", msg: "appears twice"},
		{name: "duplicate media", body: `{` + head + `,"media":[],"media":[{"url":"https://x","content_type":"image/png"}]}`, field: "media", msg: "appears twice"},
		{name: "duplicate media url", body: `{` + head + `,"media":[{"url":"https://x/a","content_type":"image/png","url":"https://x/b"}]}`, field: "media[0].url",
			msg: `Field "media[0].url" appears twice; send each field once.`},
		{name: "duplicate in second entry", body: `{` + head + `,` + media + `{"url":"https://x","content_type":"image/png","content_type":"image/jpeg"}]}`, field: "media[1].content_type"},

		// 3. UTF-8
		{name: "invalid utf8 text", body: "{" + head + ",\"text\":\"\xff\xfe bad utf8\"}", field: "text",
			msg: `The body is not valid UTF-8 (byte 0xff at offset 51 in field "text"); send it UTF-8 encoded.`},
		{name: "truncated sequence", body: "{" + head + ",\"text\":\"caf\xc3\"}", field: "text", msg: "not valid UTF-8"},
		{name: "overlong", body: "{" + head + ",\"text\":\"\xc0\xaf\"}", field: "text", msg: "not valid UTF-8"},
		{name: "encoded surrogate", body: "{" + head + ",\"text\":\"\xed\xa0\x80\"}", field: "text", msg: "not valid UTF-8"},
		{name: "invalid utf8 client_ref", body: "{" + head + ",\"text\":\"hi\",\"client_ref\":\"r\x80\"}", field: "client_ref", msg: "not valid UTF-8"},
		{name: "invalid utf8 media url", body: "{" + head + ",\"media\":[{\"url\":\"https://x/\xff\",\"content_type\":\"image/png\"}]}", field: "media[0].url", msg: "not valid UTF-8"},
		{name: "invalid utf8 in a name", body: "{" + head + ",\"te\xffxt\":\"hi\"}", field: "", msg: "not valid UTF-8"},
		{name: "invalid utf8 in a media name", body: "{" + head + ",\"media\":[{\"u\xffl\":\"x\"}]}", field: "media[0]", msg: "not valid UTF-8"},
		{name: "invalid utf8 nested", body: "{" + head + ",\"text\":{\"a\":\"\xff\"}}", field: "text", msg: "not valid UTF-8"},
		{name: "invalid utf8 top-level string", body: "\"\xff\"", field: "", msg: "not valid UTF-8"},
		{name: "lone high surrogate", body: `{` + head + `,"text":"\ud83d"}`, field: "text", msg: `the escape \ud83d at offset 51 in field "text" is half of a UTF-16 surrogate pair`},
		{name: "lone low surrogate", body: `{` + head + `,"text":"\uDE00 x"}`, field: "text", msg: "surrogate"},
		{name: "high surrogate then letter", body: `{` + head + `,"text":"\ud83d\u0041"}`, field: "text", msg: "surrogate"},
		{name: "two high surrogates", body: `{` + head + `,"text":"\ud83d\ud83d"}`, field: "text", msg: "surrogate"},

		// 4. unknown field in media
		{name: "unknown media field", body: `{` + head + `,"media":[{"url":"https://x","content_type":"image/png","foo":1}]}`, field: "media[0].foo",
			msg: `Unknown field "foo" in media[0]; accepted fields of a media entry are url, content_type and size.`},
		{name: "unknown field second entry", body: `{` + head + `,` + media + `{"url":"https://x","caption":"c"}]}`, field: "media[1].caption"},

		// 5. type errors in media
		{name: "size fraction", body: `{` + head + `,"media":[{"url":"https://x","content_type":"image/png","size":1.5}]}`, field: "media[0].size",
			msg: `Field "media[0].size" must be a whole number (digits only, e.g. 52000), not number 1.5.`},
		{name: "size string", body: `{` + head + `,"media":[{"url":"https://x","content_type":"image/png","size":"5"}]}`, field: "media[0].size",
			msg: `Field "media[0].size" must be a whole number (digits only, e.g. 52000), not string.`},
		{name: "size exponent", body: `{` + head + `,"media":[{"url":"https://x","content_type":"image/png","size":1e3}]}`, field: "media[0].size", msg: "whole number"},
		{name: "size too large", body: `{` + head + `,"media":[{"url":"https://x","content_type":"image/png","size":99999999999999999999}]}`, field: "media[0].size", msg: "out of range"},
		{name: "size second entry", body: `{` + head + `,` + media + `{"url":"https://x","content_type":"image/png","size":true}]}`, field: "media[1].size"},
		{name: "url number", body: `{` + head + `,"media":[{"url":5,"content_type":"image/png"}]}`, field: "media[0].url", msg: `Field "media[0].url" must be a JSON string, not number.`},
		{name: "entry not object", body: `{` + head + `,` + media + `"https://x"]}`, field: "media[1]", msg: `Field "media[1]" must be a JSON object with url and content_type, not string.`},
		{name: "media object", body: `{` + head + `,"media":{"url":"https://x"}}`, field: "media", msg: `Field "media" must be a JSON array, not object.`},
		{name: "text number", body: `{` + head + `,"text":5}`, field: "text", msg: `Field "text" must be a JSON string, not number.`},

		// syntax
		{name: "empty", body: ``, msg: "The body is empty"},
		{name: "blank", body: " \r\n\t", msg: "The body is empty"},
		{name: "ends early", body: `{"from":"+1555`, msg: "The body is not valid JSON: it ends early."},
		{name: "ends after name", body: `{"from"`, msg: "it ends early"},
		{name: "bad literal", body: `{"from":tru}`, msg: "The body is not valid JSON (at byte 12)"},
		{name: "leading zero", body: `{"text":01}`, msg: "not valid JSON"},
		{name: "control character", body: "{\"text\":\"a\tb\"}", msg: "not valid JSON"},
		{name: "bad escape", body: `{"text":"\x"}`, msg: "not valid JSON"},
		{name: "second object", body: `{` + head + `,"text":"hi"}{}`, msg: "The body must be a single JSON object; remove what follows it."},
		{name: "array", body: `[{"From":1}]`, msg: "The body must be a JSON object"},
		{name: "too deep", body: `{"text":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`, msg: "exceeded max depth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, e := decodeRequest([]byte(tc.body), testLimits)
			require.NotNil(t, e)
			require.Equal(t, http.StatusBadRequest, e.Status)
			require.Equal(t, CodeInvalidRequest, e.Code)
			require.Equal(t, tc.field, e.Field, e.Message)
			require.Contains(t, e.Message, tc.msg)
			require.True(t, utf8.ValidString(e.Message), e.Message)
		})
	}
}

// TestDecodeRequestExact checks bodies the strict scan must still accept.
func TestDecodeRequestExact(t *testing.T) {
	cases := []struct {
		name string
		body string
		want SendRequest
	}{
		{name: "escaped names", body: `{"fr\u006fm":"+15550001111","\u0074o":"+15557654321","text":"hi"}`,
			want: SendRequest{From: "+15550001111", To: "+15557654321", Text: "hi"}},
		{name: "surrogate pair", body: `{"from":"+15550001111","to":"+15557654321","text":"\ud83d\ude00 \u00e9\n\"\\\/"}`,
			want: SendRequest{From: "+15550001111", To: "+15557654321", Text: "😀 é\n\"\\/"}},
		{name: "raw UTF-8", body: `{"from":"+15550001111","to":"+15557654321","text":"😀 é ß 中文 \u20ac"}`,
			want: SendRequest{From: "+15550001111", To: "+15557654321", Text: "😀 é ß 中文 €"}},
		{name: "white space", body: " \r\n{ \"from\" : \"+15550001111\" ,\n\t\"to\":\"+15557654321\", \"text\" : \"hi\" , \"media\" : [ ] } \n",
			want: SendRequest{From: "+15550001111", To: "+15557654321", Text: "hi", Media: []message.Media{}}},
		{name: "same names in two entries", body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x/a","content_type":"image/png","size":0},{"url":"https://x/b","content_type":"image/jpeg","size":-0}]}`,
			want: SendRequest{From: "+15550001111", To: "+15557654321", Media: []message.Media{{URL: "https://x/a", ContentType: "image/png"}, {URL: "https://x/b", ContentType: "image/jpeg"}}}},
		{name: "empty object is fine until validation", body: `{"from":"+15550001111","to":"+15557654321","text":"hi","client_ref":"","validity":""}`,
			want: SendRequest{From: "+15550001111", To: "+15557654321", Text: "hi"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _, e := decodeRequest([]byte(tc.body), testLimits)
			require.Nil(t, e)
			require.Equal(t, tc.want, req)
		})
	}
}

// TestScanBodySyntax checks that scanBody agrees with json.Valid: it must
// never pass what encoding/json refuses, nor refuse valid JSON as a syntax
// error.
func TestScanBodySyntax(t *testing.T) {
	for _, body := range []string{
		`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `-0.5e+10`, `1E-2`, `"s"`, `{"text":[1,{"a":[]},"x",null]}`,
		`{`, `}`, `{,}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `01`, `-`, `1.`, `1.e3`, `.5`, `1e`, `+1`,
		`nul`, `nulll`, `"\u12"`, `"\u12g4"`, `"a`, `{"text":"a"`, `{"text":"a",`, `{"media":[{"url":"x"}`, `{"media":[{"url":"x"},]}`,
		`{"media":[` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `]}`,
		`{"media":[` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `]}`,
	} {
		e := scanBody([]byte(body))
		if json.Valid([]byte(body)) {
			require.True(t, e != errSyntax, "scanBody refuses valid JSON %.40q", body)
		} else {
			require.NotNil(t, e, "scanBody passes invalid JSON %.40q", body)
		}
	}
}

// FuzzDecodeRequest checks that decoding never panics, that whatever it
// accepts satisfies the documented invariants (exact, unique field names,
// valid UTF-8 among them), and that scanBody agrees with encoding/json on
// what is JSON.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"from":"+15550001111","to":"+15557654321","text":"hi"}`,
		`{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x","content_type":"image/png","size":1}],"client_ref":"r","validity":"1h"}`,
		`{"from":"+1","to":"+2","text":"","validity":"99999999999h"}`,
		`{"from":"+15550001111","to":"+15557654321","text":"\ud83d"}`,
		`{"from":"+15550001111","to":"+15557654321","text":"\ud83d\ude00"}`,
		`{"From":"+15550001111","TO":"+15557651501","Text":"case"}`,
		`{"from":"+15550001111","to":"+15557654321","text":"buy marijuana","text":"hello"}`,
		`{"fr\u006fm":"+15550001111","to":"+15557654321","text":"hi","t\u0065xt":"x"}`,
		`{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://x","content_type":"image/png","url":"https://y","foo":1,"size":1.5}]}`,
		"{\"from\":\"+15550001111\",\"to\":\"+15557654321\",\"text\":\"\xff\xfe bad utf8\"}",
		`{"text":{"a":[1,2,{}]}}`, `[]`, `null`, `{}`, `{"from":1e999}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if e := scanBody(body); e == nil && !json.Valid(body) {
			t.Fatal("scanBody passes invalid JSON")
		} else if e == errSyntax && json.Valid(body) {
			t.Fatal("scanBody refuses valid JSON")
		}
		req, validity, e := decodeRequest(body, testLimits)
		if e != nil {
			if e == errSyntax || e.Status != http.StatusBadRequest || e.Code != CodeInvalidRequest || e.Message == "" {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatal("accepted invalid UTF-8")
		}
		if err := exactNames(body); err != nil {
			t.Fatalf("accepted %v", err)
		}
		for _, s := range []string{req.From, req.To, req.Text, req.ClientRef, req.Validity} {
			if strings.ContainsRune(s, utf8.RuneError) && !bytes.Contains(body, []byte("\uFFFD")) &&
				!bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
				t.Fatalf("accepted a string that decodes to U+FFFD: %q", s)
			}
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

// exactNames checks, with encoding/json's tokenizer (independently of
// scanBody), that the names of the body's object and of its media entries
// are accepted names, each at most once.
func exactNames(body []byte) error {
	var top map[string]json.RawMessage // only to know the body is an object
	if json.Unmarshal(body, &top) != nil || top == nil {
		return nil // not an object, or null: nothing to check
	}
	names, err := objectNames(body, sendFields[:])
	if err != nil {
		return err
	}
	if !slices.Contains(names, "media") {
		return nil
	}
	var media []json.RawMessage
	if err := json.Unmarshal(top["media"], &media); err != nil {
		return err
	}
	for i, m := range media {
		if _, err := objectNames(m, mediaFields[:]); err != nil {
			return fmt.Errorf("media[%d]: %w", i, err)
		}
	}
	return nil
}

// objectNames returns the member names of the JSON object raw, in order,
// and an error if one is not in accepted or appears twice.
func objectNames(raw []byte, accepted []string) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %v %v", tok, err)
	}
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name := tok.(string)
		if !slices.Contains(accepted, name) {
			return nil, fmt.Errorf("field name %q", name)
		}
		if slices.Contains(names, name) {
			return nil, fmt.Errorf("duplicate %q", name)
		}
		names = append(names, name)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// TestExactNamesOracle checks the fuzz test's oracle on the audit's bodies.
func TestExactNamesOracle(t *testing.T) {
	for body, bad := range map[string]bool{
		`{"from":"+15550001111","to":"+15557654321","text":"hi","media":[{"url":"u","content_type":"c","size":1}]}`: false,
		`{"fr\u006fm":"+15550001111"}`: false,
		`null`:                         false,
		`{"From":"+15550001111","TO":"+15557651501","Text":"case"}`:                true,
		`{"text":"buy marijuana","text":"hello"}`:                                  true,
		`{"text":"buy marijuana","t\u0065xt":"hello"}`:                             true,
		`{"media":[{"url":"u"},{"url":"u","URL":"v"}]}`:                            true,
		`{"media":[{"url":"u","content_type":"c","url":"v"}]}`:                     true,
		`{"from":"+15550001111","media":[{"url":"u","content_type":"c","foo":1}]}`: true,
	} {
		require.Equal(t, bad, exactNames([]byte(body)) != nil, body)
	}
}

// TestSendStrictBody sends the audit's bodies through both submission routes:
// each is a 400 invalid_request naming the field, on the wire.
func TestSendStrictBody(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ name, body, field string }{
		{"mis-cased names", `{"From":"+15550001111","TO":"+15557651501","Text":"case"}`, "From"},
		{"Client_Ref", `{"from":"+15550001111","to":"+15557651501","text":"hi","Client_Ref":"r"}`, "Client_Ref"},
		{"duplicate text", `{"from":"+15550001111","to":"+15557651501","text":"buy marijuana","text":"hello"}`, "text"},
		{"duplicate from by case", `{"from":"+15550001111","to":"+15557651501","text":"hi","FROM":"+1"}`, "FROM"},
		{"invalid UTF-8", "{\"from\":\"+15550001111\",\"to\":\"+15557651501\",\"text\":\"\xff\xfe bad utf8\"}", "text"},
		{"unknown media field", `{"from":"+15550001111","to":"+15557651501","media":[{"url":"https://x/a.png","content_type":"image/png","foo":1}]}`, "media[0].foo"},
		{"media size fraction", `{"from":"+15550001111","to":"+15557651501","media":[{"url":"https://x/a.png","content_type":"image/png","size":1.5}]}`, "media[0].size"},
	}
	for _, path := range []string{"/v1/messages", "/v1/messages/dry-run"} {
		for _, tc := range cases {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				r := e.do(http.MethodPost, path, acmeKey, tc.body)
				require.Equal(t, http.StatusBadRequest, r.status, string(r.raw))
				require.Equal(t, CodeInvalidRequest, r.errCode())
				require.Equal(t, tc.field, r.errField("field"))
				require.NotEmpty(t, r.errField("message"))
			})
		}
	}
}
