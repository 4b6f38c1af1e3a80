package smpp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/testharness"
)

// recorder is a Handler that records what it receives; failFirst makes
// that many calls fail first.
type recorder struct {
	mu        sync.Mutex
	receipts  []Receipt
	mos       []MO
	failFirst atomic.Int32
	calls     atomic.Int32
	gate      chan struct{} // when set, handling waits until it is closed
}

// wait holds a receipt or MO until the gate opens (or the handler's deadline).
func (r *recorder) wait(ctx context.Context) error {
	if r.gate == nil {
		return nil
	}
	select {
	case <-r.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *recorder) fail() error {
	r.calls.Add(1)
	if r.failFirst.Add(-1) >= 0 {
		return errors.New("store down")
	}
	return nil
}

func (r *recorder) HandleReceipt(ctx context.Context, rc Receipt) error {
	if err := r.wait(ctx); err != nil {
		return err
	}
	if err := r.fail(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.receipts = append(r.receipts, rc)
	return nil
}

func (r *recorder) HandleMO(ctx context.Context, m MO) error {
	if err := r.wait(ctx); err != nil {
		return err
	}
	if err := r.fail(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mos = append(r.mos, m)
	return nil
}

func (r *recorder) MOs() []MO {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]MO(nil), r.mos...)
}

func (r *recorder) Receipts() []Receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Receipt(nil), r.receipts...)
}

