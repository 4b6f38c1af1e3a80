package queue

import (
	"strings"

	"github.com/smsgate/smsgate/message"
)

const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// NewMessageID returns a new message id for a message sent from number from:
// "msg_" + message.NewID's 26 characters + 3 characters naming the sender's
// bucket, so Get finds the message from its id alone. Every message given to
// Enqueue (Msg and Notice) must carry an id made by NewMessageID or NewID.
func (q *Queue) NewMessageID(from string) string { return q.NewID("msg_", from) }

// NewID is NewMessageID with another prefix.
func (q *Queue) NewID(prefix, from string) string {
	b := q.Bucket(from)
	return message.NewID(prefix) + string([]byte{
		idAlphabet[(b>>10)&31], idAlphabet[(b>>5)&31], idAlphabet[b&31],
	})
}

// bucketOfID returns the bucket carried by a message id.
func (q *Queue) bucketOfID(id string) (int, bool) {
	if len(id) < 3 {
		return 0, false
	}
	b := 0
	for _, c := range []byte(id[len(id)-3:]) {
		i := strings.IndexByte(idAlphabet, c)
		if i < 0 {
			return 0, false
		}
		b = b<<5 | i
	}
	return b, b < q.opts.Buckets
}
