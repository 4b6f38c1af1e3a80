package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Reference figures of Kannel 1.4.5 on a 2-core machine, and smsgate's goals
// (issue 8).
const (
	kannelAccepts    = 4000.0
	kannelSubmits    = 2800.0
	kannelReceipts   = 2700.0
	kannelP99Ms      = 28.0
	kannelCPUPer1k   = 0.48
	goalSubmits      = 3 * kannelSubmits
	goalP99Ms        = 10.0
	goalCPUPer1k     = 0.12
	bytesPerMebibyte = 1 << 20
)

// Machine is where a run happened.
type Machine struct {
	NProc   int    `json:"nproc"`
	CPU     string `json:"cpu"`
	LoadAvg string `json:"loadavg_start"`
}

// Params are a run's settings.
type Params struct {
	N           int     `json:"n"`
	Numbers     int     `json:"numbers"`
	Recipients  int     `json:"recipients"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Binds       int     `json:"binds"`
	Window      int     `json:"window"`
	Daemons     int     `json:"daemons"`
	Cluster     bool    `json:"redis_cluster"`
	// StatusEvents is [webhook] status_events ("": every status event).
	StatusEvents string `json:"status_events,omitempty"`
	// FloorRaw: the floor gateway ran on hand-written HTTP/1.1 (-floor-raw).
	FloorRaw bool `json:"floor_raw,omitempty"`
	// FloorFull: the floor gateway also stored and submitted (-floor-full).
	FloorFull bool `json:"floor_full,omitempty"`
	// KannelDLRRedis: Kannel kept its DLRs in redis-server (-kannel-dlr-redis).
	KannelDLRRedis bool `json:"kannel_dlr_redis,omitempty"`
	// KillAfterMs: the gateway was SIGKILLed this long after the first request (-kill-after).
	KillAfterMs int64 `json:"kill_after_ms,omitempty"`
	// ReceiptDelayMs is the simulator's delay of delivery receipts.
	ReceiptDelayMs int64 `json:"receipt_delay_ms,omitempty"`
}

func paramsOf(o options, n int) Params {
	return Params{N: n, Numbers: o.Numbers, Recipients: o.Recipients, Concurrency: o.Concurrency,
		Rate: o.Rate, Binds: o.Binds, Window: o.Window, Daemons: max(o.Daemons, 1), Cluster: o.Cluster,
		StatusEvents: o.StatusEvents, FloorRaw: o.FloorRaw, FloorFull: o.FloorFull, KannelDLRRedis: o.KannelDLRRedis, KillAfterMs: o.KillAfter.Milliseconds(), ReceiptDelayMs: o.ReceiptDelay.Milliseconds()}
}

// CPU is CPU seconds used during the measured window.
type CPU struct {
	Smsgate   float64 `json:"smsgate_s"`
	Redis     float64 `json:"redis_s"`
	Simulator float64 `json:"simulator_s"`
	Bench     float64 `json:"bench_s"`
	// Per 1,000 user messages.
	SmsgatePer1k float64 `json:"smsgate_per_1k_s"`
	RedisPer1k   float64 `json:"redis_per_1k_s"`
	TotalPer1k   float64 `json:"smsgate_plus_redis_per_1k_s"`
	WallSeconds  float64 `json:"wall_s"`
}

// IdleCPU is CPU seconds per second while nothing is sent.
type IdleCPU struct {
	Smsgate float64 `json:"smsgate"`
	Redis   float64 `json:"redis"`
}

// Memory is the result of a queue-only run.
type Memory struct {
	UsedBefore    int64   `json:"used_memory_before"`
	UsedAfter     int64   `json:"used_memory_after"`
	Queued        int     `json:"queued"` // user messages + notices
	PerMessage    float64 `json:"bytes_per_message"`
	KeysAdded     int64   `json:"keys_added"`
	AOFBytes      int64   `json:"aof_bytes"`
	AOFPerMessage float64 `json:"aof_bytes_per_message"`
}

// Result is one run's figures; it is printed as a table and as one JSON line.
type Result struct {
	Mode       string  `json:"mode"` // e2e | queue-only | floor | kannel (CPU.Smsgate is then the floor gateway's, or bearerbox + smsbox)
	Params     Params  `json:"params"`
	Machine    Machine `json:"machine"`
	LoadAvgEnd string  `json:"loadavg_end"`
	Profiled   bool    `json:"profiled"`
	Complete   bool    `json:"complete"`

	Accepted      int            `json:"accepted"`
	Refused       map[string]int `json:"refused,omitempty"` // HTTP status -> count
	Errors        int            `json:"transport_errors"`
	FirstError    string         `json:"first_error,omitempty"`
	AcceptSeconds float64        `json:"accept_s"`
	AcceptRate    float64        `json:"accept_per_s"`
	P50Ms         float64        `json:"accept_p50_ms"`
	P90Ms         float64        `json:"accept_p90_ms"`
	P99Ms         float64        `json:"accept_p99_ms"`
	P999Ms        float64        `json:"accept_p999_ms"`
	MaxMs         float64        `json:"accept_max_ms"`
	Notices       int            `json:"notices"`

	SubmitsOK        int            `json:"submit_sm_ok"`
	SubmitsOther     int            `json:"submit_sm_other"`
	SubmitSeconds    float64        `json:"submit_s"`
	SubmitRate       float64        `json:"submit_sm_per_s"`
	UserDelivered    int            `json:"delivered_events"`
	NoticeDelivered  int            `json:"notice_delivered_events"`
	DupDelivered     int            `json:"duplicate_delivered_events"`
	DeliveredSeconds float64        `json:"delivered_s"`
	DeliveredRate    float64        `json:"delivered_per_s"`
	LastEventSeconds float64        `json:"last_event_s"`
	EventsByKind     map[string]int `json:"events,omitempty"`
	Outcomes         map[string]int `json:"dispatch_outcomes,omitempty"`
	WebhookRetries   int            `json:"webhook_retries"`

	CPU            CPU     `json:"cpu"`
	IdleCPU        IdleCPU `json:"idle_cpu_per_s"`
	SmsgatePeakRSS int64   `json:"smsgate_vmhwm_bytes"`
	Memory         *Memory `json:"memory,omitempty"`
	Crash          *Crash  `json:"crash,omitempty"` // -kill-after
	// Redis commands during the measured window, most expensive first.
	Redis []cmdStat `json:"redis_commands,omitempty"`
	// Timeline: every 100 ms, [seconds since the first request, submit_sm
	// OK, events at the sink, delivered events at the sink].
	Timeline [][4]float64 `json:"timeline,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (r *Result) fillAccept(lr loadResult) {
	r.Accepted = lr.Accepted()
	r.Errors, r.FirstError = lr.Errors, lr.FirstError
	for code, n := range lr.Statuses {
		if code != http.StatusAccepted {
			if r.Refused == nil {
				r.Refused = map[string]int{}
			}
			r.Refused[fmt.Sprint(code)] = n
		}
	}
	r.AcceptSeconds = lr.End.Sub(lr.Start).Seconds()
	if r.AcceptSeconds > 0 {
		r.AcceptRate = float64(r.Accepted) / r.AcceptSeconds
	}
	st := summarize(lr.Latencies)
	r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs = ms(st.P50), ms(st.P90), ms(st.P99), ms(st.P999), ms(st.Max)
}