func startSim(t testing.TB, opts testharness.SimOptions) *testharness.Simulator {
	t.Helper()
	sim, err := testharness.NewSimulator(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

func testBind(t testing.TB, addr, name string) config.Bind {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return config.Bind{
		Name: name, Host: host, Port: p, SystemID: "smsgate", Password: "secret",
		Window: 10, EnquireLink: 2 * time.Second, ResponseTimeout: 2 * time.Second, BindTimeout: 2 * time.Second,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 80 * time.Millisecond,
	}
}

type testPool struct {
	*Pool
	reg *prometheus.Registry
	h   *recorder
}

func newTestPool(t testing.TB, c config.Carrier) *testPool {
	t.Helper()
	return newPoolWith(t, c, &recorder{}, nil)
}

// newPoolWith starts a pool whose Handler is h, or bh (which wraps h) when
// bh is not nil.
func newPoolWith(t testing.TB, c config.Carrier, h *recorder, bh Handler) *testPool {
	t.Helper()
	reg := prometheus.NewRegistry()
	var handler Handler = h
	if bh != nil {
		handler = bh
	}
	p, err := NewPool(PoolOptions{Carrier: c, Handler: handler, Registerer: reg, ReassemblyTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return &testPool{Pool: p, reg: reg, h: h}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitUp(t testing.TB, p *testPool) {
	t.Helper()
	waitFor(t, 3*time.Second, "a bound bind", p.Up)
}

func sub(text string) Submission {
	return Submission{ID: "msg_1", From: "+15550001111", To: "+15550002222", Text: text}
}

func TestSubmitAndReceipt(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)

	valid := time.Now().Add(time.Hour)
	s := sub("hello")
	s.ValidUntil = valid
	res := p.Submit(context.Background(), s)
	require.Equal(t, OK, res.Outcome, "%v", res.Err)
	require.Len(t, res.CarrierIDs, 1)
	require.NotEmpty(t, res.CarrierIDs[0])

	subs := sim.Submits()
	require.Len(t, subs, 1)
	require.Equal(t, "15550002222", subs[0].Dest)
	require.Equal(t, "15550001111", subs[0].Source)
	require.Equal(t, byte(1), subs[0].RegisteredDelivery)
	require.Equal(t, FormatAbsoluteTime(valid), subs[0].ValidityPeriod)
	require.Equal(t, []byte("hello"), subs[0].ShortMessage)

	waitFor(t, 2*time.Second, "receipt", func() bool { return len(p.h.Receipts()) == 1 })
	r := p.h.Receipts()[0]
	require.Equal(t, NormalizeID(res.CarrierIDs[0]), NormalizeID(r.CarrierMessageID))
	require.Equal(t, "DELIVRD", r.State)
	require.Equal(t, "000", r.Err)
	require.Equal(t, "ca", r.Carrier)
	require.Equal(t, "ca-0", r.Bind)
	require.Equal(t, 1.0, value(p.m.receipts.WithLabelValues("ca", "DELIVRD")))
	require.Equal(t, 1.0, value(p.m.submits.WithLabelValues("ca", "ESME_ROK")))
}

func TestDecimalIDsReceiptMatches(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{DecimalIDs: true})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, OK, res.Outcome)
	waitFor(t, 2*time.Second, "receipt", func() bool { return len(p.h.Receipts()) == 1 })
	require.Equal(t, NormalizeID(res.CarrierIDs[0]), NormalizeID(p.h.Receipts()[0].CarrierMessageID))
}

func TestLongMessageModes(t *testing.T) {
	long := strings.Repeat("0123456789", 20) // 200 septets: 2 parts
	for _, mode := range []string{LongUDH, LongSAR, LongPayload} {
		t.Run(mode, func(t *testing.T) {
			sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true}})
			p := newTestPool(t, config.Carrier{Name: "ca", LongMessages: mode, Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
			waitUp(t, p)
			sim.SetFaults(testharness.Faults{NoReceipts: true})
			res := p.Submit(context.Background(), sub(long))
			require.Equal(t, OK, res.Outcome, "%v", res.Err)
			subs := sim.Submits()
			switch mode {
			case LongUDH:
				require.Len(t, res.CarrierIDs, 2)
				require.Len(t, subs, 2)
				require.Equal(t, byte(0x40), subs[0].ESMClass)
				require.Equal(t, subs[0].ShortMessage[3], subs[1].ShortMessage[3], "same reference")
				require.Equal(t, []byte{5, 0, 3, subs[0].ShortMessage[3], 2, 2}, subs[1].ShortMessage[:6])
				require.Equal(t, []byte(long[153:]), subs[1].ShortMessage[6:])
			case LongSAR:
				require.Len(t, subs, 2)
				require.Equal(t, []byte{2}, subs[1].TLVs[0x020F])
				require.Equal(t, subs[0].TLVs[0x020C], subs[1].TLVs[0x020C])
			case LongPayload:
				require.Len(t, res.CarrierIDs, 1)
				require.Len(t, subs, 1)
				require.Equal(t, []byte(long), subs[0].TLVs[0x0424])
			}
			for i, id := range res.CarrierIDs {
				require.Equal(t, subs[i].MessageID, id)
			}
		})
	}
}

func TestSubmitErrorsClassified(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true}})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)
	for _, tt := range []struct {
		status uint32
		want   Outcome
	}{{0x45, Permanent}, {0x0B, Permanent}, {0x58, Temporary}, {0x14, Temporary}} {
		sim.SetFaults(testharness.Faults{ErrorRate: 1, ErrorStatus: tt.status, NoReceipts: true})
		res := p.Submit(context.Background(), sub("x"))
		require.Equal(t, tt.want, res.Outcome, StatusName(tt.status))
		require.Equal(t, tt.status, res.Status)
		var se *StatusError
		require.ErrorAs(t, res.Err, &se)
		require.Equal(t, []string{""}, res.CarrierIDs)
	}
}

func TestMultipartOutcomeRules(t *testing.T) {
	var a aggregate
	a.add(OK, 0, nil)
	a.add(Unknown, 0, ErrTimeout)
	a.add(Temporary, 0x58, nil)
	o, _, err := a.result()
	require.Equal(t, Unknown, o)
	require.ErrorIs(t, err, ErrTimeout)
	a.add(Permanent, 0x45, nil)
	o, st, _ := a.result()
	require.Equal(t, Permanent, o)
	require.Equal(t, uint32(0x45), st)
	var b aggregate
	b.add(OK, 0, nil)
	b.add(Temporary, 0x58, nil)
	o, _, _ = b.result()
	require.Equal(t, Temporary, o)
}

