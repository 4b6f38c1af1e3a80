package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

func msgBody(from, to, text string) string {
	return fmt.Sprintf(`{"from":%q,"to":%q,"text":%q}`, from, to, text)
}

// TestErrorTable covers every row of API.md's error table with its exact
// status and code.
func TestErrorTable(t *testing.T) {
	ok := msgBody(acmeNum, "+15557654321", "Hello")
	cases := []struct {
		name    string
		setup   func(t *testing.T, e *env)
		key     string
		body    string
		headers []string
		status  int
		code    string
		field   string
	}{
		{name: "bad json", key: acmeKey, body: `{"from":`, status: 400, code: CodeInvalidRequest},
		{name: "not an object", key: acmeKey, body: `[1,2]`, status: 400, code: CodeInvalidRequest},
		{name: "trailing data", key: acmeKey, body: ok + `{}`, status: 400, code: CodeInvalidRequest},
		{name: "empty body", key: acmeKey, body: ``, status: 400, code: CodeInvalidRequest},
		{name: "unknown field", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":"hi","priority":1}`, status: 400, code: CodeInvalidRequest, field: "priority"},
		{name: "wrong type", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":5}`, status: 400, code: CodeInvalidRequest, field: "text"},
		{name: "missing from", key: acmeKey, body: `{"to":"+15557654321","text":"hi"}`, status: 400, code: CodeInvalidRequest, field: "from"},
		{name: "missing to", key: acmeKey, body: `{"from":"+15550001111","text":"hi"}`, status: 400, code: CodeInvalidRequest, field: "to"},
		{name: "from not e164", key: acmeKey, body: msgBody("15550001111", "+15557654321", "hi"), status: 400, code: CodeInvalidRequest, field: "from"},
		{name: "to not e164", key: acmeKey, body: msgBody(acmeNum, "+1 555 765", "hi"), status: 400, code: CodeInvalidRequest, field: "to"},
		{name: "empty text no media", key: acmeKey, body: msgBody(acmeNum, "+15557654321", ""), status: 400, code: CodeInvalidRequest, field: "text"},
		{name: "client_ref too long", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":"hi","client_ref":"` + strings.Repeat("r", 129) + `"}`, status: 400, code: CodeInvalidRequest, field: "client_ref"},
		{name: "validity over max", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":"hi","validity":"11h"}`, status: 400, code: CodeInvalidRequest, field: "validity"},
		{name: "validity not a duration", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":"hi","validity":"soon"}`, status: 400, code: CodeInvalidRequest, field: "validity"},
		{name: "media without url", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","media":[{"content_type":"image/png"}]}`, status: 400, code: CodeInvalidRequest, field: "media[0].url"},
		{name: "idempotency key too long", key: acmeKey, body: ok, headers: []string{"Idempotency-Key", strings.Repeat("k", 300)}, status: 400, code: CodeInvalidRequest, field: "Idempotency-Key"},

		{name: "no api key", key: "", body: ok, status: 401, code: CodeUnauthorized},
		{name: "unknown api key", key: "nope", body: ok, status: 401, code: CodeUnauthorized},
		{name: "admin token is not an api key", key: adminToken, body: ok, status: 401, code: CodeUnauthorized},

		{name: "sender of another org", key: acmeKey, body: msgBody(betaNum, "+15557654321", "hi"), status: 403, code: CodeSenderNotAllowed, field: "from"},
		{name: "sender not configured", key: acmeKey, body: msgBody("+15559999999", "+15557654321", "hi"), status: 403, code: CodeSenderNotAllowed, field: "from"},
		{name: "sender unregistered", key: acmeKey, body: msgBody(acmeUnreg, "+15557654321", "hi"), status: 403, code: CodeSenderUnregistered},

		{name: "body too large", key: acmeKey, body: msgBody(acmeNum, "+15557654321", strings.Repeat("a", MaxBodyBytes)), status: 413, code: CodeBodyTooLarge},

		{name: "idempotency conflict", key: acmeKey, headers: []string{"Idempotency-Key", "k1"},
			setup: func(t *testing.T, e *env) {
				r := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "first"), "Idempotency-Key", "k1")
				require.Equal(t, 202, r.status, "%s", r.raw)
			},
			body: msgBody(acmeNum, "+15557654321", "second"), status: 422, code: CodeIdempotencyConflict},
		{name: "recipient opted out", key: acmeKey,
			setup: func(t *testing.T, e *env) {
				require.NoError(t, e.q.OptOut(context.Background(), acmeNum, "+15557654321"))
			},
			body: ok, status: 422, code: CodeRecipientOptedOut, field: "to"},
		{name: "content blocked", key: acmeKey, body: msgBody(acmeNum, "+15557654321", "Your rifle is ready"), status: 422, code: CodeContentBlocked},
		{name: "message too long", key: acmeKey, body: msgBody(acmeNum, "+15557654321", strings.Repeat("a", 1600)), status: 422, code: CodeMessageTooLong},
		{name: "media unsupported", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://example.com/v.mp4","content_type":"video/mp4"}]}`, status: 422, code: CodeMediaUnsupported},
		{name: "media over size", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","media":[{"url":"https://example.com/a.png","content_type":"image/png","size":2000000}]}`, status: 422, code: CodeMediaUnsupported},
		{name: "mms from toll free", key: acmeKey, body: `{"from":"+18005550000","to":"+15557654321","media":[{"url":"https://example.com/a.png","content_type":"image/png"}]}`, status: 422, code: CodeMMSNotSupported},
		{name: "queue full", key: acmeKey,
			setup: func(t *testing.T, e *env) {
				// max_per_number is 3 in testdata; the notice counts too.
				for i := range 3 {
					r := e.send(acmeKey, msgBody(acmeNum, "+15557654321", fmt.Sprint("fill ", i)))
					require.Contains(t, []int{202, 429}, r.status, "%s", r.raw)
				}
			},
			body: ok, status: 429, code: CodeQueueFull},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			refused := counterValue(t, e.srv.metrics.refused.WithLabelValues(tc.code))
			r := e.send(tc.key, tc.body, tc.headers...)
			require.Equal(t, tc.status, r.status, "%s", r.raw)
			require.Equal(t, tc.code, r.errCode(), "%s", r.raw)
			require.NotEmpty(t, r.errField("message"))
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			if tc.field != "" {
				require.Equal(t, tc.field, r.errField("field"), "%s", r.raw)
			}
			if tc.status == 401 {
				require.NotEmpty(t, r.header.Get("WWW-Authenticate"))
			}
			require.Equal(t, refused+1, counterValue(t, e.srv.metrics.refused.WithLabelValues(tc.code)))
		})
	}

	t.Run("unavailable", func(t *testing.T) {
		e := newEnvRedis(t, "127.0.0.1:1")
		r := e.send(acmeKey, ok)
		require.Equal(t, 503, r.status, "%s", r.raw)
		require.Equal(t, CodeUnavailable, r.errCode())
		require.NotEmpty(t, r.errField("message"))
	})
}

func TestContentBlockedNamesCategory(t *testing.T) {
	e := newEnv(t)
	r := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "A new HANDGUN arrived."))
	require.Equal(t, 422, r.status, "%s", r.raw)
	require.Equal(t, "firearms", r.errField("category"))
	require.Equal(t, "handgun", r.errField("term"))

	// acme downgrades tobacco to warn; beta keeps the rules' block.
	r = e.send(acmeKey, msgBody(acmeNum, "+15557654321", "No cigarettes before surgery."))
	require.Equal(t, 202, r.status, "%s", r.raw)
	ws := r.body["warnings"].([]any)
	require.Len(t, ws, 1)
	require.Equal(t, "content_warning", ws[0].(map[string]any)["code"])
	require.Equal(t, "tobacco", ws[0].(map[string]any)["category"])
	r = e.send(betaKey, msgBody(betaNum, "+15557654321", "No cigarettes before surgery."))
	require.Equal(t, 422, r.status, "%s", r.raw)
	require.Equal(t, "tobacco", r.errField("category"))
}

func TestSendAccepted(t *testing.T) {
	e := newEnv(t)
	before := time.Now().UTC().Add(-time.Second)
	r := e.send(acmeKey, `{"from":"+15550001111","to":"+15557654321","text":"Hello there","client_ref":"ref-1"}`)
	require.Equal(t, 202, r.status, "%s", r.raw)
	b := r.body
	id, _ := b["id"].(string)
	require.True(t, strings.HasPrefix(id, "msg_"), id)
	require.Equal(t, "queued", b["status"])
	require.Equal(t, acmeNum, b["from"])
	require.Equal(t, "+15557654321", b["to"])
	require.Equal(t, "ref-1", b["client_ref"])
	require.Equal(t, "gsm7", b["encoding"])
	require.Equal(t, 1.0, b["segments"])
	require.Equal(t, 11.0, b["characters"])
	require.Equal(t, []any{}, b["warnings"], "warnings is [] never null")
	created, err := time.Parse(time.RFC3339, b["created_at"].(string))
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(b["created_at"].(string), "Z"))
	require.True(t, created.After(before))
	require.Equal(t, 1.0, counterValue(t, e.srv.metrics.accepted.WithLabelValues("gsm7")))

	// The stored message, read back by the same org.
	g := e.do(http.MethodGet, "/v1/messages/"+id, acmeKey2, "")
	require.Equal(t, 200, g.status, "%s", g.raw)
	require.Equal(t, id, g.body["id"])
	require.Equal(t, "queued", g.body["status"])
	require.Equal(t, "user", g.body["kind"])
	require.Equal(t, "Hello there", g.body["text"])
	require.Equal(t, "ref-1", g.body["client_ref"])
	require.NotNil(t, g.body["history"])
	require.Equal(t, []any{}, g.body["carrier_message_ids"])
	require.Equal(t, false, g.body["possible_duplicate"])
	exp, err := time.Parse(time.RFC3339, g.body["expires_at"].(string))
	require.NoError(t, err)
	cr, err := time.Parse(time.RFC3339, g.body["created_at"].(string))
	require.NoError(t, err)
	require.Equal(t, 4*time.Hour, exp.Sub(cr), "default validity")
}

func TestSendVariants(t *testing.T) {
	cases := []struct {
		name               string
		key, body          string
		encoding           string
		segments, chars    float64
		warnings           []string
		validity           time.Duration
		wantMediaInGetBody bool
	}{
		{name: "ucs2 emoji", key: acmeKey, body: msgBody(acmeNum, "+15557654321", "héllo 😀"), encoding: "ucs2", segments: 1, chars: 7, validity: 4 * time.Hour},
		{name: "two gsm7 segments", key: acmeKey, body: msgBody(acmeNum, "+15557654321", strings.Repeat("x", 161)), encoding: "gsm7", segments: 2, chars: 161, validity: 4 * time.Hour},
		{name: "warning", key: acmeKey, body: msgBody(acmeNum, "+15557654321", "Bring beer"), encoding: "gsm7", segments: 1, chars: 10, warnings: []string{"alcohol"}, validity: 4 * time.Hour},
		{name: "validity", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":"hi","validity":"30m"}`, encoding: "gsm7", segments: 1, chars: 2, validity: 30 * time.Minute},
		{name: "mms accepted", key: acmeKey, body: `{"from":"+15550001111","to":"+15557654321","text":"scan","media":[{"url":"https://example.com/a.png","content_type":"image/png"}]}`, encoding: "gsm7", segments: 1, chars: 4, validity: 4 * time.Hour, wantMediaInGetBody: true},
		{name: "short code other org", key: betaKey, body: msgBody(betaNum, "+15557654321", "hi"), encoding: "gsm7", segments: 1, chars: 2, validity: 4 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.send(tc.key, tc.body)
			require.Equal(t, 202, r.status, "%s", r.raw)
			require.Equal(t, tc.encoding, r.body["encoding"])
			require.Equal(t, tc.segments, r.body["segments"])
			require.Equal(t, tc.chars, r.body["characters"])
			var cats []string
			for _, w := range r.body["warnings"].([]any) {
				wm := w.(map[string]any)
				require.Equal(t, "content_warning", wm["code"])
				require.NotEmpty(t, wm["message"])
				cats = append(cats, wm["category"].(string))
			}
			require.Equal(t, tc.warnings, cats)
			for _, c := range tc.warnings {
				require.Equal(t, 1.0, counterValue(t, e.srv.metrics.warnings.WithLabelValues(c)))
			}
			g := e.do(http.MethodGet, "/v1/messages/"+r.body["id"].(string), tc.key, "")
			require.Equal(t, 200, g.status, "%s", g.raw)
			exp, _ := time.Parse(time.RFC3339, g.body["expires_at"].(string))
			cr, _ := time.Parse(time.RFC3339, g.body["created_at"].(string))
			require.Equal(t, tc.validity, exp.Sub(cr))
			_, hasMedia := g.body["media"]
			require.Equal(t, tc.wantMediaInGetBody, hasMedia)
		})
	}
}

func TestCrossOrgIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "for acme"))
	require.Equal(t, 202, a.status, "%s", a.raw)
	b := e.send(betaKey, msgBody(betaNum, "+15557654321", "for beta"))
	require.Equal(t, 202, b.status, "%s", b.raw)
	aID, bID := a.body["id"].(string), b.body["id"].(string)

	cases := []struct {
		key, id string
		status  int
	}{
		{acmeKey, aID, 200},
		{acmeKey2, aID, 200},
		{betaKey, bID, 200},
		{betaKey, aID, 404},
		{acmeKey, bID, 404},
		{acmeKey, "msg_doesnotexist000000000000000", 404},
		{acmeKey, "evt_x", 404},
		{"", aID, 401},
		{"wrong", aID, 401},
	}
	for _, tc := range cases {
		r := e.do(http.MethodGet, "/v1/messages/"+tc.id, tc.key, "")
		require.Equal(t, tc.status, r.status, "key %q id %s: %s", tc.key, tc.id, r.raw)
		if tc.status == 404 {
			require.Equal(t, CodeNotFound, r.errCode())
			require.NotContains(t, string(r.raw), "for ", "no content of another org leaks")
		}
	}
	// Sending from the other org's number is refused both ways.
	r := e.send(betaKey, msgBody(acmeNum, "+15557654321", "hi"))
	require.Equal(t, 403, r.status)
	require.Equal(t, CodeSenderNotAllowed, r.errCode())
}

