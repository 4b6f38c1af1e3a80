package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Problem is one thing wrong with a configuration, at a TOML key path such
// as "org[0].number[1].e164" (empty for a syntax error, whose message
// carries the line and column).
type Problem struct {
	Path    string
	Message string
}

// String formats the problem as "path: message".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	Problems []Problem
}

// Error joins the problems as "path: message" lines.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads the file at path and parses it with ParseWithBase: relative
// file paths in it (screening.rules, tls_ca_file) become absolute paths
// under the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseWithBase(data, dir)
}

// Parse is ParseWithBase with relative file paths left relative to the
// working directory.
func Parse(data []byte) (*Config, error) {
	return ParseWithBase(data, "")
}

// ParseWithBase decodes a TOML document strictly (an unknown key or a value
// of the wrong type is a problem naming its path), resolves `*_env` secrets
// from the environment, fills defaults for absent keys, makes relative file
// paths absolute against dir (when dir is not empty), and validates the
// whole. On any problem it returns a *ValidationError listing all of them.
func ParseWithBase(data []byte, dir string) (*Config, error) {
	cfg := &Config{}
	defined, problems := decodeTOML(data, cfg)
	if defined == nil { // syntax error: nothing else is meaningful
		return nil, &ValidationError{Problems: problems}
	}
	problems = append(problems, cfg.resolveSecrets(os.LookupEnv)...)
	cfg.applyDefaults(func(path string) bool { return defined[path] })
	cfg.resolvePaths(dir)
	cfg.normalize()
	problems = append(problems, dropShadowed(cfg.problems(), problems)...)
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	cfg.buildIndex()
	return cfg, nil
}

// dropShadowed removes validation problems at (or under) a path that
// already has a decoding problem: a value that could not be decoded is zero,
// and saying so again would only add noise.
func dropShadowed(validation, decoding []Problem) []Problem {
	out := validation[:0]
	for _, v := range validation {
		shadowed := false
		for _, d := range decoding {
			if d.Path != "" && (v.Path == d.Path || strings.HasPrefix(v.Path, d.Path+".") || strings.HasPrefix(v.Path, d.Path+"[")) {
				shadowed = true
				break
			}
		}
		if !shadowed {
			out = append(out, v)
		}
	}
	return out
}

// normalize lowercases hex digests so they compare equal to HashKey's output.
func (c *Config) normalize() {
	c.Admin.TokenSHA256 = strings.ToLower(c.Admin.TokenSHA256)
	for i := range c.Orgs {
		for k, h := range c.Orgs[i].APIKeySHA256 {
			c.Orgs[i].APIKeySHA256[k] = strings.ToLower(h)
		}
	}
}

// resolvePaths makes relative file paths absolute against dir.
func (c *Config) resolvePaths(dir string) {
	if dir == "" {
		return
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.Screening.Rules = abs(c.Screening.Rules)
	for i := range c.Carriers {
		for j := range c.Carriers[i].Binds {
			b := &c.Carriers[i].Binds[j]
			b.TLSCAFile = abs(b.TLSCAFile)
		}
	}
}

// HashKey returns the lowercase hex SHA-256 of the key with surrounding
// white space trimmed: the form of api_key_sha256 and token_sha256.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	return hex.EncodeToString(sum[:])
}

// EffectiveRate is the number's send rate in segments per second: Rate when
// set, else the kind's default (long_code 1, toll_free 3, short_code 100).
func (n Number) EffectiveRate() float64 {
	if n.Rate > 0 {
		return n.Rate
	}
	switch n.Kind {
	case KindTollFree:
		return 3
	case KindShortCode:
		return 100
	default:
		return 1
	}
}

// MMSCapable reports whether the number may send media: MMS when set, else
// true except for toll-free numbers.
func (n Number) MMSCapable() bool {
	if n.MMS != nil {
		return *n.MMS
	}
	return n.Kind != KindTollFree
}

