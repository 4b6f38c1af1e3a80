package webhook

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Webhook URLs may carry secrets: a password (basic auth) and tokens in the
// query string. The POST goes to the full URL; everywhere else — logs, the
// errors logged or stored as an event's last error, the records in Redis and
// the dead letters returned by DeadLetters — the URL is redacted by
// redactURL.

// unparseableURL stands for a URL that does not parse: its parts cannot be
// told apart, so none is shown.
const unparseableURL = "<unparseable URL>"

// redactURL returns raw with its secrets masked: the password becomes "***",
// and so does the value of every query parameter (a parameter without "="
// is masked whole, it may be a bare token) and every path segment that
// looks like a token (secretSegment: Slack, Discord and Teams put theirs in
// the path); the query keys, scheme, user name, host and the other path
// segments are kept, the fragment (never sent) is dropped. A URL that does
// not parse becomes "<unparseable URL>". It is idempotent: a redacted URL
// comes back unchanged.
func redactURL(raw string) string {
	if raw == "" || raw == unparseableURL {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return unparseableURL
	}
	r := *u
	if segs := strings.Split(r.EscapedPath(), "/"); slices.ContainsFunc(segs, secretSegment) {
		for i, seg := range segs {
			if secretSegment(seg) {
				segs[i] = "***"
			}
		}
		// RawPath keeps the "*" as written (setting Path alone would
		// escape it); every other segment is in its escaped form already.
		r.RawPath = strings.Join(segs, "/")
		if r.Path, err = url.PathUnescape(r.RawPath); err != nil {
			return unparseableURL
		}
	}
	if r.RawQuery != "" {
		params := strings.Split(r.RawQuery, "&")
		for i, p := range params {
			if key, _, ok := strings.Cut(p, "="); ok {
				params[i] = key + "=***"
			} else if p != "" {
				params[i] = "***"
			}
		}
		r.RawQuery = strings.Join(params, "&")
	}
	r.Fragment, r.RawFragment = "", ""
	if _, ok := r.User.Password(); ok {
		// As net/http masks it: url.UserPassword would escape the "*".
		userinfo := r.User.String() + "@"
		name := url.User(r.User.Username()).String()
		return strings.Replace(r.String(), userinfo, name+":***@", 1)
	}
	return r.String()
}

// secretSegment reports whether a path segment (escaped) looks like a
// secret token rather than a name: 24 characters or more, or 16 or more
// with both letters and digits. Names of that length are masked too, which
// only hides them from the logs; the POST still goes to the full URL.
func secretSegment(seg string) bool {
	if len(seg) >= 24 {
		return true
	}
	if len(seg) < 16 {
		return false
	}
	return strings.ContainsFunc(seg, unicode.IsLetter) && strings.ContainsFunc(seg, unicode.IsDigit)
}

// redactError returns err with the URL redacted when err is a *url.Error
// (net/http's request errors, whose Error() names the whole URL but for its
// password, and url.Parse's, which names it whole); the cause stays wrapped.
// Other errors are returned as they are.
func redactError(err error) error {
	ue, ok := err.(*url.Error)
	if !ok {
		return err
	}
	return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
}

// srcAddr matches the local address of a network error
// ("read tcp 127.0.0.1:53211->127.0.0.1:8080: …"), a new port per connection.
var srcAddr = regexp.MustCompile(`[^\s"]+:[0-9]+->`)

// failureText is a failed attempt's error as logged and stored: the same text
// for every event of one endpoint failing one way, so the app's log handler
// folds the repeats (the local port of a connection is left out).
func failureText(err error) string {
	return srcAddr.ReplaceAllString(err.Error(), "")
}

// scrubURL replaces in s the forms of raw an error may have named it by (as
// given, and with the password masked as net/http does) with its redacted
// form. Records stored by versions before redaction hold them in clear.
func scrubURL(s, raw string) string {
	if s == "" || raw == "" {
		return s
	}
	red := redactURL(raw)
	if u, err := url.Parse(raw); err == nil {
		s = strings.ReplaceAll(s, stripPassword(u), red)
	}
	return strings.ReplaceAll(s, raw, red)
}

// redact masks the secrets of r's URL in r.URL and r.LastError.
func (r *record) redact() {
	r.LastError = scrubURL(r.LastError, r.URL)
	r.URL = redactURL(r.URL)
}
