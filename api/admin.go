package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/smsgate/smsgate/config"
)

// admin wraps an admin handler: 404 when admin is not configured, 401
// unless the bearer token hashes to [admin] token_sha256.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		st := s.state.Load()
		if st.admin == nil {
			writeError(w, notFound("Admin endpoints are disabled: set [admin] token_sha256 in the config to enable them."))
			return
		}
		tok, ok := bearer(r)
		if !ok || !st.adminOK(tok) {
			fail(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "Admin endpoints need \"Authorization: Bearer <admin token>\" with the token whose SHA-256 is [admin] token_sha256."})
			return
		}
		h(w, r)
	}
}

// Problem is one configuration error reported by a failed reload.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

type reloadFailure struct {
	Error struct {
		Code     string    `json:"code"`
		Message  string    `json:"message"`
		Problems []Problem `json:"problems"`
	} `json:"error"`
}

func (s *Server) handleReload(w http.ResponseWriter, r *http.Request) {
	if s.reload == nil {
		writeError(w, notFound("Reload is not available in this process."))
		return
	}
	err := s.reload(r.Context())
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	var out reloadFailure
	out.Error.Code = "invalid_config"
	var ve *config.ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			out.Error.Problems = append(out.Error.Problems, Problem{Path: p.Path, Message: p.Message})
		}
	}
	if len(out.Error.Problems) == 0 {
		out.Error.Problems = []Problem{{Message: err.Error()}}
	}
	out.Error.Message = fmt.Sprintf("The configuration was not reloaded (%d problem(s)); the previous one stays in force. Fix the problems and reload again.", len(out.Error.Problems))
	s.log.Warn("reload refused", "err", err)
	writeJSON(w, http.StatusUnprocessableEntity, out)
}

// NumberView is one sender number in the admin listing.
type NumberView struct {
	E164       string  `json:"e164"`
	Org        string  `json:"org"`
	Kind       string  `json:"kind"`
	Registered bool    `json:"registered"`
	MMS        bool    `json:"mms"`
	Rate       float64 `json:"rate"`
	Carrier    string  `json:"carrier"`
	Fallback   string  `json:"fallback,omitempty"`
}

func numberView(ne *numberEntry) NumberView {
	return NumberView{
		E164: ne.num.E164, Org: ne.org.org.ID, Kind: ne.num.Kind, Registered: ne.num.Registered,
		MMS: ne.num.MMSCapable(), Rate: ne.num.EffectiveRate(), Carrier: ne.carrier, Fallback: ne.fallback,
	}
}

func (s *Server) handleNumbers(w http.ResponseWriter, r *http.Request) {
	nums := s.state.Load().sortedNumbers()
	out := make([]NumberView, len(nums))
	for i, ne := range nums {
		out[i] = numberView(ne)
	}
	writeJSON(w, http.StatusOK, map[string][]NumberView{"numbers": out})
}

func (s *Server) handleNumber(w http.ResponseWriter, r *http.Request) {
	e164 := r.PathValue("e164")
	ne := s.state.Load().numbers[e164]
	if ne == nil {
		writeError(w, notFound(fmt.Sprintf("%q is not a number in the configuration (URL-encode + as %%2B if it was lost).", e164)))
		return
	}
	writeJSON(w, http.StatusOK, numberView(ne))
}

// OptOutList is the body of GET /admin/opt-outs.
type OptOutList struct {
	From     string   `json:"from"`
	OptedOut []string `json:"opted_out"`
}

// OptOutState is the body answered by POST and DELETE /admin/opt-outs.
type OptOutState struct {
	From     string `json:"from"`
	To       string `json:"to"`
	OptedOut bool   `json:"opted_out"`
}

func e164Param(field, v string) *Error {
	if v == "" {
		return invalid(field, fmt.Sprintf("Parameter %q is required: an E.164 number such as +15550001111 (URL-encode + as %%2B).", field))
	}
	if !ValidE164(v) {
		return invalid(field, fmt.Sprintf("Parameter %q must be an E.164 number such as +15550001111 (URL-encode + as %%2B).", field))
	}
	return nil
}

