package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

func TestLifecycle(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, "+15550001111", "+15557654321", "hello")
			m.Segments = 2
			m.ClientRef = "ref-1"
			enqueue(t, q, m, 0)

			rec, err := q.Get(ctx, m.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusQueued, rec.Status)
			require.Equal(t, m.Text, rec.Msg.Text)
			require.Len(t, rec.History, 1)
			require.WithinDuration(t, time.Now(), rec.History[0].At, 5*time.Second)

			got, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Equal(t, m.ID, got[0].Msg.ID)
			require.Equal(t, 1, got[0].Attempt)
			require.False(t, got[0].PossibleDuplicate)
			require.True(t, m.ExpiresAt.Equal(got[0].Msg.ExpiresAt))

			again, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Empty(t, again, "a leased message is not claimed twice")

			require.NoError(t, q.Ack(ctx, got[0], []string{"cid-a", "cid-b"}))
			require.ErrorIs(t, q.Ack(ctx, got[0], []string{"x"}), ErrLeaseLost, "second ack")
			rec, err = q.Get(ctx, m.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusSent, rec.Status)
			require.Equal(t, []string{"cid-a", "cid-b"}, rec.CarrierMessageIDs)

			id, seg, ok, err := q.LookupCarrierID(ctx, "cid-b")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, m.ID, id)
			require.Equal(t, 1, seg)

			r, err := q.ApplyReceipt(ctx, Receipt{CarrierID: "cid-a", State: message.StatusDelivered})
			require.NoError(t, err)
			require.Equal(t, ReceiptResult{MessageID: m.ID, Segment: 0, Recorded: true, Status: message.StatusSent}, r)
			r, err = q.ApplyReceipt(ctx, Receipt{CarrierID: "cid-a", State: message.StatusDelivered})
			require.NoError(t, err)
			require.False(t, r.Recorded, "duplicate receipt")
			r, err = q.ApplyReceipt(ctx, Receipt{CarrierID: "cid-b", State: message.StatusDelivered})
			require.NoError(t, err)
			require.Equal(t, message.StatusDelivered, r.Status)

			rec, err = q.Get(ctx, m.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusDelivered, rec.Status)
			var hs []message.Status
			for _, h := range rec.History {
				hs = append(hs, h.Status)
			}
			require.Equal(t, []message.Status{message.StatusQueued, message.StatusSent, message.StatusDelivered}, hs)

			evs := events(t, q, m.From)
			require.Len(t, evs, 2, "no event for queued")
			var sts []message.Status
			for _, e := range evs {
				require.Equal(t, message.EventStatus, e.Type)
				require.Equal(t, "acme", e.Org)
				require.Regexp(t, `^[0-9]+-[0-9]+$`, e.ID, "stream entry id")
				at, err := time.Parse(time.RFC3339Nano, e.At)
				require.NoError(t, err)
				require.WithinDuration(t, time.Now(), at, 5*time.Second)
				var d message.StatusData
				require.NoError(t, json.Unmarshal([]byte(e.Data), &d))
				require.Equal(t, m.ID, d.ID)
				require.Equal(t, "ref-1", d.ClientRef)
				sts = append(sts, d.Status)
			}
			require.Equal(t, []message.Status{message.StatusSent, message.StatusDelivered}, sts)
			require.NotEqual(t, evs[0].ID, evs[1].ID)

			_, err = q.Get(ctx, q.NewMessageID(m.From))
			require.ErrorIs(t, err, ErrNotFound)
			_, err = q.Get(ctx, "msg_nonsense!")
			require.ErrorIs(t, err, ErrNotFound)
		})
	}
}

