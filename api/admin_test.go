package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

func TestAdminAuth(t *testing.T) {
	e := newEnv(t)
	paths := []struct{ method, path, body string }{
		{http.MethodPost, "/admin/reload", ""},
		{http.MethodGet, "/admin/numbers", ""},
		{http.MethodGet, "/admin/numbers/%2B15550001111", ""},
		{http.MethodGet, "/admin/opt-outs?from=%2B15550001111", ""},
		{http.MethodPost, "/admin/opt-outs", `{"from":"+15550001111","to":"+15557654321"}`},
		{http.MethodDelete, "/admin/opt-outs?from=%2B15550001111&to=%2B15557654321", ""},
		{http.MethodGet, "/admin/dead-letters", ""},
		{http.MethodPost, "/admin/dead-letters/evt_1/redeliver", ""},
	}
	for _, p := range paths {
		for _, key := range []string{"", acmeKey, "admin-token-wrong"} {
			r := e.do(p.method, p.path, key, p.body)
			require.Equal(t, 401, r.status, "%s %s key %q: %s", p.method, p.path, key, r.raw)
			require.Equal(t, CodeUnauthorized, r.errCode())
		}
	}

	// Admin not configured: the endpoints do not exist.
	off := newEnv(t, func(o *Options, c *config.Config) { c.Admin.TokenSHA256 = "" })
	for _, p := range paths {
		r := off.do(p.method, p.path, adminToken, p.body)
		require.Equal(t, 404, r.status, "%s %s: %s", p.method, p.path, r.raw)
		require.Equal(t, CodeNotFound, r.errCode())
	}
}

