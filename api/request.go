package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
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

// sendFields and mediaFields are the accepted JSON field names of a request
// and of one of its media entries, exactly as they must be written.
var (
	sendFields  = [...]string{"from", "to", "text", "media", "client_ref", "validity"}
	mediaFields = [...]string{"url", "content_type", "size"}
)

const (
	sendFieldList  = "from, to, text, media, client_ref and validity"
	mediaFieldList = "url, content_type and size"
)

// decodeRequest strictly decodes and validates a request body. It returns the
// request and the validity to apply, or a 400 invalid_request naming the field.
//
// encoding/json alone is lenient where the API must not be: it matches field
// names case-insensitively, keeps the last of duplicate fields, and replaces
// invalid UTF-8 (and lone surrogate escapes) with U+FFFD. So one scan of the
// body (scanBody) first checks the syntax, the exact field names of the
// request and of its media entries, duplicates and UTF-8; json.Unmarshal then
// only fills the struct and reports type errors.
func decodeRequest(body []byte, lim requestLimits) (SendRequest, time.Duration, *Error) {
	var req SendRequest
	if e := scanBody(body); e != nil {
		if e != errSyntax {
			return req, 0, e
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return req, 0, decodeError(err)
		}
		return req, 0, invalid("", "The body is not valid JSON.") // not reached: scanBody is as strict as encoding/json
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && (typeErr.Field == "media" || strings.HasPrefix(typeErr.Field, "media.")) {
			return req, 0, mediaTypeError(body, typeErr)
		}
		return req, 0, decodeError(err)
	}
	validity, e := validateRequest(&req, lim)
	return req, validity, e
}

// mediaTypeError names the media entry of a type error: encoding/json says
// "media.size" where the API says "media[2].size". It decodes the entries one
// by one to find the first that fails (error path only).
func mediaTypeError(body []byte, typeErr *json.UnmarshalTypeError) *Error {
	var raw struct {
		Media []json.RawMessage `json:"media"`
	}
	if json.Unmarshal(body, &raw) == nil {
		for i, m := range raw.Media {
			var media message.Media
			var te *json.UnmarshalTypeError
			if err := json.Unmarshal(m, &media); errors.As(err, &te) {
				if te.Field == "" {
					f := "media[" + strconv.Itoa(i) + "]"
					return invalid(f, fmt.Sprintf("Field %q must be a JSON object with url and content_type, not %s.", f, te.Value))
				}
				return typeError("media["+strconv.Itoa(i)+"]."+te.Field, te)
			}
		}
	}
	return decodeError(typeErr)
}

// decodeError turns an encoding/json error into a 400 naming the field.
func decodeError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return invalid("", "The body is empty; send a JSON object with from, to and text.")
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return invalid("", "The body must be a JSON object with from, to and text.")
		}
		return typeError(typeErr.Field, typeErr)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &syntaxErr) && syntaxErr.Error() == "unexpected end of JSON input":
		return invalid("", "The body is not valid JSON: it ends early.")
	case errors.As(err, &syntaxErr):
		return invalid("", fmt.Sprintf("The body is not valid JSON (at byte %d): %s.", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: ")))
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		if s, err := strconv.Unquote(name); err == nil {
			name = s
		}
		return invalid(name, fmt.Sprintf("Unknown field %q; remove it.", name))
	}
	return invalid("", "The body is not valid JSON: "+strings.TrimPrefix(msg, "json: ")+".")
}

// typeError is the 400 for a JSON value of the wrong type in field.
func typeError(field string, typeErr *json.UnmarshalTypeError) *Error {
	if typeErr.Type == nil {
		return invalid(field, fmt.Sprintf("Field %q has the wrong type (%s).", field, typeErr.Value))
	}
	switch typeErr.Type.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n, ok := strings.CutPrefix(typeErr.Value, "number "); ok && strings.Trim(n, "-0123456789") == "" {
			return invalid(field, fmt.Sprintf("Field %q is out of range: %s does not fit in a 64-bit integer.", field, n))
		}
		return invalid(field, fmt.Sprintf("Field %q must be a whole number (digits only, e.g. 52000), not %s.", field, typeErr.Value))
	}
	return invalid(field, fmt.Sprintf("Field %q must be a JSON %s, not %s.", field, jsonKind(typeErr.Type.Kind()), typeErr.Value))
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Bool:
		return "boolean"
	}
	return "number"
}

// errSyntax is scanBody's answer for a body that is not valid JSON: the
// caller lets encoding/json describe the problem. It is never sent.
var errSyntax = &Error{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: "syntax"}