func TestEnqueueChecks(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			from, to := "+15550001111", "+15557654321"

			// Idempotency: same hash replays, different hash conflicts.
			req := EnqueueRequest{Msg: msg(q, from, to, "a"), IdempotencyKey: "k1", RequestHash: "h1", Response: []byte(`{"id":1}`)}
			res, err := q.Enqueue(ctx, req)
			require.NoError(t, err)
			require.False(t, res.Replayed)
			req.Msg = msg(q, from, to, "a")
			res, err = q.Enqueue(ctx, req)
			require.NoError(t, err)
			require.True(t, res.Replayed)
			require.Equal(t, `{"id":1}`, string(res.Response))
			_, err = q.Get(ctx, req.Msg.ID)
			require.ErrorIs(t, err, ErrNotFound, "a replay queues nothing")
			req.RequestHash = "h2"
			_, err = q.Enqueue(ctx, req)
			require.ErrorIs(t, err, ErrIdempotencyConflict)
			ttl, err := c.PTTL(ctx, q.base(q.Bucket(from))+"idem:acme:k1").Result()
			require.NoError(t, err)
			require.InDelta(t, DefaultIdempotencyTTL.Seconds(), ttl.Seconds(), 60)

			// Queue depth.
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "b"), MaxDepth: 2})
			require.NoError(t, err)
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "c"), MaxDepth: 2})
			require.ErrorIs(t, err, ErrQueueFull)

			// Opt-out.
			require.NoError(t, q.OptOut(ctx, from, to))
			ok, err := q.IsOptedOut(ctx, from, to)
			require.NoError(t, err)
			require.True(t, ok)
			list, err := q.OptOuts(ctx, from)
			require.NoError(t, err)
			require.Equal(t, []string{to}, list)
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "d"), CheckOptOut: true})
			require.ErrorIs(t, err, ErrOptedOut)
			reply := msg(q, from, to, "You are unsubscribed")
			reply.Kind = message.KindReply
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: reply})
			require.NoError(t, err, "confirmations skip the opt-out check")
			require.NoError(t, q.OptIn(ctx, from, to))
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, "e"), CheckOptOut: true})
			require.NoError(t, err)

			// Bad ids.
			bad := msg(q, from, to, "f")
			bad.ID = message.NewID("msg_")
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: bad})
			require.ErrorIs(t, err, ErrBadID)
		})
	}
}

func TestNoticeOnce(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			from, to := "+15550001111", "+15557654321"
			const n = 8
			var wg sync.WaitGroup
			results := make([]EnqueueResult, n)
			ids := make([]string, n)
			errs := make([]error, n)
			for i := range n {
				m := msg(q, from, to, "hi")
				ids[i] = m.ID
				notice := msg(q, from, to, "You are messaging with Acme. To opt out, reply STOP.")
				notice.Kind = message.KindNotice
				wg.Go(func() {
					results[i], errs[i] = q.Enqueue(ctx, EnqueueRequest{Msg: m, Notice: notice})
				})
			}
			wg.Wait()
			notices := 0
			for i := range n {
				require.NoError(t, errs[i])
				if results[i].NoticeQueued {
					notices++
				}
			}
			require.Equal(t, 1, notices)
			got := claimAll(t, q, 1, time.Second)
			require.Len(t, got, 1)
			require.Equal(t, message.KindNotice, got[0].Msg.Kind, "the notice is first in the list")

			// The external party texted first: no notice.
			other := "+15559990000"
			require.NoError(t, q.MarkInbound(ctx, from, other))
			notice := msg(q, from, other, "notice")
			res, err := q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, other, "x"), Notice: notice})
			require.NoError(t, err)
			require.False(t, res.NoticeQueued)
			_, err = q.Get(ctx, notice.ID)
			require.ErrorIs(t, err, ErrNotFound)

			// An MO marks the conversation too, and is an event.
			mo := "+15558880000"
			require.NoError(t, q.AppendReceived(ctx, "acme", message.ReceivedData{
				ID: "mo_1", From: mo, To: from, Text: "hi", Segments: 1, ReceivedAt: time.Now().UTC(),
			}))
			res, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, mo, "x"), Notice: msg(q, from, mo, "notice")})
			require.NoError(t, err)
			require.False(t, res.NoticeQueued)
			evs := events(t, q, from)
			require.Len(t, evs, 1)
			require.Equal(t, message.EventReceived, evs[0].Type)
			var d message.ReceivedData
			require.NoError(t, json.Unmarshal([]byte(evs[0].Data), &d))
			require.Equal(t, "mo_1", d.ID)
		})
	}
}

