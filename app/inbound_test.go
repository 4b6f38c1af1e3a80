package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
	"github.com/smsgate/smsgate/testharness"
)

// Numbers of the inbound tests' config: two of org acme, one of org beta.
const (
	numAcme1 = "+15550001111"
	numAcme2 = "+15550002222"
	numSlow  = "+15550003333" // acme, 2 segments/s
	numBeta  = "+15550004444"
)

// inboundOpts are the knobs of an inbound test daemon.
type inboundOpts struct {
	sim       testharness.SimOptions
	redisAddr string // default the shared Redis
	webhook   string // more [webhook] keys, e.g. retry_for
	http      string // more [http] keys, e.g. write_timeout
	acme      string // more keys of org acme, e.g. webhook_url
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inboundConfigText is the inbound tests' config: configHead with their
// knobs, org acme with three numbers and org beta with one.
func inboundConfigText(o inboundOpts, simAddr, sinkURL, prefix string) string {
	head := configHead(simAddr, sinkURL, prefix, o.redisAddr, o.webhook, "5s")
	if o.http != "" {
		head = strings.Replace(head, "[http]\n", "[http]\n"+o.http+"\n", 1)
	}
	return head + fmt.Sprintf(`[[org]]
id = "acme"
name = "Acme Clinic"
api_key_sha256 = [%q]
%s
  [[org.number]]
  e164 = %q
  kind = "long_code"
  registered = true
  rate = 50
  [[org.number]]
  e164 = %q
  kind = "long_code"
  registered = true
  rate = 50
  [[org.number]]
  e164 = %q
  kind = "long_code"
  registered = true
  rate = 2
[[org]]
id = "beta"
name = "Beta Dental"
api_key_sha256 = [%q]
help_text = "Beta Dental: call (555) 010-0000 for help."
  [[org.number]]
  e164 = %q
  kind = "long_code"
  registered = true
  rate = 50
`, config.HashKey(testAPIKey), o.acme, numAcme1, numAcme2, numSlow, config.HashKey("test-key-beta"), numBeta)
}

// inboundDaemon is a daemon (app_test.go helpers apply) plus what the
// inbound tests look at.
type inboundDaemon struct {
	*daemon
	logs *syncBuffer
}

func startInbound(t *testing.T, o inboundOpts) *inboundDaemon {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	if o.redisAddr == "" {
		o.redisAddr = testharness.SharedRedisAddr
	}
	sim, err := testharness.NewSimulator(o.sim)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	sink := testharness.NewWebhookSink(t)
	prefix := testharness.RedisPrefix(t)
	d := &inboundDaemon{
		daemon: &daemon{t: t, sim: sim, sink: sink, prefix: prefix, path: filepath.Join(t.TempDir(), "smsgate.toml")},
		logs:   &syncBuffer{},
	}
	require.NoError(t, os.WriteFile(d.path, []byte(inboundConfigText(o, sim.Addr(), sink.URL(), prefix)), 0o600))
	d.startApp()
	return d
}

// startApp builds and starts a new App from the config file and waits until
// it is ready; the previous one, if any, must be stopped.
func (d *inboundDaemon) startApp() {
	t := d.t
	t.Helper()
	var out io.Writer = d.logs
	if os.Getenv("SMSGATE_TEST_LOG") != "" {
		out = io.MultiWriter(d.logs, os.Stderr)
	}
	a, err := New(Options{ConfigPath: d.path, Logger: slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	d.app = a
	a.Start()
	t.Cleanup(func() { _ = a.Stop() })
	require.Eventually(t, func() bool {
		code, _ := d.do("GET", "/readyz", "", nil)
		return code == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond, "daemon never became ready")
}

// restart stops the daemon and starts a new one on the same config and prefix.
func (d *inboundDaemon) restart() {
	d.t.Helper()
	require.NoError(d.t, d.app.Stop())
	d.startApp()
}

const waitFor = 10 * time.Second
const tick = 20 * time.Millisecond

// receivedData is message.received's data as the webhook carries it.
type receivedData struct {
	ID             string  `json:"id"`
	From           string  `json:"from"`
	To             string  `json:"to"`
	Text           string  `json:"text"`
	Segments       int     `json:"segments"`
	ReceivedAt     string  `json:"received_at"`
	Keyword        *string `json:"keyword"`
	PossibleOptOut bool    `json:"possible_opt_out"`
}

// statusData is message.status's data as the webhook carries it.
type statusData struct {
	ID               string         `json:"id"`
	Status           string         `json:"status"`
	ClientRef        string         `json:"client_ref"`
	CarrierMessageID string         `json:"carrier_message_id"`
	Error            *message.Error `json:"error"`
}

// received returns the message.received events from external number from.
func (d *inboundDaemon) received(from string) []receivedData {
	var out []receivedData
	for _, e := range d.events() {
		if e.Type != "message.received" {
			continue
		}
		var r receivedData
		require.NoError(d.t, json.Unmarshal(e.Data, &r))
		if r.From == from {
			out = append(out, r)
		}
	}
	return out
}

// waitReceived waits for the n-th message.received from from and returns it.
func (d *inboundDaemon) waitReceived(from string, n int) receivedData {
	d.t.Helper()
	var got []receivedData
	require.Eventually(d.t, func() bool { got = d.received(from); return len(got) >= n }, waitFor, tick,
		"no message.received #%d from %s", n, from)
	return got[n-1]
}

// statusEvents returns the message.status events of message id.
func (d *inboundDaemon) statusEvents(id string) []statusData {
	var out []statusData
	for _, e := range d.events() {
		if e.Type != "message.status" {
			continue
		}
		var s statusData
		require.NoError(d.t, json.Unmarshal(e.Data, &s))
		if s.ID == id {
			out = append(out, s)
		}
	}
	return out
}

// submitsTo returns the submits to external number to (addresses on the
// wire carry no "+").
func (d *inboundDaemon) submitsTo(to string) []testharness.Submit {
	var out []testharness.Submit
	for _, s := range d.sim.Submits() {
		if strings.TrimPrefix(s.Dest, "+") == strings.TrimPrefix(to, "+") {
			out = append(out, s)
		}
	}
	return out
}

// waitSubmitsTo waits until n submits went to to and returns them.
func (d *inboundDaemon) waitSubmitsTo(to string, n int) []testharness.Submit {
	d.t.Helper()
	var got []testharness.Submit
	require.Eventually(d.t, func() bool { got = d.submitsTo(to); return len(got) >= n }, waitFor, tick,
		"want %d submits to %s", n, to)
	return got
}

type messageView struct {
	ID                string   `json:"id"`
	Status            string   `json:"status"`
	Segments          int      `json:"segments"`
	CarrierMessageIDs []string `json:"carrier_message_ids"`
	History           []struct {
		Status string         `json:"status"`
		At     time.Time      `json:"at"`
		Error  *message.Error `json:"error"`
	} `json:"history"`
}

func (d *inboundDaemon) get(id string) messageView {
	d.t.Helper()
	var m messageView
	code, body := d.do("GET", "/v1/messages/"+id, "", &m)
	require.Equal(d.t, http.StatusOK, code, body)
	return m
}

func (d *inboundDaemon) waitStatus(id, status string) messageView {
	d.t.Helper()
	var m messageView
	require.Eventually(d.t, func() bool { m = d.get(id); return m.Status == status }, waitFor, tick,
		"message %s never became %s", id, status)
	return m
}

// metric returns the value of the sample line that starts with name{labels}.
func (d *inboundDaemon) metric(series string) string {
	d.t.Helper()
	resp, err := http.Get("http://" + d.app.MetricsAddr() + "/metrics")
	require.NoError(d.t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(d.t, err)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// udhSeq is the concat sequence number of a submit with an 8-bit-ref UDH.
func udhSeq(t *testing.T, s testharness.Submit) int {
	t.Helper()
	require.NotZero(t, s.ESMClass&0x40, "submit without UDH")
	c, ok, _, err := message.ParseConcatUDH(s.ShortMessage)
	require.NoError(t, err)
	require.True(t, ok)
	return int(c.Seq)
}

// longText is GSM-7 text of three segments.
var longText = strings.Repeat("Your results are ready. ", 14) // 336 septets

// A long message is delivered only when every segment's receipt says so; one
// undelivered segment makes it undelivered with the carrier's error; receipts
// that overtake their submit_sm_resp are held and matched; the message's
// history shows every step with its time.
func TestInboundMultipartReceipts(t *testing.T) {
	d := startInbound(t, inboundOpts{sim: testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true}}})
	const to = "+15557650001"
	require.Equal(t, 3, message.Analyze(longText).Segments)
	// The recipient texted first: no notice in the way.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: to, To: numAcme1, Text: "Any news?"}))
	d.waitReceived(to, 1)

	// Three receipts, one at a time.
	before := time.Now().UTC()
	msg := d.send(numAcme1, to, longText)
	subs := d.waitSubmitsTo(to, 3)
	m := d.waitStatus(msg.ID, "sent")
	for i, s := range subs {
		require.Equal(t, i+1, udhSeq(t, s))
		require.Equal(t, s.MessageID, m.CarrierMessageIDs[i])
	}
	for i, s := range subs[:2] {
		require.NoError(t, d.sim.SendReceipt(s, "DELIVRD", ""))
		require.Eventually(t, func() bool { return d.sim.DeliveredCount() >= 2+i }, waitFor, tick) // MO + receipts acknowledged
	}
	require.Equal(t, "sent", d.get(msg.ID).Status, "two of three segments delivered")
	require.NoError(t, d.sim.SendReceipt(subs[2], "DELIVRD", ""))
	m = d.waitStatus(msg.ID, "delivered")
	require.Eventually(t, func() bool { return len(d.statusEvents(msg.ID)) == 2 }, waitFor, tick)
	// A late duplicate receipt changes nothing.
	require.NoError(t, d.sim.SendReceipt(subs[1], "DELIVRD", ""))
	require.Eventually(t, func() bool { return d.sim.DeliveredCount() >= 5 }, waitFor, tick)
	var got []string
	for _, e := range d.statusEvents(msg.ID) {
		got = append(got, e.Status)
		require.Equal(t, "ref-1", e.ClientRef)
	}
	require.ElementsMatch(t, []string{"sent", "delivered"}, got, "one delivered event")

	// GET shows the whole history with times.
	require.Len(t, m.History, 3)
	for i, want := range []string{"queued", "sent", "delivered"} {
		require.Equal(t, want, m.History[i].Status)
		require.False(t, m.History[i].At.Before(before.Add(-time.Second)), "history time %v", m.History[i].At)
		if i > 0 {
			require.False(t, m.History[i].At.Before(m.History[i-1].At))
		}
	}
	require.Equal(t, 3, m.Segments)

	// One segment undelivered: the message is undelivered, with the code.
	msg2 := d.send(numAcme1, to, longText)
	subs = d.waitSubmitsTo(to, 6)[3:]
	d.waitStatus(msg2.ID, "sent")
	require.NoError(t, d.sim.SendReceipt(subs[0], "DELIVRD", ""))
	require.NoError(t, d.sim.SendReceipt(subs[1], "UNDELIV", "012"))
	require.NoError(t, d.sim.SendReceipt(subs[2], "DELIVRD", ""))
	m = d.waitStatus(msg2.ID, "undelivered")
	last := m.History[len(m.History)-1]
	require.NotNil(t, last.Error)
	require.Equal(t, "carrier_undeliv", last.Error.Code)
	require.Contains(t, last.Error.Message, "012")
	var undeliv []statusData
	require.Eventually(t, func() bool {
		undeliv = undeliv[:0]
		for _, e := range d.statusEvents(msg2.ID) {
			if e.Status != "sent" {
				undeliv = append(undeliv, e)
			}
		}
		return len(undeliv) == 1 && d.sim.DeliveredCount() >= 8
	}, waitFor, tick)
	require.Equal(t, "undelivered", undeliv[0].Status)
	require.Equal(t, "carrier_undeliv", undeliv[0].Error.Code)
	require.Contains(t, undeliv[0].Error.Message, "012")
	require.Equal(t, subs[1].MessageID, undeliv[0].CarrierMessageID, "the event names the failed segment")

	// Receipts before their submit_sm_resp (the response 150ms late).
	d.sim.SetFaults(testharness.Faults{ReceiptFirst: true, Latency: 150 * time.Millisecond})
	msg3 := d.send(numAcme1, to, longText)
	d.waitStatus(msg3.ID, "delivered")
	require.Equal(t, "3", d.metric(`smsgate_inbound_receipts_total{outcome="held",state="DELIVRD"}`))
}

// Receipts match their message whatever form the carrier gives the id in:
// hex or decimal, in receipted_message_id or only in the text, converted to
// the other base, or with a trailing NUL.
func TestInboundReceiptIDForms(t *testing.T) {
	for _, decimal := range []bool{false, true} {
		t.Run(fmt.Sprintf("decimal_ids=%v", decimal), func(t *testing.T) {
			d := startInbound(t, inboundOpts{sim: testharness.SimOptions{DecimalIDs: decimal}})
			forms := []string{"", "text", "decimal", "nul"}
			if decimal {
				forms[2] = "hex"
			}
			for i, form := range forms {
				d.sim.SetFaults(testharness.Faults{ReceiptID: form})
				to := fmt.Sprintf("+1555765100%d", i)
				msg := d.send(numAcme1, to, "Reminder: bring your card.")
				m := d.waitStatus(msg.ID, "delivered")
				subs := d.submitsTo(to)
				require.Len(t, subs, 2, "notice and message")
				require.Equal(t, []string{subs[1].MessageID}, m.CarrierMessageIDs, "form %q", form)
				if decimal {
					require.Regexp(t, `^[0-9]+$`, subs[1].MessageID)
				} else {
					require.Regexp(t, `[a-f]`, subs[1].MessageID)
				}
			}
			require.Empty(t, d.metric(`smsgate_inbound_receipts_total{outcome="error",state="DELIVRD"}`))
		})
	}
}

// Keywords (API.md 4.3): opt-out with confirmation, opt-in, help with the
// default text naming the org or the org's own, STOPALL over every number of
// the org, plain-language requests flagged; replies reach opted-out numbers
// and wait their turn at the number's rate.
func TestInboundKeywords(t *testing.T) {
	d := startInbound(t, inboundOpts{})
	optedOut := func(from, to string) bool {
		var l struct {
			OptedOut []string `json:"opted_out"`
		}
		code, raw := d.do("GET", "/admin/opt-outs?from="+url.QueryEscape(from), "", &l)
		require.Equal(t, http.StatusOK, code, raw)
		for _, n := range l.OptedOut {
			if n == to {
				return true
			}
		}
		return false
	}
	trySend := func(from, to string) (int, string) {
		return d.do("POST", "/v1/messages", fmt.Sprintf(`{"from":%q,"to":%q,"text":"Checking in."}`, from, to), nil)
	}

	// The org texted first (notice + message), then STOP with punctuation.
	const x = "+15557652001"
	msg := d.send(numAcme1, x, "Your appointment is confirmed.")
	d.waitStatus(msg.ID, "delivered")
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: x, To: numAcme1, Text: " stop. "}))
	subs := d.waitSubmitsTo(x, 3)
	require.Equal(t, "You have been unsubscribed from Acme Clinic messages. No more messages will be sent. Reply START to resubscribe.",
		string(subs[2].ShortMessage))
	require.Equal(t, strings.TrimPrefix(numAcme1, "+"), strings.TrimPrefix(subs[2].Source, "+"))
	require.True(t, optedOut(numAcme1, x))
	code, raw := trySend(numAcme1, x)
	require.Equal(t, http.StatusUnprocessableEntity, code, raw)
	require.Contains(t, raw, `"recipient_opted_out"`)
	r := d.waitReceived(x, 1)
	require.NotNil(t, r.Keyword)
	require.Equal(t, "stop", *r.Keyword)
	require.Equal(t, " stop. ", r.Text)
	require.Equal(t, numAcme1, r.To)
	require.Equal(t, 1, r.Segments)
	require.False(t, r.PossibleOptOut)
	require.NotEmpty(t, r.ReceivedAt)

	// HELP while opted out: answered with the default text naming the org.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: x, To: numAcme1, Text: "help"}))
	subs = d.waitSubmitsTo(x, 4)
	require.Equal(t, "Acme Clinic: Reply STOP to opt out. Msg&data rates may apply.", string(subs[3].ShortMessage))
	require.Equal(t, "help", *d.waitReceived(x, 2).Keyword)

	// START lifts it.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: x, To: numAcme1, Text: "Start"}))
	subs = d.waitSubmitsTo(x, 5)
	require.Equal(t, "You have been resubscribed to Acme Clinic messages. Reply STOP to opt out.", string(subs[4].ShortMessage))
	require.Equal(t, "start", *d.waitReceived(x, 3).Keyword)
	require.False(t, optedOut(numAcme1, x))
	d.send(numAcme1, x, "Welcome back.")

	// STOPALL, from someone who never got a message: every acme number.
	const y = "+15557652002"
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: y, To: numAcme2, Text: "STOPALL"}))
	subs = d.waitSubmitsTo(y, 1)
	require.Contains(t, string(subs[0].ShortMessage), "unsubscribed from Acme Clinic")
	require.Equal(t, strings.TrimPrefix(numAcme2, "+"), strings.TrimPrefix(subs[0].Source, "+"))
	for _, n := range []string{numAcme1, numAcme2, numSlow} {
		require.True(t, optedOut(n, y), n)
		code, raw := trySend(n, y)
		require.Equal(t, http.StatusUnprocessableEntity, code, raw)
	}
	require.Equal(t, "stop", *d.waitReceived(y, 1).Keyword)
	require.False(t, optedOut(numBeta, y), "STOPALL covers the numbers of the org texted, not another org's")

	// START after STOPALL, at another of the org's numbers, undoes STOPALL:
	// every acme number may text y again.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: y, To: numAcme1, Text: "START"}))
	subs = d.waitSubmitsTo(y, 2)
	require.Contains(t, string(subs[1].ShortMessage), "resubscribed to Acme Clinic")
	require.Equal(t, strings.TrimPrefix(numAcme1, "+"), strings.TrimPrefix(subs[1].Source, "+"))
	for _, n := range []string{numAcme1, numAcme2, numSlow} {
		require.False(t, optedOut(n, y), n)
	}
	// A later STOP covers only its number, and a START elsewhere does not
	// lift it: the STOPALL was already undone.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: y, To: numAcme2, Text: "STOP"}))
	d.waitSubmitsTo(y, 3)
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: y, To: numAcme1, Text: "START"}))
	require.Equal(t, "start", *d.waitReceived(y, 4).Keyword)
	require.True(t, optedOut(numAcme2, y))
	require.False(t, optedOut(numAcme1, y))
	require.False(t, optedOut(numSlow, y))
	// y was not opted out at numAcme1: nothing lifted, so no
	// "resubscribed" reply (as for "YES" to "reply YES to confirm").
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: y, To: numAcme1, Text: "Yes"}))
	require.Equal(t, "start", *d.waitReceived(y, 5).Keyword)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, d.submitsTo(y), 3, "STOPALL, START and STOP confirmations only")

	// Not a keyword, but a plain-language request: flagged, nothing else.
	const z = "+15557652003"
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: z, To: numAcme1, Text: "please stop texting me"}))
	r = d.waitReceived(z, 1)
	require.Nil(t, r.Keyword)
	require.True(t, r.PossibleOptOut)
	require.False(t, optedOut(numAcme1, z))
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: z, To: numAcme1, Text: "Can I stop by the pharmacy?"}))
	r = d.waitReceived(z, 2)
	require.Nil(t, r.Keyword)
	require.False(t, r.PossibleOptOut)
	require.Empty(t, d.submitsTo(z), "no reply to a non-keyword")
	d.send(numAcme1, z, "We will call you.")

	// Another org's help text.
	const w = "+15557652004"
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: w, To: numBeta, Text: "INFO"}))
	subs = d.waitSubmitsTo(w, 1)
	require.Equal(t, "Beta Dental: call (555) 010-0000 for help.", string(subs[0].ShortMessage))

	// A reply waits behind the number's queue at its rate (2 segments/s).
	const v = "+15557652005"
	d.send(numSlow, v, "First.")  // notice + message
	d.send(numSlow, v, "Second.") // message
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: v, To: numSlow, Text: "HELP"}))
	subs = d.waitSubmitsTo(v, 4)
	require.Equal(t, "Acme Clinic: Reply STOP to opt out. Msg&data rates may apply.", string(subs[3].ShortMessage))
	for i := 1; i < len(subs); i++ {
		require.GreaterOrEqual(t, subs[i].At.Sub(subs[i-1].At), 400*time.Millisecond, "submit %d came too early", i)
	}
	require.Equal(t, "2", d.metric(`smsgate_inbound_messages_total{keyword="none",outcome="stored"}`))
	require.Equal(t, "3", d.metric(`smsgate_inbound_messages_total{keyword="help",outcome="stored"}`))
}

