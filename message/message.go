// Package message holds smsgate's domain types: messages, their statuses and
// the events emitted when they change, plus text encoding and segmentation.
package message

import "time"

// Status is where a message stands in its life. See API.md "Message statuses".
type Status string

// Message statuses.
const (
	StatusQueued      Status = "queued"
	StatusSent        Status = "sent"
	StatusDelivered   Status = "delivered"
	StatusUndelivered Status = "undelivered"
	StatusFailed      Status = "failed"
	StatusExpired     Status = "expired"
)

// Final reports whether no further status change is expected.
func (s Status) Final() bool {
	switch s {
	case StatusDelivered, StatusUndelivered, StatusFailed, StatusExpired:
		return true
	}
	return false
}

// Encoding is the alphabet a text is sent in.
type Encoding string

// Encodings.
const (
	EncodingGSM7 Encoding = "gsm7"
	EncodingUCS2 Encoding = "ucs2"
)

// Kind says who wrote a message: the org's app, or the daemon itself.
type Kind string

// Message kinds. System messages (notice, reply) bypass the opt-out check.
const (
	KindUser   Kind = "user"   // submitted through the API
	KindNotice Kind = "notice" // sender identification notice (API.md 4.2)
	KindReply  Kind = "reply"  // keyword confirmation or help text (API.md 4.3)
)

// Media is one MMS attachment as declared by the submitter.
type Media struct {
	URL         string `json:"url"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size,omitempty"`
}

// Message is one outbound message as stored in the queue.
type Message struct {
	ID         string    `json:"id"`
	OrgID      string    `json:"org_id"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Text       string    `json:"text"`
	Media      []Media   `json:"media,omitempty"`
	ClientRef  string    `json:"client_ref,omitempty"`
	Kind       Kind      `json:"kind"`
	Encoding   Encoding  `json:"encoding"`
	Segments   int       `json:"segments"`
	Characters int       `json:"characters"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Error is a machine-readable code with a sentence a person can act on.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// HistoryEntry is one status change of a message.
type HistoryEntry struct {
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	Error  *Error    `json:"error,omitempty"`
}

// Event types delivered to the webhook (API.md section 3).
const (
	EventReceived = "message.received"
	EventStatus   = "message.status"
)

// StatusData is the data of a message.status event.
type StatusData struct {
	ID                string `json:"id"`
	Status            Status `json:"status"`
	ClientRef         string `json:"client_ref"`
	CarrierMessageID  string `json:"carrier_message_id"`
	Error             *Error `json:"error,omitempty"`
	PossibleDuplicate bool   `json:"possible_duplicate,omitempty"`
	// Kind is set for a message the daemon sent on its own, which the app
	// never submitted: "notice" (sender identification) or "reply" (keyword
	// confirmation or help text). Absent for the app's own messages.
	Kind Kind `json:"kind,omitempty"`
}

// ReceivedData is the data of a message.received event.
type ReceivedData struct {
	ID             string    `json:"id"`
	From           string    `json:"from"`
	To             string    `json:"to"`
	Text           string    `json:"text"`
	Segments       int       `json:"segments"`
	ReceivedAt     time.Time `json:"received_at"`
	Keyword        *string   `json:"keyword"`
	PossibleOptOut bool      `json:"possible_opt_out"`
}
