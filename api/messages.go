package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/smsgate/smsgate/compliance"
	"github.com/smsgate/smsgate/message"
	"github.com/smsgate/smsgate/queue"
)

// Response is the 202 body of POST /v1/messages. Its marshalled form is
// stored with the Idempotency-Key and replayed byte for byte.
type Response struct {
	ID         string           `json:"id"`
	Status     message.Status   `json:"status"`
	From       string           `json:"from"`
	To         string           `json:"to"`
	ClientRef  string           `json:"client_ref"`
	Encoding   message.Encoding `json:"encoding"`
	Segments   int              `json:"segments"`
	Characters int              `json:"characters"`
	Warnings   []Warning        `json:"warnings"`
	CreatedAt  time.Time        `json:"created_at"`
}

// Warning is a content warning on an accepted message.
type Warning struct {
	Code     string `json:"code"`
	Category string `json:"category"`
	Message  string `json:"message"`
}

// DryRunResponse is the 200 body of POST /v1/messages/dry-run.
type DryRunResponse struct {
	Encoding   message.Encoding `json:"encoding"`
	Segments   int              `json:"segments"`
	Characters int              `json:"characters"`
	Warnings   []Warning        `json:"warnings"`
	WouldBlock *Error           `json:"would_block"`
}

// MessageView is the body of GET /v1/messages/{id}.
type MessageView struct {
	ID                string                 `json:"id"`
	Status            message.Status         `json:"status"`
	Kind              message.Kind           `json:"kind"`
	From              string                 `json:"from"`
	To                string                 `json:"to"`
	Text              string                 `json:"text"`
	Media             []message.Media        `json:"media,omitempty"`
	ClientRef         string                 `json:"client_ref"`
	Encoding          message.Encoding       `json:"encoding"`
	Segments          int                    `json:"segments"`
	Characters        int                    `json:"characters"`
	CreatedAt         time.Time              `json:"created_at"`
	ExpiresAt         time.Time              `json:"expires_at"`
	History           []message.HistoryEntry `json:"history"`
	CarrierMessageIDs []string               `json:"carrier_message_ids"`
	// PossibleDuplicate: an earlier attempt may have reached the carrier, so
	// the recipient may get the message twice.
	PossibleDuplicate bool `json:"possible_duplicate"`
}

// prepared is a validated, screened submission.
type prepared struct {
	req      SendRequest
	validity time.Duration
	sender   *numberEntry
	verdict  compliance.Verdict
	info     message.TextInfo
}

// authOrg authenticates the bearer API key.
func (st *State) authOrg(r *http.Request) (*orgEntry, *Error) {
	key, ok := bearer(r)
	if !ok {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
			Message: "Missing API key: send the header \"Authorization: Bearer <api key>\"."}
	}
	oe := st.authenticate(key)
	if oe == nil {
		return nil, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
			Message: "The API key is not valid; check it, or ask your administrator for a key of your organisation."}
	}
	return oe, nil
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(h[7:])
	return tok, tok != ""
}

// prepare decodes, validates, checks sender ownership and runs compliance.
// A non-nil *Error is a request error (400/403), not a compliance refusal.
func (s *Server) prepare(st *State, oe *orgEntry, body []byte) (prepared, *Error) {
	var p prepared
	req, validity, e := decodeRequest(body, st.limits)
	if e != nil {
		return p, e
	}
	p.req, p.validity = req, validity
	ne := st.numbers[req.From]
	if ne == nil || ne.org != oe {
		return p, &Error{Status: http.StatusForbidden, Code: CodeSenderNotAllowed, Field: "from",
			Message: fmt.Sprintf("%s is not one of the numbers of organisation %q; send from one of its numbers (your operator can list them).", req.From, oe.org.ID)}
	}
	p.sender = ne
	p.verdict = compliance.Check(compliance.Outbound{
		Sender: compliance.Sender{
			E164:       ne.num.E164,
			Kind:       ne.num.Kind,
			Registered: ne.num.Registered,
			MMS:        ne.num.MMSCapable(),
		},
		OrgScreening:  oe.org.Screening,
		Text:          req.Text,
		Media:         req.Media,
		MaxMediaBytes: st.cfg.MMS.MaxBytes,
	}, st.rules)
	p.info = p.verdict.Info
	if p.info.Segments < 1 {
		p.info.Segments = 1 // a media-only message still occupies one send slot
	}
	return p, nil
}

// refusalError maps a compliance refusal to its API error.
func refusalError(r *compliance.Refusal) *Error {
	status := r.Status
	if status == 0 {
		status = statusOfCode(r.Code)
	}
	return &Error{Status: status, Code: r.Code, Message: r.Message, Field: r.Field, Category: r.Category, Term: r.Term}
}

func statusOfCode(code string) int {
	switch code {
	case CodeSenderUnregistered, CodeSenderNotAllowed:
		return http.StatusForbidden
	case CodeInvalidRequest:
		return http.StatusBadRequest
	}
	return http.StatusUnprocessableEntity
}