// 10,000 submits through one bind, each answered exactly once.
func TestTenThousandSubmits(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{RecordLimit: -1, Faults: testharness.Faults{NoReceipts: true}})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)
	const n, workers = 10000, 10
	var next atomic.Int64
	ids := make([]string, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				res := p.Submit(context.Background(), sub("m"+strconv.Itoa(int(i))))
				if res.Outcome != OK {
					t.Errorf("submit %d: %v %v", i, res.Outcome, res.Err)
					return
				}
				ids[i] = res.CarrierIDs[0]
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool, n)
	for _, id := range ids {
		require.NotEmpty(t, id)
		require.False(t, seen[id], "id %s answered twice", id)
		seen[id] = true
	}
	require.Equal(t, n, sim.SubmitCount())
	require.Equal(t, 0, p.States()[0].InFlight)
}

// The SMSC drops the connection mid-window: every unanswered submit comes
// back Unknown, the bind reconnects, nothing is lost.
func TestDropMidWindow(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true, Latency: 5 * time.Millisecond}})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)
	sim.SetFaults(testharness.Faults{NoReceipts: true, Latency: 5 * time.Millisecond, DropAfterPDUs: 40})

	const n = 300
	results := make([]Result, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				results[i] = p.Submit(ctx, sub("x"))
				cancel()
				if results[i].Outcome == Temporary {
					time.Sleep(10 * time.Millisecond) // not bound: wait for the reconnect
				}
			}
		})
	}
	wg.Wait()

	accepted := map[string]bool{}
	for _, s := range sim.Submits() {
		if s.MessageID != "" {
			accepted[s.MessageID] = true
		}
	}
	var ok, unknown, temp int
	for _, r := range results {
		switch r.Outcome {
		case OK:
			ok++
			require.True(t, accepted[r.CarrierIDs[0]], "OK id %s unknown to the SMSC", r.CarrierIDs[0])
		case Unknown:
			unknown++
			require.True(t, errors.Is(r.Err, ErrLinkLost) || errors.Is(r.Err, ErrTimeout), "%v", r.Err)
		case Temporary:
			temp++
			require.True(t, errors.Is(r.Err, ErrNotBound) || errors.Is(r.Err, ErrNotSent), "%v", r.Err)
		default:
			t.Fatalf("outcome %v: %v", r.Outcome, r.Err)
		}
	}
	require.Equal(t, n, ok+unknown+temp)
	require.Positive(t, unknown, "some submits were in flight at a drop")
	require.Positive(t, ok)
	// Every submit_sm the SMSC saw was reported OK or Unknown.
	require.LessOrEqual(t, sim.SubmitCount(), ok+unknown)
	require.GreaterOrEqual(t, value(p.m.reconnects.WithLabelValues("ca", "ca-0")), 2.0)
	waitFor(t, 2*time.Second, "window empty", func() bool { return p.States()[0].InFlight == 0 })
}

// A silent SMSC: the bind times out and retries with backoff.
func TestSilentBindRetries(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{SilentBind: true}})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.BindTimeout = 50 * time.Millisecond
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}})
	waitFor(t, 3*time.Second, "3 bind attempts", func() bool {
		return value(p.m.reconnects.WithLabelValues("ca", "ca-0")) >= 3
	})
	require.False(t, p.Up())
	require.Contains(t, []string{StateConnecting, StateBackoff}, p.States()[0].State)
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, Temporary, res.Outcome)
	require.ErrorIs(t, res.Err, ErrNotBound)

	sim.SetFaults(testharness.Faults{})
	waitUp(t, p)
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
}

func TestRefusedBindBacksOff(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{RefuseBinds: true}})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.ReconnectMin, bc.ReconnectMax = 20*time.Millisecond, 40*time.Millisecond
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}})
	time.Sleep(300 * time.Millisecond)
	n := value(p.m.reconnects.WithLabelValues("ca", "ca-0"))
	// 300ms of backoff between 10ms and 40ms: bounded number of attempts.
	require.GreaterOrEqual(t, n, 4.0)
	require.LessOrEqual(t, n, 31.0)
	require.False(t, p.Up())
}