func TestLeases(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{Lease: 400 * time.Millisecond})
			from := "+15550001111"
			m1, m2 := msg(q, from, "+1555000001", "one"), msg(q, from, "+1555000001", "two")
			enqueue(t, q, m1, 0)
			enqueue(t, q, m2, 0)

			got := claimAll(t, q, 1, time.Second)
			require.Len(t, got, 1)
			require.Equal(t, m1.ID, got[0].Msg.ID)
			require.NoError(t, q.Renew(ctx, got[0], 400*time.Millisecond))

			// Only one in flight per sender: m2 waits behind m1.
			more, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Empty(t, more)

			n, err := q.Reap(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "lease still valid")
			time.Sleep(450 * time.Millisecond)
			n, err = q.Reap(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)

			require.ErrorIs(t, q.Ack(ctx, got[0], nil), ErrLeaseLost, "ack after reap")
			again := claimAll(t, q, 1, time.Second)
			require.Len(t, again, 1)
			require.Equal(t, m1.ID, again[0].Msg.ID, "reaped message back at the head")
			require.Equal(t, 2, again[0].Attempt)
			require.True(t, again[0].PossibleDuplicate)
			require.ErrorIs(t, q.Ack(ctx, got[0], nil), ErrLeaseLost, "stale attempt")
			require.ErrorIs(t, q.Renew(ctx, got[0], time.Second), ErrLeaseLost)

			// Retry keeps the head, with its delay.
			require.NoError(t, q.Retry(ctx, again[0], 100*time.Millisecond, message.Error{Code: "throttled", Message: "slow down"}))
			none, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Empty(t, none, "retry delay")
			third := claimAll(t, q, 1, time.Second)
			require.Len(t, third, 1)
			require.Equal(t, m1.ID, third[0].Msg.ID)
			require.Equal(t, 3, third[0].Attempt)

			// Requeue flags a possible duplicate; fail ends the message.
			require.NoError(t, q.Requeue(ctx, third[0]))
			fourth := claimAll(t, q, 1, time.Second)
			require.Len(t, fourth, 1)
			require.True(t, fourth[0].PossibleDuplicate)
			require.NoError(t, q.Fail(ctx, fourth[0], message.Error{Code: "carrier_rejected", Message: "no"}))
			rec, err := q.Get(ctx, m1.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusFailed, rec.Status)
			require.Equal(t, 4, rec.Attempts)
			last := rec.History[len(rec.History)-1]
			require.Equal(t, &message.Error{Code: "carrier_rejected", Message: "no"}, last.Error)

			// The sender moves on to m2.
			fifth := claimAll(t, q, 1, time.Second)
			require.Len(t, fifth, 1)
			require.Equal(t, m2.ID, fifth[0].Msg.ID)
			require.Equal(t, 1, fifth[0].Attempt)

			evs := events(t, q, from)
			require.Len(t, evs, 1)
			var d message.StatusData
			require.NoError(t, json.Unmarshal([]byte(evs[0].Data), &d))
			require.Equal(t, message.StatusFailed, d.Status)
			require.True(t, d.PossibleDuplicate)
			require.Equal(t, "carrier_rejected", d.Error.Code)
		})
	}
}

