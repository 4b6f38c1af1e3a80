package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accepted *prometheus.CounterVec
	refused  *prometheus.CounterVec
	warnings *prometheus.CounterVec
	dryRuns  prometheus.Counter
	replayed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_api_requests_total",
			Help: "HTTP requests answered, by route and status class (2xx, 4xx, 5xx).",
		}, []string{"route", "code_class"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "smsgate_api_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		accepted: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_api_messages_accepted_total",
			Help: "Messages accepted (202) and durably queued, by encoding.",
		}, []string{"encoding"}),
		refused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_api_messages_refused_total",
			Help: "Message submissions refused, by error code.",
		}, []string{"reason"}),
		warnings: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_api_content_warnings_total",
			Help: "Content warnings attached to accepted messages, by screening category.",
		}, []string{"category"}),
		dryRuns: f.NewCounter(prometheus.CounterOpts{
			Name: "smsgate_api_dry_runs_total",
			Help: "Dry-run requests answered 200.",
		}),
		replayed: f.NewCounter(prometheus.CounterOpts{
			Name: "smsgate_api_idempotent_replays_total",
			Help: "Submissions answered with the stored response of an earlier request with the same Idempotency-Key.",
		}),
	}
}

// routeMetrics holds the resolved series of one route so the hot path does
// no label lookups.
type routeMetrics struct {
	classes  [6]prometheus.Counter // index status/100
	duration prometheus.Observer
}

func (m *metrics) route(name string) *routeMetrics {
	rm := &routeMetrics{duration: m.duration.WithLabelValues(name)}
	for i, class := range []string{"", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		if class != "" {
			rm.classes[i] = m.requests.WithLabelValues(name, class)
		}
	}
	return rm
}

func (rm *routeMetrics) observe(status int, d time.Duration) {
	if c := status / 100; c >= 1 && c <= 5 {
		rm.classes[c].Inc()
	}
	rm.duration.Observe(d.Seconds())
}
