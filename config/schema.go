// Package config is smsgate's TOML configuration: the schema, strict
// decoding, defaults, and validation that reports every error with its key path.
package config

import "time"

// Config is the whole daemon configuration (API.md section 7).
type Config struct {
	HTTP      HTTP      `toml:"http"`
	Metrics   Metrics   `toml:"metrics"`
	Admin     Admin     `toml:"admin"`
	Redis     Redis     `toml:"redis"`
	Queue     Queue     `toml:"queue"`
	Webhook   Webhook   `toml:"webhook"`
	Screening Screening `toml:"screening"`
	MMS       MMS       `toml:"mms"`
	Log       Log       `toml:"log"`
	Shutdown  Shutdown  `toml:"shutdown"`
	Simulator Simulator `toml:"simulator"`
	Carriers  []Carrier `toml:"carrier"`
	Routes    []Route   `toml:"route"`
	Orgs      []Org     `toml:"org"`

	index *index // lookups of a parsed configuration; nil for a hand-built one
}

// HTTP is the submission API listener.
type HTTP struct {
	Listen            string        `toml:"listen"`              // default 127.0.0.1:8080
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"` // default 5s
	ReadTimeout       time.Duration `toml:"read_timeout"`        // default 10s
	WriteTimeout      time.Duration `toml:"write_timeout"`       // default 10s
	IdleTimeout       time.Duration `toml:"idle_timeout"`        // default 60s
}

// Metrics is the Prometheus listener.
type Metrics struct {
	Listen string `toml:"listen"` // default 127.0.0.1:9090
	// Pprof serves Go's /debug/pprof/ profiles on the metrics listener
	// (default false): CPU, heap, allocation, block and mutex profiles for
	// finding where time goes. Keep the listener private when it is on.
	Pprof bool `toml:"pprof"`
}

// Admin protects the admin endpoints.
type Admin struct {
	TokenSHA256    string `toml:"token_sha256"` // hex SHA-256 of the admin token; empty disables admin endpoints
	TokenSHA256Env string `toml:"token_sha256_env"`
}

// Redis is the store.
type Redis struct {
	Addr        string   `toml:"addr"`    // empty (and no cluster): embedded in-process store
	Cluster     []string `toml:"cluster"` // Redis Cluster seed addresses
	Password    string   `toml:"password"`
	PasswordEnv string   `toml:"password_env"`
	DB          int      `toml:"db"`
	KeyPrefix   string   `toml:"key_prefix"` // default "smsgate:"
	// BindLeaseTTL is how long a daemon's lease on a configured bind lives
	// without renewal (default 6s): daemons sharing a Redis open each bind
	// once, and a dead daemon's binds are taken over after about this long.
	BindLeaseTTL time.Duration `toml:"bind_lease_ttl"`
}

// Embedded reports whether the in-process store is used.
func (r Redis) Embedded() bool { return r.Addr == "" && len(r.Cluster) == 0 }

// Queue are the limits of the per-number queues.
type Queue struct {
	DefaultValidity time.Duration `toml:"default_validity"`  // default 4h
	MaxValidity     time.Duration `toml:"max_validity"`      // default 10h
	MaxPerNumber    int           `toml:"max_per_number"`    // default 100000
	Buckets         int           `toml:"buckets"`           // default 64, at most 16384; changing it strands queued messages
	Lease           time.Duration `toml:"lease"`             // default 30s: how long a claimed message stays leased
	RetryBackoff    time.Duration `toml:"retry_backoff"`     // default 1s: first delay after a temporary error
	MaxRetryBackoff time.Duration `toml:"max_retry_backoff"` // default 5m
}

// Webhook is the global event destination; orgs may override URL and secret.
type Webhook struct {
	URL        string        `toml:"url"`
	Secret     string        `toml:"secret"`
	SecretEnv  string        `toml:"secret_env"`
	Timeout    time.Duration `toml:"timeout"`     // default 5s
	RetryFor   time.Duration `toml:"retry_for"`   // default 24h
	MinBackoff time.Duration `toml:"min_backoff"` // default 1s
	MaxBackoff time.Duration `toml:"max_backoff"` // default 10m
	Workers    int           `toml:"workers"`     // default 8 concurrent POSTs
	// StatusEvents, when set, are the only statuses sent as message.status
	// events (like Kannel's dlr-mask); unset: every change after queued.
	StatusEvents []string `toml:"status_events"`
}

// Screening selects the content rules file.
type Screening struct {
	Rules string `toml:"rules"` // path of a rules TOML; empty: the built-in rules
}

// MMS limits attachments.
type MMS struct {
	MaxBytes int64 `toml:"max_bytes"` // default 5 MB (5_000_000) of declared size, all media together
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error; default info
	Format string `toml:"format"` // text | json; default text
}

// Shutdown bounds a graceful stop.
type Shutdown struct {
	Grace time.Duration `toml:"grace"` // default 30s
	// LameDuck is how long a stop keeps serving with /readyz answering 503
	// before the API closes, so a load balancer stops sending first (default
	// 0s; part of Grace; the -lame-duck flag overrides it).
	LameDuck time.Duration `toml:"lame_duck"`
}

