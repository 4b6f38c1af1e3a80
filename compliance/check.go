package compliance

import (
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/smsgate/smsgate/message"
)

// MaxCharacters is the length limit of API.md 4.5: text of this many Unicode
// code points or more is refused.
const MaxCharacters = 1600

// Error codes of the refusals and warnings Check produces (API.md 2).
const (
	CodeSenderUnregistered = "sender_unregistered"
	CodeMessageTooLong     = "message_too_long"
	CodeMediaUnsupported   = "media_unsupported"
	CodeMMSNotSupported    = "mms_not_supported"
	CodeContentBlocked     = "content_blocked"
	CodeContentWarning     = "content_warning"
)

// Sender is the org number a message is sent from, as the config describes it.
type Sender struct {
	E164       string
	Kind       string // long_code | toll_free | short_code
	Registered bool   // registered for outbound messaging
	MMS        bool   // may send media (config Number.MMSCapable)
}

// Outbound is a message an org asks to send.
type Outbound struct {
	Sender        Sender
	OrgScreening  map[string]string // the org's per-category overrides: warn | block | allow
	Text          string
	Media         []message.Media
	MaxMediaBytes int64 // limit on the declared size of all media together; <= 0 means no limit
}

// Verdict is the result of Check. Refusal is nil when the message may be
// queued. Info and Warnings are filled even when the message is refused, so
// a dry run can show them.
type Verdict struct {
	Info     message.TextInfo
	Warnings []Warning
	Refusal  *Refusal
}

// Warning is a reason to double-check a message that is nevertheless accepted.
type Warning struct {
	Code     string `json:"code"` // content_warning
	Category string `json:"category"`
	Message  string `json:"message"`
}

// Refusal is why a message may not be sent, shaped for the API error body.
type Refusal struct {
	Status   int    `json:"-"` // HTTP status per API.md section 2
	Code     string `json:"code"`
	Message  string `json:"message"`
	Field    string `json:"field,omitempty"`
	Category string `json:"category,omitempty"`
	Term     string `json:"term,omitempty"`
}

// Error makes a Refusal usable as an error.
func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

// Check runs the outbound checks of API.md in order: sender registration
// (403 sender_unregistered), length (422 message_too_long), media (422
// mms_not_supported, then media_unsupported), content screening (422
// content_blocked; warn matches become Warnings). The first failing check
// is the Refusal. A nil r skips screening.
func Check(o Outbound, r *Rules) Verdict {
	v := Verdict{Info: message.Analyze(o.Text)}
	matches := r.Screen(o.Text, o.OrgScreening)
	var block *Match
	for i, m := range matches {
		switch m.Action {
		case ActionBlock:
			if block == nil {
				block = &matches[i]
			}
		case ActionWarn:
			v.Warnings = append(v.Warnings, Warning{
				Code:     CodeContentWarning,
				Category: m.Category,
				Message: fmt.Sprintf("The text contains %q, which carriers treat as %s content and may review; "+
					"it was accepted, but check that it is needed, or use secure messaging.", m.Term, categoryLabel(m.Category)),
			})
		}
	}

	switch {
	case !o.Sender.Registered:
		v.Refusal = &Refusal{
			Status: http.StatusForbidden, Code: CodeSenderUnregistered, Field: "from",
			Message: fmt.Sprintf("Sender %s is not registered for outbound messaging yet; register it with your "+
				"carrier before sending. Inbound messages to it still work.", o.Sender.E164),
		}
	case v.Info.Characters >= MaxCharacters:
		v.Refusal = &Refusal{
			Status: http.StatusUnprocessableEntity, Code: CodeMessageTooLong, Field: "text",
			Message: fmt.Sprintf("The text is %d characters long; carriers block messages of %d characters or more. "+
				"Shorten it to at most %d characters or split it into several messages.",
				v.Info.Characters, MaxCharacters, MaxCharacters-1),
		}
	default:
		if ref := checkMedia(o); ref != nil {
			v.Refusal = ref
		} else if block != nil {
			v.Refusal = &Refusal{
				Status: http.StatusUnprocessableEntity, Code: CodeContentBlocked, Field: "text",
				Category: block.Category, Term: block.Term,
				Message: fmt.Sprintf("The text contains %q, which falls under %s content that carriers suspend "+
					"numbers for, so it was not sent. Remove or rephrase it, or use secure messaging.",
					block.Term, categoryLabel(block.Category)),
			}
		}
	}
	return v
}

// categoryLabel turns a category name into words ("prescription_drugs" ->
// "prescription drugs").
func categoryLabel(name string) string { return strings.ReplaceAll(name, "_", " ") }

// mediaTypes maps the accepted content types to their file extensions.
var mediaTypes = map[string][]string{
	"image/png":       {".png"},
	"image/jpeg":      {".jpg", ".jpeg"},
	"application/pdf": {".pdf"},
}

func checkMedia(o Outbound) *Refusal {
	if len(o.Media) == 0 {
		return nil
	}
	unsupported := func(field, format string, args ...any) *Refusal {
		return &Refusal{
			Status: http.StatusUnprocessableEntity, Code: CodeMediaUnsupported, Field: field,
			Message: fmt.Sprintf(format, args...),
		}
	}
	if !o.Sender.MMS {
		msg := fmt.Sprintf("Sender %s cannot send media (MMS); send the text without media, or send from a "+
			"number with MMS enabled.", o.Sender.E164)
		if o.Sender.Kind == "toll_free" {
			msg = fmt.Sprintf("Sender %s is a toll-free number, which cannot send media (MMS) unless MMS is "+
				"enabled for it; send the text without media, or from a number with MMS.", o.Sender.E164)
		}
		return &Refusal{Status: http.StatusUnprocessableEntity, Code: CodeMMSNotSupported, Field: "media", Message: msg}
	}
	var total int64
	for i, m := range o.Media {
		f := fmt.Sprintf("media[%d]", i)
		u, err := url.Parse(m.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return unsupported(f+".url", "Media %d has URL %q; give an absolute http or https URL of the file.", i+1, m.URL)
		}
		ct, _, err := mime.ParseMediaType(m.ContentType)
		if err != nil {
			return unsupported(f+".content_type", "Media %d has no valid content_type (%q); declare image/png, "+
				"image/jpeg or application/pdf.", i+1, m.ContentType)
		}
		if ct == "image/jpg" {
			ct = "image/jpeg"
		}
		exts, ok := mediaTypes[ct]
		if !ok {
			return unsupported(f+".content_type", "Media %d is of type %s; only PNG, JPEG and PDF can be sent.", i+1, ct)
		}
		if ext := strings.ToLower(path.Ext(u.Path)); ext != "" && !slices.Contains(exts, ext) {
			return unsupported(f+".url", "Media %d is declared as %s but its URL ends in %s; only PNG, JPEG and "+
				"PDF can be sent, and the declared type must match the file.", i+1, ct, ext)
		}
		if m.Size < 0 {
			return unsupported(f+".size", "Media %d has a negative size; declare the size in bytes or leave it out.", i+1)
		}
		if total > math.MaxInt64-m.Size {
			total = math.MaxInt64
		} else {
			total += m.Size
		}
	}
	if o.MaxMediaBytes > 0 && total > o.MaxMediaBytes {
		return unsupported("media", "The media add up to %d bytes, over the limit of %d bytes; send smaller or "+
			"fewer files.", total, o.MaxMediaBytes)
	}
	return nil
}
