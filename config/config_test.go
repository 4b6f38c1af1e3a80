package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// badFixtures maps each file in testdata/bad to the exact problems it must
// produce, in order. {dir} stands for the absolute path of testdata/bad.
var badFixtures = map[string][]string{
	"admin_token_hex":          {`admin.token_sha256: must be 64 hex characters (a SHA-256; see smsgate hash-key)`},
	"api_key_hex":              {`org[0].api_key_sha256[0]: must be 64 hex characters (a SHA-256; see smsgate hash-key)`},
	"lame_duck_too_long":       {`shutdown.lame_duck: 10s leaves nothing of shutdown.grace (10s) to drain the SMPP windows; make it shorter than grace`},
	"status_events_unknown":    {`webhook.status_events[1]: must be one of sent, delivered, undelivered, failed, expired (got "DLR")`},
	"org_status_events_empty":  {`org[0].webhook_status_events: lists no status (remove the key to receive every status event)`},
	"bad_duration":             {`webhook.timeout: invalid duration "5" (use a Go duration such as "30s", "5m", "4h")`},
	"bad_e164":                 {`org[0].number[0].e164: "15550001111" is not an E.164 number (+ then 8 to 15 digits, the first not 0)`},
	"bad_kind":                 {`org[0].number[0].kind: must be one of long_code, toll_free, short_code (got "longcode")`},
	"bad_long_messages":        {`carrier[0].long_messages: must be one of udh, sar, payload (got "split")`},
	"bad_message_id_format":    {`carrier[0].message_id_format: must be one of auto, resp_hex_receipt_decimal, resp_decimal_receipt_hex (got "0x01")`},
	"bad_mode":                 {`carrier[0].bind[0].mode: must be one of transceiver, transmitter+receiver (got "transmitter")`},
	"buckets_range":            {`queue.buckets: must be between 1 and 16384, got 20000`},
	"duplicate_api_key":        {`org[1].api_key_sha256[0]: the same key hash is already at org[0].api_key_sha256[0] (a key belongs to one org)`},
	"duplicate_bind":           {`carrier[0].bind[1].name: "sim-0" is already used by carrier[0].bind[0]`},
	"duplicate_carrier":        {`carrier[1].name: "sim" is already used by carrier[0]`},
	"duplicate_number":         {`org[1].number[0].e164: "+15550001111" is already used by org[0].number[0]`},
	"duplicate_org_id":         {`org[1].id: "acme" is already used by org[0]`},
	"duplicate_route":          {`route[1].prefix: "+" is already used by route[0]`},
	"duration_integer":         {`carrier[0].bind[0].enquire_link: expected a duration string such as "30s", got integer 30`},
	"fallback_unknown_carrier": {`route[0].fallback: unknown carrier "backup"`},
	"host_missing":             {`carrier[0].bind[0].host: required`},
	"listen_addr":              {`http.listen: "8080" is not a host:port address`},
	"log_level":                {`log.level: must be one of debug, info, warn, error (got "verbose")`},
	"max_per_number_zero":      {`queue.max_per_number: must be at least 1, got 0`},
	"negative_duration":        {`http.read_timeout: must be positive, got -1s`},
	"negative_rate":            {`org[0].number[0].rate: must not be negative (0 = the kind's default), got -1`},
	"negative_throughput":      {`carrier[0].bind[0].throughput: must not be negative (0 = no limit), got -5`},
	"no_binds":                 {`carrier[0].bind: at least one [[carrier.bind]] is required`},
	"number_no_route":          {`org[0].number[0].carrier: not set, and no [[route]] prefix matches +15550001111`},
	"number_unknown_carrier":   {`org[0].number[0].carrier: unknown carrier "nope"`},
	"org_id_invalid":           {`org[0].id: "acme clinic" is not a valid id (letters, digits, '.', '_', '-'; at most 64)`},
	"org_name_missing":         {`org[0].name: required (it is named in the opt-out notice and keyword replies)`},
	"org_webhook_url":          {`org[0].webhook_url: "127.0.0.1:9000/events" is not an http or https URL`},
	"port_range":               {`carrier[0].bind[0].port: must be between 1 and 65535, got 70000`},
	"redis_addr_and_cluster":   {`redis.cluster: cannot be used together with redis.addr`},
	"redis_key_prefix":         {`redis.key_prefix: must not contain { or } (they would change the keys' hash slot)`},
	"route_prefix":             {`route[0].prefix: "1" is not a number prefix (+ then up to 15 digits; "+" matches every number)`},
	"route_unknown_carrier":    {`route[0].carrier: unknown carrier "nope"`},
	"rules_unreadable":         {`screening.rules: cannot read {dir}/no-such-rules.toml: no such file or directory`},
	"same_listen":              {`metrics.listen: same address as http.listen`},
	"screening_override":       {`org[0].screening.alcohol: must be one of warn, block, allow (got "ignore")`},
	"secret_and_env":           {`carrier[0].bind[0].password_env: cannot be used together with password`},
	"syntax":                   {`syntax error at line 8, column 9: expected value but found '\n' instead`},
	"tls_ca_unreadable":        {`carrier[0].bind[0].tls_ca_file: cannot read {dir}/no-such-ca.pem: no such file or directory`},
	"webhook_secret_missing": {
		`webhook.secret: required when webhook.url is set: events are signed with it, and signed with an empty key anyone can forge them (or give every org its own webhook_secret)`,
		`org[1].webhook_secret: required: org[1].webhook_url is set and no webhook secret applies (events signed with an empty key can be forged by anyone); set it, or webhook.secret`,
	},
	"tls_ca_not_pem":     {`carrier[0].bind[0].tls_ca_file: {dir}/tls_ca_not_pem.toml holds no PEM certificate ("-----BEGIN CERTIFICATE-----"); give the CA certificate that signed the carrier's server certificate`},
	"host_with_port":     {`carrier[0].bind[0].host: "127.0.0.1:2775" includes a port; put the port in carrier[0].bind[0].port`},
	"tls_ca_without_tls": {`carrier[0].bind[0].tls_server_name: set but tls is false`},
	"unknown_key":        {`carrier[0].bind[0].windw: unknown key (did you mean "window"?)`},
	"unknown_section":    {`htp: unknown key (did you mean "http"?)`},
	"validity_order":     {`queue.default_validity: 12h is longer than queue.max_validity (10h)`},
	"webhook_url":        {`webhook.url: "ftp://127.0.0.1/events" is not an http or https URL`},
	"window_zero":        {`carrier[0].bind[0].window: must be at least 1, got 0`},
	"bind_lease_ttl":     {`redis.bind_lease_ttl: must be at least 300ms (it is renewed every third of it), got 100ms`},
	"wrong_type":         {`carrier[0].bind[0].port: expected an integer, got string "2775"`},
	// The carriers cannot be decoded, so the route's carrier is unknown too.
	"carrier_not_array": {
		`carrier: expected an array of tables ([[carrier]]), got a table`,
		`route[0].carrier: unknown carrier "sim"`,
	},
	"several": {
		`queue.buckets: must be between 1 and 16384, got 0`,
		`carrier[0].bind[0].mode: must be one of transceiver, transmitter+receiver (got "rx")`,
		`carrier[0].bind[0].window: must be at least 1, got -1`,
		`route[0].carrier: unknown carrier "other"`,
		`org[0].number[0].e164: "+1555" is not an E.164 number (+ then 8 to 15 digits, the first not 0)`,
	},
}

