package smpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/linxGnu/gosmpp/data"

	"github.com/smsgate/smsgate/message"
)

// Submission is one outbound message to send through a Pool.
type Submission struct {
	ID         string           // smsgate message id, for logs only
	From, To   string           // "+E.164" numbers (TON 1/NPI 1 on the wire, "+" stripped), or an alphanumeric sender
	Text       string           // the whole text; the Pool segments it
	Encoding   message.Encoding // gsm7 or ucs2; empty: chosen by message.Analyze
	ValidUntil time.Time        // zero: no validity_period (the SMSC default)
}

// Outcome classifies what happened to a submission.
type Outcome int

// Outcomes. The zero value is not a valid outcome.
const (
	// OK: every segment was accepted by the SMSC (submit_sm_resp ESME_ROK).
	OK Outcome = iota + 1
	// Temporary: not accepted now (throttled, queue full, system error, no
	// bind, not sent at all); retry later, no duplicate possible.
	Temporary
	// Permanent: the SMSC refused a segment for good; the message failed.
	Permanent
	// Unknown: a segment was sent but never answered (response timeout, bind
	// lost, caller gave up); a retry may deliver a duplicate.
	Unknown
)

// String names the outcome.
func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Result is what Pool.Submit reports for one Submission.
type Result struct {
	Outcome Outcome
	// CarrierIDs has one entry per segment, in segment order: the message_id
	// of its submit_sm_resp exactly as the carrier sent it, "" when the
	// segment was not accepted or was accepted without a message_id (see
	// MissingIDs). Compare with receipts through NormalizeID.
	CarrierIDs []string
	// MissingIDs counts the segments the SMSC accepted (ESME_ROK) with no
	// message_id in the submit_sm_resp (SMPP 3.4 makes it mandatory): their
	// CarrierIDs entry is "" although they were sent, so they must not be
	// sent again, and no receipt can be matched to them. "" is never a
	// carrier id: do not index it.
	MissingIDs int
	// Status is the command_status that decided the outcome (0 if none).
	Status uint32
	// Err explains a non-OK outcome: a *StatusError, ErrTimeout, ErrLinkLost,
	// ErrNotBound, ErrClosed, ErrNotSent, a context error, or an encoding error.
	Err error
}

// Handler receives what the carrier delivers. A non-nil error makes the
// deliver_sm_resp ESME_RX_T_APPN so the carrier delivers it again.
type Handler interface {
	HandleReceipt(ctx context.Context, r Receipt) error
	HandleMO(ctx context.Context, m MO) error
}

// ReceiptBatchHandler is optionally implemented by a Handler to take
// receipts several at a time: when it is, the receipts waiting on a
// connection (up to MaxReceiptBatch, whatever is queued at that moment; no
// waiting to fill a batch) are passed in one call instead of one
// HandleReceipt each. The result has one entry per receipt, in order: nil
// answers that receipt's deliver_sm ESME_ROK, an error ESME_RX_T_APPN (the
// carrier delivers it again). A result of another length fails the whole
// batch. Each deliver_sm_resp is sent after the call returns. rs is reused
// afterwards: do not keep it.
type ReceiptBatchHandler interface {
	HandleReceipts(ctx context.Context, rs []Receipt) []error
}

// MaxReceiptBatch is the most receipts passed in one HandleReceipts call.
const MaxReceiptBatch = 64

// Receipt is a delivery receipt for one submitted segment.
type Receipt struct {
	CarrierMessageID string    // as the carrier sent it (trailing NUL stripped, trimmed); compare via NormalizeID
	State            string    // DELIVRD, UNDELIV, EXPIRED, DELETED, ACCEPTD, REJECTD, UNKNOWN, ENROUTE (upper case)
	Err              string    // carrier error code (text "err:" field or network_error_code TLV), "" if none
	DoneAt           time.Time // "done date" (read as UTC); the arrival time when absent
	Carrier, Bind    string
}

// MO is one inbound (mobile originated) message, reassembled when it came
// in several parts.
type MO struct {
	From, To      string // "+" prepended when the address is international (TON 1) digits
	Text          string
	Segments      int // parts joined into Text (fewer than announced when reassembly timed out)
	ReceivedAt    time.Time
	Carrier, Bind string
}

