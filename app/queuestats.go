package app

import (
	"cmp"
	"context"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"
)

// DefaultQueueStatsInterval is how often the queue totals are recomputed.
// They come from a SCAN of the store, so they are refreshed on a timer and
// never per scrape.
const DefaultQueueStatsInterval = 15 * time.Second

// queueStatsTopN is how many of the deepest sender queues QueueStats keeps.
const queueStatsTopN = 10

// SenderQueue is one sender number's queue in a QueueStats snapshot.
type SenderQueue struct {
	From string `json:"from"`
	// Depth is the number of queued messages (not counting one in flight).
	Depth int64 `json:"depth"`
	// OldestCreatedAt is the creation time of the message at the head.
	OldestCreatedAt time.Time `json:"oldest_created_at"`
}

// QueueStats is a snapshot of the per-number queues, computed every
// DefaultQueueStatsInterval.
type QueueStats struct {
	// At is when the snapshot was taken; zero before the first one.
	At time.Time `json:"at"`
	// Depth is the number of queued messages over all senders.
	Depth int64 `json:"depth"`
	// Senders is the number of sender numbers with queued messages.
	Senders int `json:"senders"`
	// Leased is the number of messages claimed and not yet settled.
	Leased int64 `json:"leased"`
	// OldestCreatedAt is the creation time of the oldest queued message
	// (zero when nothing is queued).
	OldestCreatedAt time.Time `json:"oldest_created_at"`
	// Top are the deepest sender queues, deepest first.
	Top []SenderQueue `json:"top"`
}

// queueStats computes QueueStats from the documented key layout of package
// queue (queue/doc.go): base = "<prefix>{b<N>}:", a LIST base+"q:"+from per
// sender holding message ids FIFO (head = oldest), a ZSET base+"inflight"
// of leased ids. A message id carries its creation time in milliseconds in
// the first 48 bits of its 26 base-32 characters (message.NewID) followed by
// three characters naming the bucket (queue.NewMessageID).
type queueStats struct {
	rdb     redis.UniversalClient
	prefix  string
	buckets int
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex
	snap QueueStats

	depth    prometheus.Gauge
	senders  prometheus.Gauge
	leased   prometheus.Gauge
	errors   prometheus.Counter
	last     prometheus.Gauge
	duration prometheus.Histogram
}

func newQueueStats(rdb redis.UniversalClient, prefix string, buckets int, log *slog.Logger, reg prometheus.Registerer) *queueStats {
	s := &queueStats{rdb: rdb, prefix: prefix, buckets: buckets, log: log, now: time.Now}
	f := promauto.With(reg)
	s.depth = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_queue_depth_messages",
		Help: "Messages waiting in the per-number queues, over all senders (refreshed every 15 s; leased messages not included).",
	})
	s.senders = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_queue_senders_waiting",
		Help: "Sender numbers with at least one queued message (refreshed every 15 s).",
	})
	s.leased = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_queue_leased_messages",
		Help: "Messages claimed by a daemon and not yet settled, over all daemons (refreshed every 15 s).",
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smsgate_queue_oldest_message_age_seconds",
		Help: "Age of the oldest queued message at scrape time, from the last refresh; 0 when nothing is queued.",
	}, s.oldestAge)
	s.errors = f.NewCounter(prometheus.CounterOpts{
		Name: "smsgate_queue_stats_refresh_errors_total",
		Help: "Refreshes of the queue depth statistics that failed (the previous values stay).",
	})
	s.last = f.NewGauge(prometheus.GaugeOpts{
		Name: "smsgate_queue_stats_last_refresh_timestamp_seconds",
		Help: "Unix time of the last successful refresh of the queue depth statistics.",
	})
	s.duration = f.NewHistogram(prometheus.HistogramOpts{
		Name:    "smsgate_queue_stats_refresh_duration_seconds",
		Help:    "Time one refresh of the queue depth statistics took (a SCAN of the store).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
	return s
}

func (s *queueStats) oldestAge() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.OldestCreatedAt.IsZero() {
		return 0
	}
	return max(0, s.now().Sub(s.snap.OldestCreatedAt).Seconds())
}