func TestGetUnavailable(t *testing.T) {
	e := newEnvRedis(t, "127.0.0.1:1")
	r := e.do(http.MethodGet, "/v1/messages/msg_01abcdefghjkmnpqrstvwxyz0000", acmeKey, "")
	require.Equal(t, 503, r.status, "%s", r.raw)
	require.Equal(t, CodeUnavailable, r.errCode())
}

// A request whose first attempt was accepted replays that response after a
// reload that would now refuse it; without the key, or with a new key, the
// refusal stands.
func TestIdempotencyReplayAfterConfigChange(t *testing.T) {
	var cfg *config.Config
	e := newEnv(t, func(_ *Options, c *config.Config) { cfg = c })
	body := msgBody(acmeNum, "+15557654321", "booked")
	first := e.send(acmeKey, body, "Idempotency-Key", "order-77")
	require.Equal(t, 202, first.status, "%s", first.raw)

	for i, o := range cfg.Orgs {
		for j, n := range o.Numbers {
			if n.E164 == acmeNum {
				cfg.Orgs[i].Numbers[j].Registered = false
			}
		}
	}
	e.srv.SetState(NewState(cfg, loadRules(t)))

	again := e.send(acmeKey, body, "Idempotency-Key", "order-77")
	require.Equal(t, 202, again.status, "%s", again.raw)
	require.Equal(t, string(first.raw), string(again.raw))
	require.Equal(t, 1.0, counterValue(t, e.srv.metrics.replayed))

	for _, headers := range [][]string{nil, {"Idempotency-Key", "order-78"}} {
		r := e.send(acmeKey, body, headers...)
		require.Equal(t, 403, r.status, "%s", r.raw)
		require.Equal(t, CodeSenderUnregistered, r.errCode())
	}
	// Another body under the first key is refused for what it is.
	r := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "other"), "Idempotency-Key", "order-77")
	require.Equal(t, CodeSenderUnregistered, r.errCode())
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, func(_ *Options, c *config.Config) { c.Queue.MaxPerNumber = 100 })
	body := msgBody(acmeNum, "+15557654321", "once")
	first := e.send(acmeKey, body, "Idempotency-Key", "order-42")
	require.Equal(t, 202, first.status, "%s", first.raw)

	again := e.send(acmeKey, body, "Idempotency-Key", "order-42")
	require.Equal(t, 202, again.status, "%s", again.raw)
	require.Equal(t, string(first.raw), string(again.raw), "the first response, byte for byte")
	require.Equal(t, 1.0, counterValue(t, e.srv.metrics.replayed))
	require.Equal(t, 1.0, counterValue(t, e.srv.metrics.accepted.WithLabelValues("gsm7")))

	other := e.send(acmeKey, body, "Idempotency-Key", "order-43")
	require.Equal(t, 202, other.status, "%s", other.raw)
	require.NotEqual(t, first.body["id"], other.body["id"])

	noKey := e.send(acmeKey, body)
	require.Equal(t, 202, noKey.status, "%s", noKey.raw)
	require.NotEqual(t, first.body["id"], noKey.body["id"])

	conflict := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "twice"), "Idempotency-Key", "order-42")
	require.Equal(t, 422, conflict.status, "%s", conflict.raw)
	require.Equal(t, CodeIdempotencyConflict, conflict.errCode())

	// The key is the org's, not the number's: the same key from another of
	// the org's numbers is another body, so a conflict.
	fromOther := e.send(acmeKey, msgBody(acmeShortCode, "+15557654321", "once"), "Idempotency-Key", "order-42")
	require.Equal(t, 422, fromOther.status, "%s", fromOther.raw)
	require.Equal(t, CodeIdempotencyConflict, fromOther.errCode())

	// Another org's identical key is its own.
	beta := e.send(betaKey, msgBody(betaNum, "+15557654321", "once"), "Idempotency-Key", "order-42")
	require.Equal(t, 202, beta.status, "%s", beta.raw)
	require.NotEqual(t, first.body["id"], beta.body["id"])
}