// BindState is a bind's state as seen by routers and metrics.
type BindState struct {
	Name     string
	State    string // connecting | bound | backoff | closed
	InFlight int    // window slots taken (submit_sm sent or about to be sent, unanswered)
}

// Bind states.
const (
	StateConnecting = "connecting"
	StateBound      = "bound"
	StateBackoff    = "backoff"
	StateClosed     = "closed"
)

var allStates = [...]string{StateConnecting, StateBound, StateBackoff, StateClosed}

// Errors reported in Result.Err (test with errors.Is).
var (
	ErrNotBound = errors.New("smpp: no bind is bound")
	ErrClosed   = errors.New("smpp: pool closed")
	ErrTimeout  = errors.New("smpp: response timeout")
	ErrLinkLost = errors.New("smpp: connection lost before the response")
	ErrNotSent  = errors.New("smpp: segment not sent")
)

// StatusError is a non-zero command_status from the SMSC.
type StatusError struct {
	Status uint32
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("smpp: command_status 0x%08X %s", e.Status, StatusName(e.Status))
}

// Temporary reports whether the status is worth retrying.
func (e *StatusError) Temporary() bool { return Classify(e.Status) == Temporary }

// SMPP command_status values the package treats specially.
const (
	StatusOK        uint32 = 0x00000000 // ESME_ROK
	StatusInvCmdLen uint32 = 0x00000002 // ESME_RINVCMDLEN
	StatusInvCmdID  uint32 = 0x00000003 // ESME_RINVCMDID
	StatusInvBndSts uint32 = 0x00000004 // ESME_RINVBNDSTS
	StatusAlyBnd    uint32 = 0x00000005 // ESME_RALYBND
	StatusSysErr    uint32 = 0x00000008 // ESME_RSYSERR
	StatusMsgQFull  uint32 = 0x00000014 // ESME_RMSGQFUL
	StatusThrottled uint32 = 0x00000058 // ESME_RTHROTTLED
	StatusXTAppn    uint32 = 0x00000064 // ESME_RX_T_APPN
	StatusXPAppn    uint32 = 0x00000065 // ESME_RX_P_APPN
	StatusInvTLVs   uint32 = 0x000000C0 // ESME_RINVTLVSTREAM
	StatusInvTLVLen uint32 = 0x000000C2 // ESME_RINVTLVLEN
)

// Classify maps a submit_sm_resp command_status to an Outcome: 0 is OK;
// ESME_RTHROTTLED, ESME_RMSGQFUL, ESME_RSYSERR and ESME_RX_T_APPN are
// Temporary, and so are ESME_RINVBNDSTS and ESME_RALYBND (the SMSC does
// not hold the session as bound: the link is closed and rebound, see
// sessionLost); everything else is Permanent.
func Classify(status uint32) Outcome {
	switch status {
	case StatusOK:
		return OK
	case StatusThrottled, StatusMsgQFull, StatusSysErr, StatusXTAppn, StatusInvBndSts, StatusAlyBnd:
		return Temporary
	}
	return Permanent
}

// sessionLost reports whether a response status says the SMSC does not
// hold the session as bound (SMPP 3.4 §5.1.3: ESME_RINVBNDSTS "Incorrect
// BIND Status for given command", ESME_RALYBND "ESME Already in Bound
// State" on a command that needs a bound session): the link must be
// rebound, whatever the TCP connection and enquire_link say.
func sessionLost(status uint32) bool {
	return status == StatusInvBndSts || status == StatusAlyBnd
}

// StatusName is the SMPP 3.4 name of a command_status ("ESME_RTHROTTLED"),
// or "0x%08X" for a value the specification does not name.
func StatusName(status uint32) string {
	s := data.CommandStatusType(status).String()
	if strings.HasPrefix(s, "ESME_") {
		return s
	}
	return fmt.Sprintf("0x%08X", status)
}

// statusLabel is StatusName restricted to a fixed set for metric labels.
func statusLabel(status uint32) string {
	s := data.CommandStatusType(status).String()
	if strings.HasPrefix(s, "ESME_") {
		return s
	}
	return "other"
}
