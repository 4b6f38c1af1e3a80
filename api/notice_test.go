package api

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
)

// claimOne claims the next due message, waiting at most a second for the
// sender's rate interval.
func claimOne(t *testing.T, q *queue.Queue) queue.Claimed {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Second)
	for {
		c, err := q.Claim(ctx, 1)
		require.NoError(t, err)
		if len(c) == 1 {
			return c[0]
		}
		require.True(t, time.Now().Before(deadline), "nothing to claim")
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoticeBeforeFirstMessage checks, through the real queue, that the
// first message of a conversation is preceded by the org's notice, and that
// a later message is not.
func TestNoticeBeforeFirstMessage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.send(acmeKey, msgBody(acmeShortCode, "+15557654321", "Your results are ready."))
	require.Equal(t, 202, first.status, "%s", first.raw)

	n := claimOne(t, e.q)
	require.Equal(t, message.KindNotice, n.Msg.Kind)
	require.Equal(t, "You are messaging with Acme Clinic. To opt out, reply STOP.", n.Msg.Text)
	require.Equal(t, acmeShortCode, n.Msg.From)
	require.Equal(t, "+15557654321", n.Msg.To)
	require.Equal(t, "acme", n.Msg.OrgID)
	require.Equal(t, 1, n.Msg.Segments)
	require.NotEqual(t, first.body["id"], n.Msg.ID)
	require.NoError(t, e.q.Ack(ctx, n, []string{"c1"}))

	m := claimOne(t, e.q)
	require.Equal(t, first.body["id"], m.Msg.ID)
	require.Equal(t, message.KindUser, m.Msg.Kind)
	require.NoError(t, e.q.Ack(ctx, m, []string{"c2"}))

	second := e.send(acmeKey, msgBody(acmeShortCode, "+15557654321", "Reminder."))
	require.Equal(t, 202, second.status, "%s", second.raw)
	m = claimOne(t, e.q)
	require.Equal(t, second.body["id"], m.Msg.ID, "no second notice")
	// The carrier did not answer: sent again later, flagged.
	require.NoError(t, e.q.Requeue(ctx, m))
	g2 := e.do("GET", "/v1/messages/"+second.body["id"].(string), acmeKey, "")
	require.Equal(t, 200, g2.status, "%s", g2.raw)
	require.Equal(t, true, g2.body["possible_duplicate"])

	g := e.do("GET", "/v1/messages/"+first.body["id"].(string), acmeKey, "")
	require.Equal(t, 200, g.status, "%s", g.raw)
	require.Equal(t, "sent", g.body["status"])
	require.Equal(t, []any{"c2"}, g.body["carrier_message_ids"])
	require.Equal(t, false, g.body["possible_duplicate"])
}
