package testharness

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScheduler(t *testing.T) {
	s := newScheduler()
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	add := func(i int) func() {
		return func() {
			mu.Lock()
			got = append(got, i)
			n := len(got)
			mu.Unlock()
			if n == 5 {
				close(done)
			}
		}
	}
	s.after(60*time.Millisecond, add(4))
	s.after(20*time.Millisecond, add(1))
	s.after(20*time.Millisecond, add(2)) // same delay: call order
	s.after(0, add(0))
	s.after(40*time.Millisecond, add(3))
	s.after(time.Hour, func() { t.Error("ran after stop") })
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("scheduled functions did not run")
	}
	s.stop()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{0, 1, 2, 3, 4}, got)
}