func TestExpiry(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			from := "+15550001111"
			old := msg(q, from, "+1555000001", "old")
			old.ExpiresAt = time.Now().Add(30 * time.Millisecond)
			fresh := msg(q, from, "+1555000001", "fresh")
			enqueue(t, q, old, 0)
			enqueue(t, q, fresh, 0)
			time.Sleep(60 * time.Millisecond)
			got := claimAll(t, q, 1, time.Second)
			require.Len(t, got, 1)
			require.Equal(t, fresh.ID, got[0].Msg.ID, "the expired message is never claimed")
			rec, err := q.Get(ctx, old.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusExpired, rec.Status)
			require.Zero(t, rec.Attempts)
			evs := events(t, q, from)
			require.Len(t, evs, 1)
			var d message.StatusData
			require.NoError(t, json.Unmarshal([]byte(evs[0].Data), &d))
			require.Equal(t, old.ID, d.ID)
			require.Equal(t, message.StatusExpired, d.Status)
		})
	}
}

// A message whose validity passes while it waits behind messages that
// expire later ends expired when Reap sweeps, not when it reaches the head;
// a head that expires is still claim's, and the others keep their order.
func TestExpiryBehindLongerValidity(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{SenderWindow: 4})
			const from, other = "+15550001111", "+15550002222"
			long1 := msg(q, from, "+1555000001", "long 1")
			long1.ExpiresAt = time.Now().Add(10 * time.Hour)
			short := msg(q, from, "+1555000001", "short")
			short.ExpiresAt = time.Now().Add(time.Second)
			noExpiry := msg(q, from, "+1555000001", "no expiry")
			noExpiry.ExpiresAt = time.Time{}
			short2 := msg(q, from, "+1555000001", "short behind one without expiry")
			short2.ExpiresAt = short.ExpiresAt
			long2 := msg(q, from, "+1555000001", "long 2")
			head := msg(q, other, "+1555000001", "alone")
			head.ExpiresAt = short.ExpiresAt
			for _, m := range []*message.Message{long1, short, noExpiry, short2, long2, head} {
				enqueue(t, q, m, 0)
			}
			status := func(id string) message.Status {
				rec, err := q.Get(ctx, id)
				require.NoError(t, err)
				return rec.Status
			}

			xq := q.base(q.Bucket(from)) + "xq"
			require.ElementsMatch(t, []string{short.ID, short2.ID, long2.ID}, q.rdb.ZRange(ctx, xq, 0, -1).Val(),
				"indexed: what expires before a message ahead of it (long 2 is behind the one without expiry)")

			// Before their validity, the sweep changes nothing.
			n, err := q.Reap(ctx)
			require.NoError(t, err)
			require.Zero(t, n)
			require.Equal(t, message.StatusQueued, status(short.ID))

			time.Sleep(time.Until(short.ExpiresAt) + 20*time.Millisecond)
			n, err = q.Reap(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "no lease was reaped")
			require.Equal(t, message.StatusExpired, status(short.ID))
			require.Equal(t, message.StatusExpired, status(short2.ID))
			require.Equal(t, message.StatusQueued, status(head.ID), "a head's expiry is claim's")
			for _, m := range []*message.Message{long1, noExpiry, long2} {
				require.Equal(t, message.StatusQueued, status(m.ID), m.Text)
			}
			evs := events(t, q, from)
			require.Len(t, evs, 2)
			var expiredIDs []string
			for _, ev := range evs {
				var d message.StatusData
				require.NoError(t, json.Unmarshal([]byte(ev.Data), &d))
				require.Equal(t, message.StatusExpired, d.Status)
				require.Equal(t, "expired", d.Error.Code)
				expiredIDs = append(expiredIDs, d.ID)
			}
			require.ElementsMatch(t, []string{short.ID, short2.ID}, expiredIDs)
			rec, err := q.Get(ctx, short.ID)
			require.NoError(t, err)
			require.Zero(t, rec.Attempts)

			// The two ended ids stay in the list until claim reaches them,
			// but the depth limit counts only the three live messages.
			skey := q.base(q.Bucket(from)) + "s:" + from
			require.Equal(t, int64(5), q.rdb.LLen(ctx, q.base(q.Bucket(from))+"q:"+from).Val())
			require.Equal(t, "2", q.rdb.HGet(ctx, skey, "dq").Val())
			fourth := msg(q, from, "+1555000001", "fourth live one")
			fourth.ExpiresAt = long1.ExpiresAt
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: fourth, MaxDepth: 4})
			require.NoError(t, err, "3 live messages queued: a 4th fits a depth of 4")
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, "+1555000001", "fifth"), MaxDepth: 4})
			require.ErrorIs(t, err, ErrQueueFull)

			// Claims take the rest in order and skip what the sweep ended.
			got := claimAll(t, q, 4, time.Second)
			ids := make([]string, len(got))
			for i, g := range got {
				ids[i] = g.Msg.ID
			}
			require.Equal(t, []string{long1.ID, noExpiry.ID, long2.ID, fourth.ID}, ids)
			require.Zero(t, q.rdb.ZCard(ctx, xq).Val())
			require.Equal(t, "0", q.rdb.HGet(ctx, skey, "dq").Val(), "claim dropped both ended ids")
			// With the queue empty, what came before no longer counts.
			enqueue(t, q, msg(q, from, "+1555000001", "after"), 0)
			enqueue(t, q, msg(q, from, "+1555000001", "after 2"), 0)
			require.Zero(t, q.rdb.ZCard(ctx, xq).Val())
			require.Equal(t, message.StatusExpired, status(head.ID))
			// A second sweep finds nothing more to end.
			require.NoError(t, q.Ack(ctx, got[0], []string{"cid-1"}))
			_, err = q.Reap(ctx)
			require.NoError(t, err)
			require.Len(t, events(t, q, from), 3, "the two expired and long 1's sent")
		})
	}
}

