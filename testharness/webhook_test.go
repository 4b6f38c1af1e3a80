package testharness

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10) + "."))
	mac.Write(body)
	return "t=" + strconv.FormatInt(ts, 10) + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func post(t *testing.T, url string, body []byte, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp.StatusCode
}

func TestWebhookSink(t *testing.T) {
	sink := NewWebhookSink(t)
	body := []byte(`{"id":"evt_1","type":"message.status","created_at":"2025-01-01T00:00:00Z","data":{"id":"msg_1","status":"sent"}}`)
	hdr := map[string]string{"Smsgate-Event-Id": "evt_1", "Smsgate-Signature": sign("s3cret", 1700000000, body)}

	sink.SetFailing(http.StatusServiceUnavailable)
	require.Equal(t, http.StatusServiceUnavailable, post(t, sink.URL()+"/events", body, hdr))
	require.Empty(t, sink.Events())
	require.Len(t, sink.Attempts(), 1)
	_, err := sink.WaitFor(1, 20*time.Millisecond)
	require.Error(t, err)

	sink.SetFailing(0)
	sent := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond) // WaitFor must wait for it
		req, _ := http.NewRequest(http.MethodPost, sink.URL()+"/events", bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			err = resp.Body.Close()
		}
		sent <- err
	}()
	evs, err := sink.WaitFor(1, wait)
	require.NoError(t, err)
	require.NoError(t, <-sent)
	require.Len(t, evs, 1)
	ev := evs[0]
	require.Equal(t, http.StatusOK, ev.Status)
	require.Equal(t, "evt_1", ev.ID)
	require.Equal(t, "message.status", ev.Type)
	require.JSONEq(t, `{"id":"msg_1","status":"sent"}`, string(ev.Data))
	require.Equal(t, "evt_1", ev.Header.Get("Smsgate-Event-Id"))
	require.NoError(t, VerifySignature("s3cret", ev.Header.Get("Smsgate-Signature"), ev.Body))
	require.Len(t, sink.Attempts(), 2)
}

func TestWebhookSinkDelay(t *testing.T) {
	sink := NewWebhookSink(nil)
	defer sink.Close()
	sink.SetDelay(100 * time.Millisecond)
	start := time.Now()
	require.Equal(t, http.StatusOK, post(t, sink.URL(), []byte("{}"), nil))
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
}

// TestWebhookSinkSenderGone: a request whose sender gives up while the sink
// holds the answer back is an attempt, not a delivered event.
func TestWebhookSinkSenderGone(t *testing.T) {
	sink := NewWebhookSink(t)
	sink.SetDelay(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sink.URL(), bytes.NewReader([]byte(`{"id":"evt_1"}`)))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return sink.InFlight() == 1 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.Error(t, <-done)
	require.Eventually(t, func() bool { return len(sink.Attempts()) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, statusClientGone, sink.Attempts()[0].Status)
	require.Empty(t, sink.Events())
	require.Zero(t, sink.InFlight())
}

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	good := sign("key", 1700000000, body)
	tests := []struct {
		name, secret, header string
		body                 []byte
		ok                   bool
	}{
		{"valid", "key", good, body, true},
		{"valid with spaces", "key", "t=1700000000, " + good[len("t=1700000000,"):], body, true},
		{"wrong secret", "other", good, body, false},
		{"body changed", "key", good, []byte(`{"id":"evt_2"}`), false},
		{"timestamp changed", "key", "t=1700000001," + good[len("t=1700000000,"):], body, false},
		{"missing v1", "key", "t=1700000000", body, false},
		{"missing t", "key", good[len("t=1700000000,"):], body, false},
		{"bad hex", "key", "t=1700000000,v1=zz", body, false},
		{"bad timestamp", "key", "t=abc,v1=00", body, false},
		{"empty", "key", "", body, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.secret, tt.header, tt.body)
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add("key", "t=1,v1=00", []byte("{}"))
	f.Add("key", sign("key", 5, []byte("x")), []byte("x"))
	f.Fuzz(func(t *testing.T, secret, header string, body []byte) {
		_ = VerifySignature(secret, header, body)
		require.NoError(t, VerifySignature(secret, sign(secret, 42, body), body))
	})
}