// index speeds up lookups on a parsed configuration. Entries are positions
// in the slices and are checked on use, so a Config edited after Parse
// still answers correctly (by a scan).
type index struct {
	numbers map[string][2]int // e164 -> org, number
	orgs    map[string]int    // org id -> org
	keys    map[string]int    // api key hash -> org
}

func (c *Config) buildIndex() {
	ix := &index{numbers: map[string][2]int{}, orgs: map[string]int{}, keys: map[string]int{}}
	for i, o := range c.Orgs {
		ix.orgs[o.ID] = i
		for _, k := range o.APIKeySHA256 {
			ix.keys[k] = i
		}
		for j, n := range o.Numbers {
			ix.numbers[n.E164] = [2]int{i, j}
		}
	}
	c.index = ix
}

// Number finds a configured sender number and its org.
func (c *Config) Number(e164 string) (org *Org, num *Number, ok bool) {
	if c.index != nil {
		if p, found := c.index.numbers[e164]; found && p[0] < len(c.Orgs) && p[1] < len(c.Orgs[p[0]].Numbers) &&
			c.Orgs[p[0]].Numbers[p[1]].E164 == e164 {
			return &c.Orgs[p[0]], &c.Orgs[p[0]].Numbers[p[1]], true
		}
	}
	for i := range c.Orgs {
		for j := range c.Orgs[i].Numbers {
			if c.Orgs[i].Numbers[j].E164 == e164 {
				return &c.Orgs[i], &c.Orgs[i].Numbers[j], true
			}
		}
	}
	return nil, nil, false
}

// OrgByID finds an org by its id.
func (c *Config) OrgByID(id string) (*Org, bool) {
	if c.index != nil {
		if i, found := c.index.orgs[id]; found && i < len(c.Orgs) && c.Orgs[i].ID == id {
			return &c.Orgs[i], true
		}
	}
	for i := range c.Orgs {
		if c.Orgs[i].ID == id {
			return &c.Orgs[i], true
		}
	}
	return nil, false
}

// OrgByKeyHash finds the org owning an API key, given HashKey(key).
func (c *Config) OrgByKeyHash(sum string) (*Org, bool) {
	sum = strings.ToLower(sum)
	if c.index != nil {
		if i, found := c.index.keys[sum]; found && i < len(c.Orgs) && containsFold(c.Orgs[i].APIKeySHA256, sum) {
			return &c.Orgs[i], true
		}
	}
	for i := range c.Orgs {
		if containsFold(c.Orgs[i].APIKeySHA256, sum) {
			return &c.Orgs[i], true
		}
	}
	return nil, false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// CarrierByName finds a carrier by name.
func (c *Config) CarrierByName(name string) (*Carrier, bool) {
	for i := range c.Carriers {
		if c.Carriers[i].Name == name {
			return &c.Carriers[i], true
		}
	}
	return nil, false
}

// RouteFor returns the route whose prefix is the longest prefix of e164
// (the first such route when several share a prefix).
func (c *Config) RouteFor(e164 string) (Route, bool) {
	best := -1
	for i, r := range c.Routes {
		if strings.HasPrefix(e164, r.Prefix) && (best < 0 || len(r.Prefix) > len(c.Routes[best].Prefix)) {
			best = i
		}
	}
	if best < 0 {
		return Route{}, false
	}
	return c.Routes[best], true
}

// Summary describes the configuration in one line, e.g.
// "config ok: 1 org, 3 numbers, 1 carrier, 1 bind, 1 route".
func (c *Config) Summary() string {
	numbers, binds := 0, 0
	for _, o := range c.Orgs {
		numbers += len(o.Numbers)
	}
	for _, ca := range c.Carriers {
		binds += len(ca.Binds)
	}
	return fmt.Sprintf("config ok: %s, %s, %s, %s, %s",
		plural(len(c.Orgs), "org"), plural(numbers, "number"), plural(len(c.Carriers), "carrier"),
		plural(binds, "bind"), plural(len(c.Routes), "route"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