func (s *Server) handleOptOuts(w http.ResponseWriter, r *http.Request) {
	from := r.URL.Query().Get("from")
	if e := e164Param("from", from); e != nil {
		writeError(w, e)
		return
	}
	list, err := s.queue.OptOuts(r.Context(), from)
	if err != nil {
		s.log.Warn("list opt-outs failed", "err", err)
		writeError(w, storeUnavailable())
		return
	}
	if list == nil {
		list = []string{}
	}
	writeJSON(w, http.StatusOK, OptOutList{From: from, OptedOut: list})
}

func (s *Server) handleOptOutAdd(w http.ResponseWriter, r *http.Request) {
	var in struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4096))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge, Message: "The body is over 4096 bytes; send only {\"from\": ..., \"to\": ...}."})
			return
		}
		writeError(w, invalid("", "The request body could not be read: "+err.Error()+"."))
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeError(w, decodeError(err))
		return
	}
	for _, f := range []struct{ name, v string }{{"from", in.From}, {"to", in.To}} {
		if e := e164Param(f.name, f.v); e != nil {
			writeError(w, e)
			return
		}
	}
	// Only a configured number can be opted out of: a typo would otherwise
	// record an opt-out nobody looks at. (Removing one stays possible for a
	// number no longer configured.)
	if s.state.Load().numbers[in.From] == nil {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Field: "from",
			Message: fmt.Sprintf("%q is not a number in the configuration; opt-outs are recorded for the org's own numbers.", in.From)})
		return
	}
	if err := s.queue.OptOut(r.Context(), in.From, in.To); err != nil {
		s.log.Warn("add opt-out failed", "err", err)
		writeError(w, storeUnavailable())
		return
	}
	s.log.Info("opt-out added by admin")
	writeJSON(w, http.StatusOK, OptOutState{From: in.From, To: in.To, OptedOut: true})
}

func (s *Server) handleOptOutRemove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, to := q.Get("from"), q.Get("to")
	for _, f := range []struct{ name, v string }{{"from", from}, {"to", to}} {
		if e := e164Param(f.name, f.v); e != nil {
			writeError(w, e)
			return
		}
	}
	if err := s.queue.OptIn(r.Context(), from, to); err != nil {
		s.log.Warn("remove opt-out failed", "err", err)
		writeError(w, storeUnavailable())
		return
	}
	s.log.Info("opt-out removed by admin")
	writeJSON(w, http.StatusOK, OptOutState{From: from, To: to, OptedOut: false})
}

// Dead-letter listing bounds.
const (
	defaultDeadLetterLimit = 100
	maxDeadLetterLimit     = 1000
)

func (s *Server) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	if s.dead == nil {
		writeError(w, notFound("Webhook dead letters are not available in this process."))
		return
	}
	limit := defaultDeadLetterLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetterLimit {
			writeError(w, invalid("limit", fmt.Sprintf("Parameter \"limit\" must be a whole number from 1 to %d.", maxDeadLetterLimit)))
			return
		}
		limit = n
	}
	list, err := s.dead.DeadLetters(r.Context(), limit)
	if err != nil {
		s.log.Warn("list dead letters failed", "err", err)
		writeError(w, storeUnavailable())
		return
	}
	if list == nil {
		list = []DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string][]DeadLetter{"dead_letters": list})
}

func (s *Server) handleRedeliver(w http.ResponseWriter, r *http.Request) {
	if s.dead == nil {
		writeError(w, notFound("Webhook dead letters are not available in this process."))
		return
	}
	id := r.PathValue("event_id")
	err := s.dead.Redeliver(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, notFound(fmt.Sprintf("No dead letter with event id %q; list them with GET /admin/dead-letters.", id)))
	case err != nil:
		s.log.Warn("redeliver failed", "err", err)
		writeError(w, storeUnavailable())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "event_id": id})
	}
}

func (s *Server) handleQueues(w http.ResponseWriter, r *http.Request) {
	if s.stats == nil {
		writeError(w, notFound("Queue statistics are not available in this process."))
		return
	}
	v, err := s.stats(r.Context())
	if err != nil {
		s.log.Warn("queue statistics failed", "err", err)
		writeError(w, storeUnavailable())
		return
	}
	writeJSON(w, http.StatusOK, v)
}
