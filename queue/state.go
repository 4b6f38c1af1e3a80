package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsgate/smsgate/message"
)

// OptOut records that number to opted out of messages from number from.
func (q *Queue) OptOut(ctx context.Context, from, to string) error {
	if err := q.rdb.SAdd(ctx, q.base(q.Bucket(from))+"optout:"+from, to).Err(); err != nil {
		return fmt.Errorf("queue: opt out: %w", err)
	}
	return nil
}

// OptIn lifts an opt-out of to from from.
func (q *Queue) OptIn(ctx context.Context, from, to string) error {
	if err := q.rdb.SRem(ctx, q.base(q.Bucket(from))+"optout:"+from, to).Err(); err != nil {
		return fmt.Errorf("queue: opt in: %w", err)
	}
	return nil
}

// stopAllKey is the set of the external numbers whose opt-out from org
// came from STOPALL, in the bucket of "org:<id>".
func (q *Queue) stopAllKey(org string) string {
	return q.base(q.Bucket("org:"+org)) + "stopall:" + org
}

// MarkStopAll records that to opted out of all of org's numbers with
// STOPALL, so that its START can lift the opt-out at all of them.
func (q *Queue) MarkStopAll(ctx context.Context, org, to string) error {
	if err := q.rdb.SAdd(ctx, q.stopAllKey(org), to).Err(); err != nil {
		return fmt.Errorf("queue: mark stopall: %w", err)
	}
	return nil
}

// StopAllMarked reports whether to's opt-out from org came from STOPALL
// and no START has lifted it since.
func (q *Queue) StopAllMarked(ctx context.Context, org, to string) (bool, error) {
	ok, err := q.rdb.SIsMember(ctx, q.stopAllKey(org), to).Result()
	if err != nil {
		return false, fmt.Errorf("queue: stopall marked: %w", err)
	}
	return ok, nil
}

// ClearStopAll removes the STOPALL mark of to for org.
func (q *Queue) ClearStopAll(ctx context.Context, org, to string) error {
	if err := q.rdb.SRem(ctx, q.stopAllKey(org), to).Err(); err != nil {
		return fmt.Errorf("queue: clear stopall: %w", err)
	}
	return nil
}

// IsOptedOut reports whether to opted out of messages from from.
func (q *Queue) IsOptedOut(ctx context.Context, from, to string) (bool, error) {
	ok, err := q.rdb.SIsMember(ctx, q.base(q.Bucket(from))+"optout:"+from, to).Result()
	if err != nil {
		return false, fmt.Errorf("queue: opted out: %w", err)
	}
	return ok, nil
}

// OptOuts lists the numbers that opted out of from.
func (q *Queue) OptOuts(ctx context.Context, from string) ([]string, error) {
	s, err := q.rdb.SMembers(ctx, q.base(q.Bucket(from))+"optout:"+from).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: opt-outs: %w", err)
	}
	return s, nil
}

// MarkInbound records that external texted orgNumber, so the conversation
// needs no sender-identification notice.
func (q *Queue) MarkInbound(ctx context.Context, orgNumber, external string) error {
	if err := q.rdb.SAdd(ctx, q.base(q.Bucket(orgNumber))+"conv:"+orgNumber, external).Err(); err != nil {
		return fmt.Errorf("queue: mark inbound: %w", err)
	}
	return nil
}

// AppendReceived durably stores an inbound message (MO) as a message.received
// event in the stream of the org number's (d.To) bucket, and marks the
// conversation (d.To, d.From) as started by the external party. Answer the
// carrier only after it returned nil.
func (q *Queue) AppendReceived(ctx context.Context, org string, d message.ReceivedData) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("queue: append received: %w", err)
	}
	if err := q.run(ctx, scriptReceived, q.Bucket(d.To), d.To, d.From, org, data).Err(); err != nil {
		return fmt.Errorf("queue: append received: %w", err)
	}
	return nil
}

// Record is a message as stored, with its status and history.
type Record struct {
	Msg               message.Message
	Status            message.Status
	History           []message.HistoryEntry
	CarrierMessageIDs []string
	Attempts          int
	PossibleDuplicate bool
}

