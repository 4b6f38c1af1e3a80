package smpp

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Pool registered on the same Registerer (one
// pool per carrier): a collector already registered is reused.
type metrics struct {
	bindState  *prometheus.GaugeVec     // carrier, bind, state
	inFlight   *prometheus.GaugeVec     // carrier, bind
	submits    *prometheus.CounterVec   // carrier, status
	latency    *prometheus.HistogramVec // carrier
	receipts   *prometheus.CounterVec   // carrier, state
	mo         *prometheus.CounterVec   // carrier
	reconnects *prometheus.CounterVec   // carrier, bind
	throttles  *prometheus.CounterVec   // carrier, bind
	rate       *prometheus.GaugeVec     // carrier, bind
	missingIDs *prometheus.CounterVec   // carrier
	undecoded  *prometheus.CounterVec   // carrier, command
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	var err error
	reg1 := func(c prometheus.Collector) prometheus.Collector {
		if err != nil {
			return c
		}
		if e := reg.Register(c); e != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(e, &are) {
				return are.ExistingCollector
			}
			err = fmt.Errorf("smpp: metrics: %w", e)
		}
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		c, _ := reg1(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)).(*prometheus.GaugeVec)
		return c
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c, _ := reg1(prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)).(*prometheus.CounterVec)
		return c
	}
	m.bindState = gauge("smsgate_smpp_bind_state", "1 for the current state of each bind (connecting, bound, backoff, closed), else 0.", "carrier", "bind", "state")
	m.inFlight = gauge("smsgate_smpp_window_in_flight", "Window slots taken by unanswered submit_sm.", "carrier", "bind")
	m.submits = counter("smsgate_smpp_submit_sm_total", "submit_sm answered, by command_status name (timeout, link_lost when unanswered).", "carrier", "status")
	h, _ := reg1(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "smsgate_smpp_submit_sm_duration_seconds",
		Help:    "Time from writing a submit_sm to its response.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"carrier"})).(*prometheus.HistogramVec)
	m.latency = h
	m.receipts = counter("smsgate_smpp_receipts_total", "Delivery receipts received, by final state.", "carrier", "state")
	m.mo = counter("smsgate_smpp_mo_total", "Inbound messages handed to the handler (after reassembly).", "carrier")
	m.reconnects = counter("smsgate_smpp_reconnects_total", "Bind attempts after a failure or a lost bind.", "carrier", "bind")
	m.throttles = counter("smsgate_smpp_throttle_events_total", "Throttling answers (ESME_RTHROTTLED, ESME_RMSGQFUL).", "carrier", "bind")
	m.rate = gauge("smsgate_smpp_effective_rate", "Effective submit_sm per second limit of a bind (0 = unlimited).", "carrier", "bind")
	m.missingIDs = counter("smsgate_smpp_submit_sm_missing_id_total", "submit_sm accepted (ESME_ROK) with no message_id in the submit_sm_resp: sent, but no receipt can be matched.", "carrier")
	m.undecoded = counter("smsgate_smpp_undecodable_pdus_total", "PDUs from the SMSC too large (over 64 KiB) or malformed to decode, answered and dropped (deliver_sm, data_sm, other).", "carrier", "command")
	if err != nil {
		return nil, err
	}
	if m.bindState == nil || m.inFlight == nil || m.submits == nil || m.latency == nil || m.receipts == nil ||
		m.mo == nil || m.reconnects == nil || m.throttles == nil || m.rate == nil || m.missingIDs == nil || m.undecoded == nil {
		return nil, errors.New("smpp: metrics: a collector of another type is registered under an smsgate_smpp_ name")
	}
	return m, nil
}

// bindMetrics are one bind's pre-resolved children.
type bindMetrics struct {
	m          *metrics
	carrier    string
	bind       string
	inFlight   prometheus.Gauge
	reconnects prometheus.Counter
	throttles  prometheus.Counter
	rate       prometheus.Gauge
	okSubmits  prometheus.Counter
	latency    prometheus.Observer
	missingIDs prometheus.Counter
}

func (m *metrics) forBind(carrier, bind string) *bindMetrics {
	return &bindMetrics{
		m:          m,
		carrier:    carrier,
		bind:       bind,
		inFlight:   m.inFlight.WithLabelValues(carrier, bind),
		reconnects: m.reconnects.WithLabelValues(carrier, bind),
		throttles:  m.throttles.WithLabelValues(carrier, bind),
		rate:       m.rate.WithLabelValues(carrier, bind),
		okSubmits:  m.submits.WithLabelValues(carrier, statusLabel(StatusOK)),
		latency:    m.latency.WithLabelValues(carrier),
		missingIDs: m.missingIDs.WithLabelValues(carrier),
	}
}

func (b *bindMetrics) setState(state string) {
	for _, s := range allStates {
		v := 0.0
		if s == state {
			v = 1
		}
		b.m.bindState.WithLabelValues(b.carrier, b.bind, s).Set(v)
	}
}

func (b *bindMetrics) submitted(status uint32, err error) {
	switch {
	case errors.Is(err, ErrTimeout):
		b.m.submits.WithLabelValues(b.carrier, "timeout").Inc()
	case err != nil:
		b.m.submits.WithLabelValues(b.carrier, "link_lost").Inc()
	case status == StatusOK:
		b.okSubmits.Inc()
	default:
		b.m.submits.WithLabelValues(b.carrier, statusLabel(status)).Inc()
	}
}

// forget removes the bind's labelled series.
func (b *bindMetrics) forget() {
	for _, s := range allStates {
		b.m.bindState.DeleteLabelValues(b.carrier, b.bind, s)
	}
	b.m.inFlight.DeleteLabelValues(b.carrier, b.bind)
	b.m.rate.DeleteLabelValues(b.carrier, b.bind)
}