// An MO to a number that is not in the configuration is acknowledged,
// counted, logged and delivered to the global webhook, not the org's.
func TestInboundUnknownNumber(t *testing.T) {
	orgSink := testharness.NewWebhookSink(t)
	d := startInbound(t, inboundOpts{acme: fmt.Sprintf("webhook_url = %q\nwebhook_secret = \"org-secret\"", orgSink.URL())})
	const from, unknown = "+15557653001", "+15559990000"
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: from, To: unknown, Text: "STOP"}))
	r := d.waitReceived(from, 1)
	require.Equal(t, unknown, r.To)
	require.Equal(t, "stop", *r.Keyword, "classified, but no number to opt out of")
	require.Eventually(t, func() bool { return d.sim.DeliveredCount() == 1 }, waitFor, tick, "acknowledged")
	require.Equal(t, "1", d.metric(`smsgate_inbound_messages_total{keyword="stop",outcome="unknown_number"}`))
	require.Contains(t, d.logs.String(), "MO to a number that is not in the configuration")
	require.Empty(t, d.sim.Submits(), "no confirmation from a number that is not ours")

	// The org's own MO goes to the org's webhook, signed with its secret.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: from, To: numAcme1, Text: "hello"}))
	evs, err := orgSink.WaitFor(1, waitFor)
	require.NoError(t, err)
	require.NoError(t, testharness.VerifySignature("org-secret", evs[0].Header.Get("Smsgate-Signature"), evs[0].Body))
	require.Equal(t, "message.received", evs[0].Type)
	require.Len(t, d.received(from), 1, "the global webhook got only the unknown number's MO")
}