// fillSubmits takes the poller's points, closed by a last one at end
// (submits answered OK then, and the sink's counts c), as the timeline, and
// the submit_sm count and rate, times counted from start (the first request).
func (r *Result) fillSubmits(points []point, end time.Time, submits float64, c sinkCounts, start time.Time) {
	points = append(points, point{At: end, Value: submits, Events: c.Total,
		Delivered: c.UserDelivered + c.NoticeDelivered + c.DupDelivered})
	for _, pt := range points {
		r.Timeline = append(r.Timeline, [4]float64{
			float64(pt.At.Sub(start).Milliseconds()) / 1000, pt.Value, float64(pt.Events), float64(pt.Delivered)})
	}
	r.SubmitsOK = int(submits)
	if at, ok := reached(points, submits); ok && submits > 0 {
		r.SubmitSeconds = at.Sub(start).Seconds()
		r.SubmitRate = submits / r.SubmitSeconds
	}
}

// fillSink takes the sink's counts, times counted from start (the first request).
func (r *Result) fillSink(c sinkCounts, start time.Time) {
	r.UserDelivered, r.NoticeDelivered, r.DupDelivered = c.UserDelivered, c.NoticeDelivered, c.DupDelivered
	r.EventsByKind = c.ByKind
	if !c.LastDelivered.IsZero() {
		r.DeliveredSeconds = c.LastDelivered.Sub(start).Seconds()
		r.DeliveredRate = float64(c.UserDelivered) / r.DeliveredSeconds
	}
	if !c.LastEvent.IsZero() {
		r.LastEventSeconds = c.LastEvent.Sub(start).Seconds()
	}
}

