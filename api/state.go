package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sort"
	"strings"
	"time"

	"github.com/smsgate/smsgate/compliance"
	"github.com/smsgate/smsgate/config"
	"github.com/smsgate/smsgate/message"
)

// Defaults used when the config leaves a value at zero (config normally fills them).
const (
	defaultValidity    = 4 * time.Hour
	defaultMaxValidity = 10 * time.Hour
	defaultMaxPerQueue = 100000
)

// State is the live, immutable view of the configuration the API serves
// from. Build a new one with NewState on reload and install it with
// Server.SetState; requests in flight keep the State they started with.
type State struct {
	cfg     *config.Config
	rules   *compliance.Rules
	keys    map[string]keyEntry // lowercase hex SHA-256 of an API key -> org
	numbers map[string]*numberEntry
	ordered []*numberEntry // numbers in config order, for the admin listing
	admin   []byte         // lowercase hex SHA-256 of the admin token; nil: admin disabled
	limits  requestLimits
	maxPer  int
}

type keyEntry struct {
	hash []byte // the normalised hash, compared in constant time
	org  *orgEntry
}

type orgEntry struct {
	org        *config.Org
	notice     string           // the sender-identification notice text
	noticeInfo message.TextInfo // its encoding and segments
	// statusEvents filters the org's message.status events (nil: all).
	statusEvents []string
}

type numberEntry struct {
	org      *orgEntry
	num      *config.Number
	interval time.Duration
	carrier  string
	fallback string
}

// NewState precomputes the lookups a request needs from cfg: the API key
// hashes of every org, every sender number with its org, rate and carrier,
// the admin token hash and the queue limits. cfg and rules must not be
// modified afterwards. A nil rules uses compliance.DefaultRules().
func NewState(cfg *config.Config, rules *compliance.Rules) *State {
	if rules == nil {
		rules = compliance.DefaultRules()
	}
	s := &State{
		cfg:     cfg,
		rules:   rules,
		keys:    make(map[string]keyEntry),
		numbers: make(map[string]*numberEntry),
		limits: requestLimits{
			DefaultValidity: cfg.Queue.DefaultValidity,
			MaxValidity:     cfg.Queue.MaxValidity,
		},
		maxPer: cfg.Queue.MaxPerNumber,
	}
	if s.limits.DefaultValidity <= 0 {
		s.limits.DefaultValidity = defaultValidity
	}
	if s.limits.MaxValidity <= 0 {
		s.limits.MaxValidity = defaultMaxValidity
	}
	if s.limits.DefaultValidity > s.limits.MaxValidity {
		s.limits.DefaultValidity = s.limits.MaxValidity
	}
	if s.maxPer <= 0 {
		s.maxPer = defaultMaxPerQueue
	}
	if h := strings.ToLower(strings.TrimSpace(cfg.Admin.TokenSHA256)); h != "" {
		s.admin = []byte(h)
	}
	for i := range cfg.Orgs {
		org := &cfg.Orgs[i]
		oe := &orgEntry{org: org, notice: compliance.Notice(org.Name)}
		oe.noticeInfo = message.Analyze(oe.notice)
		oe.statusEvents = cfg.StatusEventsFor(org)
		for _, h := range org.APIKeySHA256 {
			h = strings.ToLower(strings.TrimSpace(h))
			if h != "" {
				s.keys[h] = keyEntry{hash: []byte(h), org: oe}
			}
		}
		for j := range org.Numbers {
			n := &org.Numbers[j]
			ne := &numberEntry{org: oe, num: n}
			if rate := n.EffectiveRate(); rate > 0 {
				ne.interval = time.Duration(float64(time.Second) / rate)
			}
			ne.carrier, ne.fallback = route(cfg, n)
			s.numbers[n.E164] = ne
			s.ordered = append(s.ordered, ne)
		}
	}
	return s
}

// Config returns the configuration the state was built from.
func (s *State) Config() *config.Config { return s.cfg }

// route resolves the carrier of a number: its own, else the longest
// matching [[route]] prefix. It mirrors the router for the admin listing.
func route(cfg *config.Config, n *config.Number) (carrier, fallback string) {
	if n.Carrier != "" {
		return n.Carrier, ""
	}
	best := -1
	for _, r := range cfg.Routes {
		if strings.HasPrefix(n.E164, r.Prefix) && len(r.Prefix) > best {
			best = len(r.Prefix)
			carrier, fallback = r.Carrier, r.Fallback
		}
	}
	return carrier, fallback
}

// authenticate returns the org of a bearer API key, or nil.
func (s *State) authenticate(key string) *orgEntry {
	if key == "" {
		return nil
	}
	sum := hashHex(key)
	ke, ok := s.keys[string(sum[:])]
	// The map lookup found the entry by its hash; confirm in constant time
	// so the byte comparison itself never leaks where the values differ.
	if !ok || subtle.ConstantTimeCompare(ke.hash, sum[:]) != 1 {
		return nil
	}
	return ke.org
}

// adminOK reports whether token is the admin token. Admin must be enabled.
func (s *State) adminOK(token string) bool {
	if s.admin == nil || token == "" {
		return false
	}
	sum := hashHex(token)
	return subtle.ConstantTimeCompare(sum[:], s.admin) == 1
}

// hashHex is config.HashKey without allocating a string: the lowercase hex
// SHA-256 of the trimmed key.
func hashHex(key string) [64]byte {
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	var out [64]byte
	hex.Encode(out[:], sum[:])
	return out
}

// sortedNumbers returns the numbers ordered by E.164.
func (s *State) sortedNumbers() []*numberEntry {
	out := append([]*numberEntry(nil), s.ordered...)
	sort.Slice(out, func(i, j int) bool { return out[i].num.E164 < out[j].num.E164 })
	return out
}