// orgLine is the last line of the org table in testdata/good/minimal.toml,
// after which tests insert org keys.
const orgLine = "name = \"Acme Clinic\"\n"

func problemStrings(t *testing.T, err error) []string {
	t.Helper()
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.NotEmpty(t, ve.Problems)
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.String()
	}
	return out
}

func TestBadFixtures(t *testing.T) {
	dir, err := filepath.Abs("testdata/bad")
	require.NoError(t, err)
	files, err := filepath.Glob("testdata/bad/*.toml")
	require.NoError(t, err)

	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".toml"))
	}
	var want []string
	for name := range badFixtures {
		want = append(want, name)
	}
	slices.Sort(want)
	require.Equal(t, want, names, "every bad fixture needs a table entry and every entry a fixture")

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata/bad", name+".toml"))
			require.Nil(t, cfg)
			expected := make([]string, len(badFixtures[name]))
			for i, s := range badFixtures[name] {
				expected[i] = strings.ReplaceAll(s, "{dir}", dir)
			}
			require.Equal(t, expected, problemStrings(t, err))
		})
	}
}

func TestGoodFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.toml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f)
			require.NoError(t, err)
			require.NoError(t, cfg.Validate())
		})
	}
}

func TestMinimalDefaults(t *testing.T) {
	cfg, err := Load("testdata/good/minimal.toml")
	require.NoError(t, err)

	require.Equal(t, HTTP{Listen: "127.0.0.1:8080", ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}, cfg.HTTP)
	require.Equal(t, "127.0.0.1:9090", cfg.Metrics.Listen)
	require.Equal(t, Admin{}, cfg.Admin)
	require.Equal(t, Redis{KeyPrefix: "smsgate:", BindLeaseTTL: 6 * time.Second}, cfg.Redis)
	require.True(t, cfg.Redis.Embedded())
	require.Equal(t, Queue{DefaultValidity: 4 * time.Hour, MaxValidity: 10 * time.Hour, MaxPerNumber: 100000, Buckets: 64,
		Lease: 30 * time.Second, RetryBackoff: time.Second, MaxRetryBackoff: 5 * time.Minute}, cfg.Queue)
	require.Equal(t, Webhook{Timeout: 5 * time.Second, RetryFor: 24 * time.Hour, MinBackoff: time.Second,
		MaxBackoff: 10 * time.Minute, Workers: 8}, cfg.Webhook)
	require.Equal(t, Screening{}, cfg.Screening)
	require.Equal(t, MMS{MaxBytes: 5_000_000}, cfg.MMS)
	require.Equal(t, Log{Level: "info", Format: "text"}, cfg.Log)
	require.Equal(t, Shutdown{Grace: 30 * time.Second}, cfg.Shutdown)
	require.Equal(t, Simulator{Listen: "127.0.0.1:2775", SystemID: "smsgate", Password: "secret", ReceiptDelay: time.Second}, cfg.Simulator)

	require.Equal(t, []Carrier{{Name: "sim", LongMessages: "udh", MessageIDFormat: "auto", Binds: []Bind{{
		Name: "sim-0", Host: "127.0.0.1", Port: 2775, SystemID: "smsgate", Password: "secret",
		Mode: "transceiver", Window: 10, EnquireLink: 30 * time.Second, ResponseTimeout: 10 * time.Second,
		BindTimeout: 10 * time.Second, ReconnectMin: time.Second, ReconnectMax: 60 * time.Second,
	}}}}, cfg.Carriers)
	require.Equal(t, []Route{{Prefix: "+", Carrier: "sim"}}, cfg.Routes)
	require.Equal(t, []Org{{ID: "acme", Name: "Acme Clinic", Numbers: []Number{
		{E164: "+15550001111", Kind: KindLongCode, Registered: true},
	}}}, cfg.Orgs)
	require.Equal(t, "config ok: 1 org, 1 number, 1 carrier, 1 bind, 1 route", cfg.Summary())
}