// TestExpireHeadsDropsSweptIDs: an id whose message Reap ended behind an
// expiring head leaves the list, and the sender's count of such ids, when
// ExpireHeads drops the head while no carrier is up.
func TestExpireHeadsDropsSweptIDs(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			const from = "+15550001300"
			now := time.Now()
			head := msg(q, from, "+1555000001", "head")
			head.ExpiresAt = now.Add(1200 * time.Millisecond)
			behind := msg(q, from, "+1555000001", "expires first, behind the head")
			behind.ExpiresAt = now.Add(600 * time.Millisecond)
			live := msg(q, from, "+1555000001", "stays")
			for _, m := range []*message.Message{head, behind, live} {
				enqueue(t, q, m, 0)
			}
			base := q.base(q.Bucket(from))

			time.Sleep(time.Until(behind.ExpiresAt) + 20*time.Millisecond)
			_, err := q.Reap(ctx)
			require.NoError(t, err)
			require.Equal(t, "1", q.rdb.HGet(ctx, base+"s:"+from, "dq").Val(), "the swept id is still in the list")

			time.Sleep(time.Until(head.ExpiresAt) + 20*time.Millisecond)
			n, err := q.ExpireHeads(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n, "the head expired; the swept id was already")
			require.Equal(t, []string{live.ID}, q.rdb.LRange(ctx, base+"q:"+from, 0, -1).Val())
			require.Equal(t, "0", q.rdb.HGet(ctx, base+"s:"+from, "dq").Val())
		})
	}
}