// Concatenated MO, by UDH or SAR, GSM or UCS-2, is one message.received.
func TestInboundConcatenatedMO(t *testing.T) {
	d := startInbound(t, inboundOpts{})
	tests := []struct {
		concat string
		ucs2   bool
		text   string
		parts  int
	}{
		{"udh", false, strings.Repeat("Please call me back about the bill. ", 10), 3},
		{"sar", false, strings.Repeat("Please call me back about the bill. ", 10), 3},
		{"udh", true, strings.Repeat("Merci 👍 à demain! ", 8), 3},
	}
	for i, tt := range tests {
		from := fmt.Sprintf("+1555765400%d", i)
		require.NoError(t, d.sim.InjectMO(testharness.MO{From: from, To: numAcme1, Text: tt.text, Concat: tt.concat, UCS2: tt.ucs2}))
		r := d.waitReceived(from, 1)
		require.Equal(t, tt.text, r.Text, "%s ucs2=%v", tt.concat, tt.ucs2)
		require.Equal(t, tt.parts, r.Segments)
	}
	time.Sleep(100 * time.Millisecond)
	for i := range tests {
		require.Len(t, d.received(fmt.Sprintf("+1555765400%d", i)), 1, "one event per message")
	}
}

// When the MO cannot be stored the carrier is told to deliver it again
// (ESME_RX_T_APPN), and it arrives once Redis is back.
func TestInboundMOStorageFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	rs := testharness.StartRedisServer(t, "--appendonly", "yes", "--appendfsync", "always")
	d := startInbound(t, inboundOpts{redisAddr: rs.Addr()})
	const from = "+15557655001"
	// Warm up: the webhook consumer group exists before Redis goes away.
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: from, To: numAcme1, Text: "first"}))
	d.waitReceived(from, 1)

	rs.Stop()
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: from, To: numAcme1, Text: "while redis is down"}))
	require.Eventually(t, func() bool {
		for _, p := range d.sim.Received() {
			if p.CommandID == 0x80000005 && p.CommandStatus == smpp.StatusXTAppn {
				return true
			}
		}
		return false
	}, waitFor, tick, "no deliver_sm_resp ESME_RX_T_APPN")
	require.Equal(t, 1, d.sim.DeliveredCount(), "only the first MO was accepted")

	rs.Start()
	r := d.waitReceived(from, 2)
	require.Equal(t, "while redis is down", r.Text)
	// The deliver_sm_resp follows the stored event; it may arrive a moment later.
	require.Eventually(t, func() bool { return d.sim.DeliveredCount() >= 2 }, waitFor, tick, "redelivered MO acknowledged")
}