func TestFullValues(t *testing.T) {
	cfg, err := Load("testdata/good/full.toml")
	require.NoError(t, err)
	files, err := filepath.Abs("testdata/files")
	require.NoError(t, err)

	require.Equal(t, HTTP{Listen: "127.0.0.1:18080", ReadHeaderTimeout: 6 * time.Second, ReadTimeout: 11 * time.Second,
		WriteTimeout: 12 * time.Second, IdleTimeout: 61 * time.Second}, cfg.HTTP)
	require.Equal(t, "127.0.0.1:19090", cfg.Metrics.Listen)
	require.Equal(t, HashKey("dev-admin-token"), cfg.Admin.TokenSHA256, "hex digests are lowercased")
	require.Equal(t, Redis{Cluster: []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"},
		Password: "redis-pw", KeyPrefix: "sg:", BindLeaseTTL: 6 * time.Second}, cfg.Redis)
	require.False(t, cfg.Redis.Embedded())
	require.Equal(t, Queue{DefaultValidity: 2 * time.Hour, MaxValidity: 8 * time.Hour, MaxPerNumber: 500, Buckets: 128,
		Lease: 45 * time.Second, RetryBackoff: 2 * time.Second, MaxRetryBackoff: 3 * time.Minute}, cfg.Queue)
	require.Equal(t, Webhook{URL: "https://events.example.com/smsgate", Secret: "global-secret", Timeout: 7 * time.Second,
		RetryFor: 12 * time.Hour, MinBackoff: 2 * time.Second, MaxBackoff: 20 * time.Minute, Workers: 4}, cfg.Webhook)
	require.Equal(t, filepath.Join(files, "rules.toml"), cfg.Screening.Rules, "relative to the config file")
	require.Equal(t, MMS{MaxBytes: 1_000_000}, cfg.MMS)
	require.Equal(t, Log{Level: "debug", Format: "json"}, cfg.Log)
	require.Equal(t, Shutdown{Grace: 45 * time.Second}, cfg.Shutdown)
	require.Equal(t, Simulator{Enabled: true, Listen: "127.0.0.1:12775", SystemID: "simid", Password: "simpw"}, cfg.Simulator,
		"an explicit receipt_delay of 0s is kept")

	require.Len(t, cfg.Carriers, 2)
	alpha := cfg.Carriers[0]
	require.Equal(t, "alpha", alpha.Name)
	require.Equal(t, "sar", alpha.LongMessages)
	require.True(t, alpha.GSM7Packed)
	require.Equal(t, []Bind{{
		Name: "alpha-tx", Host: "smsc.alpha.example", Port: 3550, SystemID: "acct", Password: "pw1", SystemType: "VMA",
		Mode: "transmitter+receiver", Window: 20, Throughput: 50.5, EnquireLink: 15 * time.Second,
		ResponseTimeout: 8 * time.Second, BindTimeout: 4 * time.Second, TLS: true,
		TLSCAFile: filepath.Join(files, "ca.pem"), TLSServerName: "smsc.alpha.example",
		ReconnectMin: 2 * time.Second, ReconnectMax: 2 * time.Minute,
	}, {
		Name: "alpha-1", Host: "smsc2.alpha.example", Port: 2775, SystemID: "acct", Mode: "transceiver", Window: 10,
		EnquireLink: 30 * time.Second, ResponseTimeout: 10 * time.Second, BindTimeout: 10 * time.Second,
		ReconnectMin: time.Second, ReconnectMax: 60 * time.Second,
	}}, alpha.Binds)
	require.Equal(t, "payload", cfg.Carriers[1].LongMessages)
	require.Equal(t, []Route{{Prefix: "+1", Carrier: "alpha", Fallback: "beta"}, {Prefix: "+1800", Carrier: "beta"}}, cfg.Routes)

	require.Len(t, cfg.Orgs, 2)
	acme := cfg.Orgs[0]
	require.Equal(t, []string{HashKey("dev-key-acme"), HashKey("foo")}, acme.APIKeySHA256)
	require.Equal(t, "Acme Clinic: call (555) 010-0000 for help.", acme.HelpText)
	require.Equal(t, "Acme Clinic: you will get no more messages.", acme.StopText)
	require.Equal(t, "Acme Clinic: messages resumed.", acme.StartText)
	require.Equal(t, "http://127.0.0.1:9000/acme", acme.WebhookURL)
	require.Equal(t, "acme-secret", acme.WebhookSecret)
	require.Equal(t, map[string]string{"prescription_drugs": "warn", "alcohol": "allow", "firearms": "block"}, acme.Screening)
	no, yes := false, true
	require.Equal(t, []Number{
		{E164: "+15550001111", Kind: KindLongCode, Registered: true, Carrier: "beta", Rate: 2.5, MMS: &no},
		{E164: "+18005550100", Kind: KindTollFree, Registered: true, MMS: &yes},
		{E164: "+15550003333", Kind: KindShortCode},
	}, acme.Numbers)
	require.Equal(t, "config ok: 2 orgs, 4 numbers, 2 carriers, 3 binds, 2 routes", cfg.Summary())
}

