package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/smsgate/smsgate/compliance"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
	"github.com/smsgate/smsgate/smpp"
)

// inbound turns what carriers send back (MO messages and delivery
// receipts) into stored events, opt-outs and keyword replies. It implements
// smpp.Handler and smpp.ReceiptBatchHandler: an error makes the bind answer ESME_RX_T_APPN so the carrier
// delivers again, which is why every step is safe to repeat.
type inbound struct {
	app     *App
	log     *slog.Logger
	metrics *inboundMetrics
	// settled, when set, is waited on before receipts are applied (nil:
	// applied at once).
	settled settleWaiter
}

// settleWaiter tells when the acks of this daemon's submissions are done
// (router.Settling). A receipt often arrives right after its submit_sm_resp,
// before the dispatcher's ack batch indexed its carrier id: applied then, it
// would be held in Redis and applied by the ack (several extra scripts).
// Waiting for that ack, briefly, lets it take the direct path instead.
type settleWaiter interface {
	// WaitSettled returns once no ack of a submission with one of the
	// carrier ids is in progress here, or after a bounded wait or when ctx
	// ends (false). Either way the receipts are applied next; the held path
	// covers what the wait did not.
	WaitSettled(ctx context.Context, carrierIDs []string) bool
}

var _ smpp.ReceiptBatchHandler = (*inbound)(nil)

type inboundMetrics struct {
	mo       *prometheus.CounterVec
	receipts *prometheus.CounterVec
}

func newInboundMetrics(reg prometheus.Registerer) *inboundMetrics {
	f := promauto.With(reg)
	return &inboundMetrics{
		mo: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_inbound_messages_total",
			Help: "MO messages handled, by keyword (stop, start, help, none) and outcome (stored, unknown_number, error).",
		}, []string{"keyword", "outcome"}),
		receipts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "smsgate_inbound_receipts_total",
			Help: "Delivery receipts handled, by receipt state (DELIVRD, UNDELIV, …, other) and outcome (applied, held, duplicate, unmatched, ignored, error).",
		}, []string{"state", "outcome"}),
	}
}

// receiptStatus maps a receipt's stat to a final status; ok is false for
// intermediate states (ACCEPTD, ENROUTE) that change nothing.
func receiptStatus(stat string) (message.Status, bool) {
	switch strings.ToUpper(stat) {
	case "DELIVRD", "DELIVERED":
		return message.StatusDelivered, true
	case "UNDELIV", "UNDELIVERABLE", "REJECTD", "REJECTED", "EXPIRED", "DELETED", "UNKNOWN", "FAILED":
		return message.StatusUndelivered, true
	}
	return "", false
}

// receiptStateLabel keeps the metric's state label in a fixed set: the stat
// comes from the carrier's text and could be anything.
func receiptStateLabel(stat string) string {
	switch s := strings.ToUpper(stat); s {
	case "DELIVRD", "UNDELIV", "REJECTD", "EXPIRED", "DELETED", "UNKNOWN", "ACCEPTD", "ENROUTE", "FAILED":
		return s
	}
	return "other"
}

// receiptError is the error recorded for an undelivered segment: a code
// per receipt state and a sentence carrying the carrier's error code.
func receiptError(state, carrierErr string) *message.Error {
	msg := fmt.Sprintf("The carrier reported the message %s.", state)
	if carrierErr != "" {
		msg = fmt.Sprintf("The carrier reported the message %s (error code %s).", state, carrierErr)
	}
	return &message.Error{Code: "carrier_" + strings.ToLower(state), Message: msg}
}

// HandleReceipt implements smpp.Handler. Only a storage failure is returned
// (the carrier then delivers the receipt again); a receipt for a message
// that no longer exists is acknowledged and counted, or the carrier would
// redeliver it forever.
func (h *inbound) HandleReceipt(ctx context.Context, r smpp.Receipt) error {
	qr, final := h.queueReceipt(r)
	if !final {
		return nil
	}
	if h.settled != nil {
		h.settled.WaitSettled(ctx, []string{qr.CarrierID})
	}
	res, err := h.app.queue.ApplyReceipt(ctx, qr)
	return h.applied(r, res, err)
}