// With Redis stalled (up but not answering), a submission gets its 503
// within the write timeout, and the message is not sent once Redis answers
// again: a 503 means nothing was accepted.
func TestSubmitWhileRedisStalls(t *testing.T) {
	rs := testharness.StartRedisServer(t)
	// write_timeout 2s: a submission waits at most 1 s for Redis.
	d := startInbound(t, inboundOpts{redisAddr: rs.Addr(), http: `write_timeout = "2s"`})
	const to = "+15557655101"
	first := d.send(numAcme1, to, "before the stall")
	d.waitStatus(first.ID, "delivered")

	rs.Pause()
	start := time.Now()
	code, raw := d.do("POST", "/v1/messages", fmt.Sprintf(`{"from":%q,"to":%q,"text":"while redis stalls"}`, numAcme1, to), nil)
	waited := time.Since(start)
	rs.Resume()
	require.Equal(t, http.StatusServiceUnavailable, code, raw)
	require.Contains(t, raw, `"code":"unavailable"`)
	require.Less(t, waited, 1800*time.Millisecond, "answered before the write timeout")

	// Redis runs the stalled call from its buffer when it resumes: too late,
	// so nothing was stored. A message sent after it goes out alone.
	after := d.send(numAcme1, to, "after the stall")
	d.waitStatus(after.ID, "delivered")
	for _, s := range d.sim.Submits() {
		require.NotContains(t, string(s.ShortMessage), "while redis stalls")
	}
	require.Len(t, d.sim.Submits(), 3, "notice, before and after")
}