func TestExampleFile(t *testing.T) {
	cfg, err := Load("../smsgate.example.toml")
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())

	require.True(t, cfg.Redis.Embedded())
	require.True(t, cfg.Simulator.Enabled)
	require.Equal(t, "127.0.0.1:2775", cfg.Simulator.Listen)
	require.Equal(t, HashKey("dev-admin-token"), cfg.Admin.TokenSHA256)
	require.Equal(t, "http://127.0.0.1:8080/dev/events", cfg.Webhook.URL)

	org, ok := cfg.OrgByKeyHash(HashKey("dev-key-acme"))
	require.True(t, ok)
	require.Equal(t, "acme", org.ID)
	require.Equal(t, "Acme Clinic", org.Name)

	require.Len(t, cfg.Carriers, 1)
	ca := cfg.Carriers[0]
	require.Equal(t, "sim", ca.Name)
	require.Len(t, ca.Binds, 1)
	b := ca.Binds[0]
	require.Equal(t, []any{"127.0.0.1", 2775, "smsgate", "secret", "transceiver"},
		[]any{b.Host, b.Port, b.SystemID, b.Password, b.Mode})
	route, ok := cfg.RouteFor("+15550001111")
	require.True(t, ok)
	require.Equal(t, "sim", route.Carrier)

	for _, tc := range []struct {
		e164       string
		kind       string
		registered bool
		mms        bool
	}{
		{"+15550001111", KindLongCode, true, true},
		{"+15550002222", KindLongCode, false, true},
		{"+18005550100", KindTollFree, true, false},
	} {
		o, n, ok := cfg.Number(tc.e164)
		require.True(t, ok, tc.e164)
		require.Equal(t, "acme", o.ID)
		require.Equal(t, tc.kind, n.Kind, tc.e164)
		require.Equal(t, tc.registered, n.Registered, tc.e164)
		require.Equal(t, tc.mms, n.MMSCapable(), tc.e164)
	}
	require.Equal(t, "config ok: 1 org, 3 numbers, 1 carrier, 1 bind, 1 route", cfg.Summary())
}