// HandleReceipts implements smpp.ReceiptBatchHandler: the same as
// HandleReceipt for each receipt, with all of them applied in one
// queue.ApplyReceipts (two Redis round trips for the batch). Each receipt
// gets its own result.
func (h *inbound) HandleReceipts(ctx context.Context, rs []smpp.Receipt) []error {
	errs := make([]error, len(rs))
	qrs := make([]queue.Receipt, 0, len(rs))
	at := make([]int, 0, len(rs))
	for i, r := range rs {
		if qr, final := h.queueReceipt(r); final {
			qrs = append(qrs, qr)
			at = append(at, i)
		}
	}
	if len(qrs) == 0 {
		return errs
	}
	if h.settled != nil {
		cids := make([]string, len(qrs))
		for j, qr := range qrs {
			cids[j] = qr.CarrierID
		}
		h.settled.WaitSettled(ctx, cids)
	}
	res, err := h.app.queue.ApplyReceipts(ctx, qrs)
	if len(res) != len(qrs) { // not per receipt: every one failed
		if err == nil {
			err = fmt.Errorf("queue: %d results for %d receipts", len(res), len(qrs))
		}
		for _, i := range at {
			errs[i] = h.applied(rs[i], queue.ReceiptResult{}, err)
		}
		return errs
	}
	for j, i := range at {
		errs[i] = h.applied(rs[i], res[j], res[j].Err)
	}
	return errs
}

// queueReceipt is the queue's form of a receipt; final is false (and the
// receipt counted as ignored) for intermediate states that change nothing.
func (h *inbound) queueReceipt(r smpp.Receipt) (qr queue.Receipt, final bool) {
	status, final := receiptStatus(r.State)
	if !final {
		label := receiptStateLabel(r.State)
		if label == "other" {
			h.log.Warn("receipt with a state smsgate does not know; its message keeps its status", "state", r.State, "carrier", r.Carrier)
		}
		h.count(h.metrics.receipts, label, "ignored")
		return queue.Receipt{}, false
	}
	var rerr *message.Error
	if status == message.StatusUndelivered {
		rerr = receiptError(strings.ToUpper(r.State), r.Err)
	}
	// In the base of the carrier's submit_sm_resp ids, which its acks indexed.
	cid := h.app.state.Load().idFormat(r.Carrier).ReceiptID(r.CarrierMessageID)
	return queue.Receipt{CarrierID: cid, State: status, Err: rerr}, true
}

// applied counts what applying a receipt did and returns the error the
// carrier should see: only a storage failure.
func (h *inbound) applied(r smpp.Receipt, res queue.ReceiptResult, err error) error {
	label := receiptStateLabel(r.State)
	if errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrBadID) {
		h.count(h.metrics.receipts, label, "unmatched")
		h.log.Debug("receipt for a message that is no longer stored, acknowledged", "carrier", r.Carrier, "err", err)
		return nil
	}
	if err != nil {
		h.count(h.metrics.receipts, label, "error")
		return fmt.Errorf("apply receipt: %w", err)
	}
	switch {
	case res.Held:
		h.count(h.metrics.receipts, label, "held")
	case res.Recorded:
		h.count(h.metrics.receipts, label, "applied")
	default:
		h.count(h.metrics.receipts, label, "duplicate")
	}
	return nil
}

// HandleMO implements smpp.Handler. The steps run in an order that is safe
// to repeat when the carrier delivers again after an error: the opt-out
// change first (idempotent), then the reply, then the stored event. Only
// when storing the event fails after the reply was queued does the
// redelivery queue the reply a second time (the carrier gives MOs no id to
// deduplicate on); a lost opt-out or a lost MO would be worse.
func (h *inbound) HandleMO(ctx context.Context, m smpp.MO) error {
	cfg := h.app.state.Load().cfg
	kw := compliance.ClassifyKeyword(m.Text)
	kwLabel := kw.Kind
	if kwLabel == "" {
		kwLabel = "none"
	}
	data := message.ReceivedData{
		ID:         message.NewID("mo_"),
		From:       m.From,
		To:         m.To,
		Text:       m.Text,
		Segments:   max(m.Segments, 1),
		ReceivedAt: m.ReceivedAt.UTC(),
	}
	if data.ReceivedAt.IsZero() {
		data.ReceivedAt = time.Now().UTC()
	}
	if kw.Kind != "" {
		k := kw.Kind
		data.Keyword = &k
	} else {
		data.PossibleOptOut = compliance.PossibleOptOut(m.Text)
	}

	org, num, known := cfg.Number(m.To)
	if !known {
		// Not ours (any more): keep the message for the global webhook so
		// nothing is lost, acknowledge it, and say so once in the log.
		h.log.Warn("MO to a number that is not in the configuration; delivered to the global webhook", "carrier", m.Carrier)
		if err := h.app.queue.AppendReceived(ctx, "", data); err != nil {
			h.count(h.metrics.mo, kwLabel, "error")
			return fmt.Errorf("store MO: %w", err)
		}
		h.count(h.metrics.mo, kwLabel, "unknown_number")
		return nil
	}

	if err := h.keyword(ctx, cfg, org, num, m.From, kw); err != nil {
		h.count(h.metrics.mo, kwLabel, "error")
		return err
	}
	// Stores the MO and marks the conversation as started by the external
	// party, so no sender-identification notice is sent in it.
	if err := h.app.queue.AppendReceived(ctx, org.ID, data); err != nil {
		h.count(h.metrics.mo, kwLabel, "error")
		return fmt.Errorf("store MO: %w", err)
	}
	h.count(h.metrics.mo, kwLabel, "stored")
	return nil
}