// With the receiver down and the daemon restarted meanwhile, every event
// still arrives, with its original id and a valid signature.
func TestInboundWebhookOutageAndRestart(t *testing.T) {
	d := startInbound(t, inboundOpts{})
	d.sink.SetFailing(http.StatusServiceUnavailable)
	const to = "+15557656001"
	msg := d.send(numAcme1, to, "Your order shipped.") // notice + message: 4 status events
	d.waitStatus(msg.ID, "delivered")
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: "+15557656002", To: numAcme1, Text: "thanks"}))
	require.Eventually(t, func() bool { return len(d.sink.Attempts()) >= 5 }, waitFor, tick, "attempts while down")

	d.restart()
	time.Sleep(200 * time.Millisecond) // the new daemon retries against a receiver still down
	d.sink.SetFailing(0)

	distinct := func() int {
		seen := map[string]bool{}
		for _, e := range d.sink.Events() {
			seen[e.ID] = true
		}
		return len(seen)
	}
	require.Eventually(t, func() bool { return distinct() >= 5 }, waitFor, tick)
	time.Sleep(300 * time.Millisecond) // any duplicate would show up now
	ids := map[string]string{}         // event id -> logical event
	logical := map[string]string{}     // logical event -> event id
	for _, e := range d.events() {     // checks signatures and the id header
		var key string
		switch e.Type {
		case "message.status":
			var s statusData
			require.NoError(t, json.Unmarshal(e.Data, &s))
			key = s.ID + "/" + s.Status
		case "message.received":
			var r receivedData
			require.NoError(t, json.Unmarshal(e.Data, &r))
			key = "mo/" + r.ID
		}
		if prev, ok := ids[e.ID]; ok {
			require.Equal(t, prev, key, "one id, one event")
			continue
		}
		ids[e.ID] = key
		require.NotContains(t, logical, key, "event %s delivered under two ids", key)
		logical[key] = e.ID
	}
	require.Len(t, logical, 5)
	require.Contains(t, logical, msg.ID+"/sent")
	require.Contains(t, logical, msg.ID+"/delivered")
	for _, a := range d.sink.Attempts() {
		require.Contains(t, ids, a.ID, "a failed attempt's event arrived later under its id")
	}
}