// ExpireHeads ends expired heads as claim would, leasing nothing; its
// limits stop a call early and the next goes on from there, so every due
// sender is looked at in turn.
func TestExpireHeads(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{Buckets: 1})
			q.expSenders, q.expDrops = 2, 3
			soon := time.Now().Add(time.Second)
			var expiring, staying []*message.Message
			// Five senders with an expiring head and a message that stays;
			// the first has four expiring messages, more than one call drops.
			for i := range 5 {
				from := fmt.Sprintf("+1555000110%d", i)
				n := 1
				if i == 0 {
					n = 4
				}
				for range n {
					m := msg(q, from, "+1555000001", "expiring")
					m.ExpiresAt = soon
					enqueue(t, q, m, 0)
					expiring = append(expiring, m)
				}
				m := msg(q, from, "+1555000001", "stays")
				enqueue(t, q, m, 0)
				staying = append(staying, m)
			}
			// A sender whose only message expires leaves ready.
			alone := msg(q, "+15550001200", "+1555000001", "alone")
			alone.ExpiresAt = soon
			enqueue(t, q, alone, 0)
			expiring = append(expiring, alone)

			n, err := q.ExpireHeads(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "nothing has expired yet")

			time.Sleep(time.Until(soon) + 20*time.Millisecond)
			total := 0
			for range 10 {
				n, err := q.ExpireHeads(ctx)
				require.NoError(t, err)
				require.LessOrEqual(t, n, 3, "one call drops at most expDrops")
				total += n
			}
			require.Equal(t, len(expiring), total)
			for _, m := range expiring {
				rec, err := q.Get(ctx, m.ID)
				require.NoError(t, err)
				require.Equal(t, message.StatusExpired, rec.Status, m.From)
				require.Zero(t, rec.Attempts)
			}
			for _, m := range staying {
				rec, err := q.Get(ctx, m.ID)
				require.NoError(t, err)
				require.Equal(t, message.StatusQueued, rec.Status, m.From)
			}
			ready, err := q.rdb.ZRange(ctx, q.base(0)+"ready", 0, -1).Result()
			require.NoError(t, err)
			require.NotContains(t, ready, alone.From, "nothing queued: out of ready")
			require.Len(t, ready, 5)

			// What stays is claimed, one per sender, and nothing expired is.
			got := claimAll(t, q, 5, time.Second)
			ids := make([]string, len(got))
			for i, g := range got {
				ids[i] = g.Msg.ID
			}
			want := make([]string, len(staying))
			for i, m := range staying {
				want[i] = m.ID
			}
			require.ElementsMatch(t, want, ids)
		})
	}
}

// While there is nothing to claim the probe of every bucket runs less and
// less often, up to idleProbeFactor times the interval; what another daemon
// queues is still found within that, and local activity brings the
// interval back.
func TestProbeBacksOffWhileIdle(t *testing.T) {
	ctx := context.Background()
	c := realClient(t)
	prefix := testPrefix(t, c)
	trips := &tripCounter{}
	own := redis.NewClient(&redis.Options{Addr: realRedis})
	t.Cleanup(func() { _ = own.Close() })
	own.AddHook(trips)
	const every = 10 * time.Millisecond
	q := newQueue(t, own, prefix, Options{ProbeInterval: every})
	other := newQueue(t, c, prefix, Options{ProbeInterval: every})

	trips.n.Store(0)
	start := time.Now()
	for time.Since(start) < 500*time.Millisecond {
		got, err := q.Claim(ctx, 10)
		require.NoError(t, err)
		require.Empty(t, got)
		time.Sleep(time.Millisecond)
	}
	// 10+20+40+80+80+80+80+80 ms: about 8 probes in 500 ms, not 50.
	require.LessOrEqual(t, trips.n.Load(), int64(12), "probes while idle")
	q.mu.Lock()
	require.Equal(t, idleProbeFactor*every, q.probeEvery)
	q.mu.Unlock()

	// Another daemon's message is found within the longest interval.
	m := msg(other, "+15550001111", "+15557654321", "from the other daemon")
	enqueue(t, other, m, 0)
	got := claimAll(t, q, 1, time.Second)
	require.Len(t, got, 1)
	require.Equal(t, m.ID, got[0].Msg.ID)
	q.mu.Lock()
	require.Equal(t, every, q.probeEvery, "a claim that got a message resets the interval")
	q.mu.Unlock()
}