// ESME_RTHROTTLED storm: the submitted rate falls, nothing fails
// permanently, the rate recovers.
func TestThrottleStorm(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true}})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.Throughput = 400
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}})
	b := (*p.binds.Load())[0]
	b.lim.mu.Lock()
	b.lim.recoverTime = 400 * time.Millisecond
	b.lim.holdoff = 100 * time.Millisecond
	b.lim.mu.Unlock()
	waitUp(t, p)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() }) // runs before the pool's Close
	var perm, temp atomic.Int32
	for range 10 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				res := p.Submit(context.Background(), sub("x"))
				switch res.Outcome {
				case Permanent:
					perm.Add(1)
				case Temporary:
					temp.Add(1)
					if errors.Is(res.Err, ErrClosed) {
						return
					}
				}
			}
		})
	}
	count := func(d time.Duration) int {
		a := sim.SubmitCount()
		time.Sleep(d)
		return sim.SubmitCount() - a
	}
	early := count(200 * time.Millisecond) // before the storm: about 80
	sim.SetFaults(testharness.Faults{NoReceipts: true, ErrorRate: 1, ErrorStatus: 0x58})
	waitFor(t, 5*time.Second, "rate lowered", func() bool { return b.lim.effective() < 20 })
	late := count(200 * time.Millisecond)
	rate := value(p.m.rate.WithLabelValues("ca", "ca-0"))
	require.Greater(t, early, 40, "baseline")
	require.Less(t, late, early/4, "rate falls (early %d, late %d)", early, late)
	require.Less(t, rate, 100.0)
	require.Positive(t, value(p.m.throttles.WithLabelValues("ca", "ca-0")))

	sim.SetFaults(testharness.Faults{NoReceipts: true})
	waitFor(t, 3*time.Second, "rate recovered", func() bool { return b.lim.effective() == 400 })
	recovered := count(200 * time.Millisecond)
	require.Zero(t, perm.Load(), "no permanent failure")
	require.Positive(t, temp.Load())
	require.Greater(t, recovered, max(late*2, 40), "rate recovers (late %d, recovered %d)", late, recovered)
	require.LessOrEqual(t, recovered, 400/5+5, "never above throughput")
}

func TestThroughputCap(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true}})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.Throughput = 100
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}})
	waitUp(t, p)
	start := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for range 5 {
				require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
			}
		})
	}
	wg.Wait()
	// 50 submits at 100/s with at most one token banked: >= 490ms.
	require.GreaterOrEqual(t, time.Since(start), 480*time.Millisecond)
}

// TestMO decodes MO messages of every form, sent as deliver_sm and, by an
// SMSC that uses it, as data_sm (answered with data_sm_resp).
func TestMO(t *testing.T) {
	for _, dataSM := range []bool{false, true} {
		t.Run(map[bool]string{false: "deliver_sm", true: "data_sm"}[dataSM], func(t *testing.T) {
			sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond, DataSM: dataSM})
			p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
			waitUp(t, p)
			long := strings.Repeat("abcdefghij", 35) + "€"
			tests := []struct {
				mo       testharness.MO
				segments int
			}{
				{testharness.MO{From: "15550002222", To: "15550001111", Text: "STOP"}, 1},
				{testharness.MO{From: "15550002222", To: "15550001111", Text: "Привет 😀", UCS2: true}, 1},
				{testharness.MO{From: "15550002222", To: "15550001111", Text: long, Concat: "udh"}, 3},
				{testharness.MO{From: "15550002222", To: "15550001111", Text: long, Concat: "sar"}, 3},
				{testharness.MO{From: "15550002222", To: "15550001111", Text: strings.Repeat("ж😀", 40), UCS2: true, Concat: "udh"}, 2},
				{testharness.MO{From: "15550002222", To: "15550001111", Text: long}, 1}, // message_payload
			}
			for i, tt := range tests {
				require.NoError(t, sim.InjectMO(tt.mo))
				waitFor(t, 2*time.Second, "MO", func() bool { return len(p.h.MOs()) == i+1 })
				got := p.h.MOs()[i]
				require.Equal(t, tt.mo.Text, got.Text)
				require.Equal(t, tt.segments, got.Segments)
				require.Equal(t, "+15550002222", got.From)
				require.Equal(t, "+15550001111", got.To)
				require.Equal(t, "ca-0", got.Bind)
			}
			require.Equal(t, float64(len(tests)), value(p.m.mo.WithLabelValues("ca")))
			resp := uint32(0x80000005) // deliver_sm_resp
			if dataSM {
				resp = 0x80000103 // data_sm_resp
			}
			waitFor(t, 2*time.Second, "responses", func() bool { return inboundResps(sim, resp)[StatusOK] == 11 })
			require.Empty(t, inboundResps(sim, 0x80000005^0x80000103^resp), "no response of the other kind")
		})
	}
}