// A receiver that always fails ends in the dead-letter list; redelivery
// from there works once it is back.
func TestInboundDeadLetters(t *testing.T) {
	d := startInbound(t, inboundOpts{webhook: `retry_for = "600ms"`})
	d.sink.SetFailing(http.StatusInternalServerError)
	const from = "+15557657001"
	require.NoError(t, d.sim.InjectMO(testharness.MO{From: from, To: numAcme1, Text: "anyone there?"}))

	type deadLetter struct {
		EventID  string          `json:"event_id"`
		Type     string          `json:"type"`
		Attempts int             `json:"attempts"`
		Event    json.RawMessage `json:"event"`
	}
	var dl []deadLetter
	require.Eventually(t, func() bool {
		var l struct {
			DeadLetters []deadLetter `json:"dead_letters"`
		}
		code, _ := d.do("GET", "/admin/dead-letters", "", &l)
		dl = l.DeadLetters
		return code == http.StatusOK && len(dl) == 1
	}, waitFor, 50*time.Millisecond, "no dead letter")
	require.Equal(t, "message.received", dl[0].Type)
	require.GreaterOrEqual(t, dl[0].Attempts, 1)
	require.Contains(t, string(dl[0].Event), "anyone there?")
	attempts := d.sink.Attempts()
	require.NotEmpty(t, attempts)
	for _, a := range attempts {
		require.Equal(t, dl[0].EventID, a.ID)
		require.Equal(t, http.StatusInternalServerError, a.Status)
	}

	d.sink.SetFailing(0)
	code, raw := d.do("POST", "/admin/dead-letters/"+dl[0].EventID+"/redeliver", "", nil)
	require.Less(t, code, 300, raw)
	require.Equal(t, "anyone there?", d.waitReceived(from, 1).Text)
	require.Equal(t, dl[0].EventID, d.events()[0].ID)
}