// Simulator runs an embedded SMSC simulator inside the daemon (development:
// `make run`). Binds pointing at its listen address then reach it.
type Simulator struct {
	Enabled      bool          `toml:"enabled"`
	Listen       string        `toml:"listen"`        // default 127.0.0.1:2775
	SystemID     string        `toml:"system_id"`     // default smsgate
	Password     string        `toml:"password"`      // default secret
	ReceiptDelay time.Duration `toml:"receipt_delay"` // default 1s
}

// Carrier is one SMSC operator with its binds.
type Carrier struct {
	Name         string `toml:"name"`
	LongMessages string `toml:"long_messages"` // udh | sar | payload; default udh
	GSM7Packed   bool   `toml:"gsm7_packed"`   // GSM-7 packed on the wire (default unpacked, one septet per octet)
	// MessageIDFormat says how the carrier writes a message id in
	// submit_sm_resp and in receipts: one of MessageIDFormats; default auto.
	MessageIDFormat string `toml:"message_id_format"`
	Binds           []Bind `toml:"bind"`
}

// MessageIDFormats are the values of [[carrier]] message_id_format (the
// formats of smpp.IDFormat): auto (one base on both sides, or hex ids that
// carry a letter), or a carrier that writes ids in hex in submit_sm_resp and
// in decimal in receipts, or the reverse.
func MessageIDFormats() []string {
	return []string{"auto", "resp_hex_receipt_decimal", "resp_decimal_receipt_hex"}
}

// Bind is one SMPP session to a carrier.
type Bind struct {
	Name            string        `toml:"name"` // default "<carrier>-<index>"
	Host            string        `toml:"host"`
	Port            int           `toml:"port"`
	SystemID        string        `toml:"system_id"`
	Password        string        `toml:"password"`
	PasswordEnv     string        `toml:"password_env"`
	SystemType      string        `toml:"system_type"`
	Mode            string        `toml:"mode"`   // transceiver | transmitter+receiver; default transceiver
	Window          int           `toml:"window"` // default 10
	Throughput      float64       `toml:"throughput"`
	EnquireLink     time.Duration `toml:"enquire_link"`     // default 30s
	ResponseTimeout time.Duration `toml:"response_timeout"` // default 10s
	BindTimeout     time.Duration `toml:"bind_timeout"`     // default 10s
	TLS             bool          `toml:"tls"`
	TLSCAFile       string        `toml:"tls_ca_file"`
	TLSServerName   string        `toml:"tls_server_name"`
	ReconnectMin    time.Duration `toml:"reconnect_min"` // default 1s
	ReconnectMax    time.Duration `toml:"reconnect_max"` // default 60s
}

// Route maps sender-number prefixes to carriers.
type Route struct {
	Prefix   string `toml:"prefix"`
	Carrier  string `toml:"carrier"`
	Fallback string `toml:"fallback"`
}

// Org is one customer organisation.
type Org struct {
	ID               string   `toml:"id"`
	Name             string   `toml:"name"`
	APIKeySHA256     []string `toml:"api_key_sha256"`
	HelpText         string   `toml:"help_text"`
	StopText         string   `toml:"stop_text"`  // confirmation of an opt-out; default names the org
	StartText        string   `toml:"start_text"` // confirmation of an opt-in; default names the org
	WebhookURL       string   `toml:"webhook_url"`
	WebhookSecret    string   `toml:"webhook_secret"`
	WebhookSecretEnv string   `toml:"webhook_secret_env"`
	// WebhookStatusEvents overrides webhook.status_events for this org.
	WebhookStatusEvents []string          `toml:"webhook_status_events"`
	Screening           map[string]string `toml:"screening"` // category -> warn | block | allow
	Numbers             []Number          `toml:"number"`
}

// Number kinds.
const (
	KindLongCode  = "long_code"
	KindTollFree  = "toll_free"
	KindShortCode = "short_code"
)

// Number is one sender number of an org.
type Number struct {
	E164       string  `toml:"e164"`
	Kind       string  `toml:"kind"`
	Registered bool    `toml:"registered"`
	Carrier    string  `toml:"carrier"`
	Rate       float64 `toml:"rate"` // segments per second; 0 = the kind's default
	MMS        *bool   `toml:"mms"`  // nil = default (false for toll_free, true otherwise)
}

// StatusEvents are the message statuses a status_events list may name.
func StatusEvents() []string {
	return []string{"sent", "delivered", "undelivered", "failed", "expired"}
}

// StatusEventsFor returns the statuses whose message.status events org o
// receives: its webhook_status_events, else webhook.status_events, else nil
// (every status).
func (c *Config) StatusEventsFor(o *Org) []string {
	if o != nil && o.WebhookStatusEvents != nil {
		return o.WebhookStatusEvents
	}
	return c.Webhook.StatusEvents
}
