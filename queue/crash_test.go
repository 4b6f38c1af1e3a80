package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

// errDead is what a dying client answers once its budget is spent.
var errDead = errors.New("daemon died")

// dyingHook lets a client send its first budget commands (pipelined or
// not) and fails every later one: the daemon died at that point, and
// nothing it would have sent afterwards reaches Redis.
type dyingHook struct {
	mu     sync.Mutex
	budget int
}

func (h *dyingHook) take(n int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := min(n, h.budget)
	h.budget -= k
	return k
}

func (h *dyingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *dyingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if setup(cmd) {
			return next(ctx, cmd)
		}
		if h.take(1) == 0 {
			cmd.SetErr(errDead)
			return errDead
		}
		return next(ctx, cmd)
	}
}

func (h *dyingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && setup(cmds[0]) {
			return next(ctx, cmds)
		}
		k := h.take(len(cmds))
		var err error
		if k > 0 {
			err = next(ctx, cmds[:k])
		}
		if k < len(cmds) {
			for _, c := range cmds[k:] {
				c.SetErr(errDead)
			}
			return errDead
		}
		return err
	}
}

// setup reports whether cmd is part of a new connection's setup, which a
// dying client may still send (it carries no data).
func setup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

// dyingClient is a second connection to c's server that dies after budget
// commands.
func dyingClient(t *testing.T, c redis.UniversalClient, budget int) redis.UniversalClient {
	t.Helper()
	o := *c.(*redis.Client).Options()
	d := redis.NewClient(&o)
	d.AddHook(&dyingHook{budget: budget})
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// ackCommands is how many commands an AckMany of one message with two
// carrier ids and one held receipt sends when nothing fails: SET and LRANGE
// of each carrier id and the ack (one pipeline), the held receipt's receipt
// script, its cid_done.
const ackCommands = 7

// crashAt runs one message through claim and an AckMany of carrier ids
// "a0", "a1" on a daemon that dies after its first k commands; a receipt for
// a0 arrived before the ack, one for a1 arrives after the death. Then the
// surviving daemon reaps, resends (carrier ids b0, b1) and sweeps. It
// returns the message id and the survivor.
func crashAt(t *testing.T, c redis.UniversalClient, prefix string, k int, bReceipts bool) (string, *Queue) {
	t.Helper()
	ctx := context.Background()
	const lease = 150 * time.Millisecond
	live := newQueue(t, c, prefix, Options{Lease: lease})
	live.heldMin = time.Microsecond
	from := fmt.Sprintf("+1555000%04d", k)

	// Load every script on the server, so the dying client's commands are
	// the ones counted (miniredis forgets scripts between tests).
	warm := msg(live, from+"9", "+15550009999", "warm")
	enqueue(t, live, warm, 0)
	wc := claimAll(t, live, 1, time.Second)
	require.Len(t, wc, 1)
	_, err := live.ApplyReceipt(ctx, Receipt{CarrierID: "warm-" + from, State: message.StatusDelivered})
	require.NoError(t, err)
	require.NoError(t, live.Ack(ctx, wc[0], []string{"warm-" + from}))
	_, err = live.SweepHeld(ctx)
	require.NoError(t, err)

	m := msg(live, from, "+15550009999", "x")
	m.Segments = 2
	enqueue(t, live, m, 0)

	got := claimAll(t, live, 1, time.Second)
	require.Len(t, got, 1)
	require.Equal(t, m.ID, got[0].Msg.ID)
	r, err := live.ApplyReceipt(ctx, Receipt{CarrierID: "a0", State: message.StatusDelivered})
	require.NoError(t, err)
	require.True(t, r.Held, "a0's receipt arrived before the ack")

	dead := newQueue(t, dyingClient(t, c, k), prefix, Options{Lease: lease})
	dead.plain.Store(live.plain.Load())
	dead.heldMin = time.Microsecond
	_ = dead.AckMany(ctx, []AckItem{{Claimed: got[0], CarrierIDs: []string{"a0", "a1"}}})

	_, err = live.ApplyReceipt(ctx, Receipt{CarrierID: "a1", State: message.StatusDelivered})
	require.NoError(t, err)

	rec, err := live.Get(ctx, m.ID)
	require.NoError(t, err)
	if rec.Status == message.StatusQueued { // the ack never ran: reap and send again
		time.Sleep(lease + 20*time.Millisecond)
		n, err := live.Reap(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		again := claimAll(t, live, 1, time.Second)
		require.Len(t, again, 1)
		require.True(t, again[0].PossibleDuplicate)
		require.NoError(t, live.Ack(ctx, again[0], []string{"b0", "b1"}))
		if bReceipts {
			for _, cid := range []string{"b0", "b1"} {
				_, err := live.ApplyReceipt(ctx, Receipt{CarrierID: cid, State: message.StatusDelivered})
				require.NoError(t, err)
			}
		}
	}
	return m.ID, live
}

// sweepUntil runs SweepHeld until the message is final (or a second passed).
func sweepUntil(t *testing.T, q *Queue, id string) *Record {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := q.SweepHeld(ctx)
		require.NoError(t, err)
		rec, err := q.Get(ctx, id)
		require.NoError(t, err)
		if rec.Status == message.StatusDelivered {
			return rec
		}
		require.True(t, time.Now().Before(deadline), "still %s after sweeping", rec.Status)
		time.Sleep(5 * time.Millisecond)
	}
}

func deliveredEvents(t *testing.T, q *Queue, rec *Record) int {
	t.Helper()
	n := 0
	for _, e := range events(t, q, rec.Msg.From) {
		if e.Type == "message.status" && strings.Contains(e.Data, rec.Msg.ID) && strings.Contains(e.Data, `"delivered"`) {
			n++
		}
	}
	return n
}

// TestAckCrashAtEveryPoint kills the acking daemon after each command of
// AckMany in turn: whatever reached Redis, the message ends delivered once
// the survivor swept, with exactly one delivered event, and no held receipt
// of an indexed carrier id is left behind.
func TestAckCrashAtEveryPoint(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			c := be.client(t)
			prefix := testPrefix(t, c)
			for k := 0; k <= ackCommands; k++ {
				id, q := crashAt(t, c, prefix, k, true)
				rec := sweepUntil(t, q, id)
				require.Equal(t, 1, deliveredEvents(t, q, rec), "k=%d", k)
				ctx := context.Background()
				for _, cid := range []string{"a0", "a1", "b0", "b1"} {
					ks := q.cidKeySet(cid)
					if c.Exists(ctx, ks.index).Val() == 1 {
						require.Zero(t, c.Exists(ctx, ks.held).Val(), "k=%d: receipts of indexed %s applied and removed", k, cid)
					}
				}
				// Next round: fresh carrier ids.
				for _, cid := range []string{"a0", "a1", "b0", "b1"} {
					ks := q.cidKeySet(cid)
					c.Del(ctx, ks.index, ks.held)
					c.ZRem(ctx, ks.set, ks.cid)
				}
			}
		})
	}
}