func TestReceiptMapping(t *testing.T) {
	tests := []struct {
		stat, label string
		status      message.Status
		final       bool
	}{
		{"DELIVRD", "DELIVRD", message.StatusDelivered, true},
		{"delivered", "other", message.StatusDelivered, true},
		{"UNDELIV", "UNDELIV", message.StatusUndelivered, true},
		{"REJECTD", "REJECTD", message.StatusUndelivered, true},
		{"EXPIRED", "EXPIRED", message.StatusUndelivered, true},
		{"FAILED", "FAILED", message.StatusUndelivered, true},
		{"ACCEPTD", "ACCEPTD", "", false},
		{"ENROUTE", "ENROUTE", "", false},
		{"WHATEVER-7", "other", "", false},
	}
	for _, tt := range tests {
		st, final := receiptStatus(tt.stat)
		require.Equal(t, tt.final, final, tt.stat)
		require.Equal(t, tt.status, st, tt.stat)
		require.Equal(t, tt.label, receiptStateLabel(tt.stat), tt.stat)
	}
	require.Equal(t, &message.Error{Code: "carrier_undeliv", Message: "The carrier reported the message UNDELIV (error code 012)."}, receiptError("UNDELIV", "012"))
	require.Equal(t, &message.Error{Code: "carrier_expired", Message: "The carrier reported the message EXPIRED."}, receiptError("EXPIRED", ""))
}

