package router

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

func TestTableCarrier(t *testing.T) {
	cfg := &config.Config{
		Routes: []config.Route{
			{Prefix: "+1", Carrier: "a", Fallback: "b"},
			{Prefix: "+1555", Carrier: "c"},
			{Prefix: "+44", Carrier: "b"},
		},
		Orgs: []config.Org{{Numbers: []config.Number{
			{E164: "+15550001111", Carrier: "d"},
			{E164: "+447700900000", Carrier: "a"},
			{E164: "+12120001111", Carrier: "d"},
		}}},
	}
	tbl := NewTable(cfg)
	allUp := func(string) bool { return true }
	onlyUp := func(names ...string) func(string) bool {
		return func(c string) bool {
			for _, n := range names {
				if n == c {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name   string
		from   string
		up     func(string) bool
		want   string
		wantOK bool
	}{
		{"per-number wins over prefix", "+15550001111", allUp, "d", true},
		{"longest prefix", "+15559990000", allUp, "c", true},
		{"shorter prefix", "+12125550000", allUp, "a", true},
		{"fallback when primary down", "+12125550000", onlyUp("b"), "b", true},
		{"nothing up names primary", "+12125550000", onlyUp(), "a", false},
		{"no fallback on longer prefix", "+15559990000", onlyUp("a", "b"), "c", false},
		{"pinned number inherits prefix fallback", "+12120001111", onlyUp("b"), "b", true},
		{"pinned number under a prefix without fallback", "+15550001111", onlyUp("b"), "d", false},
		{"pinned number without fallback", "+447700900000", onlyUp("b"), "a", false},
		{"no route", "+33123456789", allUp, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tbl.Carrier(tc.from, tc.up)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantOK, ok)
		})
	}
}
