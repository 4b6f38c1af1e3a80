package compliance

import (
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Keyword kinds (API.md 4.3); the empty kind means "not a keyword".
const (
	KeywordStop  = "stop"
	KeywordStart = "start"
	KeywordHelp  = "help"
)

// Keyword is the classification of an inbound message.
type Keyword struct {
	Kind string // stop | start | help | "" (not a keyword)
	All  bool   // STOPALL: the opt-out covers all of the org's numbers
}

// maxKeywordLen bounds the input worth examining: no keyword is longer,
// even with generous whitespace and punctuation around it.
const maxKeywordLen = 64

// ClassifyKeyword reports whether an inbound message is an opt-out, opt-in
// or help keyword. The whole message must be the keyword: it is
// NFKC-normalised, trimmed, compared case-insensitively, with trailing
// punctuation ignored and any whitespace inside "OPT OUT" / "STOP ALL".
func ClassifyKeyword(text string) Keyword {
	trailing := func(r rune) bool { return unicode.IsSpace(r) || unicode.IsPunct(r) }
	s := strings.TrimSpace(strings.TrimRightFunc(text, trailing))
	if len(s) > 4*maxKeywordLen {
		return Keyword{}
	}
	// Invisible format characters (a zero-width space or a byte order mark
	// a phone put around the word) are not part of it.
	s = strings.Map(func(r rune) rune {
		if unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, norm.NFKC.String(s))
	s = strings.TrimSpace(strings.TrimRightFunc(s, trailing))
	if len(s) > maxKeywordLen {
		return Keyword{}
	}
	switch strings.Join(strings.Fields(strings.ToUpper(s)), " ") {
	case "STOP", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT", "OPT-OUT":
		return Keyword{Kind: KeywordStop}
	case "STOPALL", "STOP ALL", "STOP-ALL":
		return Keyword{Kind: KeywordStop, All: true}
	case "START", "YES", "UNSTOP":
		return Keyword{Kind: KeywordStart}
	case "HELP", "INFO":
		return Keyword{Kind: KeywordHelp}
	}
	return Keyword{}
}

// optOutWords are the words a decorated keyword may consist of ("STOP 🙏",
// "\"stop\"", "stop stop"); at least one must be strong.
var optOutWords = map[string]bool{
	"stop": true, "stopall": true, "unsubscribe": true, "optout": true, "revoke": true, "quit": true,
	"opt": false, "out": false, "all": false,
}

// optOutPhrases are plain-language requests to stop messages, matched on the
// output of optOutText. Each was chosen against a list of clinical sentences
// that must not match ("stop by the pharmacy", "should I stop taking it").
var optOutPhrases = regexp.MustCompile(`\b(?:` + strings.Join([]string{
	`unsubscribe`, `unsub`, `opt ?out`, `opt me out`,
	`(?:stop|quit) (?:texting|txting|texing|messaging|msging|sending|contacting|emailing|spamming|bothering|harassing)(?: me| us)?`,
	`(?:stop|quit) (?:text|txt|message|msg|sms|contact) (?:me|us|this number)`,
	`stop (?:the |these |those |this |your |ur |all |all the |all these |all your )+(?:\w+ )?(?:texts|text messages|messages|msgs|txts|sms|reminders|notifications|alerts|spam)`,
	`(?:dont|do not|never|pls dont|please dont|please do not) (?:ever )?(?:text|txt|message|msg|sms|contact) (?:me|us|this number)`,
	`no more (?:texts|text messages|messages|msgs|txts|sms|texting|reminders|notifications|alerts)`,
	`remove me`, `remove (?:my|this) (?:number|phone number|cell|cell number|phone)`,
	`delete (?:my|this) (?:number|phone number|cell number)`,
	`take (?:me|my number|this number) off (?:your|the|this|ur|that|of your|all) (?:\w+ )?list`,
	`take my number off`, `leave me alone`,
	`(?:i|we) (?:dont|do not|no longer|dont ever) want (?:to (?:receive|get) )?(?:any |these |your |more |any more |the |those |ur )*(?:texts|text messages|messages|msgs|txts|sms|reminders|notifications|alerts)`,
	`cancel (?:the|these|all|all the|my|your|this) (?:texts|text messages|messages|reminders|notifications|alerts|subscription)`,
}, "|") + `)\b`)

// politeStop is a bare "stop" with courtesy words around it, which is not a
// keyword but clearly asks to stop.
var politeStop = regexp.MustCompile(`^(?:please |pls |plz |just |ok |okay )*stop(?: it| now| please| pls| plz| asap| thanks| thank you| thx)*$`)

// PossibleOptOut flags inbound messages that ask in plain language to stop
// messages ("please stop texting me", "take me off your list") without being
// a keyword. It returns false for keywords (they are handled as such) and
// for ordinary uses of the words ("stop by the pharmacy", "when does the bus
// stop"). It is a hint for a person to follow up, not an opt-out.
func PossibleOptOut(text string) bool {
	if ClassifyKeyword(text).Kind != "" {
		return false
	}
	s := optOutText(text)
	if s == "" {
		return false
	}
	// Keywords with decoration that is not trailing punctuation: "STOP 🙏",
	// "\"STOP\"", "Stop stop".
	strong, onlyKeywords := false, true
	for _, w := range strings.Fields(s) {
		isStrong, ok := optOutWords[w]
		if !ok {
			onlyKeywords = false
			break
		}
		strong = strong || isStrong
	}
	if onlyKeywords && (strong || s == "opt out") {
		return true
	}
	return politeStop.MatchString(s) || optOutPhrases.MatchString(s)
}

// optOutText lower-cases text, drops apostrophes, and turns everything but
// letters and digits into single spaces.
func optOutText(text string) string {
	text = norm.NFKC.String(text)
	var b strings.Builder
	b.Grow(len(text))
	space := false
	for _, r := range text {
		switch {
		case r == '\'' || r == '\u2019' || r == '\u2018' || r == '`':
			continue
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(unicode.ToLower(r))
		default:
			space = true
		}
	}
	return b.String()
}