func (r *Result) fillCPU(before, after snapshot) {
	r.CPU = CPU{
		Smsgate:     after.Smsgate.Sub(before.Smsgate).Total().Seconds(),
		Redis:       after.Redis.Sub(before.Redis).Total().Seconds(),
		Simulator:   after.Sim.Sub(before.Sim).Total().Seconds(),
		Bench:       after.Self.Sub(before.Self).Total().Seconds(),
		WallSeconds: after.At.Sub(before.At).Seconds(),
	}
	k := float64(max(r.Accepted, 1)) / 1000
	r.CPU.SmsgatePer1k = r.CPU.Smsgate / k
	r.CPU.RedisPer1k = r.CPU.Redis / k
	r.CPU.TotalPer1k = (r.CPU.Smsgate + r.CPU.Redis) / k
}

// report prints the markdown table and, last, the JSON line.
func report(w io.Writer, r *Result) error {
	var b strings.Builder
	switch r.Mode {
	case "queue-only":
		writeMemoryTable(&b, r)
	case "floor":
		writeFloorTable(&b, r)
	case "kannel":
		writeKannelTable(&b, r)
	case "crash", "kannel-crash":
		writeCrashTable(&b, r)
	default:
		writeLoadTable(&b, r)
	}
	j, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	b.Write(j)
	b.WriteByte('\n')
	_, err = io.WriteString(w, b.String())
	return err
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func writeHeader(b *strings.Builder, r *Result) {
	fmt.Fprintf(b, "\nmachine: %d × %s; load average %s at start, %s at end", r.Machine.NProc, r.Machine.CPU, r.Machine.LoadAvg, r.LoadAvgEnd)
	if r.Profiled {
		b.WriteString("; PROFILED RUN (figures not representative)")
	}
	rate := "closed loop"
	if r.Params.Rate > 0 {
		rate = fmt.Sprintf("open loop at %.0f/s", r.Params.Rate)
	}
	store := "one redis-server"
	if r.Params.Cluster {
		store = fmt.Sprintf("a %d-master Redis Cluster", clusterMasters)
	}
	fmt.Fprintf(b, "\nrun: %s, n=%d, %d numbers × %d recipients, concurrency %d, %s, %d binds × window %d, %d smsgate process(es) on %s\n",
		r.Mode, r.Params.N, r.Params.Numbers, r.Params.Recipients, r.Params.Concurrency, rate, r.Params.Binds, r.Params.Window,
		max(r.Params.Daemons, 1), store)
	b.WriteString("\n")
	if r.Params.StatusEvents != "" {
		fmt.Fprintf(b, "webhook status events: only %s\n\n", r.Params.StatusEvents)
	}
	if r.Params.ReceiptDelayMs > 0 {
		fmt.Fprintf(b, "the simulator sends each receipt %v after its submit_sm_resp\n\n", time.Duration(r.Params.ReceiptDelayMs)*time.Millisecond)
	}
}

func writeLoadTable(b *strings.Builder, r *Result) {
	writeHeader(b, r)
	b.WriteString("| measure | smsgate | Kannel 1.4.5 | goal |\n|---|---:|---:|---|\n")
	row := func(name, v, kannel, goal string) { fmt.Fprintf(b, "| %s | %s | %s | %s |\n", name, v, kannel, goal) }
	row("HTTP accepts/s", fmt.Sprintf("%.0f (%d in %.2f s)", r.AcceptRate, r.Accepted, r.AcceptSeconds), fmt.Sprintf("~%.0f", kannelAccepts), "")
	p99goal := fmt.Sprintf("≤ %.0f ms at ≥ %.0f/s", goalP99Ms, goalSubmits)
	if r.Params.Rate >= goalSubmits {
		p99goal += ": " + verdict(r.P99Ms <= goalP99Ms && r.AcceptRate >= 0.98*r.Params.Rate)
	}
	row("accept latency p50 / p99 / max", fmt.Sprintf("%.1f / %.1f / %.1f ms", r.P50Ms, r.P99Ms, r.MaxMs), fmt.Sprintf("p99 ~%.0f ms", kannelP99Ms), p99goal)
	row("submit_sm/s end to end (incl. notices)", fmt.Sprintf("%.0f (%d in %.2f s)", r.SubmitRate, r.SubmitsOK, r.SubmitSeconds),
		fmt.Sprintf("~%.0f", kannelSubmits), fmt.Sprintf("≥ %.0f: %s", goalSubmits, verdict(r.SubmitRate >= goalSubmits)))
	row("`delivered` events/s at the sink", fmt.Sprintf("%.0f (%d in %.2f s)", r.DeliveredRate, r.UserDelivered, r.DeliveredSeconds),
		fmt.Sprintf("~%.0f", kannelReceipts), fmt.Sprintf("≥ %.0f: %s", 3*kannelReceipts, verdict(r.DeliveredRate >= 3*kannelReceipts)))
	row("time until the last event", fmt.Sprintf("%.2f s", r.LastEventSeconds), "", "")
	row("CPU-s / 1,000 msgs, smsgate", fmt.Sprintf("%.3f", r.CPU.SmsgatePer1k), "", "")
	row("CPU-s / 1,000 msgs, redis-server", fmt.Sprintf("%.3f", r.CPU.RedisPer1k), "", "")
	row("CPU-s / 1,000 msgs, smsgate + redis-server", fmt.Sprintf("%.3f", r.CPU.TotalPer1k),
		fmt.Sprintf("~%.2f (bearerbox+smsbox)", kannelCPUPer1k), fmt.Sprintf("≤ %.2f: %s", goalCPUPer1k, verdict(r.CPU.TotalPer1k <= goalCPUPer1k)))
	row("peak RSS of smsgate (VmHWM)", fmt.Sprintf("%.1f MiB", float64(r.SmsgatePeakRSS)/bytesPerMebibyte), "", "")
	fmt.Fprintf(b, "\nnotices queued %d, delivered %d; duplicate delivered events %d; complete %v\n",
		r.Notices, r.NoticeDelivered, r.DupDelivered, r.Complete)
	fmt.Fprintf(b, "CPU seconds in %.2f s: smsgate %.2f, redis-server %.2f, simulator %.2f, bench (load generator + sink) %.2f\n",
		r.CPU.WallSeconds, r.CPU.Smsgate, r.CPU.Redis, r.CPU.Simulator, r.CPU.Bench)
	fmt.Fprintf(b, "idle CPU (cores): smsgate %.3f, redis-server %.3f\n", r.IdleCPU.Smsgate, r.IdleCPU.Redis)
	fmt.Fprintf(b, "dispatch outcomes %v; submit_sm not OK %d; webhook retries %d; refused %v; transport errors %d %s\n",
		sortedMap(r.Outcomes), r.SubmitsOther, r.WebhookRetries, sortedMap(r.Refused), r.Errors, r.FirstError)
	fmt.Fprintf(b, "events at the sink %v\n", sortedMap(r.EventsByKind))
	writeRedisStats(b, r)
}

// writeRedisStats lists the Redis commands that took the most time.
func writeRedisStats(b *strings.Builder, r *Result) {
	if len(r.Redis) == 0 {
		b.WriteString("\n")
		return
	}
	var total int64
	for _, c := range r.Redis {
		total += c.Usec
	}
	fmt.Fprintf(b, "redis commands (INFO commandstats; inside scripts included), %.2f s in total:", float64(total)/1e6)
	for i, c := range r.Redis {
		if i == 12 {
			break
		}
		fmt.Fprintf(b, " %s %.2f/msg %.0f ms;", c.Name, c.PerMsg, float64(c.Usec)/1e3)
	}
	b.WriteString("\n\n")
}

func writeMemoryTable(b *strings.Builder, r *Result) {
	writeHeader(b, r)
	m := r.Memory
	b.WriteString("| measure | value |\n|---|---:|\n")
	row := func(name, v string) { fmt.Fprintf(b, "| %s | %s |\n", name, v) }
	row("messages queued (user + notices)", fmt.Sprintf("%d + %d", r.Accepted, r.Notices))
	row("Redis used_memory before / after", fmt.Sprintf("%.1f / %.1f MiB", float64(m.UsedBefore)/bytesPerMebibyte, float64(m.UsedAfter)/bytesPerMebibyte))
	row("Redis memory per queued message", fmt.Sprintf("%.0f bytes", m.PerMessage))
	row("keys added", fmt.Sprint(m.KeysAdded))
	row("AOF on disk per queued message", fmt.Sprintf("%.0f bytes (%.1f MiB total)", m.AOFPerMessage, float64(m.AOFBytes)/bytesPerMebibyte))
	row("HTTP accepts/s (no dispatch)", fmt.Sprintf("%.0f", r.AcceptRate))
	row("accept latency p50 / p99 / max", fmt.Sprintf("%.1f / %.1f / %.1f ms", r.P50Ms, r.P99Ms, r.MaxMs))
	row("CPU-s / 1,000 accepts, smsgate / redis-server", fmt.Sprintf("%.3f / %.3f", r.CPU.SmsgatePer1k, r.CPU.RedisPer1k))
	row("peak RSS of smsgate (VmHWM)", fmt.Sprintf("%.1f MiB", float64(r.SmsgatePeakRSS)/bytesPerMebibyte))
	fmt.Fprintf(b, "\nrefused %v; transport errors %d %s\n", sortedMap(r.Refused), r.Errors, r.FirstError)
	writeRedisStats(b, r)
}

// sortedMap formats a map with its keys in order.
func sortedMap(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}