func TestDryRun(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.q.OptOut(context.Background(), acmeNum, "+15550009999"))
	cases := []struct {
		name     string
		key      string
		body     string
		status   int
		encoding string
		segments float64
		warnings []string
		block    string // would_block code, "" = null
		category string
		term     string
		errCode  string // for non-200
	}{
		{name: "clean", key: acmeKey, body: msgBody(acmeNum, "+15557654321", "Hello"), status: 200, encoding: "gsm7", segments: 1},
		{name: "warning", key: acmeKey, body: msgBody(acmeNum, "+15557654321", "wine tasting"), status: 200, encoding: "gsm7", segments: 1, warnings: []string{"alcohol"}},
		{name: "blocked", key: acmeKey, body: msgBody(acmeNum, "+15557654321", "rifle sale"), status: 200, encoding: "gsm7", segments: 1, block: CodeContentBlocked, category: "firearms", term: "rifle"},
		{name: "too long", key: acmeKey, body: msgBody(acmeNum, "+15557654321", strings.Repeat("ж", 1600)), status: 200, encoding: "ucs2", segments: 24, block: CodeMessageTooLong},
		{name: "unregistered", key: acmeKey, body: msgBody(acmeUnreg, "+15557654321", "hi"), status: 200, encoding: "gsm7", segments: 1, block: CodeSenderUnregistered},
		{name: "opted out", key: acmeKey, body: msgBody(acmeNum, "+15550009999", "hi"), status: 200, encoding: "gsm7", segments: 1, block: CodeRecipientOptedOut},
		{name: "bad request", key: acmeKey, body: `{"from":"x"}`, status: 400, errCode: CodeInvalidRequest},
		{name: "unauthorized", key: "", body: msgBody(acmeNum, "+15557654321", "hi"), status: 401, errCode: CodeUnauthorized},
		{name: "other org's number", key: betaKey, body: msgBody(acmeNum, "+15557654321", "hi"), status: 403, errCode: CodeSenderNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(http.MethodPost, "/v1/messages/dry-run", tc.key, tc.body)
			require.Equal(t, tc.status, r.status, "%s", r.raw)
			if tc.status != 200 {
				require.Equal(t, tc.errCode, r.errCode())
				return
			}
			require.Equal(t, tc.encoding, r.body["encoding"])
			require.Equal(t, tc.segments, r.body["segments"])
			require.Contains(t, r.body, "characters")
			var cats []string
			for _, w := range r.body["warnings"].([]any) {
				cats = append(cats, w.(map[string]any)["category"].(string))
			}
			require.Equal(t, tc.warnings, cats)
			require.Contains(t, r.body, "would_block")
			if tc.block == "" {
				require.Nil(t, r.body["would_block"])
				return
			}
			wb := r.body["would_block"].(map[string]any)
			require.Equal(t, tc.block, wb["code"])
			require.NotEmpty(t, wb["message"])
			if tc.category != "" {
				require.Equal(t, tc.category, wb["category"])
				require.Equal(t, tc.term, wb["term"])
			}
		})
	}
	// A real send after the dry runs is accepted (TestDryRunQueuesNothing
	// checks the queue depth).
	r := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "Hello"))
	require.Equal(t, 202, r.status, "%s", r.raw)
	require.Equal(t, 0.0, counterValue(t, e.srv.metrics.refused.WithLabelValues(CodeContentBlocked)), "dry runs are not refusals")

	t.Run("unavailable", func(t *testing.T) {
		e := newEnvRedis(t, "127.0.0.1:1")
		r := e.do(http.MethodPost, "/v1/messages/dry-run", acmeKey, msgBody(acmeNum, "+15557654321", "hi"))
		require.Equal(t, 503, r.status, "%s", r.raw)
		require.Equal(t, CodeUnavailable, r.errCode())
	})
}

