package testharness

import (
	"strings"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
)

// deliverFailed decides what becomes of d after a failed attempt, as a real
// SMSC's retry schedule would: status is the client's refusal (deliver_sm_resp
// or data_sm_resp status, or the generic_nack's), 0 when the attempt went
// unanswered within DeliverTimeout.
//
// ESME_RX_P_APPN and ESME_RX_R_APPN drop d at once; any other refusal
// delivers it again after RedeliverDelay, doubled for each earlier failure up
// to RedeliverMaxDelay; an unanswered attempt (which already waited
// DeliverTimeout) delivers it again at once. After DeliverAttempts failures d
// is dropped.
func (s *Simulator) deliverFailed(d *delivery, status uint32) {
	d.failures++
	switch {
	case status == StatusXPAppn || status == StatusXRAppn:
		s.drop(d, status, "permanent")
	case s.opts.DeliverAttempts > 0 && d.failures >= s.opts.DeliverAttempts:
		s.drop(d, status, "attempts")
	case status == StatusOK:
		s.dispatch(d)
	default:
		s.sched.after(s.redeliverDelay(d.failures), func() { s.dispatch(d) })
	}
}

// redeliverDelay is the wait before the next attempt after the failures-th
// failure: RedeliverDelay doubled failures-1 times, at most RedeliverMaxDelay.
func (s *Simulator) redeliverDelay(failures int) time.Duration {
	delay := s.opts.RedeliverDelay
	for i := 1; i < failures && delay < s.opts.RedeliverMaxDelay; i++ {
		delay *= 2
	}
	return min(delay, s.opts.RedeliverMaxDelay)
}

// drop records d as given up.
func (s *Simulator) drop(d *delivery, status uint32, reason string) {
	dd := DroppedDelivery{
		Source:   d.pdu.SourceAddr.Address(),
		Dest:     d.pdu.DestAddr.Address(),
		Receipt:  d.pdu.EsmClass&data.SM_SMSC_DLV_RCPT_TYPE != 0,
		Status:   status,
		Attempts: d.failures,
		Reason:   reason,
		At:       time.Now(),
	}
	if dd.Receipt {
		dd.MessageID = receiptedID(d.pdu)
	}
	s.mu.Lock()
	s.droppedN++
	if s.opts.RecordLimit > 0 && len(s.dropped) < s.opts.RecordLimit {
		s.dropped = append(s.dropped, dd)
	}
	s.mu.Unlock()
	s.log.Info("deliver_sm dropped", "reason", reason, "status", status, "attempts", d.failures,
		"receipt", dd.Receipt, "message_id", dd.MessageID)
}

// receiptedID is the message id a receipt names: receipted_message_id, else
// the id: field of its text.
func receiptedID(d *pdu.DeliverSM) string {
	if f, ok := d.OptionalParameters[pdu.Tag(TagReceiptedMessageID)]; ok {
		return strings.TrimRight(string(f.Data), "\x00")
	}
	text, _ := d.Message.GetMessageData()
	rest, ok := strings.CutPrefix(string(text), "id:")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, " ")
	return strings.TrimRight(id, "\x00")
}

// tokenBucket is the MaxTPS budget of one account (system_id).
type tokenBucket struct {
	tokens float64
	at     time.Time
}

// takeToken takes a submit_sm token from systemID's bucket of rate tokens/s
// holding at most max(1, rate); the bucket is shared by all the account's
// binds and outlives them, so a reconnect does not refill it.
func (s *Simulator) takeToken(systemID string, rate float64, now time.Time) bool {
	burst := max(1, rate)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[systemID]
	if b == nil {
		b = &tokenBucket{tokens: burst}
		s.buckets[systemID] = b
	} else {
		b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