// TestReceiptAsDataSM: a receipt that comes as data_sm (receipt text in
// message_payload, receipted_message_id and message_state TLVs) is decoded
// like a deliver_sm one and answered with data_sm_resp.
func TestReceiptAsDataSM(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{DataSM: true, Faults: testharness.Faults{ReceiptStat: "UNDELIV", ReceiptErr: "012"}})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)
	res := p.Submit(context.Background(), sub("hello"))
	require.Equal(t, OK, res.Outcome, "%v", res.Err)
	waitFor(t, 2*time.Second, "receipt", func() bool { return len(p.h.Receipts()) == 1 })
	r := p.h.Receipts()[0]
	require.Equal(t, NormalizeID(res.CarrierIDs[0]), NormalizeID(r.CarrierMessageID))
	require.Equal(t, "UNDELIV", r.State)
	require.Equal(t, "012", r.Err)
	waitFor(t, 2*time.Second, "data_sm_resp", func() bool { return inboundResps(sim, 0x80000103)[StatusOK] == 1 })
}

// inboundResps counts the responses of command id cmd the simulator received, by status.
func inboundResps(sim *testharness.Simulator, cmd uint32) map[uint32]int {
	n := map[uint32]int{}
	for _, r := range sim.Received() {
		if r.CommandID == cmd {
			n[r.CommandStatus]++
		}
	}
	return n
}

// A failing handler makes the carrier redeliver (ESME_RX_T_APPN).
func TestMOHandlerFailureRedelivered(t *testing.T) {
	for _, dataSM := range []bool{false, true} {
		t.Run(map[bool]string{false: "deliver_sm", true: "data_sm"}[dataSM], func(t *testing.T) {
			sim := startSim(t, testharness.SimOptions{RedeliverDelay: 20 * time.Millisecond, DataSM: dataSM})
			p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
			waitUp(t, p)
			p.h.failFirst.Store(2)
			long := strings.Repeat("0123456789", 20)
			require.NoError(t, sim.InjectMO(testharness.MO{From: "15550002222", To: "15550001111", Text: long, Concat: "udh"}))
			waitFor(t, 3*time.Second, "MO after redelivery", func() bool { return len(p.h.MOs()) == 1 })
			require.Equal(t, long, p.h.MOs()[0].Text)
			require.Equal(t, int32(3), p.h.calls.Load())
			time.Sleep(50 * time.Millisecond)
			require.Len(t, p.h.MOs(), 1, "delivered once")
			resp := uint32(0x80000005)
			if dataSM {
				resp = 0x80000103
			}
			require.Equal(t, 2, inboundResps(sim, resp)[StatusXTAppn], "the failed attempts are answered ESME_RX_T_APPN in the right response")
		})
	}
}

func TestTransmitterReceiverPair(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{})
	bc := testBind(t, sim.Addr(), "ca-0")
	bc.Mode = ModeTxRx
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{bc}})
	waitUp(t, p)
	require.Equal(t, 2, sim.ActiveBinds())
	res := p.Submit(context.Background(), sub("x"))
	require.Equal(t, OK, res.Outcome)
	waitFor(t, 2*time.Second, "receipt on the receiver", func() bool { return len(p.h.Receipts()) == 1 })
	require.NoError(t, sim.InjectMO(testharness.MO{From: "1", To: "2", Text: "hi"}))
	waitFor(t, 2*time.Second, "MO on the receiver", func() bool { return len(p.h.MOs()) == 1 })
}