// maxDepth is encoding/json's nesting limit; scanBody leaves deeper bodies to
// it (it refuses them).
const maxDepth = 10000

// bodyScan is one pass over a request body (see decodeRequest). It checks
// the complete JSON syntax, but names only what encoding/json would get wrong:
// on a syntax error it stops with errSyntax. Where it is decides the field
// a UTF-8 error names: top indexes sendFields (-1: none), elem is the media
// entry and sub indexes mediaFields.
type bodyScan struct {
	b     []byte
	i     int
	depth int
	top   int
	elem  int
	sub   int
}

// scanBody checks body; nil means that json.Unmarshal into a SendRequest
// sees every field name exactly as written, once, and only valid UTF-8.
func scanBody(body []byte) *Error {
	s := bodyScan{b: body, top: -1, elem: -1, sub: -1}
	s.ws()
	if s.i == len(s.b) {
		return invalid("", "The body is empty; send a JSON object with from, to and text.")
	}
	var e *Error
	if s.b[s.i] == '{' {
		e = s.object(sendFields[:], sendFieldList)
	} else {
		e = s.value()
	}
	if e != nil {
		return e
	}
	s.ws()
	if s.i != len(s.b) {
		return invalid("", "The body must be a single JSON object; remove what follows it.")
	}
	return nil
}

func (s *bodyScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// expect consumes c (after white space) or fails.
func (s *bodyScan) expect(c byte) *Error {
	s.ws()
	if s.i == len(s.b) || s.b[s.i] != c {
		return errSyntax
	}
	s.i++
	return nil
}

// object scans the object at s.i. With fields (the request, or a media entry
// when s.elem >= 0) each name must be one of them, once; without, any name.
func (s *bodyScan) object(fields []string, list string) *Error {
	if empty, e := s.enter('}'); e != nil || empty {
		return e
	}
	var seen uint
	for {
		if s.i == len(s.b) || s.b[s.i] != '"' {
			return errSyntax
		}
		start := s.i
		escaped, e := s.str()
		if e != nil {
			return e
		}
		if fields != nil {
			name := s.b[start+1 : s.i-1]
			if escaped { // rare: "fr\u006fm" is "from"
				var n string
				if json.Unmarshal(s.b[start:s.i], &n) != nil {
					return errSyntax // not reached: str checked the string
				}
				name = []byte(n)
			}
			k := fieldIndex(fields, name)
			if k < 0 || seen&(1<<k) != 0 {
				return s.nameError(fields, list, string(name), k)
			}
			seen |= 1 << k
			if s.elem >= 0 {
				s.sub = k
			} else {
				s.top = k
			}
		}
		if e := s.expect(':'); e != nil {
			return e
		}
		s.ws()
		if fields != nil && s.elem < 0 && fields[s.top] == "media" && s.i < len(s.b) && s.b[s.i] == '[' {
			e = s.array(true)
		} else {
			e = s.value()
		}
		if e != nil {
			return e
		}
		if fields != nil {
			if s.elem >= 0 {
				s.sub = -1
			} else {
				s.top = -1
			}
		}
		if end, e := s.after('}'); e != nil || end {
			return e
		}
	}
}

// after scans what follows a member or element of an object or array
// closed by close: a comma (end false, white space after it skipped) or
// close itself (end true, the container's depth left).
// enter steps into the object or array whose opening is at s.i, one level
// deeper; empty reports that it closed at once (with close) and was left.
func (s *bodyScan) enter(close byte) (empty bool, e *Error) {
	if s.depth++; s.depth > maxDepth {
		return false, errSyntax
	}
	s.i++ // '{' or '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == close {
		s.i++
		s.depth--
		return true, nil
	}
	return false, nil
}

func (s *bodyScan) after(close byte) (end bool, e *Error) {
	s.ws()
	if s.i == len(s.b) {
		return false, errSyntax
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		s.ws()
		return false, nil
	case close:
		s.i++
		s.depth--
		return true, nil
	}
	return false, errSyntax
}

func fieldIndex(fields []string, name []byte) int {
	for k, f := range fields {
		if f == string(name) {
			return k
		}
	}
	return -1
}

// nameError is the 400 for an object member called name: unknown when
// k < 0, else a duplicate of fields[k].
func (s *bodyScan) nameError(fields []string, list, name string, k int) *Error {
	where, field := "", name
	if s.elem >= 0 {
		where = "media[" + strconv.Itoa(s.elem) + "]"
		field = where + "." + name
	}
	if k >= 0 {
		return invalid(field, fmt.Sprintf("Field %q appears twice; send each field once.", field))
	}
	msg := fmt.Sprintf("Unknown field %q; accepted fields are %s.", name, list)
	if where != "" {
		msg = fmt.Sprintf("Unknown field %q in %s; accepted fields of a media entry are %s.", name, where, list)
	}
	for _, f := range fields {
		if strings.EqualFold(f, name) {
			msg += fmt.Sprintf(" Field names are case-sensitive: write %q.", f)
			break
		}
	}
	return invalid(field, msg)
}

