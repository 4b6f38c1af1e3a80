package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	e164RE   = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)
	prefixRE = regexp.MustCompile(`^\+[0-9]{0,15}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Validate checks the configuration as a whole and returns a
// *ValidationError listing every problem, or nil. It expects defaults to be
// filled (Parse does that; see SetDefaults for a hand-built Config). It
// reads nothing but the existence and readability of the files named.
func (c *Config) Validate() error {
	if p := c.problems(); len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// validator collects problems.
type validator struct {
	problems []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) listen(path, addr string) {
	if addr == "" {
		v.add(path, "required")
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || !validPort(port, true) {
		v.add(path, "%q is not a host:port address", addr)
	}
}

func (v *validator) dial(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || !validPort(port, false) {
		v.add(path, "%q is not a host:port address", addr)
	}
}

func validPort(s string, zeroOK bool) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n <= 65535 && (n >= 1 || (zeroOK && n == 0))
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.add(path, "must be positive, got %s", fmtDur(d))
	}
}

// fmtDur formats a duration the way it is usually written: "12h", not "12h0m0s".
func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.add(path, "must be one of %s (got %q)", strings.Join(allowed, ", "), value)
}

// statusEvents checks a status_events list: nil (unset) is every status;
// an empty list is refused, since it would silence every status event.
func (v *validator) statusEvents(path string, list []string) {
	if list == nil {
		return
	}
	if len(list) == 0 {
		v.add(path, "lists no status (remove the key to receive every status event)")
		return
	}
	seen := map[string]bool{}
	for i, s := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		if !slices.Contains(StatusEvents(), s) {
			v.add(p, "must be one of %s (got %q)", strings.Join(StatusEvents(), ", "), s)
			continue
		}
		if seen[s] {
			v.add(p, "%q is listed twice", s)
		}
		seen[s] = true
	}
}

func (v *validator) sha256(path, value string) {
	if !sha256RE.MatchString(value) {
		v.add(path, "must be 64 hex characters (a SHA-256; see smsgate hash-key)")
	}
}

func (v *validator) webhookURL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(path, "%q is not an http or https URL", raw)
	}
}

// certificates checks that a file can be read and holds at least one PEM
// certificate, as a TLS CA file must.
func (v *validator) certificates(path, file string) {
	n := len(v.problems)
	v.readable(path, file)
	if len(v.problems) > n {
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		v.add(path, "cannot read %s: %v", file, err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		v.add(path, "%s holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"); give the CA certificate that signed the carrier's server certificate", file)
	}
}

// readable checks that a file is a regular file (a device such as
// /dev/zero would never finish reading; a FIFO would block opening) and can
// be opened for reading. It does not read the content.
func (v *validator) readable(path, file string) {
	info, err := os.Stat(file)
	if err == nil && !info.Mode().IsRegular() {
		v.add(path, "%s is not a regular file", file)
		return
	}
	if err == nil {
		var f *os.File
		if f, err = os.Open(file); err == nil {
			f.Close()
			return
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	v.add(path, "cannot read %s: %v", file, err)
}

func (c *Config) problems() []Problem {
	v := &validator{}

	v.listen("http.listen", c.HTTP.Listen)
	v.positive("http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	v.positive("http.read_timeout", c.HTTP.ReadTimeout)
	v.positive("http.write_timeout", c.HTTP.WriteTimeout)
	v.positive("http.idle_timeout", c.HTTP.IdleTimeout)

	v.listen("metrics.listen", c.Metrics.Listen)
	if c.Metrics.Listen == c.HTTP.Listen && c.HTTP.Listen != "" && !strings.HasSuffix(c.HTTP.Listen, ":0") {
		v.add("metrics.listen", "same address as http.listen")
	}

	if c.Admin.TokenSHA256 != "" && !sha256RE.MatchString(c.Admin.TokenSHA256) && c.Admin.TokenSHA256Env != "" {
		v.add("admin.token_sha256", "must be 64 hex characters; it was read from the environment variable %q, which must hold the token's SHA-256 (smsgate hash-key), not the token", c.Admin.TokenSHA256Env)
	} else if c.Admin.TokenSHA256 != "" {
		v.sha256("admin.token_sha256", c.Admin.TokenSHA256)
	}

	c.validateRedis(v)

	q := c.Queue
	v.positive("queue.default_validity", q.DefaultValidity)
	v.positive("queue.max_validity", q.MaxValidity)
	if q.DefaultValidity > q.MaxValidity && q.MaxValidity > 0 {
		v.add("queue.default_validity", "%s is longer than queue.max_validity (%s)", fmtDur(q.DefaultValidity), fmtDur(q.MaxValidity))
	}
	if q.MaxPerNumber < 1 {
		v.add("queue.max_per_number", "must be at least 1, got %d", q.MaxPerNumber)
	}
	if q.Buckets < 1 || q.Buckets > 16384 {
		v.add("queue.buckets", "must be between 1 and 16384, got %d", q.Buckets)
	}
	v.positive("queue.lease", q.Lease)
	v.positive("queue.retry_backoff", q.RetryBackoff)
	v.positive("queue.max_retry_backoff", q.MaxRetryBackoff)
	if q.RetryBackoff > q.MaxRetryBackoff && q.MaxRetryBackoff > 0 {
		v.add("queue.retry_backoff", "%s is longer than queue.max_retry_backoff (%s)", fmtDur(q.RetryBackoff), fmtDur(q.MaxRetryBackoff))
	}

	w := c.Webhook
	if w.URL != "" {
		v.webhookURL("webhook.url", w.URL)
		if w.Secret == "" && slices.ContainsFunc(c.Orgs, func(o Org) bool { return o.WebhookURL == "" && o.WebhookSecret == "" }) {
			v.add("webhook.secret", "required when webhook.url is set: events are signed with it, and signed with an empty key anyone can forge them (or give every org its own webhook_secret)")
		}
	}
	v.positive("webhook.timeout", w.Timeout)
	v.positive("webhook.retry_for", w.RetryFor)
	v.positive("webhook.min_backoff", w.MinBackoff)
	v.positive("webhook.max_backoff", w.MaxBackoff)
	if w.MinBackoff > w.MaxBackoff && w.MaxBackoff > 0 {
		v.add("webhook.min_backoff", "%s is longer than webhook.max_backoff (%s)", fmtDur(w.MinBackoff), fmtDur(w.MaxBackoff))
	}
	if w.Workers < 1 {
		v.add("webhook.workers", "must be at least 1, got %d", w.Workers)
	}
	v.statusEvents("webhook.status_events", w.StatusEvents)

	if c.Screening.Rules != "" {
		v.readable("screening.rules", c.Screening.Rules)
	}

	if c.MMS.MaxBytes < 1 {
		v.add("mms.max_bytes", "must be at least 1, got %d", c.MMS.MaxBytes)
	}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	v.positive("shutdown.grace", c.Shutdown.Grace)
	if d := c.Shutdown.LameDuck; d < 0 {
		v.add("shutdown.lame_duck", "must not be negative, got %s", fmtDur(d))
	} else if d >= c.Shutdown.Grace && c.Shutdown.Grace > 0 {
		v.add("shutdown.lame_duck", "%s leaves nothing of shutdown.grace (%s) to drain the SMPP windows; make it shorter than grace", fmtDur(d), fmtDur(c.Shutdown.Grace))
	}

	if c.Simulator.Enabled {
		v.listen("simulator.listen", c.Simulator.Listen)
		if c.Simulator.SystemID == "" {
			v.add("simulator.system_id", "required")
		}
		if c.Simulator.ReceiptDelay < 0 {
			v.add("simulator.receipt_delay", "must not be negative, got %s", fmtDur(c.Simulator.ReceiptDelay))
		}
	}

	carriers := c.validateCarriers(v)
	c.validateRoutes(v, carriers)
	c.validateOrgs(v, carriers)
	return v.problems
}

func (c *Config) validateRedis(v *validator) {
	r := c.Redis
	if r.Addr != "" {
		v.dial("redis.addr", r.Addr)
	}
	if r.Addr != "" && len(r.Cluster) > 0 {
		v.add("redis.cluster", "cannot be used together with redis.addr")
	}
	for i, a := range r.Cluster {
		v.dial(fmt.Sprintf("redis.cluster[%d]", i), a)
	}
	if r.DB < 0 {
		v.add("redis.db", "must not be negative, got %d", r.DB)
	}
	if r.DB != 0 && len(r.Cluster) > 0 {
		v.add("redis.db", "must be 0 with redis.cluster (a cluster has only database 0)")
	}
	if strings.ContainsAny(r.KeyPrefix, "{}") {
		v.add("redis.key_prefix", "must not contain { or } (they would change the keys' hash slot)")
	}
	if r.BindLeaseTTL < 300*time.Millisecond {
		v.add("redis.bind_lease_ttl", "must be at least 300ms (it is renewed every third of it), got %s", r.BindLeaseTTL)
	}
}

// validateCarriers checks carriers and their binds, and returns the set of
// carrier names.
func (c *Config) validateCarriers(v *validator) map[string]bool {
	names := map[string]int{}
	bindNames := map[string]string{}
	for i, ca := range c.Carriers {
		cp := fmt.Sprintf("carrier[%d]", i)
		switch {
		case ca.Name == "":
			v.add(cp+".name", "required")
		case !nameRE.MatchString(ca.Name):
			v.add(cp+".name", "%q is not a valid name (letters, digits, '.', '_', '-'; at most 64)", ca.Name)
		default:
			if first, dup := names[ca.Name]; dup {
				v.add(cp+".name", "%q is already used by carrier[%d]", ca.Name, first)
			} else {
				names[ca.Name] = i
			}
		}
		v.oneOf(cp+".long_messages", ca.LongMessages, "udh", "sar", "payload")
		v.oneOf(cp+".message_id_format", ca.MessageIDFormat, MessageIDFormats()...)
		if len(ca.Binds) == 0 {
			v.add(cp+".bind", "at least one [[carrier.bind]] is required")
		}
		for j, b := range ca.Binds {
			bp := fmt.Sprintf("%s.bind[%d]", cp, j)
			if b.Name == "" {
				v.add(bp+".name", "required")
			} else if first, dup := bindNames[b.Name]; dup {
				v.add(bp+".name", "%q is already used by %s", b.Name, first)
			} else {
				bindNames[b.Name] = bp
			}
			switch {
			case b.Host == "":
				v.add(bp+".host", "required")
			case strings.Contains(b.Host, "/"):
				v.add(bp+".host", "%q is not a host name or address; write only the host (the protocol is SMPP, tls selects TLS)", b.Host)
			case strings.Count(b.Host, ":") == 1:
				v.add(bp+".host", "%q includes a port; put the port in %s.port", b.Host, bp)
			case strings.ContainsAny(b.Host, "[]"):
				v.add(bp+".host", "%q: write an IPv6 address without brackets, and the port in %s.port", b.Host, bp)
			case strings.ContainsAny(b.Host, " \t"):
				v.add(bp+".host", "%q contains white space", b.Host)
			}
			if b.Port < 1 || b.Port > 65535 {
				v.add(bp+".port", "must be between 1 and 65535, got %d", b.Port)
			}
			if b.SystemID == "" {
				v.add(bp+".system_id", "required")
			}
			v.oneOf(bp+".mode", b.Mode, "transceiver", "transmitter+receiver")
			if b.Window < 1 {
				v.add(bp+".window", "must be at least 1, got %d", b.Window)
			}
			if b.Throughput < 0 {
				v.add(bp+".throughput", "must not be negative (0 = no limit), got %v", b.Throughput)
			}
			v.positive(bp+".enquire_link", b.EnquireLink)
			v.positive(bp+".response_timeout", b.ResponseTimeout)
			v.positive(bp+".bind_timeout", b.BindTimeout)
			v.positive(bp+".reconnect_min", b.ReconnectMin)
			v.positive(bp+".reconnect_max", b.ReconnectMax)
			if b.ReconnectMin > b.ReconnectMax && b.ReconnectMax > 0 {
				v.add(bp+".reconnect_min", "%s is longer than reconnect_max (%s)", fmtDur(b.ReconnectMin), fmtDur(b.ReconnectMax))
			}
			if !b.TLS && b.TLSCAFile != "" {
				v.add(bp+".tls_ca_file", "set but tls is false")
			}
			if !b.TLS && b.TLSServerName != "" {
				v.add(bp+".tls_server_name", "set but tls is false")
			}
			if b.TLSCAFile != "" {
				v.certificates(bp+".tls_ca_file", b.TLSCAFile)
			}
		}
	}
	set := make(map[string]bool, len(names))
	for n := range names {
		set[n] = true
	}
	return set
}

func (c *Config) validateRoutes(v *validator, carriers map[string]bool) {
	prefixes := map[string]int{}
	for i, r := range c.Routes {
		rp := fmt.Sprintf("route[%d]", i)
		if !prefixRE.MatchString(r.Prefix) {
			v.add(rp+".prefix", "%q is not a number prefix (+ then up to 15 digits; \"+\" matches every number)", r.Prefix)
		} else if first, dup := prefixes[r.Prefix]; dup {
			v.add(rp+".prefix", "%q is already used by route[%d]", r.Prefix, first)
		} else {
			prefixes[r.Prefix] = i
		}
		switch {
		case r.Carrier == "":
			v.add(rp+".carrier", "required")
		case !carriers[r.Carrier]:
			v.add(rp+".carrier", "unknown carrier %q", r.Carrier)
		}
		switch {
		case r.Fallback == "":
		case !carriers[r.Fallback]:
			v.add(rp+".fallback", "unknown carrier %q", r.Fallback)
		case r.Fallback == r.Carrier:
			v.add(rp+".fallback", "is the route's own carrier %q", r.Fallback)
		}
	}
}

func (c *Config) validateOrgs(v *validator, carriers map[string]bool) {
	ids := map[string]int{}
	keys := map[string]string{}
	numbers := map[string]string{}
	for i, o := range c.Orgs {
		op := fmt.Sprintf("org[%d]", i)
		switch {
		case o.ID == "":
			v.add(op+".id", "required")
		case !nameRE.MatchString(o.ID):
			v.add(op+".id", "%q is not a valid id (letters, digits, '.', '_', '-'; at most 64)", o.ID)
		default:
			if first, dup := ids[o.ID]; dup {
				v.add(op+".id", "%q is already used by org[%d]", o.ID, first)
			} else {
				ids[o.ID] = i
			}
		}
		if strings.TrimSpace(o.Name) == "" {
			v.add(op+".name", "required (it is named in the opt-out notice and keyword replies)")
		}
		for k, h := range o.APIKeySHA256 {
			kp := fmt.Sprintf("%s.api_key_sha256[%d]", op, k)
			if !sha256RE.MatchString(h) {
				v.sha256(kp, h)
				continue
			}
			h = strings.ToLower(h)
			if first, dup := keys[h]; dup {
				v.add(kp, "the same key hash is already at %s (a key belongs to one org)", first)
			} else {
				keys[h] = kp
			}
		}
		if o.WebhookURL != "" {
			v.webhookURL(op+".webhook_url", o.WebhookURL)
			if o.WebhookSecret == "" && c.Webhook.Secret == "" {
				v.add(op+".webhook_secret", "required: %s.webhook_url is set and no webhook secret applies (events signed with an empty key can be forged by anyone); set it, or webhook.secret", op)
			}
		}
		v.statusEvents(op+".webhook_status_events", o.WebhookStatusEvents)
		for _, cat := range slices.Sorted(maps.Keys(o.Screening)) {
			v.oneOf(joinPath(op+".screening", cat), o.Screening[cat], "warn", "block", "allow")
		}
		for j, n := range o.Numbers {
			np := fmt.Sprintf("%s.number[%d]", op, j)
			if !e164RE.MatchString(n.E164) {
				v.add(np+".e164", "%q is not an E.164 number (+ then 8 to 15 digits, the first not 0)", n.E164)
			} else if first, dup := numbers[n.E164]; dup {
				v.add(np+".e164", "%q is already used by %s", n.E164, first)
			} else {
				numbers[n.E164] = np
			}
			v.oneOf(np+".kind", n.Kind, KindLongCode, KindTollFree, KindShortCode)
			switch {
			case n.Carrier != "":
				if !carriers[n.Carrier] {
					v.add(np+".carrier", "unknown carrier %q", n.Carrier)
				}
			default:
				if _, ok := c.RouteFor(n.E164); !ok && e164RE.MatchString(n.E164) {
					v.add(np+".carrier", "not set, and no [[route]] prefix matches %s", n.E164)
				}
			}
			if n.Rate < 0 {
				v.add(np+".rate", "must not be negative (0 = the kind's default), got %v", n.Rate)
			}
		}
	}
}
