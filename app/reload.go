package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"

	"github.com/smsgate/smsgate/api"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/smpp"
)

// Reload reads the configuration file again and, when it is valid, swaps the
// whole new state in: routes, orgs, numbers, rates, screening rules and the
// bind set (unchanged binds stay bound, removed ones unbind after finishing
// their window, new ones connect). A configuration that fails validation
// changes nothing; the error lists every problem with its key path, and each
// is logged. Concurrent reloads (SIGHUP and the admin endpoint) run one at a
// time.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.reloadSeq++
	next, err := loadState(a.opts.ConfigPath)
	if err != nil {
		a.reloadFailed(err)
		return err
	}
	prev := a.state.Load()
	retired, err := a.applyCarriers(next.cfg)
	if err != nil {
		a.reloadFailed(err)
		return err
	}
	// Swap: the API, the webhook resolver and the dispatcher's plan see the
	// new configuration from here on.
	a.state.Store(next)
	a.api.SetState(api.NewState(next.cfg, next.rules))
	a.poolsMu.Lock()
	a.dispatch.SetPlan(a.plan(next.cfg))
	a.poolsMu.Unlock()
	// Removed carriers finish their window and unbind in the background;
	// the dispatcher no longer routes to them.
	for name, p := range retired {
		a.wg.Go(func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := p.Close(cctx); err != nil {
				a.log.Warn("closing a removed carrier's binds", "carrier", name, "err", err)
			}
		})
	}
	if err := a.applyRates(ctx, prev.cfg, next.cfg); err != nil {
		// The new rates apply to newly accepted messages anyway (enqueue
		// carries the rate); report, but the reload itself stands.
		a.log.Warn("updating per-number rates of queued messages failed; they apply from the next message", "err", err)
	}
	a.reloadOK.Set(1)
	a.reloadTS.SetToCurrentTime()
	a.reloads.WithLabelValues("success").Inc()
	a.log.Info("configuration reloaded", "reload", a.reloadSeq, "path", a.opts.ConfigPath, "summary", next.cfg.Summary())
	if keys := restartOnly(prev.cfg, next.cfg); len(keys) > 0 {
		a.log.Warn("configuration reload: these keys changed but take effect only at restart; the running daemon keeps the old values",
			"reload", a.reloadSeq, "keys", strings.Join(keys, ", "))
	}
	return nil
}

// restartOnly lists the keys (or sections) that differ between prev and
// next and that a reload does not apply (docs/OPERATIONS.md, "Reload").
func restartOnly(prev, next *config.Config) []string {
	var keys []string
	changed := func(key string, differ bool) {
		if differ {
			keys = append(keys, key)
		}
	}
	p, n := prev, next
	changed("http.*", p.HTTP != n.HTTP)
	changed("metrics.listen", p.Metrics.Listen != n.Metrics.Listen)
	changed("metrics.pprof", p.Metrics.Pprof != n.Metrics.Pprof)
	changed("redis.*", !reflect.DeepEqual(p.Redis, n.Redis))
	changed("queue.buckets", p.Queue.Buckets != n.Queue.Buckets)
	changed("queue.lease", p.Queue.Lease != n.Queue.Lease)
	changed("queue.retry_backoff", p.Queue.RetryBackoff != n.Queue.RetryBackoff)
	changed("queue.max_retry_backoff", p.Queue.MaxRetryBackoff != n.Queue.MaxRetryBackoff)
	changed("webhook.timeout", p.Webhook.Timeout != n.Webhook.Timeout)
	changed("webhook.retry_for", p.Webhook.RetryFor != n.Webhook.RetryFor)
	changed("webhook.min_backoff", p.Webhook.MinBackoff != n.Webhook.MinBackoff)
	changed("webhook.max_backoff", p.Webhook.MaxBackoff != n.Webhook.MaxBackoff)
	changed("webhook.workers", p.Webhook.Workers != n.Webhook.Workers)
	changed("log.*", p.Log != n.Log)
	changed("simulator.*", p.Simulator != n.Simulator)
	return keys
}

// reloadFailed records a failed reload: metric, and one log line per problem
// with its key path, then a summary line. The lines carry the reload's
// number, so a reload that fails as the previous one did is still logged
// when it happens (the log's de-duplication holds back only identical lines).
func (a *App) reloadFailed(err error) {
	a.reloadOK.Set(0)
	a.reloads.WithLabelValues("failure").Inc()
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			a.log.Error("configuration reload: invalid key", "reload", a.reloadSeq, "key", p.Path, "problem", p.Message)
		}
		a.log.Error("configuration reload failed; nothing changed", "reload", a.reloadSeq, "path", a.opts.ConfigPath, "problems", len(ve.Problems))
		return
	}
	a.log.Error("configuration reload failed; nothing changed", "reload", a.reloadSeq, "path", a.opts.ConfigPath, "err", err)
}

// applyCarriers brings the pools in line with cfg: new carriers connect
// first (if one cannot be created, those already created are closed and
// nothing changed), then existing carriers update their bind set in place
// (unchanged binds stay bound). It returns the pools of removed carriers,
// already taken out of a.pools, for the caller to close once the new plan
// is in force.
func (a *App) applyCarriers(cfg *config.Config) (retired map[string]*smpp.Pool, err error) {
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	created := make(map[string]*smpp.Pool)
	for _, c := range cfg.Carriers {
		if _, ok := a.pools[c.Name]; ok {
			continue
		}
		p, err := a.newPool(c)
		if err != nil {
			for _, p := range created {
				_ = p.Close(context.Background())
			}
			return nil, fmt.Errorf("carrier %q: %w", c.Name, err)
		}
		created[c.Name] = p
	}
	// Pool.Update validates before it changes anything; the configuration
	// was validated as a whole already, so a failure here is unexpected.
	for _, c := range cfg.Carriers {
		if p, ok := a.pools[c.Name]; ok {
			if err := p.Update(a.leases.filter(c)); err != nil {
				for _, p := range created {
					_ = p.Close(context.Background())
				}
				return nil, fmt.Errorf("carrier %q: %w", c.Name, err)
			}
		}
	}
	keep := make(map[string]bool, len(cfg.Carriers))
	for _, c := range cfg.Carriers {
		keep[c.Name] = true
	}
	retired = make(map[string]*smpp.Pool)
	for name, p := range a.pools {
		if !keep[name] {
			retired[name] = p
			delete(a.pools, name)
		}
	}
	maps.Copy(a.pools, created)
	return retired, nil
}

// applyRates writes every number whose rate changed into the queue, so
// messages already queued go out at the new rate.
func (a *App) applyRates(ctx context.Context, prev, next *config.Config) error {
	old := make(map[string]float64)
	for _, o := range prev.Orgs {
		for _, n := range o.Numbers {
			old[n.E164] = n.EffectiveRate()
		}
	}
	for _, o := range next.Orgs {
		for _, n := range o.Numbers {
			r := n.EffectiveRate()
			if was, ok := old[n.E164]; ok && was == r {
				continue
			}
			if err := a.queue.SetRate(ctx, n.E164, interval(r)); err != nil {
				return fmt.Errorf("set rate of a number: %w", err)
			}
		}
	}
	return nil
}

// interval is the time one segment takes at rate segments per second.
func interval(rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / rate)
}
