package config

import (
	"fmt"
	"strconv"
	"time"
)

// SetDefaults fills every zero-valued field that has a default (see the
// comments in schema.go). Parse does the same, but only for keys absent from
// the document, so that an explicit `window = 0` stays 0 and fails
// validation; SetDefaults is for configurations built in code.
func (c *Config) SetDefaults() {
	c.applyDefaults(func(string) bool { return false })
}

// def sets *field to v when it is zero and the key at path was not written.
func def[T comparable](defined func(string) bool, path string, field *T, v T) {
	var zero T
	if *field == zero && !defined(path) {
		*field = v
	}
}

func (c *Config) applyDefaults(defined func(path string) bool) {
	d := defined
	def(d, "http.listen", &c.HTTP.Listen, "127.0.0.1:8080")
	def(d, "http.read_header_timeout", &c.HTTP.ReadHeaderTimeout, 5*time.Second)
	def(d, "http.read_timeout", &c.HTTP.ReadTimeout, 10*time.Second)
	def(d, "http.write_timeout", &c.HTTP.WriteTimeout, 10*time.Second)
	def(d, "http.idle_timeout", &c.HTTP.IdleTimeout, 60*time.Second)

	def(d, "metrics.listen", &c.Metrics.Listen, "127.0.0.1:9090")

	def(d, "redis.key_prefix", &c.Redis.KeyPrefix, "smsgate:")
	def(d, "redis.bind_lease_ttl", &c.Redis.BindLeaseTTL, 6*time.Second)

	def(d, "queue.default_validity", &c.Queue.DefaultValidity, 4*time.Hour)
	def(d, "queue.max_validity", &c.Queue.MaxValidity, 10*time.Hour)
	def(d, "queue.max_per_number", &c.Queue.MaxPerNumber, 100000)
	def(d, "queue.buckets", &c.Queue.Buckets, 64)
	def(d, "queue.lease", &c.Queue.Lease, 30*time.Second)
	def(d, "queue.retry_backoff", &c.Queue.RetryBackoff, time.Second)
	def(d, "queue.max_retry_backoff", &c.Queue.MaxRetryBackoff, 5*time.Minute)

	def(d, "webhook.timeout", &c.Webhook.Timeout, 5*time.Second)
	def(d, "webhook.retry_for", &c.Webhook.RetryFor, 24*time.Hour)
	def(d, "webhook.min_backoff", &c.Webhook.MinBackoff, time.Second)
	def(d, "webhook.max_backoff", &c.Webhook.MaxBackoff, 10*time.Minute)
	def(d, "webhook.workers", &c.Webhook.Workers, 8)

	def(d, "mms.max_bytes", &c.MMS.MaxBytes, int64(5_000_000))

	def(d, "log.level", &c.Log.Level, "info")
	def(d, "log.format", &c.Log.Format, "text")

	def(d, "shutdown.grace", &c.Shutdown.Grace, 30*time.Second)

	def(d, "simulator.listen", &c.Simulator.Listen, "127.0.0.1:2775")
	def(d, "simulator.system_id", &c.Simulator.SystemID, "smsgate")
	def(d, "simulator.password", &c.Simulator.Password, "secret")
	def(d, "simulator.receipt_delay", &c.Simulator.ReceiptDelay, time.Second)

	for i := range c.Carriers {
		ca := &c.Carriers[i]
		cp := fmt.Sprintf("carrier[%d]", i)
		def(d, cp+".long_messages", &ca.LongMessages, "udh")
		def(d, cp+".message_id_format", &ca.MessageIDFormat, "auto")
		for j := range ca.Binds {
			b := &ca.Binds[j]
			bp := fmt.Sprintf("%s.bind[%d]", cp, j)
			def(d, bp+".name", &b.Name, ca.Name+"-"+strconv.Itoa(j))
			def(d, bp+".mode", &b.Mode, "transceiver")
			def(d, bp+".window", &b.Window, 10)
			def(d, bp+".enquire_link", &b.EnquireLink, 30*time.Second)
			def(d, bp+".response_timeout", &b.ResponseTimeout, 10*time.Second)
			def(d, bp+".bind_timeout", &b.BindTimeout, 10*time.Second)
			def(d, bp+".reconnect_min", &b.ReconnectMin, time.Second)
			def(d, bp+".reconnect_max", &b.ReconnectMax, 60*time.Second)
		}
	}
}
