package smpp

import (
	"context"
	"sync"
)

// backlogHigh is how many receipts may wait for the Handler, on all the
// links of a pool together, before new submit_sm wait; they go on when the
// backlog is down to backlogLow.
const (
	backlogHigh = 512
	backlogLow  = backlogHigh / 2
)

// backlog counts the receipts of a pool queued for or being handled by its
// inbound workers (MOs do not count: they do not follow from submits).
// Receipts follow submits one for one, so a Handler
// slower than the carrier has to slow submitting down: otherwise the
// queues fill and deliver_sm are refused (ESME_RX_T_APPN) and redelivered
// over and over, which costs more than it saves. The reader itself never
// waits for it.
type backlog struct {
	mu   sync.Mutex
	n    int
	open chan struct{} // closed while submits may go on
}

func newBacklog() *backlog {
	b := &backlog{open: make(chan struct{})}
	close(b.open)
	return b
}

// add changes the count by d (+1 queued, -k answered).
func (b *backlog) add(d int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += d
	select {
	case <-b.open:
		if b.n >= backlogHigh {
			b.open = make(chan struct{})
		}
	default:
		if b.n <= backlogLow {
			close(b.open)
		}
	}
}

// full reports whether submits are held back.
func (b *backlog) full() bool {
	b.mu.Lock()
	ch := b.open
	b.mu.Unlock()
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// wait returns when submits may go on, or with ctx's error.
func (b *backlog) wait(ctx context.Context) error {
	b.mu.Lock()
	ch := b.open
	b.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
