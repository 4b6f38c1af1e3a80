package app

import (
	"context"
	"fmt"
	"time"

	"github.com/smsgate/smsgate/api"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/smpp"
)

// Reload reads the configuration file again and, when it is valid, swaps the
// whole new state in: routes, orgs, numbers, rates, screening rules and the
// bind set (unchanged binds stay bound). A configuration that fails
// validation changes nothing; the error lists every problem with its key path.
func (a *App) Reload(ctx context.Context) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	next, err := loadState(a.opts.ConfigPath)
	if err != nil {
		a.reloadOK.Set(0)
		a.log.Error("configuration reload failed; nothing changed", "path", a.opts.ConfigPath, "err", err)
		return err
	}
	prev := a.state.Load()
	if err := a.applyCarriers(ctx, next.cfg); err != nil {
		a.reloadOK.Set(0)
		a.log.Error("configuration reload failed while updating carriers", "err", err)
		return err
	}
	a.state.Store(next)
	a.api.SetState(api.NewState(next.cfg, next.rules))
	a.poolsMu.Lock()
	a.dispatch.SetPlan(a.plan(next.cfg))
	a.poolsMu.Unlock()
	if err := a.applyRates(ctx, prev.cfg, next.cfg); err != nil {
		// The new rates apply to newly accepted messages anyway (enqueue
		// carries the rate); report, but the reload itself stands.
		a.log.Warn("updating per-number rates of queued messages failed; they apply from the next message", "err", err)
	}
	a.reloadOK.Set(1)
	a.reloadTS.SetToCurrentTime()
	a.log.Info("configuration reloaded", "summary", next.cfg.Summary())
	return nil
}

// applyCarriers brings the pools in line with cfg: existing carriers update
// their bind set in place, new ones connect, removed ones close after
// finishing their window.
func (a *App) applyCarriers(ctx context.Context, cfg *config.Config) error {
	a.poolsMu.Lock()
	defer a.poolsMu.Unlock()
	keep := make(map[string]bool, len(cfg.Carriers))
	for _, c := range cfg.Carriers {
		keep[c.Name] = true
		if p, ok := a.pools[c.Name]; ok {
			if err := p.Update(c); err != nil {
				return fmt.Errorf("carrier %q: %w", c.Name, err)
			}
			continue
		}
		p, err := smpp.NewPool(smpp.PoolOptions{
			Carrier:    c,
			Handler:    a.in,
			Logger:     a.log,
			Registerer: a.reg,
		})
		if err != nil {
			return fmt.Errorf("carrier %q: %w", c.Name, err)
		}
		a.pools[c.Name] = p
	}
	for name, p := range a.pools {
		if keep[name] {
			continue
		}
		delete(a.pools, name)
		a.wg.Go(func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := p.Close(cctx); err != nil {
				a.log.Warn("closing a removed carrier's binds", "carrier", name, "err", err)
			}
		})
	}
	return nil
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