// Snapshot returns the last computed statistics.
func (s *queueStats) Snapshot() QueueStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.snap
	out.Top = slices.Clone(out.Top)
	return out
}

// run refreshes now and then every interval until ctx is done. Errors are
// counted and logged when they change.
func (s *queueStats) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		if err := s.refresh(ctx); err != nil && ctx.Err() == nil {
			s.errors.Inc()
			if err.Error() != lastErr {
				s.log.Warn("computing queue depth statistics failed; the previous values stay", "err", err)
				lastErr = err.Error()
			}
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh computes a new snapshot.
func (s *queueStats) refresh(ctx context.Context) error {
	start := time.Now()
	keys, err := s.scanQueues(ctx)
	if err != nil {
		return err
	}
	snap := QueueStats{At: s.now().UTC()}
	const batch = 500
	var all []SenderQueue
	for i := 0; i < len(keys); i += batch {
		part := keys[i:min(i+batch, len(keys))]
		pipe := s.rdb.Pipeline()
		lens := make([]*redis.IntCmd, len(part))
		heads := make([]*redis.StringCmd, len(part))
		for j, k := range part {
			lens[j] = pipe.LLen(ctx, k)
			heads[j] = pipe.LIndex(ctx, k, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return fmt.Errorf("queue stats: read queues: %w", err)
		}
		for j, k := range part {
			n := lens[j].Val()
			if n == 0 {
				continue // emptied since the scan
			}
			sq := SenderQueue{From: k[strings.LastIndex(k, ":q:")+3:], Depth: n}
			if t, ok := idTime(heads[j].Val()); ok {
				sq.OldestCreatedAt = t
				if snap.OldestCreatedAt.IsZero() || t.Before(snap.OldestCreatedAt) {
					snap.OldestCreatedAt = t
				}
			}
			snap.Depth += n
			all = append(all, sq)
		}
	}
	snap.Senders = len(all)
	slices.SortFunc(all, func(a, b SenderQueue) int {
		return cmp.Or(cmp.Compare(b.Depth, a.Depth), strings.Compare(a.From, b.From))
	})
	snap.Top = all[:min(len(all), queueStatsTopN)]

	pipe := s.rdb.Pipeline()
	cards := make([]*redis.IntCmd, s.buckets)
	for b := range s.buckets {
		cards[b] = pipe.ZCard(ctx, fmt.Sprintf("%s{b%d}:inflight", s.prefix, b))
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("queue stats: read leases: %w", err)
	}
	for _, c := range cards {
		snap.Leased += c.Val()
	}

	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	s.depth.Set(float64(snap.Depth))
	s.senders.Set(float64(snap.Senders))
	s.leased.Set(float64(snap.Leased))
	s.last.Set(float64(snap.At.UnixNano()) / 1e9)
	s.duration.Observe(time.Since(start).Seconds())
	return nil
}

// scanQueues lists the per-sender queue keys, on every master of a cluster.
func (s *queueStats) scanQueues(ctx context.Context) ([]string, error) {
	pattern := globEscape(s.prefix) + "{b*}:q:*"
	scan := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var out []string
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			out = append(out, it.Val())
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("queue stats: scan: %w", err)
		}
		return out, nil
	}
	cc, ok := s.rdb.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, s.rdb)
	}
	var mu sync.Mutex
	var keys []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		k, err := scan(ctx, c)
		mu.Lock()
		keys = append(keys, k...)
		mu.Unlock()
		return err
	})
	return keys, err
}

// globEscape escapes the Redis glob metacharacters of a literal prefix.
func globEscape(s string) string {
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// idTime reads the creation time out of a message id made by
// queue.NewMessageID: prefix, 26 base-32 characters whose first 48 bits are
// Unix milliseconds, 3 bucket characters.
func idTime(id string) (time.Time, bool) {
	if len(id) < 29 {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(id[len(id)-29 : len(id)-3])
	if err != nil || len(b) < 8 {
		return time.Time{}, false
	}
	ms := binary.BigEndian.Uint64(b[:8]) >> 16
	return time.UnixMilli(int64(ms)), true
}
