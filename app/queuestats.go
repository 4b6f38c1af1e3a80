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
// They are read from the per-bucket ready and inflight sets and the queues of
// the senders found there, so they are refreshed on a timer and never per
// scrape.
const DefaultQueueStatsInterval = 15 * time.Second

// queueStatsTopN is how many of the deepest sender queues QueueStats keeps.
const queueStatsTopN = 10

// SenderQueue is one sender number's queue in a QueueStats snapshot.
type SenderQueue struct {
	From string `json:"from"`
	// Depth is the number of queued messages (not counting one in flight).
	Depth int64 `json:"depth"`
	// OldestCreatedAt is the creation time of the message at the head
	// (zero, and left out of the JSON, when its id does not tell it).
	OldestCreatedAt time.Time `json:"oldest_created_at,omitzero"`
}

// QueueStats is a snapshot of the per-number queues, computed every
// DefaultQueueStatsInterval.
type QueueStats struct {
	// At is when the snapshot was taken; zero (left out of the JSON) before
	// the first one.
	At time.Time `json:"at,omitzero"`
	// Depth is the number of queued messages over all senders.
	Depth int64 `json:"depth"`
	// Senders is the number of sender numbers with queued messages.
	Senders int `json:"senders"`
	// Leased is the number of messages claimed and not yet settled.
	Leased int64 `json:"leased"`
	// OldestCreatedAt is the creation time of the oldest queued message
	// (zero, and left out of the JSON, when nothing is queued).
	OldestCreatedAt time.Time `json:"oldest_created_at,omitzero"`
	// Top are the deepest sender queues, deepest first (empty, not null,
	// when nothing is queued).
	Top []SenderQueue `json:"top"`
}

// queueStats computes QueueStats from the documented key layout of package
// queue (queue/doc.go): base = "<prefix>{b<N>}:", a ZSET base+"ready" of
// the senders with queued messages and room in their in-flight window, a
// ZSET base+"inflight" of leased ids, a HASH base+"m:"+id per message whose
// field "from" is its sender, a LIST base+"q:"+from per sender holding
// message ids FIFO (head = oldest), and a HASH base+"s:"+from per sender
// whose field "dq" counts the ids in that list whose message already ended
// (the depth leaves them out). A message id carries its creation time
// in milliseconds in the first 48 bits of its 26 base-32 characters
// (message.NewID) followed by three characters naming the bucket
// (queue.NewMessageID). See bucketStatsScript for how it is read.
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
		Help:    "Time one refresh of the queue depth statistics took (reads of the ready and inflight sets and of the active senders' queues).",
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
	out.Top = append([]SenderQueue{}, out.Top...) // a copy, never nil
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

// refresh computes a new snapshot. Its cost is O(buckets + senders with
// queued or leased messages + leased messages), independent of how many
// messages are queued: it never scans the keyspace.
func (s *queueStats) refresh(ctx context.Context) error {
	start := time.Now()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, s.buckets)
	for b := range s.buckets {
		base := fmt.Sprintf("%s{b%d}:", s.prefix, b)
		cmds[b] = pipe.Eval(ctx, bucketStatsScript, []string{base + "ready", base + "inflight"}, base)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("queue stats: read buckets: %w", err)
	}
	snap := QueueStats{At: s.now().UTC()}
	var all []SenderQueue
	for b, c := range cmds {
		leased, queues, err := parseBucketStats(c)
		if err != nil {
			return fmt.Errorf("queue stats: bucket %d: %w", b, err)
		}
		snap.Leased += leased
		for _, sq := range queues {
			if !sq.OldestCreatedAt.IsZero() && (snap.OldestCreatedAt.IsZero() || sq.OldestCreatedAt.Before(snap.OldestCreatedAt)) {
				snap.OldestCreatedAt = sq.OldestCreatedAt
			}
			snap.Depth += sq.Depth
			all = append(all, sq)
		}
	}
	snap.Senders = len(all)
	slices.SortFunc(all, func(a, b SenderQueue) int {
		return cmp.Or(cmp.Compare(b.Depth, a.Depth), strings.Compare(a.From, b.From))
	})
	snap.Top = all[:min(len(all), queueStatsTopN)]

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

// bucketStatsScript reads one bucket atomically (all its keys share the
// bucket's slot). A sender with queued messages is in ready unless its
// in-flight window is full, and then it has a leased message in inflight
// whose record names it (field "from"); so the senders of ready and of the
// leased messages are every sender that may have queued messages. For each,
// once, it returns the queue length and head id. KEYS[1] ready, KEYS[2]
// inflight, ARGV[1] the bucket's key base. Reply: {leased, from, length,
// head, from, length, head, ...}, senders with an empty queue left out.
// Cost: O(senders in ready + leased messages) per bucket.
const bucketStatsScript = `
local base = ARGV[1]
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local senders = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  local from = redis.call('HGET', base .. 'm:' .. id, 'from')
  if from then senders[#senders + 1] = from end
end
local out = {#ids}
local seen = {}
for _, from in ipairs(senders) do
  if not seen[from] then
    seen[from] = true
    local q = base .. 'q:' .. from
    -- Field dq of the sender's state counts ids left in the list whose
    -- message already ended (queue/scripts/reap.lua).
    local n = redis.call('LLEN', q) - (tonumber(redis.call('HGET', base .. 's:' .. from, 'dq')) or 0)
    if n > 0 then
      out[#out + 1] = from
      out[#out + 1] = n
      out[#out + 1] = redis.call('LINDEX', q, 0) or ''
    end
  end
end
return out
`

// parseBucketStats decodes the reply of bucketStatsScript.
func parseBucketStats(c *redis.Cmd) (int64, []SenderQueue, error) {
	vals, err := c.Slice()
	if err != nil {
		return 0, nil, err
	}
	if len(vals) == 0 || (len(vals)-1)%3 != 0 {
		return 0, nil, fmt.Errorf("unexpected reply of %d values", len(vals))
	}
	leased, ok := vals[0].(int64)
	if !ok {
		return 0, nil, fmt.Errorf("unexpected leased count %T", vals[0])
	}
	var out []SenderQueue
	for i := 1; i < len(vals); i += 3 {
		from, ok1 := vals[i].(string)
		n, ok2 := vals[i+1].(int64)
		head, ok3 := vals[i+2].(string)
		if !ok1 || !ok2 || !ok3 {
			return 0, nil, fmt.Errorf("unexpected sender entry %T %T %T", vals[i], vals[i+1], vals[i+2])
		}
		sq := SenderQueue{From: from, Depth: n}
		if t, ok := idTime(head); ok {
			sq.OldestCreatedAt = t
		}
		out = append(out, sq)
	}
	return leased, out, nil
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