func TestReceiptBeforeAck(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, "+15550001111", "+1555000001", "x")
			enqueue(t, q, m, 0)
			got := claimAll(t, q, 1, time.Second)
			require.Len(t, got, 1)
			r, err := q.ApplyReceipt(ctx, Receipt{CarrierID: "early", State: message.StatusUndelivered,
				Err: &message.Error{Code: "carrier_undeliverable", Message: "UNDELIV err 001"}})
			require.NoError(t, err)
			require.True(t, r.Held)
			require.NoError(t, q.Ack(ctx, got[0], []string{"early"}))
			rec, err := q.Get(ctx, m.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusUndelivered, rec.Status)
			evs := events(t, q, m.From)
			require.Len(t, evs, 2)
			var d message.StatusData
			require.NoError(t, json.Unmarshal([]byte(evs[1].Data), &d))
			require.Equal(t, message.StatusUndelivered, d.Status)
			require.Equal(t, "early", d.CarrierMessageID)
			require.Equal(t, "carrier_undeliverable", d.Error.Code)
		})
	}
}

func TestNewValidates(t *testing.T) {
	c := miniClient(t)
	for _, o := range []Options{{}, {Client: c, Prefix: "a{b}"}, {Client: c, Buckets: MaxBuckets + 1}} {
		_, err := New(o)
		require.Error(t, err)
	}
}

func TestBucketIDs(t *testing.T) {
	q := newQueue(t, miniClient(t), "p:", Options{Buckets: MaxBuckets})
	for _, from := range []string{"+15550001111", "+447700900123", "12345", ""} {
		id := q.NewMessageID(from)
		b, ok := q.bucketOfID(id)
		require.True(t, ok)
		require.Equal(t, q.Bucket(from), b)
		require.Regexp(t, `^msg_[0-9a-z]{29}$`, id)
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	q := newQueue(t, miniClient(t), "p:", Options{Registerer: reg})
	q.m.enqueued.WithLabelValues("user").Inc()
	q.m.scriptErrors.WithLabelValues("claim").Inc()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestEmbedded(t *testing.T) {
	c, stop, err := NewEmbedded()
	require.NoError(t, err)
	defer stop()
	q := newQueue(t, c, "dev:", Options{})
	require.NoError(t, q.Ping(context.Background()))
	m := msg(q, "+15550001111", "+1555000001", "x")
	enqueue(t, q, m, 0)
	got := claimAll(t, q, 1, time.Second)
	require.Len(t, got, 1)
	require.NoError(t, q.Ack(context.Background(), got[0], []string{"c1"}))
}

func TestSenderWindowAndRate(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			prefix := testPrefix(t, c)
			q := newQueue(t, c, prefix, Options{SenderWindow: 2})
			from := "+15550001111"
			for i := range 3 {
				enqueue(t, q, msg(q, from, "+1555000001", fmt.Sprint(i)), 0)
			}
			first, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Len(t, first, 1, "one message per sender per call")
			second, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Len(t, second, 1, "window 2: a second one while the first is in flight")
			require.Equal(t, "1", second[0].Msg.Text)
			third, err := q.Claim(ctx, 10)
			require.NoError(t, err)
			require.Empty(t, third, "window full")
			require.NoError(t, q.Ack(ctx, first[0], nil))
			third = claimAll(t, q, 1, time.Second)
			require.Len(t, third, 1)
			require.Equal(t, "2", third[0].Msg.Text)

			// SetRate applies to later claims; Interval -1 keeps it.
			q1 := newQueue(t, c, prefix, Options{})
			other := "+15550002222"
			require.NoError(t, q1.SetRate(ctx, other, time.Hour))
			enqueue(t, q1, msg(q1, other, "+1555000001", "a"), -1)
			enqueue(t, q1, msg(q1, other, "+1555000001", "b"), -1)
			got := claimAll(t, q1, 1, time.Second)
			require.Len(t, got, 1)
			require.NoError(t, q1.Ack(ctx, got[0], nil))
			got, err = q1.Claim(ctx, 10)
			require.NoError(t, err)
			for _, g := range got {
				require.NotEqual(t, other, g.Msg.From, "rate of one per hour")
			}
		})
	}
}