// Get returns the stored message id (ErrNotFound when unknown or expired).
func (q *Queue) Get(ctx context.Context, id string) (*Record, error) {
	b, ok := q.bucketOfID(id)
	if !ok {
		return nil, fmt.Errorf("queue: get %q: %w", id, ErrNotFound)
	}
	h, err := q.rdb.HGetAll(ctx, q.base(b)+"m:"+id).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: get: %w", err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("queue: get %q: %w", id, ErrNotFound)
	}
	r := &Record{Status: message.Status(h["st"]), Attempts: atoi(h["att"]), PossibleDuplicate: h["dup"] == "1"}
	if err := json.Unmarshal([]byte(h["body"]), &r.Msg); err != nil {
		return nil, fmt.Errorf("queue: get %q: %w", id, err)
	}
	if c := h["cids"]; c != "" {
		if err := json.Unmarshal([]byte(c), &r.CarrierMessageIDs); err != nil {
			return nil, fmt.Errorf("queue: get %q: carrier ids: %w", id, err)
		}
	}
	// Records written before history fields existed keep it as JSON lines.
	for _, line := range strings.Split(h["hist"], "\n") {
		if line == "" {
			continue
		}
		var e struct {
			S string `json:"s"`
			T string `json:"t"`
			C string `json:"c"`
			M string `json:"m"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("queue: get %q: history: %w", id, err)
		}
		r.History = append(r.History, historyEntry(e.S, e.T, e.C, e.M))
	}
	for i := 1; i <= atoi(h["nh"]); i++ {
		he, err := parseHistory(h["h"+strconv.Itoa(i)])
		if err != nil {
			return nil, fmt.Errorf("queue: get %q: history: %w", id, err)
		}
		r.History = append(r.History, he)
	}
	return r, nil
}

func historyEntry(status, at, code, msg string) message.HistoryEntry {
	t, _ := strconv.ParseInt(at, 10, 64)
	he := message.HistoryEntry{Status: message.Status(status), At: time.UnixMicro(t).UTC()}
	if code != "" {
		he.Error = &message.Error{Code: code, Message: msg}
	}
	return he
}

// parseHistory decodes a history field: "status|µs|<len of code>|" then the
// error code and message (scripts/common.lua hist_entry).
func parseHistory(v string) (message.HistoryEntry, error) {
	status, rest, ok1 := strings.Cut(v, "|")
	at, rest, ok2 := strings.Cut(rest, "|")
	n, rest, ok3 := strings.Cut(rest, "|")
	cl, err := strconv.Atoi(n)
	if !ok1 || !ok2 || !ok3 || err != nil || cl < 0 || cl > len(rest) {
		return message.HistoryEntry{}, fmt.Errorf("bad entry %q", v)
	}
	return historyEntry(status, at, rest[:cl], rest[cl:]), nil
}

// holdTTL is how long a receipt that arrived before its submit_sm_resp waits.
const holdTTL = time.Hour

// Receipt is a delivery receipt for one carrier message id (one segment).
type Receipt struct {
	CarrierID string         // normalized carrier message id
	State     message.Status // StatusDelivered or StatusUndelivered
	Err       *message.Error // why, when undelivered
}

// ReceiptResult says what a receipt did.
type ReceiptResult struct {
	Held      bool           // carrier id not known yet, or its message not acked yet: held for the ack or SweepHeld
	MessageID string         // the message the carrier id belongs to
	Segment   int            // its segment (0-based)
	Recorded  bool           // first receipt for this segment
	Status    message.Status // the message's status afterwards
	// Err is why this receipt was not applied (ApplyReceipts only; ApplyReceipt
	// returns it): ErrNotFound or ErrBadID when the message is gone, else a
	// storage failure (the carrier should deliver the receipt again).
	Err error
}

// ApplyReceipt applies a delivery receipt: a message becomes delivered when
// every segment is, undelivered (once) when any segment is not, each with a
// message.status event. A receipt for a carrier id no ack has indexed yet is
// held (atomically with the lookup) and applied by that Ack. ApplyReceipts
// applies several in two round trips.
func (q *Queue) ApplyReceipt(ctx context.Context, r Receipt) (ReceiptResult, error) {
	res, _ := q.ApplyReceipts(ctx, []Receipt{r})
	return res[0], res[0].Err
}

// LookupCarrierID returns the message and segment of a carrier message id.
func (q *Queue) LookupCarrierID(ctx context.Context, cid string) (msgID string, segment int, ok bool, err error) {
	index, _ := q.cidKeys(cid)
	v, err := q.rdb.Get(ctx, index).Result()
	if errors.Is(err, redis.Nil) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("queue: lookup carrier id: %w", err)
	}
	msgID, segment, ok = parseCIDValue(v)
	return msgID, segment, ok, nil
}

func parseCIDValue(v string) (string, int, bool) {
	i := strings.LastIndexByte(v, '|')
	if i < 0 {
		return "", 0, false
	}
	seg, err := strconv.Atoi(v[i+1:])
	return v[:i], seg, err == nil && seg >= 0
}

// Ping checks that Redis answers (for readiness).
func (q *Queue) Ping(ctx context.Context) error {
	if err := q.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: ping: %w", err)
	}
	return nil
}
