package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// plan is the traffic of a run: which number sends to which recipient.
type plan struct {
	numbers    []string
	recipients int
	text       string
}

// newPlan makes count sender numbers (+1555 1xxxxxx) with recipients
// recipients each (+1556 …, distinct per number).
func newPlan(count, recipients int, text string) plan {
	p := plan{numbers: make([]string, count), recipients: recipients, text: text}
	for i := range p.numbers {
		p.numbers[i] = fmt.Sprintf("+1555%07d", 1000000+i)
	}
	return p
}

// message i goes from number i mod len(numbers) to that number's recipient
// (i / len(numbers)) mod recipients, so the first recipients×numbers
// messages each open a conversation (and get a notice) and the rest reuse them.
func (p plan) route(i int) (from, to string) {
	k := i % len(p.numbers)
	r := (i / len(p.numbers)) % p.recipients
	return p.numbers[k], fmt.Sprintf("+1556%07d", k*p.recipients+r)
}

// conversations is how many distinct (number, recipient) pairs n messages use.
func (p plan) conversations(n int) int {
	return min(n, len(p.numbers)*p.recipients)
}

// clientRef is the client_ref of message i; the sink maps it back to i.
func clientRef(i int) string { return "b" + strconv.Itoa(i) }

// parseClientRef is the inverse of clientRef.
func parseClientRef(s string) (int, bool) {
	if len(s) < 2 || s[0] != 'b' {
		return 0, false
	}
	i, err := strconv.Atoi(s[1:])
	return i, err == nil && i >= 0
}

// bodies pre-builds the n request bodies so the generator allocates little.
func (p plan) bodies(n int) [][]byte {
	out := make([][]byte, n)
	text, _ := json.Marshal(p.text) // a string always marshals
	for i := range out {
		from, to := p.route(i)
		out[i] = fmt.Appendf(nil, `{"from":%q,"to":%q,"text":%s,"client_ref":%q}`, from, to, text, clientRef(i))
	}
	return out
}

// loadResult is what the generator measured.
type loadResult struct {
	Start, End time.Time       // first request scheduled, last response received
	Latencies  []time.Duration // of accepted (202) requests
	Statuses   map[int]int     // HTTP status -> count
	AcceptedAt []bool          // by request index: answered 202
	Errors     int             // transport errors
	FirstError string
}

// Accepted is the number of 202 answers.
func (r loadResult) Accepted() int { return r.Statuses[http.StatusAccepted] }

// generator sends POST /v1/messages, request i to urls[i mod len(urls)].
// With get set (the -kannel run) request i is instead a GET of urls[i mod
// len(urls)] followed by bodies[i] (a path and query).
type generator struct {
	urls        []string
	apiKey      string // "": no Authorization header
	concurrency int
	rate        float64 // 0: closed loop
	get         bool
	client      *http.Client
}

func newGenerator(urls []string, apiKey string, concurrency int, rate float64) *generator {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency * 2
	tr.MaxIdleConnsPerHost = concurrency * 2
	tr.DisableCompression = true
	return &generator{urls: urls, apiKey: apiKey, concurrency: concurrency, rate: rate,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// run sends every body, concurrency at a time. Closed loop: each worker
// sends its next request as soon as the previous one is answered, and the
// latency is the request's round trip. Open loop (rate > 0): request i is
// due at start + i/rate and its latency counts from then, so a server that
// falls behind is charged for the queueing it causes.
func (g *generator) run(ctx context.Context, bodies [][]byte) loadResult {
	n := len(bodies)
	lat := make([]time.Duration, n)
	status := make([]int32, n) // 0: transport error
	var next atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range g.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if g.rate > 0 {
					t0 = start.Add(time.Duration(float64(i) / g.rate * float64(time.Second)))
					if d := time.Until(t0); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
				}
				code, err := g.post(ctx, g.urls[i%len(g.urls)], bodies[i])
				lat[i] = time.Since(t0)
				status[i] = int32(code)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()
	res := loadResult{Start: start, End: time.Now(), Statuses: map[int]int{}, AcceptedAt: make([]bool, n)}
	res.Latencies = make([]time.Duration, 0, n)
	for i := range n {
		switch status[i] {
		case 0:
			if lat[i] > 0 {
				res.Errors++
			}
		case http.StatusAccepted:
			res.AcceptedAt[i] = true
			res.Latencies = append(res.Latencies, lat[i])
			res.Statuses[http.StatusAccepted]++
		default:
			res.Statuses[int(status[i])]++
		}
	}
	if v, ok := firstErr.Load().(string); ok {
		res.FirstError = v
	}
	return res
}

func (g *generator) post(ctx context.Context, url string, body []byte) (int, error) {
	var req *http.Request
	var err error
	if g.get {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, url+string(body), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	}
	if err != nil {
		return 0, err
	}
	if g.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+g.apiKey)
	}
	if !g.get {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, fmt.Errorf("http status %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// latencyStats summarises latencies.
type latencyStats struct {
	P50, P90, P99, P999, Max time.Duration
}

// summarize sorts d in place and returns its percentiles.
func summarize(d []time.Duration) latencyStats {
	slices.Sort(d)
	return latencyStats{
		P50: percentile(d, 50), P90: percentile(d, 90), P99: percentile(d, 99),
		P999: percentile(d, 99.9), Max: percentile(d, 100),
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest value with at least p% of the values at or below it.
// It returns 0 for an empty slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// ceil(p/100 × n) computed on integers scaled by 1000 to avoid float error.
	rank := (int64(math.Round(p*1000))*int64(n) + 100_000 - 1) / 100_000
	rank = max(1, min(rank, int64(n)))
	return sorted[rank-1]
}