func TestDryRunQueuesNothing(t *testing.T) {
	e := newEnv(t)
	for range 3 {
		r := e.do(http.MethodPost, "/v1/messages/dry-run", acmeKey, msgBody(acmeNum, "+15557654321", "Hello"))
		require.Equal(t, 200, r.status, "%s", r.raw)
	}
	// max_per_number is 3: three real sends' worth of room is still there
	// only if the dry runs queued nothing.
	r := e.send(acmeKey, msgBody(acmeNum, "+15557654321", "Hello"))
	require.Equal(t, 202, r.status, "%s", r.raw)
	r = e.send(acmeKey, msgBody(acmeNum, "+15557654321", "Hello"))
	require.Equal(t, 202, r.status, "%s", r.raw)
}

func TestHealthAndReady(t *testing.T) {
	e := newEnv(t)
	r := e.do(http.MethodGet, "/healthz", "", "")
	require.Equal(t, 200, r.status)
	r = e.do(http.MethodGet, "/readyz", "", "")
	require.Equal(t, 200, r.status, "%s", r.raw)

	e.readyMu.Lock()
	e.readyEr = fmt.Errorf("no carrier bind is bound")
	e.readyMu.Unlock()
	r = e.do(http.MethodGet, "/readyz", "", "")
	require.Equal(t, 503, r.status)
	require.Equal(t, "no carrier bind is bound", r.body["reason"])

	e.readyMu.Lock()
	e.readyEr = nil
	e.readyMu.Unlock()
	e.srv.SetNotReady()
	r = e.do(http.MethodGet, "/readyz", "", "")
	require.Equal(t, 503, r.status)
	require.Equal(t, "shutting down", r.body["reason"])
	r = e.do(http.MethodGet, "/healthz", "", "")
	require.Equal(t, 200, r.status, "healthz stays 200 while the process runs")
}

