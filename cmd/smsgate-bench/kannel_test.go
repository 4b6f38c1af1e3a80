package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKannelDLRMask(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{in: "", want: 27},
		{in: "delivered,undelivered,failed,expired", want: 19},
		{in: "sent,delivered", want: 9},
		{in: "delivered", want: 1},
		{in: "undelivered,failed", wantErr: "needs delivered"},
		{in: "delivered,queued", wantErr: `"queued" has no Kannel delivery report`},
	}
	for _, tc := range tests {
		got, err := kannelDLRMask(tc.in)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
	}
}

func TestKannelStatus(t *testing.T) {
	for typ, want := range map[string]string{"1": "delivered", "2": "undelivered", "4": "", "8": "sent", "16": "failed", "": "", "x": ""} {
		require.Equal(t, want, kannelStatus(typ), typ)
	}
}

func TestParseKannelStatus(t *testing.T) {
	b, err := os.ReadFile("testdata/kannel-status.txt") // bearerbox 1.4.5's status.txt
	require.NoError(t, err)
	sent, err := parseKannelSent(string(b))
	require.NoError(t, err)
	require.Equal(t, 1.0, sent)
	smscs, box := kannelOnline(string(b))
	require.Equal(t, 2, smscs)
	require.True(t, box)

	_, err = parseKannelSent("Status: running\n")
	require.ErrorContains(t, err, "no \"SMS: received")
	starting := strings.Replace(string(b), "(online 6s", "(connecting", 1)
	starting = strings.Replace(starting, "smsbox:(none)", "", 1)
	smscs, box = kannelOnline(starting)
	require.Equal(t, 1, smscs)
	require.False(t, box)
}

func FuzzParseKannelSent(f *testing.F) {
	b, err := os.ReadFile("testdata/kannel-status.txt")
	require.NoError(f, err)
	f.Add(string(b))
	f.Add("SMS: received 1 (0 queued), sent 99999999999999999999999 (0 queued)")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseKannelSent(s)
		if err == nil {
			require.GreaterOrEqual(t, v, 0.0)
		}
		n, _ := kannelOnline(s)
		require.GreaterOrEqual(t, n, 0)
	})
}

func TestKannelConfig(t *testing.T) {
	c := kannelConfig(kannelPorts{Admin: 1, Smsbox: 2, Sendsms: 3}, "/tmp/x", "127.0.0.1", 2775, 2, 50, 0)
	require.Contains(t, c, "dlr-storage = internal\n")
	require.NotContains(t, c, "redis-connection")
	require.Equal(t, 2, strings.Count(c, "group = smsc\n"))
	require.Equal(t, 2, strings.Count(c, "max-pending-submits = 50\n"))
	for _, want := range []string{"admin-port = 1\n", "smsbox-port = 2\n", "sendsms-port = 3\n", "store-type = file\n",
		`store-location = "/tmp/x/kannel.store"`, "transceiver-mode = true\n", "port = 2775\n", `username = "bench"`} {
		require.Contains(t, c, want)
	}
}

func TestKannelConfigDLRRedis(t *testing.T) {
	c := kannelConfig(kannelPorts{Admin: 1, Smsbox: 2, Sendsms: 3}, "/tmp/x", "127.0.0.1", 2775, 1, 50, 6400)
	for _, want := range []string{"dlr-storage = redis\n", "group = redis-connection\nid = dlr\n", "port = 6400\n", "group = dlr-db\nid = dlr\n", "field-boxc-id = boxc\n"} {
		require.Contains(t, c, want)
	}
}

func TestKannelQueries(t *testing.T) {
	p := newPlan(2, 5, "Hi & bye +1")
	qs := p.kannelQueries(3, 19, "http://127.0.0.1:9/kannel")
	require.Len(t, qs, 3)
	path, raw, ok := strings.Cut(string(qs[2]), "?")
	require.True(t, ok)
	require.Equal(t, "/cgi-bin/sendsms", path)
	v, err := url.ParseQuery(raw)
	require.NoError(t, err)
	from, to := p.route(2)
	require.Equal(t, from, v.Get("from"))
	require.Equal(t, to, v.Get("to"))
	require.Equal(t, "Hi & bye +1", v.Get("text"))
	require.Equal(t, "19", v.Get("dlr-mask"))
	require.Equal(t, "http://127.0.0.1:9/kannel?ref=b2&type=%d", v.Get("dlr-url"))
}

// TestSinkKannelReports: Kannel's GET reports count as the events they stand for.
func TestSinkKannelReports(t *testing.T) {
	s := &sink{byKind: map[string]int{}, delivered: make([]bool, 2)}
	get := func(q string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/kannel?"+q, nil))
		require.Equal(t, http.StatusOK, rec.Code)
	}
	get("ref=b0&type=8")
	get("ref=b0&type=1")
	get("ref=b0&type=1")
	get("ref=b1&type=2")
	get("ref=b1&type=4") // buffered: not asked for, not counted
	c := s.counts()
	require.Equal(t, 1, c.UserDelivered)
	require.Equal(t, 1, c.DupDelivered)
	require.Equal(t, 1, c.Bad)
	require.Equal(t, map[string]int{"message.status:sent": 1, "message.status:delivered": 2, "message.status:undelivered": 1}, c.ByKind)
}

func TestParseFlagsKannel(t *testing.T) {
	o, err := parseFlags([]string{"-kannel", "-quick"}, &strings.Builder{})
	require.NoError(t, err)
	require.True(t, o.Kannel)
	require.Equal(t, time.Second, o.ReceiptDelay, "receipts wait 1 s unless told")
	require.Equal(t, "/usr/sbin", o.KannelDir)

	o, err = parseFlags([]string{"-kannel", "-receipt-delay", "0"}, &strings.Builder{})
	require.NoError(t, err)
	require.Zero(t, o.ReceiptDelay)

	o, err = parseFlags(nil, &strings.Builder{})
	require.NoError(t, err)
	require.Zero(t, o.ReceiptDelay)

	for args, want := range map[string]string{
		"-kannel -floor":                    "-kannel runs Kannel alone",
		"-kannel -daemons 2":                "-kannel runs Kannel alone",
		"-kannel -status-events failed":     "needs delivered",
		"-receipt-delay -1s":                "-receipt-delay must not be negative",
		"-floor -receipt-delay 1s":          "-receipt-delay needs a simulator",
		"-kannel -status-events delivered,": `"" has no Kannel delivery report`,
	} {
		_, err := parseFlags(strings.Fields(args), &strings.Builder{})
		require.ErrorContains(t, err, want, args)
	}
}