// TestExampleDocumentsEveryKey keeps smsgate.example.toml in step with the
// schema: every key name appears in it (set, or commented out for
// alternatives such as *_env), and every key line carries a comment on the
// line or just above it.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../smsgate.example.toml")
	require.NoError(t, err)
	text := string(data)

	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := tomlName(f)
			if name == "" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				header := regexp.MustCompile(`(?m)^\s*\[\[?` + regexp.QuoteMeta(joinPath(prefix, name)) + `\]\]?\s*(#.*)?$`)
				require.Regexp(t, header, text, "table %s", joinPath(prefix, name))
				walk(joinPath(prefix, name), ft)
				continue
			}
			key := regexp.MustCompile(`(?m)^\s*(# )?` + regexp.QuoteMeta(name) + ` +=`)
			require.Regexp(t, key, text, "key %s", joinPath(prefix, name))
		}
	}
	walk("", reflect.TypeFor[Config]())

	lines := strings.Split(text, "\n")
	keyLine := regexp.MustCompile(`^\s*[a-z0-9_]+ += `)
	for i, l := range lines {
		if !keyLine.MatchString(l) || strings.Contains(l, "#") {
			continue
		}
		// A key of a repeated block (a second [[org.number]]) is
		// documented on its first occurrence.
		key := strings.Fields(l)[0]
		documented := i > 0 && strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#")
		for _, prev := range lines[:i] {
			if strings.HasPrefix(strings.TrimSpace(prev), key+" ") && strings.Contains(prev, "#") {
				documented = true
			}
		}
		require.True(t, documented, "line %d %q has no comment", i+1, l)
	}
}

func TestEnvSecrets(t *testing.T) {
	const unset = "SMSGATE_CONFIG_TEST_NEVER_SET"
	_, isSet := os.LookupEnv(unset)
	require.False(t, isSet)
	t.Setenv("SMSGATE_T_ADMIN", HashKey("admin"))
	t.Setenv("SMSGATE_T_REDIS", "redis-pw")
	t.Setenv("SMSGATE_T_WEBHOOK", "hook-secret")
	t.Setenv("SMSGATE_T_BIND", "bind-pw")
	t.Setenv("SMSGATE_T_ORG", "org-secret")
	t.Setenv("SMSGATE_T_EMPTY", "")

	base, err := os.ReadFile("testdata/good/minimal.toml")
	require.NoError(t, err)
	withBind := func(extra string) string {
		return strings.Replace(string(base), `  password = "secret"`+"\n", extra, 1)
	}

	t.Run("resolved", func(t *testing.T) {
		doc := "[admin]\ntoken_sha256_env = \"SMSGATE_T_ADMIN\"\n[redis]\naddr = \"127.0.0.1:6379\"\npassword_env = \"SMSGATE_T_REDIS\"\n" +
			"[webhook]\nsecret_env = \"SMSGATE_T_WEBHOOK\"\n" +
			strings.Replace(withBind("  password_env = \"SMSGATE_T_BIND\"\n"), orgLine, orgLine+"webhook_secret_env = \"SMSGATE_T_ORG\"\n", 1)
		cfg, err := Parse([]byte(doc))
		require.NoError(t, err)
		require.Equal(t, HashKey("admin"), cfg.Admin.TokenSHA256)
		require.Equal(t, "redis-pw", cfg.Redis.Password)
		require.Equal(t, "hook-secret", cfg.Webhook.Secret)
		require.Equal(t, "bind-pw", cfg.Carriers[0].Binds[0].Password)
		require.Equal(t, "SMSGATE_T_BIND", cfg.Carriers[0].Binds[0].PasswordEnv)
		require.Equal(t, "org-secret", cfg.Orgs[0].WebhookSecret)
	})

	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"unset", withBind("  password_env = \"" + unset + "\"\n"),
			[]string{`carrier[0].bind[0].password_env: environment variable "` + unset + `" is not set`}},
		{"empty", "[redis]\npassword_env = \"SMSGATE_T_EMPTY\"\n" + string(base),
			[]string{`redis.password_env: environment variable "SMSGATE_T_EMPTY" is empty`}},
		{"the secret itself instead of a variable name", "[webhook]\nsecret_env = \"my-webhook-secret-value\"\n" + string(base),
			[]string{`webhook.secret_env: must name an environment variable (letters, digits and _, not starting with a digit), not hold the secret itself`}},
		{"both", "[webhook]\nsecret = \"x\"\nsecret_env = \"SMSGATE_T_WEBHOOK\"\n" + string(base),
			[]string{`webhook.secret_env: cannot be used together with secret`}},
		{"org unset", strings.Replace(string(base), orgLine, orgLine+"webhook_secret_env = \""+unset+"\"\n", 1),
			[]string{`org[0].webhook_secret_env: environment variable "` + unset + `" is not set`}},
		{"admin value checked", "[admin]\ntoken_sha256_env = \"SMSGATE_T_REDIS\"\n" + string(base),
			[]string{`admin.token_sha256: must be 64 hex characters; it was read from the environment variable "SMSGATE_T_REDIS", which must hold the token's SHA-256 (smsgate hash-key), not the token`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			require.Equal(t, tc.want, problemStrings(t, err))
		})
	}
}