func warnings(ws []compliance.Warning) []Warning {
	out := make([]Warning, len(ws))
	for i, w := range ws {
		out[i] = Warning{Code: w.Code, Category: w.Category, Message: w.Message}
	}
	return out
}

// refuse writes an error of the send route and counts it.
func (s *Server) refuse(w http.ResponseWriter, e *Error) {
	s.metrics.refused.WithLabelValues(e.Code).Inc()
	fail(w, e)
}

// fail writes an error response.
func fail(w http.ResponseWriter, e *Error) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="smsgate"`)
	}
	writeError(w, e)
}

func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	oe, e := st.authOrg(r)
	if e != nil {
		s.refuse(w, e)
		return
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if len(idemKey) > MaxIdempotencyKey {
		s.refuse(w, invalid("Idempotency-Key", fmt.Sprintf("The Idempotency-Key header is longer than %d bytes; use a shorter key such as a UUID.", MaxIdempotencyKey)))
		return
	}
	body, release, e := s.readBody(w, r)
	if e != nil {
		s.refuse(w, e)
		return
	}
	defer release()
	p, e := s.prepare(st, oe, body)
	if e == nil && p.verdict.Refusal != nil {
		e = refusalError(p.verdict.Refusal)
	}
	if e != nil {
		// A request whose first attempt was accepted gets that response
		// even when it would now be refused (the number was unregistered,
		// a category blocked since): the client must learn it was queued.
		if idemKey != "" && s.replay(w, r, oe.org.ID, idemKey, body) {
			return
		}
		s.refuse(w, e)
		return
	}

	now := s.now().UTC()
	msg := &message.Message{
		ID:         s.queue.NewMessageID(p.req.From),
		OrgID:      oe.org.ID,
		From:       p.req.From,
		To:         p.req.To,
		Text:       p.req.Text,
		Media:      p.req.Media,
		ClientRef:  p.req.ClientRef,
		Kind:       message.KindUser,
		Encoding:   p.info.Encoding,
		Segments:   p.info.Segments,
		Characters: p.info.Characters,
		CreatedAt:  now,
		ExpiresAt:  now.Add(p.validity),
	}
	resp := Response{
		ID:         msg.ID,
		Status:     message.StatusQueued,
		From:       msg.From,
		To:         msg.To,
		ClientRef:  msg.ClientRef,
		Encoding:   msg.Encoding,
		Segments:   msg.Segments,
		Characters: msg.Characters,
		Warnings:   warnings(p.verdict.Warnings),
		CreatedAt:  now,
	}
	respJSON, err := marshal(resp)
	if err != nil {
		s.log.Error("encode response", "err", err)
		s.refuse(w, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "The response could not be encoded; this is a bug in smsgate."})
		return
	}
	req := queue.EnqueueRequest{
		Msg:          msg,
		Interval:     p.sender.interval,
		MaxDepth:     st.maxPer,
		Response:     respJSON,
		Notice:       s.notice(oe, msg),
		CheckOptOut:  true,
		StatusEvents: oe.statusEvents,
	}
	// Storing is bounded so the client gets its answer: with Redis stalled
	// it is a 503 by the deadline, and the queue makes sure a call that runs
	// after it stores nothing, so a 503 still means nothing was accepted.
	req.Deadline = time.Now().Add(s.acceptTimeout)
	ctx, cancel := context.WithDeadline(r.Context(), req.Deadline)
	defer cancel()
	if idemKey != "" {
		// Enqueue deduplicates the key within the sender's queue; this binds
		// it org-wide, so reusing it from another number is a conflict.
		if err := s.queue.BindIdempotencyKey(ctx, oe.org.ID, idemKey, msg.From); err != nil {
			s.refuse(w, s.enqueueError(err, st.maxPer))
			return
		}
		req.IdempotencyKey = idemKey
		req.RequestHash = hashBody(body)
	}
	res, err := s.queue.Enqueue(ctx, req)
	if err != nil {
		s.refuse(w, s.enqueueError(err, st.maxPer))
		return
	}
	if res.Replayed {
		s.metrics.replayed.Inc()
		writeRaw(w, http.StatusAccepted, res.Response)
		return
	}
	s.metrics.accepted.WithLabelValues(string(msg.Encoding)).Inc()
	for _, wn := range resp.Warnings {
		s.metrics.warnings.WithLabelValues(wn.Category).Inc()
	}
	writeRaw(w, http.StatusAccepted, respJSON)
}

// replay writes the response stored for the org's Idempotency-Key when its
// first request had this body, and reports whether it did. A failure to
// look is logged and reported as not found: the caller refuses the request
// as it would have.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, org, key string, body []byte) bool {
	ctx, cancel := context.WithTimeout(r.Context(), s.acceptTimeout)
	defer cancel()
	resp, found, err := s.queue.Replay(ctx, org, key, hashBody(body))
	if err != nil {
		s.log.Warn("idempotency replay lookup failed; refusing the request", "err", err)
		return false
	}
	if !found {
		return false
	}
	s.metrics.replayed.Inc()
	writeRaw(w, http.StatusAccepted, resp)
	return true
}

// notice builds the sender-identification notice for msg's conversation;
// the queue pushes it only if the conversation never started.
func (s *Server) notice(oe *orgEntry, msg *message.Message) *message.Message {
	return &message.Message{
		ID:         s.queue.NewMessageID(msg.From),
		OrgID:      msg.OrgID,
		From:       msg.From,
		To:         msg.To,
		Text:       oe.notice,
		Kind:       message.KindNotice,
		Encoding:   oe.noticeInfo.Encoding,
		Segments:   oe.noticeInfo.Segments,
		Characters: oe.noticeInfo.Characters,
		CreatedAt:  msg.CreatedAt,
		ExpiresAt:  msg.ExpiresAt,
	}
}

// enqueueError maps a queue error to its API error.
func (s *Server) enqueueError(err error, maxDepth int) *Error {
	switch {
	case errors.Is(err, queue.ErrQueueFull):
		return &Error{Status: http.StatusTooManyRequests, Code: CodeQueueFull,
			Message: fmt.Sprintf("The queue of this sender number is full (%d messages waiting); retry later, or spread traffic over more numbers.", maxDepth)}
	case errors.Is(err, queue.ErrOptedOut):
		return optedOut()
	case errors.Is(err, queue.ErrIdempotencyConflict):
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeIdempotencyConflict, Field: "Idempotency-Key",
			Message: "This Idempotency-Key was used in the last 24 hours with a different body; use a new key for a different message."}
	}
	s.log.Warn("enqueue failed", "err", err)
	return unavailable()
}

func optedOut() *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeRecipientOptedOut, Field: "to",
		Message: "The recipient has opted out of messages from this number (replied STOP); they can opt back in by texting START."}
}

func (s *Server) handleDryRun(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	oe, e := st.authOrg(r)
	if e != nil {
		fail(w, e)
		return
	}
	body, release, e := s.readBody(w, r)
	if e != nil {
		fail(w, e)
		return
	}
	defer release()
	p, e := s.prepare(st, oe, body)
	if e != nil {
		fail(w, e)
		return
	}
	out := DryRunResponse{
		Encoding:   p.info.Encoding,
		Segments:   p.info.Segments,
		Characters: p.info.Characters,
		Warnings:   warnings(p.verdict.Warnings),
	}
	if ref := p.verdict.Refusal; ref != nil {
		out.WouldBlock = refusalError(ref)
	} else {
		// queue_full is not evaluated: depth changes by the millisecond.
		opted, err := s.queue.IsOptedOut(r.Context(), p.req.From, p.req.To)
		if err != nil {
			s.log.Warn("opt-out lookup failed", "err", err)
			fail(w, storeUnavailable())
			return
		}
		if opted {
			out.WouldBlock = optedOut()
		}
	}
	s.metrics.dryRuns.Inc()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	st := s.state.Load()
	oe, e := st.authOrg(r)
	if e != nil {
		fail(w, e)
		return
	}
	id := r.PathValue("id")
	missing := notFound(fmt.Sprintf("No message %q in your organisation; check the id returned by POST /v1/messages.", id))
	if !strings.HasPrefix(id, "msg_") || len(id) > 64 {
		writeError(w, missing)
		return
	}
	rec, err := s.queue.Get(r.Context(), id)
	if errors.Is(err, queue.ErrNotFound) || (err == nil && (rec == nil || rec.Msg.OrgID != oe.org.ID)) {
		writeError(w, missing)
		return
	}
	if err != nil {
		s.log.Warn("get message failed", "err", err)
		writeError(w, storeUnavailable())
		return
	}
	m := rec.Msg
	v := MessageView{
		ID: m.ID, Status: rec.Status, Kind: m.Kind, From: m.From, To: m.To, Text: m.Text,
		Media: m.Media, ClientRef: m.ClientRef, Encoding: m.Encoding, Segments: m.Segments,
		Characters: m.Characters, CreatedAt: m.CreatedAt, ExpiresAt: m.ExpiresAt,
		History: rec.History, CarrierMessageIDs: rec.CarrierMessageIDs,
		PossibleDuplicate: rec.PossibleDuplicate,
	}
	if v.History == nil {
		v.History = []message.HistoryEntry{}
	}
	if v.CarrierMessageIDs == nil {
		v.CarrierMessageIDs = []string{}
	}
	writeJSON(w, http.StatusOK, v)
}

// readyTimeout bounds one readiness probe.
const readyTimeout = 2 * time.Second

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	if s.notReady.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "shutting down"})
		return
	}
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// marshal encodes v as JSON.
func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("api: encode: %w", err)
	}
	return b, nil
}

// hashBody is the lowercase hex SHA-256 of a raw request body.
func hashBody(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