func TestRoutingMisc(t *testing.T) {
	e := newEnv(t)
	r := e.do(http.MethodGet, "/v2/nothing", acmeKey, "")
	require.Equal(t, 404, r.status)
	require.Equal(t, CodeNotFound, r.errCode())
	r = e.do(http.MethodGet, "/dev/events", "", "")
	require.Equal(t, 404, r.status, "dev sink is off by default")

	// A known path with the wrong method: 405 naming the methods it takes.
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodGet, "/v1/messages", "POST"},
		{http.MethodDelete, "/v1/messages/msg_x", "GET"},
		{http.MethodPost, "/healthz", "GET"},
		{http.MethodPost, "/admin/numbers", "GET"},
		{http.MethodGet, "/admin/reload", "POST"},
		{http.MethodPut, "/admin/opt-outs", "GET, POST, DELETE"},
	} {
		r = e.do(tc.method, tc.path, acmeKey, "")
		require.Equal(t, 405, r.status, "%s %s", tc.method, tc.path)
		require.Equal(t, CodeMethodNotAllowed, r.errCode())
		require.Equal(t, tc.allow, r.header.Get("Allow"))
		require.Contains(t, r.body["error"].(map[string]any)["message"], tc.path+" does not take "+tc.method)
	}
	require.Equal(t, 8.0, counterValue(t, e.srv.metrics.requests.WithLabelValues("other", "4xx")))
}

func TestSetStateSwapsKeysAndNumbers(t *testing.T) {
	e := newEnv(t)
	cfg := loadConfig(t)
	cfg.Orgs[1].APIKeySHA256 = []string{hashString("beta-new-key")}
	e.srv.SetState(NewState(cfg, loadRules(t)))
	r := e.send(betaKey, msgBody(betaNum, "+15557654321", "hi"))
	require.Equal(t, 401, r.status, "old key no longer accepted")
	r = e.send("beta-new-key", msgBody(betaNum, "+15557654321", "hi"))
	require.Equal(t, 202, r.status, "%s", r.raw)
}

func hashString(s string) string {
	h := hashHex(s)
	return string(h[:])
}
