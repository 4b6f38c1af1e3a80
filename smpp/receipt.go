package smpp

import (
	"strings"
	"time"
)

// ReceiptText holds the fields of a delivery receipt in the de-facto text
// form of SMPP 3.4 appendix B:
//
//	id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
//
// Values are as found (trimmed); Stat is upper-cased and long forms
// (DELIVERED, UNDELIVERABLE, ...) are shortened to the 7-letter names.
type ReceiptText struct {
	ID, Sub, Dlvrd       string
	SubmitDate, DoneDate string // raw date fields
	Stat, Err, Text      string
}

// receipt text keys, lower case, with accepted variants.
var receiptKeys = [...]struct {
	name string
	keys []string
}{
	{"id", []string{"id:"}},
	{"sub", []string{"sub:"}},
	{"dlvrd", []string{"dlvrd:"}},
	{"submit", []string{"submit date:", "submit_date:", "submitdate:"}},
	{"done", []string{"done date:", "done_date:", "donedate:"}},
	{"stat", []string{"stat:", "state:"}},
	{"err", []string{"err:"}},
	{"text", []string{"text:"}},
}

// ParseReceiptText reads a receipt in text form. Field order, letter case
// and missing fields are tolerated; ok is false when there is no id field.
// Each value runs to the next whitespace, except text, which runs to the
// next recognised field or the end.
func ParseReceiptText(s string) (r ReceiptText, ok bool) {
	lower := asciiLower(s)
	type hit struct{ field, keyStart, valStart int }
	var hits [len(receiptKeys)]hit
	var seen [len(receiptKeys)]bool
	n := 0
	for i := 0; i < len(lower); i++ {
		if i > 0 && !isSpace(lower[i-1]) {
			continue
		}
		for f := range receiptKeys {
			if seen[f] {
				continue
			}
			for _, k := range receiptKeys[f].keys {
				if strings.HasPrefix(lower[i:], k) {
					seen[f] = true
					hits[n] = hit{f, i, i + len(k)}
					n++
					i += len(k) - 1
					goto next
				}
			}
		}
	next:
	}
	if !seen[0] {
		return r, false
	}
	for h := 0; h < n; h++ {
		end := len(s)
		if h+1 < n {
			end = hits[h+1].keyStart
		}
		v := strings.TrimLeft(s[hits[h].valStart:end], " \t\r\n")
		if receiptKeys[hits[h].field].name != "text" {
			if j := strings.IndexAny(v, " \t\r\n"); j >= 0 {
				v = v[:j]
			}
		} else {
			v = strings.TrimRight(v, " \t\r\n")
		}
		switch receiptKeys[hits[h].field].name {
		case "id":
			r.ID = v
		case "sub":
			r.Sub = v
		case "dlvrd":
			r.Dlvrd = v
		case "submit":
			r.SubmitDate = v
		case "done":
			r.DoneDate = v
		case "stat":
			r.Stat = normalizeStat(v)
		case "err":
			r.Err = v
		case "text":
			r.Text = v
		}
	}
	return r, true
}

// looksLikeReceipt reports whether an MO text is really a receipt in text
// form (some SMSCs do not set esm_class): it starts with "id:" and has a
// stat field.
func looksLikeReceipt(s string) bool {
	t := strings.TrimLeft(s, " \t\r\n")
	if len(t) < 3 || asciiLower(t[:3]) != "id:" {
		return false
	}
	return strings.Contains(asciiLower(t), "stat:")
}

// normalizeStat upper-cases a receipt state and maps long names to the
// 7-letter SMPP 3.4 forms, and a number (some SMSCs write the
// message_state value, "stat:2") to its name.
func normalizeStat(v string) string {
	u := strings.ToUpper(strings.TrimSpace(v))
	if len(u) == 1 && u[0] >= '1' && u[0] <= '9' {
		if s := messageStateName(u[0] - '0'); s != "" {
			return s
		}
	}
	switch u {
	case "DELIVERED":
		return "DELIVRD"
	case "UNDELIVERABLE", "UNDELIVERED":
		return "UNDELIV"
	case "REJECTED":
		return "REJECTD"
	case "ACCEPTED":
		return "ACCEPTD"
	case "UNKNOWN":
		return "UNKNOWN"
	}
	return u
}

// messageStateName maps the message_state TLV to the text stat names.
func messageStateName(v byte) string {
	switch v {
	case 1:
		return "ENROUTE"
	case 2:
		return "DELIVRD"
	case 3:
		return "EXPIRED"
	case 4:
		return "DELETED"
	case 5:
		return "UNDELIV"
	case 6:
		return "ACCEPTD"
	case 7:
		return "UNKNOWN"
	case 8:
		return "REJECTD"
	}
	return ""
}

// receiptStates is the fixed label set for the receipts metric.
var receiptStates = map[string]bool{
	"ENROUTE": true, "DELIVRD": true, "EXPIRED": true, "DELETED": true,
	"UNDELIV": true, "ACCEPTD": true, "UNKNOWN": true, "REJECTD": true,
}

func receiptStateLabel(s string) string {
	if receiptStates[s] {
		return s
	}
	return "other"
}

// parseReceiptDate reads "YYMMDDhhmm" or "YYMMDDhhmmss" as UTC.
func parseReceiptDate(v string) (time.Time, bool) {
	layout := ""
	switch len(v) {
	case 10:
		layout = "0601021504"
	case 12:
		layout = "060102150405"
	default:
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(layout, v, time.UTC)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