func TestOptOutAfterAcceptStopsQueuedMessages(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			from, to, other := "+15550001111", "+15557654321", "+15557650000"
			queued := msg(q, from, to, "queued before STOP")
			toOther := msg(q, from, other, "to someone who did not opt out")
			enqueue(t, q, queued, 0)
			enqueue(t, q, toOther, 0)
			require.NoError(t, q.OptOut(ctx, from, to))
			reply := msg(q, from, to, "You have been unsubscribed.")
			reply.Kind = message.KindReply
			enqueue(t, q, reply, 0)

			var ids []string
			for len(ids) < 2 {
				got := claimAll(t, q, 1, time.Second)
				require.Len(t, got, 1)
				ids = append(ids, got[0].Msg.ID)
				require.NoError(t, q.Ack(ctx, got[0], []string{"c" + got[0].Msg.ID}))
			}
			require.Equal(t, []string{toOther.ID, reply.ID}, ids, "the opted-out message is skipped; the confirmation goes")
			rec, err := q.Get(ctx, queued.ID)
			require.NoError(t, err)
			require.Equal(t, message.StatusFailed, rec.Status)
			last := rec.History[len(rec.History)-1]
			require.NotNil(t, last.Error)
			require.Equal(t, "recipient_opted_out", last.Error.Code)
		})
	}
}

func TestEventFilter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []string
		want     string
		err      string
	}{
		{name: "unset: every event", statuses: nil, want: ""},
		{name: "all five: no filter", statuses: []string{"expired", "failed", "undelivered", "delivered", "sent"}, want: ""},
		{name: "finals", statuses: []string{"delivered", "undelivered", "failed", "expired"}, want: "dufe"},
		{name: "order and repeats do not matter", statuses: []string{"failed", "delivered", "failed"}, want: "df"},
		{name: "empty: none", statuses: []string{}, want: "-"},
		{name: "queued is not a change", statuses: []string{"queued"}, err: `status "queued" cannot be filtered`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := eventFilter(tc.statuses)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestStatusEventsFiltered: a message queued with a filter emits only the
// events it names, for itself and its notice, and keeps its whole history.
func TestStatusEventsFiltered(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{})
			m := msg(q, "+15550001111", "+15557654321", "hello")
			notice := msg(q, m.From, m.To, "You are messaging with Acme. To opt out, reply STOP.")
			notice.Kind = message.KindNotice
			res, err := q.Enqueue(ctx, EnqueueRequest{Msg: m, Notice: notice,
				StatusEvents: []string{"delivered", "undelivered"}})
			require.NoError(t, err)
			require.True(t, res.NoticeQueued)

			var delivered []string
			for _, want := range []string{notice.ID, m.ID} {
				got := claimAll(t, q, 1, 2*time.Second)
				require.Len(t, got, 1)
				require.Equal(t, want, got[0].Msg.ID)
				cid := "cid-" + want
				require.NoError(t, q.Ack(ctx, got[0], []string{cid}))
				r, err := q.ApplyReceipt(ctx, Receipt{CarrierID: cid, State: message.StatusDelivered})
				require.NoError(t, err)
				require.Equal(t, message.StatusDelivered, r.Status)
				delivered = append(delivered, want)
			}

			var ids []string
			for _, e := range events(t, q, m.From) {
				var d message.StatusData
				require.NoError(t, json.Unmarshal([]byte(e.Data), &d))
				require.Equal(t, message.StatusDelivered, d.Status, "no sent event")
				ids = append(ids, d.ID)
			}
			require.Equal(t, delivered, ids)

			rec, err := q.Get(ctx, m.ID)
			require.NoError(t, err)
			var hs []message.Status
			for _, h := range rec.History {
				hs = append(hs, h.Status)
			}
			require.Equal(t, []message.Status{message.StatusQueued, message.StatusSent, message.StatusDelivered}, hs)
		})
	}
}