func TestAdminNumbers(t *testing.T) {
	e := newEnv(t)
	r := e.do(http.MethodGet, "/admin/numbers", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
	nums := r.body["numbers"].([]any)
	require.Len(t, nums, 5)
	byE164 := map[string]map[string]any{}
	for _, n := range nums {
		m := n.(map[string]any)
		byE164[m["e164"].(string)] = m
	}
	require.Equal(t, map[string]any{"e164": acmeNum, "org": "acme", "kind": "long_code", "registered": true, "mms": true, "rate": 1.0, "carrier": "carrier-a"}, byE164[acmeNum])
	require.Equal(t, map[string]any{"e164": acmeTollFree, "org": "acme", "kind": "toll_free", "registered": true, "mms": false, "rate": 3.0, "carrier": "carrier-b", "fallback": "carrier-a"}, byE164[acmeTollFree])
	require.Equal(t, false, byE164[acmeUnreg]["registered"])
	require.Equal(t, map[string]any{"e164": acmeShortCode, "org": "acme", "kind": "short_code", "registered": true, "mms": true, "rate": 50.0, "carrier": "carrier-b"}, byE164[acmeShortCode])
	require.Equal(t, "beta", byE164[betaNum]["org"])

	r = e.do(http.MethodGet, "/admin/numbers/%2B15550003333", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
	require.Equal(t, betaNum, r.body["e164"])
	require.Equal(t, "beta", r.body["org"])

	r = e.do(http.MethodGet, "/admin/numbers/%2B19999999999", adminToken, "")
	require.Equal(t, 404, r.status)
	require.Equal(t, CodeNotFound, r.errCode())
}

func TestAdminOptOuts(t *testing.T) {
	e := newEnv(t)
	const to = "+15557654321"

	list := func() []any {
		r := e.do(http.MethodGet, "/admin/opt-outs?from=%2B15550001111", adminToken, "")
		require.Equal(t, 200, r.status, "%s", r.raw)
		require.Equal(t, acmeNum, r.body["from"])
		return r.body["opted_out"].([]any)
	}
	require.Equal(t, []any{}, list())

	r := e.do(http.MethodPost, "/admin/opt-outs", adminToken, fmt.Sprintf(`{"from":%q,"to":%q}`, acmeNum, to))
	require.Equal(t, 200, r.status, "%s", r.raw)
	require.Equal(t, true, r.body["opted_out"])
	require.Equal(t, []any{to}, list())

	s := e.send(acmeKey, msgBody(acmeNum, to, "hi"))
	require.Equal(t, 422, s.status, "%s", s.raw)
	require.Equal(t, CodeRecipientOptedOut, s.errCode())

	r = e.do(http.MethodDelete, "/admin/opt-outs?from=%2B15550001111&to=%2B15557654321", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
	require.Equal(t, false, r.body["opted_out"])
	require.Equal(t, []any{}, list())

	s = e.send(acmeKey, msgBody(acmeNum, to, "hi"))
	require.Equal(t, 202, s.status, "%s", s.raw)

	bad := []struct{ method, path, body, field string }{
		{http.MethodGet, "/admin/opt-outs", "", "from"},
		{http.MethodGet, "/admin/opt-outs?from=+15550001111", "", "from"}, // + decoded as space
		{http.MethodPost, "/admin/opt-outs", `{"from":"+15550001111"}`, "to"},
		{http.MethodPost, "/admin/opt-outs", `{"from":"+15550001111","to":"+1555","x":1}`, "x"},
		{http.MethodPost, "/admin/opt-outs", `{"from":"abc","to":"+15557654321"}`, "from"},
		{http.MethodDelete, "/admin/opt-outs?from=%2B15550001111", "", "to"},
	}
	for _, b := range bad {
		r := e.do(b.method, b.path, adminToken, b.body)
		require.Equal(t, 400, r.status, "%s %s: %s", b.method, b.path, r.raw)
		require.Equal(t, CodeInvalidRequest, r.errCode())
		require.Equal(t, b.field, r.errField("field"))
	}

	// A number the configuration does not have cannot be opted out of (a
	// typo would record an opt-out nobody looks at); removing one can.
	r = e.do(http.MethodPost, "/admin/opt-outs", adminToken, `{"from":"+15551234567","to":"+15557654321"}`)
	require.Equal(t, 404, r.status, "%s", r.raw)
	require.Equal(t, CodeNotFound, r.errCode())
	require.Equal(t, "from", r.errField("field"))
	require.Contains(t, r.errField("message"), "not a number in the configuration")
	r = e.do(http.MethodDelete, "/admin/opt-outs?from=%2B15551234567&to=%2B15557654321", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
}

func TestAdminReload(t *testing.T) {
	var calls int
	var next error
	e := newEnv(t, func(o *Options, _ *config.Config) {
		o.Reload = func(context.Context) error { calls++; return next }
	})
	r := e.do(http.MethodPost, "/admin/reload", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
	require.Equal(t, "ok", r.body["status"])
	require.Equal(t, 1, calls)

	next = fmt.Errorf("app: reload: %w", &config.ValidationError{Problems: []config.Problem{
		{Path: "org[0].number[1].e164", Message: "not E.164"},
		{Path: "queue.max_validity", Message: "must be positive"},
	}})
	r = e.do(http.MethodPost, "/admin/reload", adminToken, "")
	require.Equal(t, 422, r.status, "%s", r.raw)
	require.Equal(t, "invalid_config", r.errCode())
	problems := r.body["error"].(map[string]any)["problems"].([]any)
	require.Equal(t, []any{
		map[string]any{"path": "org[0].number[1].e164", "message": "not E.164"},
		map[string]any{"path": "queue.max_validity", "message": "must be positive"},
	}, problems)

	next = errors.New("read /etc/smsgate.toml: permission denied")
	r = e.do(http.MethodPost, "/admin/reload", adminToken, "")
	require.Equal(t, 422, r.status, "%s", r.raw)
	problems = r.body["error"].(map[string]any)["problems"].([]any)
	require.Len(t, problems, 1)
	require.Contains(t, problems[0].(map[string]any)["message"], "permission denied")

	// No Reload injected: 404.
	e2 := newEnv(t)
	r = e2.do(http.MethodPost, "/admin/reload", adminToken, "")
	require.Equal(t, 404, r.status)
}

func TestAdminDeadLetters(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e.dead.list = []DeadLetter{
		{EventID: "evt_2", Type: "message.status", OrgID: "acme", URL: "http://127.0.0.1:9/x", Attempts: 12, LastError: "connection refused", FailedAt: at, Event: []byte(`{"id":"evt_2"}`)},
		{EventID: "evt_1", Type: "message.received", OrgID: "beta", Attempts: 3, FailedAt: at},
	}
	r := e.do(http.MethodGet, "/admin/dead-letters", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
	dl := r.body["dead_letters"].([]any)
	require.Len(t, dl, 2)
	first := dl[0].(map[string]any)
	require.Equal(t, "evt_2", first["event_id"])
	require.Equal(t, map[string]any{"id": "evt_2"}, first["event"])
	require.Equal(t, "2025-01-02T03:04:05Z", first["failed_at"])

	r = e.do(http.MethodGet, "/admin/dead-letters?limit=1", adminToken, "")
	require.Equal(t, 200, r.status)
	require.Len(t, r.body["dead_letters"].([]any), 1)
	for _, bad := range []string{"0", "-1", "x", "1001"} {
		r = e.do(http.MethodGet, "/admin/dead-letters?limit="+bad, adminToken, "")
		require.Equal(t, 400, r.status, bad)
		require.Equal(t, "limit", r.errField("field"))
	}

	r = e.do(http.MethodPost, "/admin/dead-letters/evt_1/redeliver", adminToken, "")
	require.Equal(t, 200, r.status, "%s", r.raw)
	require.Equal(t, []string{"evt_1"}, e.dead.redelivered)
	r = e.do(http.MethodPost, "/admin/dead-letters/evt_1/redeliver", adminToken, "")
	require.Equal(t, 404, r.status, "%s", r.raw)
	require.Equal(t, CodeNotFound, r.errCode())

	none := newEnv(t, func(o *Options, _ *config.Config) { o.DeadLetters = nil })
	r = none.do(http.MethodGet, "/admin/dead-letters", adminToken, "")
	require.Equal(t, 404, r.status)
}

func TestAdminUnavailable(t *testing.T) {
	e := newEnvRedis(t, "127.0.0.1:1")
	r := e.do(http.MethodGet, "/admin/opt-outs?from=%2B15550001111", adminToken, "")
	require.Equal(t, 503, r.status, "%s", r.raw)
	require.Equal(t, CodeUnavailable, r.errCode())
}
