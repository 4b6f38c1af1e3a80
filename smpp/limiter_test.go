package smpp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLimiterUnlimitedStartsFromObservedRate(t *testing.T) {
	var last float64
	l := newLimiter(0, func(r float64) { last = r })
	require.Zero(t, last)
	// 200 sends spread over ~100ms: observed about 2000/s.
	for range 20 {
		for range 10 {
			require.NoError(t, l.wait(context.Background()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.True(t, l.throttled())
	require.False(t, l.throttled(), "one decrease per holdoff")
	r := l.effective()
	require.Greater(t, r, 100.0, "started from the observed rate, halved")
	require.Less(t, r, 2000.0)
	require.Equal(t, r, last)
}

func TestLimiterAIMD(t *testing.T) {
	l := newLimiter(100, nil)
	l.holdoff = 10 * time.Millisecond
	l.recoverTime = 200 * time.Millisecond
	require.True(t, l.throttled())
	require.Equal(t, 50.0, l.effective())
	time.Sleep(12 * time.Millisecond)
	require.True(t, l.throttled())
	require.InDelta(t, 25.0, l.effective(), 5) // at most a few ms of recovery in between
	require.Eventually(t, func() bool { return l.effective() == 100 }, time.Second, 5*time.Millisecond, "recovers to the ceiling")

	// Floor: never below 1/s.
	for range 20 {
		l.lastDec = time.Time{}
		l.throttled()
	}
	require.GreaterOrEqual(t, l.effective(), 1.0)
}

func TestLimiterWaitCancelled(t *testing.T) {
	l := newLimiter(1, nil)
	require.NoError(t, l.wait(context.Background())) // the banked token
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.wait(ctx), context.DeadlineExceeded)
}