// keyword records an opt-out or opt-in and queues the confirmation or help
// text. Replies bypass the opt-out check: they are what it confirms.
func (h *inbound) keyword(ctx context.Context, cfg *config.Config, org *config.Org, num *config.Number, external string, kw compliance.Keyword) error {
	var text string
	// Every step is idempotent: when one fails, the MO is not acknowledged
	// and the carrier's redelivery does the whole keyword again.
	switch kw.Kind {
	case "stop":
		numbers := []string{num.E164}
		if kw.All {
			numbers = orgNumbers(org)
		}
		for _, n := range numbers {
			if err := h.app.queue.OptOut(ctx, n, external); err != nil {
				return fmt.Errorf("record opt-out: %w", err)
			}
		}
		if kw.All {
			if err := h.app.queue.MarkStopAll(ctx, org.ID, external); err != nil {
				return fmt.Errorf("record opt-out: %w", err)
			}
		}
		text = compliance.StopReply(org.Name, org.StopText)
	case "start":
		// START undoes what the person's opt-out did: after STOPALL, the
		// opt-out at every number of the org; otherwise at this number.
		all, err := h.app.queue.StopAllMarked(ctx, org.ID, external)
		if err != nil {
			return fmt.Errorf("record opt-in: %w", err)
		}
		numbers := []string{num.E164}
		if all {
			numbers = orgNumbers(org)
		} else {
			out, err := h.app.queue.IsOptedOut(ctx, num.E164, external)
			if err != nil {
				return fmt.Errorf("record opt-in: %w", err)
			}
			if !out {
				// Nothing to lift: most often "YES" to "reply YES to
				// confirm". No "resubscribed" reply; the app still gets the
				// message.received event with keyword start.
				return nil
			}
		}
		for _, n := range numbers {
			if err := h.app.queue.OptIn(ctx, n, external); err != nil {
				return fmt.Errorf("record opt-in: %w", err)
			}
		}
		if all {
			// Last, so that a failure above leaves the mark for the retry.
			if err := h.app.queue.ClearStopAll(ctx, org.ID, external); err != nil {
				return fmt.Errorf("record opt-in: %w", err)
			}
		}
		text = compliance.StartReply(org.Name, org.StartText)
	case "help":
		text = compliance.HelpReply(org.Name, org.HelpText)
	default:
		return nil
	}
	if !num.Registered {
		// Carriers refuse outbound traffic from unregistered numbers; the
		// keyword still takes effect.
		h.log.Warn("keyword reply not sent: the number is not registered for outbound messaging", "keyword", kw.Kind)
		return nil
	}
	info := message.Analyze(text)
	now := time.Now().UTC()
	reply := &message.Message{
		ID:         h.app.queue.NewMessageID(num.E164),
		OrgID:      org.ID,
		From:       num.E164,
		To:         external,
		Text:       text,
		Kind:       message.KindReply,
		Encoding:   info.Encoding,
		Segments:   info.Segments,
		Characters: info.Characters,
		CreatedAt:  now,
		ExpiresAt:  now.Add(cfg.Queue.DefaultValidity),
	}
	// Same queue and rate as the org's messages, and no opt-out check (a
	// reply confirms the opt-out). No depth limit either: a full queue must
	// neither drop a compliance reply nor make the carrier redeliver the MO
	// forever; replies come one per keyword, so they cannot flood it.
	if _, err := h.app.queue.Enqueue(ctx, queue.EnqueueRequest{
		Msg:          reply,
		Interval:     interval(num.EffectiveRate()),
		StatusEvents: cfg.StatusEventsFor(org),
	}); err != nil {
		return fmt.Errorf("queue keyword reply: %w", err)
	}
	return nil
}

// orgNumbers lists the E.164 numbers of org.
func orgNumbers(org *config.Org) []string {
	numbers := make([]string, 0, len(org.Numbers))
	for _, n := range org.Numbers {
		numbers = append(numbers, n.E164)
	}
	return numbers
}

func (h *inbound) count(c *prometheus.CounterVec, a, b string) {
	c.WithLabelValues(a, b).Inc()
}
