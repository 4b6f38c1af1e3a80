package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// floorCommand is the hidden sub-command that runs the floor gateway of
// -floor: a process that does only the HTTP work the API contract asks of
// a gateway per message, and nothing else. For each POST /v1/messages it
// reads the body, decodes from, to and client_ref, answers 202 with a
// message JSON, and POSTs the message's status events (sent and delivered,
// each signed with HMAC-SHA256 as the contract requires) to the webhook,
// preceded by the events of a notice when the (from, to) pair is new, as
// smsgate does. It keeps nothing on disk and talks to no carrier. Its CPU
// per message is what the contract's HTTP traffic alone costs with Go's
// net/http on the machine: a floor under smsgate's own.
const floorCommand = "floor-gateway"

// floorEvent is one event the gateway still has to POST.
type floorEvent struct {
	seq    int64
	status string
	ref    string
	msgID  string
}

func runFloorGateway(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(floorCommand, flag.ContinueOnError)
	webhook := fs.String("webhook", "", "webhook URL")
	statuses := fs.String("events", "sent,delivered", "statuses to POST, comma-separated")
	workers := fs.Int("workers", 8, "concurrent event POSTs (smsgate's [webhook] workers default)")
	raw := fs.Bool("raw", false, "hand-written HTTP/1.1 on net.Conn instead of net/http, server and client")
	redisAddr := fs.String("redis", "", "with -smsc: store each message in this redis-server (host:port)")
	smsc := fs.String("smsc", "", "with -redis: submit each message to this SMSC (host:port) and POST its events as its answer and receipt come")
	systemID := fs.String("system-id", "smsgate", "system_id of the binds to -smsc")
	password := fs.String("password", "secret", "password of the binds to -smsc")
	binds := fs.Int("binds", 2, "transceiver binds to -smsc")
	window := fs.Int("window", 50, "window of each bind to -smsc")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *webhook == "" || *workers <= 0 {
		return errors.New("-webhook is required and -workers must be positive")
	}
	if (*redisAddr == "") != (*smsc == "") || *binds <= 0 || *window <= 0 {
		return errors.New("-redis and -smsc go together, and -binds and -window must be positive")
	}
	core := newFloorCore(strings.Split(*statuses, ","))
	if *smsc != "" {
		c, err := newFloorCarrier(core, *redisAddr, "fl:", *smsc, *systemID, *password, *binds, *window)
		if err != nil {
			return err
		}
		core.carrier = c
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if core.carrier != nil {
			core.carrier.close()
		}
		return err
	}
	fmt.Fprintln(stdout, ln.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *raw {
		return serveFloorRaw(ctx, ln, *webhook, core, *workers)
	}
	return serveFloor(ctx, ln, *webhook, core, *workers)
}

// drain stops the carrier, if any, then ends the event queue: called once
// the HTTP server has stopped, before waiting for the event POSTs.
func (f *floorCore) drain() {
	if f.carrier != nil {
		f.carrier.close() // its loops emit events until then
	}
	close(f.events)
}

// floorCore is what a floor gateway does per message, whatever its HTTP
// stack: decode the request, queue the status events (a new
// conversation's notice first), and make the 202 body. With a carrier
// (-floor-full) the message is stored and submitted first, and its events
// come as its submit_sm_resp and receipt do.
type floorCore struct {
	statuses []string
	events   chan floorEvent // a full queue holds back accepts: a floor keeps no backlog
	seq      atomic.Int64
	convMu   sync.Mutex
	conv     map[string]bool
	carrier  *floorCarrier // nil: the events are emitted at once
}

func newFloorCore(statuses []string) *floorCore {
	return &floorCore{statuses: statuses, events: make(chan floorEvent, 8192), conv: map[string]bool{}}
}

// errFloorBody is accept's error for a body that is not a message.
var errFloorBody = errors.New("not a message")

// floorNoticeText is the text of the floor's notices (submitted with
// -floor-full).
const floorNoticeText = "You are messaging with Bench. To opt out, reply STOP."

// accept handles one request body: errFloorBody for a body that is not a
// message (400), another error when the carrier could not store it (503).
func (f *floorCore) accept(body []byte) (resp []byte, err error) {
	var m struct {
		From      string `json:"from"`
		To        string `json:"to"`
		Text      string `json:"text"`
		ClientRef string `json:"client_ref"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, errFloorBody
	}
	id := "msg_floor" + strconv.FormatInt(f.seq.Add(1), 10)
	f.convMu.Lock()
	first := !f.conv[m.From+"|"+m.To]
	f.conv[m.From+"|"+m.To] = true
	f.convMu.Unlock()
	if f.carrier != nil {
		msgs := make([]floorMsg, 0, 2)
		if first {
			msgs = append(msgs, floorMsg{id: id + "n", from: m.From, to: m.To, text: floorNoticeText})
		}
		msgs = append(msgs, floorMsg{id: id, ref: m.ClientRef, from: m.From, to: m.To, text: m.Text})
		if err := f.carrier.accept(msgs); err != nil {
			return nil, err
		}
	} else {
		if first {
			f.emit("", id+"n")
		}
		f.emit(m.ClientRef, id)
	}
	return fmt.Appendf(nil, `{"id":%q,"status":"queued","segments":1,"encoding":"gsm7","client_ref":%q}`, id, m.ClientRef), nil
}

func (f *floorCore) emit(ref, msgID string) {
	for _, st := range f.statuses {
		f.events <- floorEvent{seq: f.seq.Add(1), status: st, ref: ref, msgID: msgID}
	}
}

// emitStatus queues the event of status for message msgID, if the gateway
// POSTs that status.
func (f *floorCore) emitStatus(ref, msgID, status string) {
	if slices.Contains(f.statuses, status) {
		f.events <- floorEvent{seq: f.seq.Add(1), status: status, ref: ref, msgID: msgID}
	}
}

// floorSecret signs the floor gateways' events.
const floorSecret = "floor-secret"

// floorEventBody is an event's JSON and its Smsgate-Event-Id and
// Smsgate-Signature headers, as smsgate makes them.
func floorEventBody(ev floorEvent) (body []byte, id, sig string) {
	body = fmt.Appendf(nil, `{"id":"evt_floor_%d","type":"message.status","created_at":%q,"data":{"id":%q,"status":%q,"client_ref":%q,"carrier_message_id":"%x"}}`,
		ev.seq, time.Now().UTC().Format(time.RFC3339Nano), ev.msgID, ev.status, ev.ref, ev.seq)
	t := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(floorSecret))
	mac.Write([]byte(t + "."))
	mac.Write(body)
	return body, "evt_floor_" + strconv.FormatInt(ev.seq, 10), "t=" + t + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// serveFloor runs the floor gateway on ln with net/http until ctx is done,
// then lets the queued events go out.
func serveFloor(ctx context.Context, ln net.Listener, webhook string, core *floorCore, workers int) error {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = workers
	tr.DisableCompression = true
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ev := range core.events {
				if err := floorPost(tr, webhook, ev); err != nil {
					fmt.Fprintln(os.Stderr, "floor-gateway: post:", err)
				}
			}
		})
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		var resp []byte
		if err != nil || r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
			err = errFloorBody
		} else {
			resp, err = core.accept(body)
		}
		switch {
		case errors.Is(err, errFloorBody):
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(resp)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-served: // the listener failed
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		// Handlers may still be queueing events: the workers are left to
		// the process's exit rather than closing the queue under them.
		return errors.Join(err, serr)
	}
	core.drain()
	wg.Wait()
	tr.CloseIdleConnections()
	return err
}

// floorPost POSTs one event as smsgate would: JSON body, event id and
// signature headers; a non-2xx answer is an error (not retried: the sink
// answers 204).
func floorPost(rt http.RoundTripper, url string, ev floorEvent) error {
	body, id, sig := floorEventBody(ev)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "smsgate-webhook")
	req.Header.Set("Smsgate-Event-Id", id)
	req.Header.Set("Smsgate-Signature", sig)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("http status %d", resp.StatusCode)
	}
	return nil
}

// floorStatuses are the statuses the floor gateway POSTs for -status-events.
func floorStatuses(statusEvents string) string {
	if statusEvents == "" {
		return "sent,delivered"
	}
	var out []string
	for _, s := range []string{"sent", "delivered"} {
		if slices.Contains(strings.Split(statusEvents, ","), s) {
			out = append(out, s)
		}
	}
	return strings.Join(out, ",")
}

// startFloorGateway starts the floor gateway (this binary's hidden
// sub-command) and sets it up as the run's only "daemon"; with smsc set
// (-floor-full) it stores in the run's redis-server and submits to the
// simulator at smsc.
func (e *env) startFloorGateway(ctx context.Context, smsc string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("floor gateway: %w", err)
	}
	events := floorStatuses(e.opts.StatusEvents)
	if !strings.Contains(events, "delivered") {
		return errors.New("-floor needs delivered among -status-events: the run ends when every delivered event arrived")
	}
	var out io.ReadCloser
	args := []string{floorCommand, "-webhook", e.sink.URL(), "-events", events}
	if e.opts.FloorRaw {
		args = append(args, "-raw")
	}
	if smsc != "" {
		args = append(args, "-redis", fmt.Sprintf("127.0.0.1:%d", e.redisPort), "-smsc", smsc,
			"-binds", strconv.Itoa(e.opts.Binds), "-window", strconv.Itoa(e.opts.Window))
	}
	gw, err := e.start("floor-gateway", &out, self, args...)
	if err != nil {
		return err
	}
	addrc := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		addrc <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, br)
	}()
	select {
	case a := <-addrc:
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("floor gateway printed %q, want its address: %w", a, err)
		}
		e.daemons, e.apis = []*child{gw}, []string{"http://" + a}
		e.daemon, e.api = gw, e.apis[0]
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("floor gateway printed no address within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// floorRun sends n messages to the floor gateway and waits for every
// delivered event at the sink.
func (e *env) floorRun(ctx context.Context, p plan, n int) (*Result, error) {
	o := e.opts
	gen := newGenerator(e.messageURLs(), benchAPIKey, o.Concurrency, o.Rate)
	res := &Result{Mode: "floor", Params: paramsOf(o, n), Machine: machine()}
	before, err := e.snap()
	if err != nil {
		return nil, err
	}
	e.logf("floor run: sending %d messages to the floor gateway, concurrency %d, rate %s; load average %s",
		n, o.Concurrency, rateLabel(o.Rate), res.Machine.LoadAvg)
	lr := gen.run(ctx, p.bodies(n))
	accepted := lr.Accepted()
	notices := p.conversations(accepted)
	c, complete := e.waitDelivered(ctx, lr.Start, accepted, notices)
	res.Complete = complete
	after, err := e.snap()
	if err != nil {
		return nil, err
	}
	if err := e.fillEnd(res, lr); err != nil {
		return nil, err
	}
	res.Notices = notices
	res.fillSink(c, lr.Start)
	res.fillCPU(before, after)
	return res, nil
}

// writeFloorTable prints a floor run.
func writeFloorTable(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "\nmachine: %d × %s; load average %s at start, %s at end", r.Machine.NProc, r.Machine.CPU, r.Machine.LoadAvg, r.LoadAvgEnd)
	stack := "net/http"
	if r.Params.FloorRaw {
		stack = "hand-written HTTP/1.1 on net.Conn"
	}
	work := "only the contract's HTTP work: no Redis, no carrier"
	if r.Params.FloorFull {
		work = fmt.Sprintf("the contract's HTTP work plus the least store and carrier work: redis-server with AOF everysec, simulator over %d binds × window %d", r.Params.Binds, r.Params.Window)
	}
	fmt.Fprintf(b, "\nrun: floor (a gateway doing %s; %s), n=%d, %d numbers × %d recipients, concurrency %d, %s\n\n",
		work, stack, r.Params.N, r.Params.Numbers, r.Params.Recipients, r.Params.Concurrency, rateLabel(r.Params.Rate))
	b.WriteString("| measure | floor gateway | smsgate + redis-server goal |\n|---|---:|---|\n")
	row := func(name, v, goal string) { fmt.Fprintf(b, "| %s | %s | %s |\n", name, v, goal) }
	row("HTTP accepts/s", fmt.Sprintf("%.0f (%d in %.2f s)", r.AcceptRate, r.Accepted, r.AcceptSeconds), "")
	row("accept latency p50 / p99 / max", fmt.Sprintf("%.1f / %.1f / %.1f ms", r.P50Ms, r.P99Ms, r.MaxMs), "")
	events := 0
	for _, v := range r.EventsByKind {
		events += v
	}
	row("event POSTs per accepted message", fmt.Sprintf("%.2f (%d)", float64(events)/float64(max(r.Accepted, 1)), events), "")
	row("`delivered` events/s at the sink", fmt.Sprintf("%.0f (%d in %.2f s)", r.DeliveredRate, r.UserDelivered, r.DeliveredSeconds), "")
	if r.Params.FloorFull {
		row("CPU-s / 1,000 msgs, floor gateway", fmt.Sprintf("%.3f", r.CPU.SmsgatePer1k), "")
		row("CPU-s / 1,000 msgs, redis-server", fmt.Sprintf("%.3f", r.CPU.RedisPer1k), "")
		row("CPU-s / 1,000 msgs, floor gateway + redis-server", fmt.Sprintf("%.3f", r.CPU.TotalPer1k), fmt.Sprintf("≤ %.2f", goalCPUPer1k))
	} else {
		row("CPU-s / 1,000 msgs, floor gateway", fmt.Sprintf("%.3f", r.CPU.SmsgatePer1k), fmt.Sprintf("≤ %.2f", goalCPUPer1k))
	}
	row("peak RSS of the floor gateway", fmt.Sprintf("%.1f MiB", float64(r.SmsgatePeakRSS)/bytesPerMebibyte), "")
	fmt.Fprintf(b, "\ncomplete %v; duplicate delivered events %d; refused %v; transport errors %d %s\n",
		r.Complete, r.DupDelivered, sortedMap(r.Refused), r.Errors, r.FirstError)
	fmt.Fprintf(b, "CPU seconds in %.2f s: floor gateway %.2f, redis-server %.2f, simulator %.2f, bench (load generator + sink) %.2f\n\n",
		r.CPU.WallSeconds, r.CPU.Smsgate, r.CPU.Redis, r.CPU.Simulator, r.CPU.Bench)
}
