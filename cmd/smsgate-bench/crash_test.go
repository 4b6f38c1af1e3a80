package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/testharness"
)

func TestCrashCount(t *testing.T) {
	tests := []struct {
		name      string
		accepted  []bool
		copies    []int
		delivered []bool
		want      Crash
	}{
		{name: "all well", accepted: []bool{true, true}, copies: []int{1, 1}, delivered: []bool{true, true}},
		{name: "accepted, never sent", accepted: []bool{true, true}, copies: []int{0, 1}, delivered: []bool{false, true},
			want: Crash{Lost: 1}},
		{name: "sent twice and three times", accepted: []bool{true, true}, copies: []int{2, 3}, delivered: []bool{true, true},
			want: Crash{Duplicated: 2, Copies: 3}},
		{name: "sent without a 202", accepted: []bool{false, false}, copies: []int{1, 0}, delivered: []bool{true, false},
			want: Crash{SentUnaccepted: 1}},
		{name: "sent, no report", accepted: []bool{true, true}, copies: []int{1, 1}, delivered: []bool{false, true},
			want: Crash{NoReport: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Crash
			c.count(tc.accepted, tc.copies, tc.delivered)
			require.Equal(t, tc.want, c)
		})
	}
}

func TestSendGap(t *testing.T) {
	kill := time.Unix(100, 0)
	at := func(ms int) time.Time { return kill.Add(time.Duration(ms) * time.Millisecond) }
	subs := []testharness.Submit{
		{Conn: 1, At: at(-20)},
		{Conn: 2, At: at(-10)},
		{Conn: 2, At: at(5)},   // written before the kill, read after it
		{Conn: 4, At: at(700)}, // the restarted gateway's second connection
		{Conn: 3, At: at(600)},
	}
	require.Equal(t, 600*time.Millisecond, sendGap(subs, kill))
	require.Zero(t, sendGap(subs[:3], kill), "no connection after the kill")
}

func TestCrashKey(t *testing.T) {
	require.Equal(t, crashKey("+15551000000", "+15560000001"), crashKey("15551000000", "15560000001"))
	require.NotEqual(t, crashKey("+1555100000", "0+15560000001"), crashKey("+15551000000", "+15560000001"))
}

func TestParseFlagsCrash(t *testing.T) {
	o, err := parseFlags([]string{"-kill-after", "2s", "-n", "5000", "-rate", "1000", "-kannel", "-kannel-dlr-redis"}, &strings.Builder{})
	require.NoError(t, err)
	require.Equal(t, int64(2000), o.KillAfter.Milliseconds())
	require.True(t, o.KannelDLRRedis)
	for args, want := range map[string][]string{
		"-kill-after 2s":                    {"-kill-after", "2s"},
		"-kill-after 2s -n 5001":            {"-kill-after", "2s", "-n", "5001"},
		"-kill-after 2s -n 10 -floor":       {"-kill-after", "2s", "-n", "10", "-floor"},
		"-kill-after -1s":                   {"-kill-after", "-1s"},
		"-kannel-dlr-redis without -kannel": {"-kannel-dlr-redis"},
	} {
		_, err := parseFlags(want, &strings.Builder{})
		require.Error(t, err, args)
	}
	_, err = parseFlags([]string{"-kill-after", "2s"}, &strings.Builder{})
	require.ErrorContains(t, err, "-n 50000 must not exceed -numbers × -recipients = 5000")
	_, err = parseFlags([]string{"-kannel-dlr-redis"}, &strings.Builder{})
	require.ErrorContains(t, err, "-kannel-dlr-redis configures Kannel: it needs -kannel")
}