// TestPickCountsPendingSubmits: submits that picked a bind but have not
// taken a window slot yet count as load, so a burst of concurrent submits
// spreads over the binds instead of herding onto the one that looked freest
// when they all looked (and then waiting for its slots while the other bind
// has room).
func TestPickCountsPendingSubmits(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{})
	c := config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "a"), testBind(t, sim.Addr(), "b")}}
	p := newTestPool(t, c)
	waitFor(t, 3*time.Second, "both bound", func() bool { return p.Free() == 20 })
	binds := *p.binds.Load()
	binds[0].sem <- struct{}{} // a has one submit_sm in flight
	t.Cleanup(func() { <-binds[0].sem })

	got := map[string]int{}
	for range 9 { // nine submits pick before any of them takes its slot
		got[p.pick().name]++
	}
	require.Equal(t, 9, got["a"]+got["b"])
	require.GreaterOrEqual(t, got["a"], 4, "picks so far: %v", got)
	require.GreaterOrEqual(t, got["b"], 4, "picks so far: %v", got)
	for _, b := range binds {
		require.Equal(t, int32(got[b.name]), b.picking.Load())
		b.picking.Store(0)
	}

	// A real submit leaves no pick counted behind, nor does one that fails.
	require.Equal(t, OK, p.Submit(context.Background(), sub("x")).Outcome)
	require.Equal(t, Permanent, p.Submit(context.Background(), Submission{From: "+15550001111", To: "+" + strings.Repeat("1", 30), Text: "x"}).Outcome, "an address too long for the wire")
	for _, b := range binds {
		require.Zero(t, b.picking.Load(), b.name)
	}
}

func TestPoolLeastLoadedAndUpdate(t *testing.T) {
	// Answers held long enough that all 12 submits are seen in flight at
	// once even on a slow, busy machine.
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true, Latency: 500 * time.Millisecond}})
	c := config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "a"), testBind(t, sim.Addr(), "b")}}
	p := newTestPool(t, c)
	waitFor(t, 3*time.Second, "both bound", func() bool { return p.Free() == 20 })
	require.Equal(t, 20, p.Window())

	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			res := p.Submit(context.Background(), sub("x"))
			require.Equal(t, OK, res.Outcome, "%v", res.Err)
		})
	}
	var st []BindState
	waitFor(t, 400*time.Millisecond, "12 in flight", func() bool {
		st = p.States()
		return st[0].InFlight+st[1].InFlight == 12
	})
	require.Equal(t, 20, p.Window(), "the window counts taken slots too")
	require.InDelta(t, st[0].InFlight, st[1].InFlight, 2, "spread over both binds")
	wg.Wait()
	sim.SetFaults(testharness.Faults{NoReceipts: true})

	// Update: keep a, change b, add c.
	before := sim.MaxActiveBinds()
	keepA := (*p.binds.Load())[0]
	c2 := config.Carrier{Name: "ca", LongMessages: LongSAR, Binds: []config.Bind{c.Binds[0], c.Binds[1], testBind(t, sim.Addr(), "c")}}
	c2.Binds[1].Window = 5
	require.NoError(t, p.Update(c2))
	require.Same(t, keepA, (*p.binds.Load())[0])
	waitFor(t, 3*time.Second, "new binds bound", func() bool { return p.Free() == 25 })
	require.Equal(t, 25, p.Window())
	require.Equal(t, LongSAR, p.wire.Load().long)
	waitFor(t, 3*time.Second, "old b closed", func() bool { return sim.ActiveBinds() == 3 })
	require.GreaterOrEqual(t, sim.MaxActiveBinds(), before)

	// Remove all but c.
	require.NoError(t, p.Update(config.Carrier{Name: "ca", Binds: []config.Bind{c2.Binds[2]}}))
	waitFor(t, 3*time.Second, "removed binds closed", func() bool { return sim.ActiveBinds() == 1 })
	require.Len(t, p.States(), 1)
	require.Equal(t, "c", p.States()[0].Name)

	require.Error(t, p.Update(config.Carrier{Name: "other"}))
	require.Error(t, p.Update(config.Carrier{Name: "ca", LongMessages: "bogus"}))
	require.Equal(t, "c", p.States()[0].Name, "failed update changes nothing")
}