func TestDecoding(t *testing.T) {
	base, err := os.ReadFile("testdata/good/minimal.toml")
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		doc   string
		check func(t *testing.T, c *Config)
		want  []string
	}{
		{name: "inline array of tables", doc: strings.Replace(string(base), "\n  [[org.number]]\n  e164 = \"+15550001111\"\n  kind = \"long_code\"\n  registered = true\n",
			"number = [{ e164 = \"+15550001111\", kind = \"toll_free\" }, { e164 = \"+15550001112\", kind = \"short_code\", rate = 7 }]\n", 1),
			check: func(t *testing.T, c *Config) {
				require.Len(t, c.Orgs[0].Numbers, 2)
				require.Equal(t, 3.0, c.Orgs[0].Numbers[0].EffectiveRate())
				require.Equal(t, 7.0, c.Orgs[0].Numbers[1].EffectiveRate())
			}},
		{name: "integer into float", doc: strings.Replace(string(base), "  password = \"secret\"\n", "  throughput = 25\n", 1),
			check: func(t *testing.T, c *Config) { require.Equal(t, 25.0, c.Carriers[0].Binds[0].Throughput) }},
		{name: "explicit empty key prefix kept", doc: "[redis]\nkey_prefix = \"\"\n" + string(base),
			check: func(t *testing.T, c *Config) { require.Empty(t, c.Redis.KeyPrefix) }},
		{name: "explicit empty listen", doc: "[http]\nlisten = \"\"\n" + string(base),
			want: []string{"http.listen: required"}},
		{name: "float into int", doc: "[queue]\nmax_per_number = 1.5\n" + string(base),
			want: []string{"queue.max_per_number: expected an integer, got float 1.5"}},
		{name: "integer overflow", doc: "[redis]\ndb = 9223372036854775807\n" + string(base),
			check: func(t *testing.T, c *Config) { require.Equal(t, 9223372036854775807, c.Redis.DB) }},
		{name: "datetime into string", doc: "[log]\nlevel = 2024-01-01\n" + string(base),
			want: []string{"log.level: expected a string, got a datetime"}},
		{name: "string into array", doc: "[redis]\ncluster = \"127.0.0.1:7000\"\n" + string(base),
			want: []string{`redis.cluster: expected an array, got string "127.0.0.1:7000"`}},
		{name: "wrong type inside map", doc: strings.Replace(string(base), orgLine, orgLine+"screening = { alcohol = 1 }\n", 1),
			want: []string{"org[0].screening.alcohol: expected a string, got integer 1"}},
		{name: "mms wrong type", doc: string(base) + "  mms = \"yes\"\n",
			want: []string{`org[0].number[0].mms: expected a boolean, got string "yes"`}},
		{name: "table where a value belongs", doc: "http = 3\n" + string(base),
			want: []string{"http: expected a table, got integer 3"}},
		{name: "unknown key without a near name", doc: "[queue]\nflux_capacitor = 1\n" + string(base),
			want: []string{"queue.flux_capacitor: unknown key"}},
		{name: "unknown keys in several places", doc: "[http]\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n" + string(base) + "  e165 = \"+1\"\n",
			want: []string{`http.listn: unknown key (did you mean "listen"?)`, `org[0].number[0].e165: unknown key (did you mean "e164"?)`}},
		{name: "redis cluster with db", doc: "[redis]\ncluster = [\"127.0.0.1:7000\"]\ndb = 2\n" + string(base),
			want: []string{"redis.db: must be 0 with redis.cluster (a cluster has only database 0)"}},
		{name: "redis bad addr", doc: "[redis]\naddr = \"localhost\"\n" + string(base),
			want: []string{`redis.addr: "localhost" is not a host:port address`}},
		{name: "backoff order", doc: "[webhook]\nmin_backoff = \"1h\"\nmax_backoff = \"1m\"\n" + string(base),
			want: []string{"webhook.min_backoff: 1h is longer than webhook.max_backoff (1m)"}},
		{name: "fallback is the carrier", doc: strings.Replace(string(base), "carrier = \"sim\"\n", "carrier = \"sim\"\nfallback = \"sim\"\n", 1),
			want: []string{`route[0].fallback: is the route's own carrier "sim"`}},
		{name: "simulator checked only when enabled", doc: "[simulator]\nlisten = \"nope\"\n" + string(base),
			check: func(t *testing.T, c *Config) { require.False(t, c.Simulator.Enabled) }},
		{name: "simulator enabled with bad listen", doc: "[simulator]\nenabled = true\nlisten = \"nope\"\n" + string(base),
			want: []string{`simulator.listen: "nope" is not a host:port address`}},
		{name: "port zero listen allowed", doc: "[http]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n" + string(base),
			check: func(t *testing.T, c *Config) { require.Equal(t, "127.0.0.1:0", c.HTTP.Listen) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.doc))
			if tc.want != nil {
				require.Nil(t, cfg)
				require.Equal(t, tc.want, problemStrings(t, err))
				return
			}
			require.NoError(t, err)
			tc.check(t, cfg)
		})
	}
}

func TestRulesNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	base, err := os.ReadFile("testdata/good/minimal.toml")
	require.NoError(t, err)
	_, err = Parse([]byte("[screening]\nrules = \"" + dir + "\"\n" + string(base)))
	require.Equal(t, []string{"screening.rules: " + dir + " is not a regular file"}, problemStrings(t, err))
}

func TestRelativePaths(t *testing.T) {
	doc := []byte("[screening]\nrules = \"../files/rules.toml\"\n")
	base, err := os.ReadFile("testdata/good/minimal.toml")
	require.NoError(t, err)
	doc = append(doc, base...)

	// Parse: relative to the working directory (the package directory here),
	// where ../files does not exist.
	_, err = Parse(doc)
	require.Equal(t, []string{"screening.rules: cannot read ../files/rules.toml: no such file or directory"}, problemStrings(t, err))

	cfg, err := ParseWithBase(doc, "testdata/good")
	require.NoError(t, err)
	require.Equal(t, filepath.Join("testdata", "files", "rules.toml"), cfg.Screening.Rules)
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	var ve *ValidationError
	require.False(t, errors.As(err, &ve))
}

func TestValidationErrorFormat(t *testing.T) {
	err := &ValidationError{Problems: []Problem{
		{Path: "a.b", Message: "bad"},
		{Message: "syntax error at line 1, column 2: x"},
	}}
	require.Equal(t, "a.b: bad\nsyntax error at line 1, column 2: x", err.Error())
}

func TestHashKey(t *testing.T) {
	require.Equal(t, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", HashKey("foo"))
	require.Equal(t, HashKey("foo"), HashKey("  foo\n"))
	require.NotEqual(t, HashKey("foo"), HashKey("Foo"))
}

func TestNumberDefaults(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		n    Number
		rate float64
		mms  bool
	}{
		{Number{Kind: KindLongCode}, 1, true},
		{Number{Kind: KindTollFree}, 3, false},
		{Number{Kind: KindShortCode}, 100, true},
		{Number{Kind: KindLongCode, Rate: 0.5, MMS: &no}, 0.5, false},
		{Number{Kind: KindTollFree, Rate: 10, MMS: &yes}, 10, true},
	} {
		require.Equal(t, tc.rate, tc.n.EffectiveRate(), "%+v", tc.n)
		require.Equal(t, tc.mms, tc.n.MMSCapable(), "%+v", tc.n)
	}
}