// A receipt whose message is no longer stored is acknowledged (the carrier
// would otherwise deliver it again forever); one for an unknown id is held.
func TestReceiptForVanishedMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the shared Redis")
	}
	ctx := context.Background()
	h, q, rdb, prefix, reg := receiptHandler(t)
	var err error

	const from = "+15550001111"
	m := &message.Message{ID: q.NewMessageID(from), From: from, To: "+15557654321", Text: "hi", Segments: 1, Kind: message.KindUser}
	_, err = q.Enqueue(ctx, queue.EnqueueRequest{Msg: m})
	require.NoError(t, err)
	got, err := q.Claim(ctx, 1)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.NoError(t, q.Ack(ctx, got[0], []string{"a00000000beef"}))
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*m:"+m.ID, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	require.Len(t, keys, 1)
	require.NoError(t, rdb.Del(ctx, keys...).Err())

	require.NoError(t, h.HandleReceipt(ctx, smpp.Receipt{CarrierMessageID: "A00000000BEEF", State: "DELIVRD"}))
	require.NoError(t, h.HandleReceipt(ctx, smpp.Receipt{CarrierMessageID: "a00000000cafe", State: "UNDELIV", Err: "001"}))
	require.NoError(t, h.HandleReceipt(ctx, smpp.Receipt{CarrierMessageID: "a00000000cafe", State: "ENROUTE"}))
	require.Equal(t, map[string]float64{"unmatched/DELIVRD": 1, "held/UNDELIV": 1, "ignored/ENROUTE": 1}, batchReceiptCounts(t, reg))
}

// BenchmarkReceipts measures delivery receipts applied through
// HandleReceipt against the shared Redis: each receipt finds its message by
// carrier id and records the delivery with its event. Run with a fixed
// count, e.g. -bench Receipts -benchtime 5000x.
func BenchmarkReceipts(b *testing.B) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: testharness.SharedRedisAddr})
	b.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Skipf("shared redis: %v", err)
	}
	q, err := queue.New(queue.Options{Client: rdb, Prefix: testharness.RedisPrefix(b), NormalizeID: smpp.NormalizeID})
	require.NoError(b, err)
	h := &inbound{app: queueApp(q), log: slog.New(slog.DiscardHandler), metrics: newInboundMetrics(prometheus.NewRegistry())}

	// b.N sent messages from 100 senders, with carrier ids.
	cids := make([]string, 0, b.N)
	for i := range b.N {
		from := fmt.Sprintf("+1555300%04d", i%100)
		m := &message.Message{ID: q.NewMessageID(from), From: from, To: "+15557654321", Text: "hi", Segments: 1, Kind: message.KindUser}
		_, err := q.Enqueue(ctx, queue.EnqueueRequest{Msg: m})
		require.NoError(b, err)
	}
	for tries := 0; len(cids) < b.N; tries++ {
		require.Less(b, tries, 10*b.N+100, "claims stalled")
		got, err := q.Claim(ctx, 100)
		require.NoError(b, err)
		for _, c := range got {
			cid := fmt.Sprintf("%x", 0xa<<40+len(cids))
			require.NoError(b, q.Ack(ctx, c, []string{cid}))
			cids = append(cids, cid)
		}
	}

	b.ResetTimer()
	start := time.Now()
	var next sync.Mutex
	i := 0
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			cid := cids[i]
			i++
			next.Unlock()
			r := smpp.Receipt{CarrierMessageID: cid, State: "DELIVRD", Err: "000", Carrier: "sim", Bind: "sim-0"}
			if err := h.HandleReceipt(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "receipts/s")
	b.StopTimer()
	for _, cid := range []string{cids[0], cids[b.N-1]} {
		id, _, ok, err := q.LookupCarrierID(ctx, cid)
		require.NoError(b, err)
		require.True(b, ok)
		rec, err := q.Get(ctx, id)
		require.NoError(b, err)
		require.Equal(b, message.StatusDelivered, rec.Status)
	}
}

// A receipt's carrier id is rewritten into the base of the carrier's
// submit_sm_resp ids when its message_id_format says they differ, so it
// finds the message its ack indexed; other carriers' ids pass unchanged.
func TestReceiptCarrierIDFormat(t *testing.T) {
	a := &App{}
	a.state.Store(&state{cfg: &config.Config{Carriers: []config.Carrier{
		{Name: "mixed", MessageIDFormat: "resp_hex_receipt_decimal"},
		{Name: "reverse", MessageIDFormat: "resp_decimal_receipt_hex"},
		{Name: "plain", MessageIDFormat: "auto"},
	}}})
	h := &inbound{app: a, log: slog.New(slog.DiscardHandler), metrics: newInboundMetrics(prometheus.NewRegistry())}
	for _, tc := range []struct{ carrier, id, want string }{
		{"mixed", "1193046", "123456"},
		{"reverse", "3039", "12345"},
		{"plain", "1193046", "1193046"},
		{"removed-since", "1193046", "1193046"},
	} {
		qr, final := h.queueReceipt(smpp.Receipt{CarrierMessageID: tc.id, State: "DELIVRD", Carrier: tc.carrier})
		require.True(t, final)
		require.Equal(t, tc.want, qr.CarrierID, tc.carrier)
		require.Equal(t, smpp.NormalizeID(tc.want), smpp.NormalizeID(qr.CarrierID))
	}
}
