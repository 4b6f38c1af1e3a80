package faults

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTextRoundTrip(t *testing.T) {
	for _, seq := range []int{1, 42, 999999, 1234567} {
		got, ok := ParseText([]byte(Text(seq)))
		require.True(t, ok)
		require.Equal(t, seq, got)
	}
	for _, s := range []string{"", "You are messaging with Acme Clinic. To opt out, reply STOP.", "fault ledger n", "fault ledger nxyz", "fault ledger n000000"} {
		_, ok := ParseText([]byte(s))
		require.False(t, ok, s)
	}
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte(Text(7)))
	f.Add([]byte("fault ledger n99999999999999999999999"))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, ok := ParseText(b)
		if ok {
			require.Positive(t, seq)
		}
	})
}

func TestRateLimit(t *testing.T) {
	require.Equal(t, 2, RateLimit(1))
	require.Equal(t, 3, RateLimit(2))
	require.Equal(t, 3, RateLimit(1.5))
	require.Greater(t, RateLimit(0), 1<<30)
}

// run is a small world: two senders, their accepted messages, attempts.
type run struct {
	t0       time.Time
	accepted []Accepted
	outcomes map[string]Outcome
	attempts []Attempt
}

func newRun() *run { return &run{t0: time.Unix(1700000000, 0), outcomes: map[string]Outcome{}} }

func (r *run) accept(id, from string, seq int, status string, dup bool) {
	r.accepted = append(r.accepted, Accepted{ID: id, From: from, Seq: seq, At: r.t0})
	r.outcomes[id] = Outcome{Status: status, PossibleDuplicate: dup}
}

func (r *run) attempt(from string, seq int, ok bool, atMS int) {
	r.attempts = append(r.attempts, Attempt{From: from, Seq: seq, OK: ok, At: r.t0.Add(time.Duration(atMS) * time.Millisecond)})
}

func (r *run) check() Report {
	return Check(r.accepted, r.outcomes, r.attempts, func(string) float64 { return 1 })
}

func TestCheckClean(t *testing.T) {
	r := newRun()
	r.accept("m1", "+1555", 1, "delivered", false)
	r.accept("m2", "+1555", 2, "delivered", false)
	r.accept("m3", "+1666", 1, "sent", false)
	r.attempt("1555", 0, true, 0) // the notice
	r.attempt("1555", 1, true, 1000)
	r.attempt("1555", 2, false, 2000) // throttled, then retried
	r.attempt("1555", 2, true, 3000)
	r.attempt("+1666", 1, true, 0)
	rep := r.check()
	require.Zero(t, rep.Lost)
	require.Zero(t, rep.Duplicates)
	require.Zero(t, rep.OrderViolations)
	require.Zero(t, rep.RateViolations)
	require.Equal(t, 1, rep.NotFinal, "m3 is only sent")
	require.Equal(t, 1, rep.StuckSent)
	rep.Problems = rep.Problems[1:]
	require.Equal(t, 1, rep.Refused)
	require.Equal(t, 5, rep.Attempts)
	require.Empty(t, rep.Problems)
	require.Contains(t, rep.String(), "lost=0")
}

func TestCheckLostPhantomFailed(t *testing.T) {
	r := newRun()
	r.accept("lost", "+1555", 1, "queued", false)
	r.accept("phantom", "+1555", 2, "delivered", false)
	r.accept("failed", "+1555", 3, "failed", false)
	r.accept("missing", "+1555", 4, "", false)
	r.attempt("1555", 3, false, 0)
	rep := r.check()
	require.Equal(t, 2, rep.Lost, "queued and missing")
	require.Equal(t, 1, rep.Phantom)
	require.Equal(t, 1, rep.Failed)
	require.Equal(t, 2, rep.NotFinal, "queued and missing")
	require.Equal(t, 1, rep.Statuses["missing"])
	require.Len(t, rep.Problems, 3)
}

func TestCheckDuplicates(t *testing.T) {
	r := newRun()
	r.accept("flagged", "+1555", 1, "delivered", true)
	r.accept("unflagged", "+1555", 2, "delivered", false)
	r.accept("flagged-once", "+1555", 3, "delivered", true)
	r.attempt("1555", 1, true, 0)
	r.attempt("1555", 1, true, 3000)
	r.attempt("1555", 2, true, 5000)
	r.attempt("1555", 2, true, 7000)
	r.attempt("1555", 2, true, 9000)
	r.attempt("1555", 3, true, 11000)
	r.attempt("1555", 9, true, 13000) // no 202 for it
	rep := r.check()
	require.Equal(t, 3, rep.Duplicates)
	require.Equal(t, 2, rep.DuplicatedMessages)
	require.Equal(t, 1, rep.UnflaggedDuplicates)
	require.Equal(t, 2, rep.Flagged)
	require.Equal(t, 1, rep.Unledgered)
	require.Equal(t, []string{"unflagged"}, rep.Suspects, "a flagged duplicate breaks no guarantee")
	require.Zero(t, rep.OrderViolations, "a resend right after itself keeps order")
}

func TestCheckOrderAndRate(t *testing.T) {
	r := newRun()
	for seq := 1; seq <= 3; seq++ {
		r.accept("m"+string(rune('0'+seq)), "+1555", seq, "delivered", false)
	}
	r.attempt("1555", 2, true, 0)
	r.attempt("1555", 1, true, 100) // overtaken
	r.attempt("1555", 3, true, 200) // three within a second at rate 1 (limit 2)
	rep := r.check()
	require.Equal(t, 1, rep.OrderViolations)
	require.Equal(t, 1, rep.RateViolations)
	require.Equal(t, 1, rep.WorstExcess)

	// The same attempts a second apart each, in order: clean.
	r.attempts = nil
	r.attempt("1555", 1, true, 0)
	r.attempt("1555", 2, true, 1000)
	r.attempt("1555", 3, true, 1999)
	rep = r.check()
	require.Zero(t, rep.OrderViolations)
	require.Zero(t, rep.RateViolations, "two in [1000, 1999], limit 2")

	// Attempts the network held back do not count against the rate.
	r.attempts = nil
	r.attempt("1555", 1, true, 0)
	r.attempt("1555", 2, true, 100)
	r.attempt("1555", 3, true, 200)
	r.attempts[0].NetworkDelayed = true
	rep = r.check()
	require.Zero(t, rep.RateViolations)

	// Arrival order in the slice does not matter: attempts are sorted by time.
	r.attempts = nil
	r.attempt("1555", 3, true, 2000)
	r.attempt("1555", 1, true, 0)
	r.attempt("1555", 2, true, 1000)
	rep = r.check()
	require.Zero(t, rep.OrderViolations)
}