func TestCloseUnbindsAndDrains(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true, Latency: 200 * time.Millisecond}})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "ca-0")}})
	waitUp(t, p)
	var wg sync.WaitGroup
	results := make([]Result, 5)
	for i := range results {
		wg.Go(func() { results[i] = p.Submit(context.Background(), sub("x")) })
	}
	waitFor(t, 2*time.Second, "5 in flight", func() bool { return p.States()[0].InFlight == 5 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	wg.Wait()
	for _, r := range results {
		require.Equal(t, OK, r.Outcome, "window finished before unbind: %v", r.Err)
	}
	var unbinds int
	for _, r := range sim.Received() {
		if r.CommandID == 0x00000006 {
			unbinds++
		}
	}
	require.Equal(t, 1, unbinds)
	waitFor(t, time.Second, "no binds", func() bool { return sim.ActiveBinds() == 0 })
	require.Equal(t, StateClosed, p.States()[0].State)
	res := p.Submit(context.Background(), sub("x"))
	require.ErrorIs(t, res.Err, ErrClosed)
}

func TestNewPoolValidation(t *testing.T) {
	h := &recorder{}
	good := config.Bind{Host: "127.0.0.1", Port: 2775}
	for _, tt := range []struct {
		name string
		c    config.Carrier
		h    Handler
		want string
	}{
		{"no handler", config.Carrier{Name: "c"}, nil, "Handler"},
		{"no name", config.Carrier{}, h, "carrier name"},
		{"long mode", config.Carrier{Name: "c", LongMessages: "x"}, h, "long_messages"},
		{"no host", config.Carrier{Name: "c", Binds: []config.Bind{{Port: 1}}}, h, "host"},
		{"port", config.Carrier{Name: "c", Binds: []config.Bind{{Host: "h"}}}, h, "port"},
		{"mode", config.Carrier{Name: "c", Binds: []config.Bind{{Host: "h", Port: 1, Mode: "rx"}}}, h, "mode"},
		{"dup", config.Carrier{Name: "c", Binds: []config.Bind{good, {Host: "h", Port: 1, Name: "c-0"}}}, h, "twice"},
		{"ca file", config.Carrier{Name: "c", Binds: []config.Bind{{Host: "h", Port: 1, TLS: true, TLSCAFile: "/nonexistent"}}}, h, "tls ca file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPool(PoolOptions{Carrier: tt.c, Handler: tt.h})
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Two pools on one registry share the collectors.
	for _, name := range []string{"a", "b"} {
		p, err := NewPool(PoolOptions{Carrier: config.Carrier{Name: name, Binds: []config.Bind{{Host: "127.0.0.1", Port: 1}}}, Handler: &recorder{}, Registerer: reg})
		require.NoError(t, err)
		defer p.Close(context.Background())
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems, fmt.Sprint(problems))
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// TestPoolOpenUntilRetiredBindCloses: a bind an Update removed still counts
// as open while it drains its window and unbinds, and not after.
func TestPoolOpenUntilRetiredBindCloses(t *testing.T) {
	sim := startSim(t, testharness.SimOptions{Faults: testharness.Faults{NoReceipts: true, Latency: 300 * time.Millisecond}})
	p := newTestPool(t, config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "a")}})
	waitFor(t, 3*time.Second, "bound", func() bool { return p.Free() == 10 })
	require.True(t, p.Open("a"))
	done := make(chan Result, 1)
	go func() { done <- p.Submit(context.Background(), sub("x")) }()
	waitFor(t, 3*time.Second, "in flight", func() bool { return p.States()[0].InFlight == 1 })

	require.NoError(t, p.Update(config.Carrier{Name: "ca", Binds: []config.Bind{testBind(t, sim.Addr(), "b")}}))
	require.True(t, p.Open("a"), "removed, still draining its window")
	require.True(t, p.Open("b"))
	require.Equal(t, OK, (<-done).Outcome)
	waitFor(t, 3*time.Second, "a closed", func() bool { return !p.Open("a") })
	require.Eventually(t, func() bool { return sim.ActiveBinds() == 1 }, 3*time.Second, 10*time.Millisecond)
	require.False(t, p.Open("nope"))
}