func TestLookups(t *testing.T) {
	cfg, err := Load("testdata/good/full.toml")
	require.NoError(t, err)

	check := func(t *testing.T, cfg *Config) {
		org, num, ok := cfg.Number("+18005550100")
		require.True(t, ok)
		require.Equal(t, "acme", org.ID)
		require.Equal(t, KindTollFree, num.Kind)
		org, _, ok = cfg.Number("+15559990000")
		require.True(t, ok)
		require.Equal(t, "globex", org.ID)
		_, _, ok = cfg.Number("+15550000000")
		require.False(t, ok)

		org, ok = cfg.OrgByID("globex")
		require.True(t, ok)
		require.Equal(t, "Globex", org.Name)
		_, ok = cfg.OrgByID("nope")
		require.False(t, ok)

		org, ok = cfg.OrgByKeyHash(strings.ToUpper(HashKey("foo")))
		require.True(t, ok)
		require.Equal(t, "acme", org.ID)
		_, ok = cfg.OrgByKeyHash(HashKey("bar"))
		require.False(t, ok)

		ca, ok := cfg.CarrierByName("beta")
		require.True(t, ok)
		require.Equal(t, "payload", ca.LongMessages)
		_, ok = cfg.CarrierByName("gamma")
		require.False(t, ok)

		r, ok := cfg.RouteFor("+18005550100")
		require.True(t, ok)
		require.Equal(t, "beta", r.Carrier, "longest prefix wins")
		r, ok = cfg.RouteFor("+15550001111")
		require.True(t, ok)
		require.Equal(t, "alpha", r.Carrier)
		_, ok = cfg.RouteFor("+445550001111")
		require.False(t, ok)
	}
	t.Run("indexed", func(t *testing.T) { check(t, cfg) })
	t.Run("hand-built", func(t *testing.T) {
		c := &Config{Carriers: cfg.Carriers, Routes: cfg.Routes, Orgs: cfg.Orgs}
		check(t, c)
	})
	t.Run("edited after parse", func(t *testing.T) {
		cfg.Orgs[0], cfg.Orgs[1] = cfg.Orgs[1], cfg.Orgs[0]
		check(t, cfg)
	})
}

func TestSetDefaultsThenValidate(t *testing.T) {
	c := &Config{
		Carriers: []Carrier{{Name: "a", Binds: []Bind{{Host: "127.0.0.1", Port: 2775, SystemID: "x"}}}},
		Orgs: []Org{{ID: "o", Name: "O", Numbers: []Number{
			{E164: "+15550001111", Kind: KindLongCode, Carrier: "a"},
		}}},
	}
	var ve *ValidationError
	require.ErrorAs(t, c.Validate(), &ve, "zero values are not valid before defaults")
	c.SetDefaults()
	require.NoError(t, c.Validate())
	require.Equal(t, "a-0", c.Carriers[0].Binds[0].Name)
	require.Equal(t, 64, c.Queue.Buckets)
}

func TestBindHost(t *testing.T) {
	base, err := os.ReadFile("testdata/bad/host_with_port.toml")
	require.NoError(t, err)
	for _, tc := range []struct{ host, problem string }{
		{"127.0.0.1", ""},
		{"smsc.example.com", ""},
		{"::1", ""},
		{"127.0.0.1:2775", `"127.0.0.1:2775" includes a port; put the port in carrier[0].bind[0].port`},
		{"smpp://smsc.example.com", `"smpp://smsc.example.com" is not a host name or address; write only the host (the protocol is SMPP, tls selects TLS)`},
		{"[::1]:2775", `"[::1]:2775": write an IPv6 address without brackets, and the port in carrier[0].bind[0].port`},
		{"smsc example", `"smsc example" contains white space`},
	} {
		doc := strings.Replace(string(base), `host = "127.0.0.1:2775"`, fmt.Sprintf("host = %q", tc.host), 1)
		_, err := Parse([]byte(doc))
		if tc.problem == "" {
			require.NoError(t, err, tc.host)
			continue
		}
		require.ErrorContains(t, err, "carrier[0].bind[0].host: "+tc.problem, tc.host)
	}
}
