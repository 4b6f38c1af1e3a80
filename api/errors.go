package api

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes of API.md section 2, plus the few the project adds.
const (
	CodeInvalidRequest      = "invalid_request"
	CodeUnauthorized        = "unauthorized"
	CodeSenderNotAllowed    = "sender_not_allowed"
	CodeSenderUnregistered  = "sender_unregistered"
	CodeBodyTooLarge        = "body_too_large"
	CodeIdempotencyConflict = "idempotency_conflict"
	CodeRecipientOptedOut   = "recipient_opted_out"
	CodeContentBlocked      = "content_blocked"
	CodeMessageTooLong      = "message_too_long"
	CodeMediaUnsupported    = "media_unsupported"
	CodeMMSNotSupported     = "mms_not_supported"
	CodeQueueFull           = "queue_full"
	CodeUnavailable         = "unavailable"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeInternal            = "internal"
)

// Error is the body of every error response: {"error": Error}. It is also
// the would_block object of a dry run.
type Error struct {
	Status   int    `json:"-"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Field    string `json:"field,omitempty"`
	Category string `json:"category,omitempty"`
	Term     string `json:"term,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

type errorBody struct {
	Error *Error `json:"error"`
}

func invalid(field, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: msg, Field: field}
}

// unavailable is the answer of a submission the store did not confirm.
func unavailable() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Message: "The message store is unreachable; nothing was accepted. Retry later with the same Idempotency-Key."}
}

// storeUnavailable is the answer of a read or an admin change the store did
// not answer.
func storeUnavailable() *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
		Message: "The message store (Redis) is unreachable; nothing was read or changed. Retry later."}
}

func notFound(msg string) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: msg}
}

// writeError writes e as {"error": e} with e.Status.
func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, errorBody{Error: e})
}

// writeJSON marshals v and writes it with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"The response could not be encoded; this is a bug in smsgate."}}`)
	}
	writeRaw(w, status, b)
}

// writeRaw writes an already encoded JSON body.
func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	_, _ = w.Write(newline)
}

var newline = []byte("\n")
