// Package router decides which carrier serves a sender number and runs the
// dispatcher: the one loop that claims messages from the queue and submits
// them through the carriers' SMPP bind pools.
package router

import (
	"sort"
	"strings"

	"github.com/smsgate/smsgate/config"
)

// Table maps sender numbers to carriers. It is immutable; a reload builds a
// new one.
type Table struct {
	byNumber map[string]choice // per-number carrier from [[org.number]] carrier
	prefixes []prefixRoute     // [[route]], longest prefix first
}

type choice struct {
	primary, fallback string
}

type prefixRoute struct {
	prefix string
	choice
}

// NewTable builds the routing table of a validated configuration.
func NewTable(cfg *config.Config) *Table {
	t := &Table{byNumber: make(map[string]choice)}
	for _, r := range cfg.Routes {
		t.prefixes = append(t.prefixes, prefixRoute{prefix: r.Prefix, choice: choice{primary: r.Carrier, fallback: r.Fallback}})
	}
	sort.SliceStable(t.prefixes, func(i, j int) bool { return len(t.prefixes[i].prefix) > len(t.prefixes[j].prefix) })
	for _, org := range cfg.Orgs {
		for _, n := range org.Numbers {
			if n.Carrier == "" {
				continue
			}
			c := choice{primary: n.Carrier}
			// A number pinned to a carrier keeps the fallback of its prefix
			// route, so an outage of the pinned carrier can still be bridged.
			if pr, ok := t.route(n.E164); ok && pr.fallback != n.Carrier {
				c.fallback = pr.fallback
			}
			t.byNumber[n.E164] = c
		}
	}
	return t
}

func (t *Table) route(from string) (choice, bool) {
	if c, ok := t.byNumber[from]; ok {
		return c, true
	}
	for _, p := range t.prefixes {
		if strings.HasPrefix(from, p.prefix) {
			return p.choice, true
		}
	}
	return choice{}, false
}

// Carrier returns the carrier that should send a message from the number:
// its primary carrier when up reports a bound bind for it, else the fallback
// when that one is up. ok is false when no carrier is configured for the
// number or none of its carriers is up; carrier then names the primary (or
// "" when there is none) so callers can report it.
func (t *Table) Carrier(from string, up func(carrier string) bool) (carrier string, ok bool) {
	c, found := t.route(from)
	if !found {
		return "", false
	}
	if up(c.primary) {
		return c.primary, true
	}
	if c.fallback != "" && up(c.fallback) {
		return c.fallback, true
	}
	return c.primary, false
}