// TestReceiptsSurviveAckCrash names the two crash points that lost receipts
// and shows each is recovered by the held sweep alone (the resent copy gets
// no receipt of its own).
func TestReceiptsSurviveAckCrash(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			for _, tc := range []struct {
				name string
				k    int
			}{
				// Indexed, not acked: a1's receipt finds the message still
				// queued and is held, not recorded, until the resent copy is acked.
				{"indexed before the ack, died before the ack", 4},
				// Acked; the index read handed a0's held receipt to the daemon,
				// which died before applying it.
				{"acked, died before applying the held receipt", 5},
				// Applied, died before removing it from the held list.
				{"applied, died before removing it", 6},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := be.client(t)
					prefix := testPrefix(t, c)
					id, q := crashAt(t, c, prefix, tc.k, false)
					rec, err := q.Get(ctx, id)
					require.NoError(t, err)
					if tc.k < 4 {
						require.Equal(t, message.StatusSent, rec.Status, "no receipt applied before the sweep")
					}
					rec = sweepUntil(t, q, id)
					require.Equal(t, 1, deliveredEvents(t, q, rec))
					ks := q.cidKeySet("a0")
					require.Zero(t, c.Exists(ctx, ks.held).Val(), "a0's held receipt removed once applied")
					require.ErrorIs(t, c.ZScore(ctx, ks.set, ks.cid).Err(), redis.Nil, "a0 left the held set")
				})
			}
		})
	}
}

// TestAckRepeatedAfterLostReply: an ack that ran but whose reply was lost
// succeeds when repeated and keeps its carrier ids indexed.
func TestAckRepeatedAfterLostReply(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, "+15550001111", "+1555000001", "x")
			enqueue(t, q, m, 0)
			got := claimAll(t, q, 1, time.Second)
			require.Len(t, got, 1)
			require.NoError(t, q.Ack(ctx, got[0], []string{"c1"}))
			require.NoError(t, q.Ack(ctx, got[0], []string{"c1"}), "repeated ack")
			_, _, ok, err := q.LookupCarrierID(ctx, "c1")
			require.NoError(t, err)
			require.True(t, ok)
			require.ErrorIs(t, q.Ack(ctx, got[0], []string{"other"}), ErrLeaseLost, "an ack with other carrier ids is not a repeat")
			_, _, ok, err = q.LookupCarrierID(ctx, "other")
			require.NoError(t, err)
			require.False(t, ok, "the refused ack's index entry is removed")
			evs := events(t, q, m.From)
			require.Len(t, evs, 1, "one sent event")
		})
	}
}

// TestRenewMany extends leases in one round trip and reports lost ones.
func TestRenewMany(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{Lease: 100 * time.Millisecond})
			for i := range 2 {
				enqueue(t, q, msg(q, fmt.Sprintf("+1555000111%d", i), "+1555000001", "x"), 0)
			}
			got := claimAll(t, q, 2, time.Second)
			require.Len(t, got, 2)
			stale := got[1]
			stale.Attempt++
			errs := q.RenewMany(ctx, []Claimed{got[0], stale}, time.Second)
			require.NoError(t, errs[0])
			require.ErrorIs(t, errs[1], ErrLeaseLost)
			time.Sleep(150 * time.Millisecond)
			n, err := q.Reap(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n, "only the lease not renewed expired")
			require.NoError(t, q.Ack(ctx, got[0], []string{"r1"}))
		})
	}
}
