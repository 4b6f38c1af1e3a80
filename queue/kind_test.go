package queue

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
)

// Status events of the messages the daemon sends on its own (the notice, a
// keyword reply) say so, since the app never received their ids; events of
// the app's own messages carry no kind.
func TestStatusEventKind(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{SenderWindow: 3})
			const from = "+15550004101"
			user := msg(q, from, "+15557650101", "hello")
			notice := msg(q, from, "+15557650101", "You are messaging with Acme.")
			notice.Kind = message.KindNotice
			reply := msg(q, from, "+15557650102", "You are unsubscribed.")
			reply.Kind = message.KindReply
			_, err := q.Enqueue(ctx, EnqueueRequest{Msg: user, Notice: notice})
			require.NoError(t, err)
			_, err = q.Enqueue(ctx, EnqueueRequest{Msg: reply})
			require.NoError(t, err)

			got := claimAll(t, q, 3, 2*time.Second)
			require.Len(t, got, 3)
			for i, g := range got {
				require.NoError(t, q.Ack(ctx, g, []string{"kind-" + string(rune('a'+i))}))
			}
			want := map[string]message.Kind{user.ID: "", notice.ID: message.KindNotice, reply.ID: message.KindReply}
			evs := events(t, q, from)
			require.Len(t, evs, 3)
			for _, ev := range evs {
				var d message.StatusData
				require.NoError(t, json.Unmarshal([]byte(ev.Data), &d))
				require.Equal(t, message.StatusSent, d.Status)
				require.Equal(t, want[d.ID], d.Kind, ev.Data)
				if d.Kind == "" {
					require.NotContains(t, ev.Data, `"kind":`)
				}
			}
		})
	}
}

// A notice that ends without reaching the recipient leaves the
// conversation unstarted, so the org's next message gets a notice again; a
// notice that was sent keeps it started.
func TestFailedNoticeRestartsConversation(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			c := be.client(t)
			q := newQueue(t, c, testPrefix(t, c), Options{SenderWindow: 2})
			const from, to = "+15550004201", "+15557650201"
			send := func(text string) EnqueueResult {
				n := msg(q, from, to, "You are messaging with Acme.")
				n.Kind = message.KindNotice
				res, err := q.Enqueue(ctx, EnqueueRequest{Msg: msg(q, from, to, text), Notice: n})
				require.NoError(t, err)
				return res
			}
			require.True(t, send("first").NoticeQueued)
			got := claimAll(t, q, 2, 2*time.Second)
			require.Len(t, got, 2)
			require.Equal(t, message.KindNotice, got[0].Msg.Kind)
			require.NoError(t, q.Fail(ctx, got[0], message.Error{Code: "carrier_rejected", Message: "no"}))
			require.NoError(t, q.Ack(ctx, got[1], []string{"cid-first"}))

			require.True(t, send("second").NoticeQueued, "the failed notice did not start the conversation")
			got = claimAll(t, q, 2, 2*time.Second)
			require.Len(t, got, 2)
			for i, g := range got {
				require.NoError(t, q.Ack(ctx, g, []string{"cid-second-" + string(rune('a'+i))}))
			}
			require.False(t, send("third").NoticeQueued, "a sent notice started it")
		})
	}
}
