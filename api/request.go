package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smsgate/smsgate/message"
)

// MaxBodyBytes is the largest accepted request body (API.md: 64 KiB).
const MaxBodyBytes = 64 << 10

// MaxClientRef is the longest accepted client_ref, in characters.
const MaxClientRef = 128

// MaxIdempotencyKey is the longest accepted Idempotency-Key header, in bytes.
const MaxIdempotencyKey = 255

// maxMedia bounds the number of attachments in one request.
const maxMedia = 10

// SendRequest is the body of POST /v1/messages and its dry run.
type SendRequest struct {
	From      string          `json:"from"`
	To        string          `json:"to"`
	Text      string          `json:"text"`
	Media     []message.Media `json:"media"`
	ClientRef string          `json:"client_ref"`
	Validity  string          `json:"validity"`
}

// requestLimits are the configured bounds a request is validated against.
type requestLimits struct {
	DefaultValidity time.Duration
	MaxValidity     time.Duration
}

// decodeRequest strictly decodes and validates a request body. It returns the
// request and the validity to apply, or a 400 invalid_request naming the field.
func decodeRequest(body []byte, lim requestLimits) (SendRequest, time.Duration, *Error) {
	var req SendRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, 0, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, 0, invalid("", "The body must be a single JSON object; remove what follows it.")
	}
	validity, e := validateRequest(&req, lim)
	return req, validity, e
}

// decodeError turns an encoding/json error into a 400 naming the field.
func decodeError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return invalid("", "The body is empty; send a JSON object with from, to and text.")
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return invalid("", "The body must be a JSON object with from, to and text.")
		}
		return invalid(field, fmt.Sprintf("Field %q must be a JSON %s, not %s.", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value))
	case errors.As(err, &syntaxErr):
		return invalid("", fmt.Sprintf("The body is not valid JSON (at byte %d): %s.", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: ")))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "The body is not valid JSON: it ends early.")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		if s, err := strconv.Unquote(name); err == nil {
			name = s
		}
		return invalid(name, fmt.Sprintf("Unknown field %q; accepted fields are from, to, text, media, client_ref and validity.", name))
	}
	return invalid("", "The body is not valid JSON: "+strings.TrimPrefix(msg, "json: ")+".")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	}
	return "number"
}

// validateRequest checks the decoded fields and resolves the validity.
func validateRequest(req *SendRequest, lim requestLimits) (time.Duration, *Error) {
	if req.From == "" {
		return 0, invalid("from", `Field "from" is required: the E.164 number to send from, e.g. "+15550001111".`)
	}
	if !ValidE164(req.From) {
		return 0, invalid("from", `Field "from" must be an E.164 number: "+" then 2 to 15 digits, no spaces, e.g. "+15550001111".`)
	}
	if req.To == "" {
		return 0, invalid("to", `Field "to" is required: the E.164 number to send to, e.g. "+15557654321".`)
	}
	if !ValidE164(req.To) {
		return 0, invalid("to", `Field "to" must be an E.164 number: "+" then 2 to 15 digits, no spaces, e.g. "+15557654321".`)
	}
	if req.Text == "" && len(req.Media) == 0 {
		return 0, invalid("text", `Field "text" is empty and there is no media: send some text or at least one attachment.`)
	}
	if len(req.Media) > maxMedia {
		return 0, invalid("media", fmt.Sprintf("At most %d media attachments are accepted per message.", maxMedia))
	}
	for i, m := range req.Media {
		if m.URL == "" {
			f := "media[" + strconv.Itoa(i) + "].url"
			return 0, invalid(f, fmt.Sprintf("Field %q is required: the https URL of the attachment.", f))
		}
		if !strings.HasPrefix(m.URL, "https://") && !strings.HasPrefix(m.URL, "http://") {
			f := "media[" + strconv.Itoa(i) + "].url"
			return 0, invalid(f, fmt.Sprintf("Field %q must be an http or https URL.", f))
		}
		if m.ContentType == "" {
			f := "media[" + strconv.Itoa(i) + "].content_type"
			return 0, invalid(f, fmt.Sprintf("Field %q is required: image/png, image/jpeg or application/pdf.", f))
		}
		if m.Size < 0 {
			f := "media[" + strconv.Itoa(i) + "].size"
			return 0, invalid(f, fmt.Sprintf("Field %q must not be negative.", f))
		}
	}
	if utf8.RuneCountInString(req.ClientRef) > MaxClientRef {
		return 0, invalid("client_ref", fmt.Sprintf(`Field "client_ref" is longer than %d characters; shorten it.`, MaxClientRef))
	}
	validity := lim.DefaultValidity
	if req.Validity != "" {
		d, err := time.ParseDuration(req.Validity)
		if err != nil || d <= 0 {
			return 0, invalid("validity", `Field "validity" must be a positive duration such as "30m" or "4h".`)
		}
		if lim.MaxValidity > 0 && d > lim.MaxValidity {
			return 0, invalid("validity", fmt.Sprintf(`Field "validity" is longer than the maximum of %s; ask for at most that.`, lim.MaxValidity))
		}
		validity = d
	}
	return validity, nil
}

// ValidE164 reports whether s is "+" followed by 2 to 15 digits, the first not 0.
func ValidE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