// value scans any JSON value at s.i (white space already skipped).
func (s *bodyScan) value() *Error {
	if s.i == len(s.b) {
		return errSyntax
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(nil, "")
	case c == '[':
		return s.array(false)
	case c == '"':
		_, e := s.str()
		return e
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return errSyntax
}

// array scans the array at s.i: any array, or with media the value of the
// request's "media", whose elements are media entries (s.elem says which).
func (s *bodyScan) array(media bool) *Error {
	if empty, e := s.enter(']'); e != nil || empty {
		return e
	}
	for n := 0; ; n++ {
		var e *Error
		if media {
			s.elem = n
			if s.i < len(s.b) && s.b[s.i] == '{' {
				e = s.object(mediaFields[:], mediaFieldList)
			} else {
				e = s.value()
			}
		} else {
			e = s.value()
		}
		if e != nil {
			return e
		}
		if media {
			s.elem = -1
		}
		if end, e := s.after(']'); e != nil || end {
			return e
		}
	}
}

func (s *bodyScan) literal(lit string) *Error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return errSyntax
	}
	s.i += len(lit)
	return nil
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *bodyScan) number() *Error {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return errSyntax
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return errSyntax
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return errSyntax
		}
	}
	return nil
}

func (s *bodyScan) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// plain marks the bytes a JSON string holds as they are: printable ASCII
// other than the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str scans the string at s.i, checking its UTF-8 and its \u escapes, and
// reports whether it holds escapes.
func (s *bodyScan) str() (escaped bool, e *Error) {
	s.i++ // '"'
	for {
		for s.i < len(s.b) && plain[s.b[s.i]] {
			s.i++
		}
		if s.i == len(s.b) {
			return escaped, errSyntax
		}
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return escaped, nil
		case c == '\\':
			escaped = true
			if e := s.escape(); e != nil {
				return escaped, e
			}
		case c < 0x20:
			return escaped, errSyntax
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n == 1 {
				return escaped, s.encodingError(fmt.Sprintf("The body is not valid UTF-8 (byte 0x%02x at offset %d%s); send it UTF-8 encoded.", c, s.i, s.inField()))
			}
			s.i += n
		}
	}
}

// escape scans the escape sequence at s.i. A \u escape of half a UTF-16
// surrogate pair must be followed by the other half: encoding/json would
// make a lone half U+FFFD.
func (s *bodyScan) escape() *Error {
	start := s.i
	s.i++ // '\\'
	if s.i == len(s.b) {
		return errSyntax
	}
	switch s.b[s.i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i++
		return nil
	case 'u':
	default:
		return errSyntax
	}
	r, ok := s.hex4()
	if !ok {
		return errSyntax
	}
	if r < 0xd800 || r >= 0xe000 {
		return nil
	}
	if r < 0xdc00 && s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
		s.i++
		r2, ok := s.hex4()
		if !ok {
			return errSyntax
		}
		if r2 >= 0xdc00 && r2 < 0xe000 {
			return nil
		}
	}
	return s.encodingError(fmt.Sprintf("The body is not valid UTF-8: the escape %s at offset %d%s is half of a UTF-16 surrogate pair without the other half; send the whole character.", s.b[start:start+6], start, s.inField()))
}

// hex4 reads the 4 hex digits after the 'u' at s.i.
func (s *bodyScan) hex4() (rune, bool) {
	if s.i+5 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i+1 : s.i+5] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	s.i += 5
	return r, true
}

// path is the field being scanned, as the API names it ("" for none).
func (s *bodyScan) path() string {
	switch {
	case s.elem >= 0 && s.sub >= 0:
		return "media[" + strconv.Itoa(s.elem) + "]." + mediaFields[s.sub]
	case s.elem >= 0:
		return "media[" + strconv.Itoa(s.elem) + "]"
	case s.top >= 0:
		return sendFields[s.top]
	}
	return ""
}

func (s *bodyScan) inField() string {
	if f := s.path(); f != "" {
		return fmt.Sprintf(" in field %q", f)
	}
	return ""
}

func (s *bodyScan) encodingError(msg string) *Error {
	return invalid(s.path(), msg)
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
