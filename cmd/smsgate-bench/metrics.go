package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics parses the Prometheus text exposition format (comments
// skipped; label values must not contain '"' escapes, as smsgate's do not).
func parseMetrics(text string) ([]sample, error) {
	var out []sample
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		var s sample
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("metrics: unbalanced braces in %q", line)
			}
			s.name = line[:i]
			s.labels = map[string]string{}
			for pair := range strings.SplitSeq(line[i+1:j], ",") {
				if pair == "" {
					continue
				}
				k, v, ok := strings.Cut(pair, "=")
				if !ok {
					return nil, fmt.Errorf("metrics: bad label %q in %q", pair, line)
				}
				s.labels[k] = strings.Trim(v, `"`)
			}
			rest = line[j+1:]
		} else {
			name, r, ok := strings.Cut(line, " ")
			if !ok {
				return nil, fmt.Errorf("metrics: no value in %q", line)
			}
			s.name, rest = name, r
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: value in %q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, nil
}

// sum adds the samples named name whose labels include every pair of match.
func sum(samples []sample, name string, match map[string]string) float64 {
	total := 0.0
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range match {
			if s.labels[k] != v {
				continue next
			}
		}
		total += s.value
	}
	return total
}

// scrape fetches and parses a metrics endpoint.
func scrape(ctx context.Context, client *http.Client, url string) ([]sample, error) {
	text, err := scrapeText(ctx, client, url)
	if err != nil {
		return nil, err
	}
	return parseMetrics(text)
}

// scrapeAll fetches and parses several daemons' metrics endpoints into one
// list (sum then adds over the daemons).
func scrapeAll(ctx context.Context, client *http.Client, urls []string) ([]sample, error) {
	var out []sample
	for _, u := range urls {
		s, err := scrape(ctx, client, u)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// scrapeText fetches a metrics endpoint.
func scrapeText(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	// No gzip: compressing every 100 ms scrape would cost the daemon CPU
	// that the run charges to it.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("scrape: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scrape: http status %d", resp.StatusCode)
	}
	return string(b), nil
}

// point is the submit_sm counter and the sink's counts at a time.
type point struct {
	At        time.Time
	Value     float64 // submit_sm answered ESME_ROK
	Events    int     // events received by the sink
	Delivered int     // delivered events (user messages and notices)
}

// poller reads the count of submit_sm answered OK periodically (count:
// smsgate's metric, or bearerbox's status page), so the time the last
// submit_sm reached the simulator is known to within the interval.
type poller struct {
	mu     sync.Mutex
	points []point
	done   chan struct{}
	wg     sync.WaitGroup
}

func startPoller(ctx context.Context, every time.Duration, sk *sink, count func(context.Context) (float64, error)) *poller {
	p := &poller{done: make(chan struct{})}
	p.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := count(ctx); err == nil {
				pt := point{At: time.Now(), Value: v}
				c := sk.counts()
				pt.Events, pt.Delivered = c.Total, c.UserDelivered+c.NoticeDelivered+c.DupDelivered
				p.mu.Lock()
				p.points = append(p.points, pt)
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-p.done:
				return
			case <-t.C:
			}
		}
	})
	return p
}

// stop ends polling and returns the points.
func (p *poller) stop() []point {
	close(p.done)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.points
}

// reached estimates when the counter reached v: linear interpolation
// between the last point below v and the first at or above it.
func reached(points []point, v float64) (time.Time, bool) {
	for i, p := range points {
		if p.Value < v {
			continue
		}
		if i == 0 || p.Value == points[i-1].Value {
			return p.At, true
		}
		q := points[i-1]
		f := (v - q.Value) / (p.Value - q.Value)
		return q.At.Add(time.Duration(f * float64(p.At.Sub(q.At)))), true
	}
	return time.Time{}, false
}

// submitsOK is the number of submit_sm the carrier answered ESME_ROK.
func submitsOK(s []sample) float64 {
	return sum(s, "smsgate_smpp_submit_sm_total", map[string]string{"status": "ESME_ROK"})
}
