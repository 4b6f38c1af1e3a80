// Package compliance makes smsgate's carrier-compliance decisions: content
// screening against a rules file, the outbound checks of API.md section 2 and
// 4 (registration, length, media, screening), keyword classification of
// inbound messages, and the texts of the system messages (sender notice and
// keyword replies). It performs no I/O apart from LoadRules reading a file.
package compliance

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Action is what happens to a message that matches a screening category.
type Action string

// Actions. Allow is valid only as a per-org override: it switches a
// category off for that org.
const (
	ActionWarn  Action = "warn"
	ActionBlock Action = "block"
	ActionAllow Action = "allow"
)

// Match is one screening category that matched a text.
type Match struct {
	Category string // category name from the rules
	Term     string // the term as written in the rules, or the text a pattern matched (normalised)
	Action   Action // effective action after overrides: warn or block
}

// Category describes one screening category of a rule set.
type Category struct {
	Name   string
	Action Action // default action: warn or block
}

// Rules is a compiled screening rule set. It is immutable and safe for
// concurrent use.
type Rules struct {
	cats  []category
	index map[string][]phrase // folded first word of a term -> terms starting with it
}

type category struct {
	name     string
	action   Action
	patterns []pattern
}

// pattern is a compiled rule pattern with a literal every match contains
// (possibly empty), checked first to skip the regexp on most texts.
type pattern struct {
	re   *regexp.Regexp
	need string
}

// phrase is one term, normalised into folded words.
type phrase struct {
	cat  int
	term string   // as written in the rules
	rest []string // folded words after the first
}

//go:embed rules/default.toml
var defaultRulesTOML []byte

// DefaultRules returns the built-in rule set (compliance/rules/default.toml).
// Each call compiles a fresh copy; callers should keep the result.
func DefaultRules() *Rules {
	r, err := ParseRules(defaultRulesTOML)
	if err != nil {
		// The embedded file is tested; this is a build defect.
		panic(fmt.Sprintf("compliance: built-in rules are invalid: %v", err))
	}
	return r
}

// DefaultRulesTOML returns the text of the built-in rules file, a starting
// point for operators writing their own.
func DefaultRulesTOML() []byte { return slices.Clone(defaultRulesTOML) }

// LoadRules reads and parses a rules file.
func LoadRules(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compliance: read rules: %w", err)
	}
	r, err := ParseRules(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

var categoryName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// ParseRules decodes a rules file strictly. Every problem is reported with
// its key path (e.g. `category[2].action`), joined in one error.
//
// Format:
//
//	[[category]]
//	name = "alcohol"                 # [a-z][a-z0-9_]*, unique
//	action = "warn"                  # warn | block
//	terms = ["beer", "wine"]         # whole words/phrases, case-insensitive
//	patterns = ['\bvodka\w*']        # RE2, run on the normalised text
//
// Terms are normalised like the screened text (see Screen). Patterns run on
// the normalised text: lower case ASCII-folded letters, leetspeak undone,
// words separated by single spaces, no punctuation.
func ParseRules(data []byte) (*Rules, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return nil, fmt.Errorf("compliance: parse rules: %w", err)
	}
	var problems []error
	bad := func(path, format string, args ...any) {
		problems = append(problems, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	for k := range raw {
		if k != "category" {
			bad(k, "unknown key (only [[category]] tables are allowed)")
		}
	}
	var tables []map[string]any
	switch v := raw["category"].(type) {
	case nil:
		bad("category", "no [[category]] defined")
	case []map[string]any:
		tables = v
	default:
		bad("category", "must be an array of tables ([[category]])")
	}

	r := &Rules{index: make(map[string][]phrase)}
	seen := map[string]bool{}
	for i, t := range tables {
		p := fmt.Sprintf("category[%d]", i)
		for _, k := range sortedKeys(t) {
			switch k {
			case "name", "action", "terms", "patterns":
			default:
				bad(p+"."+k, "unknown key (allowed: name, action, terms, patterns)")
			}
		}
		name, ok := t["name"].(string)
		switch {
		case t["name"] == nil:
			bad(p+".name", "missing")
		case !ok:
			bad(p+".name", "must be a string")
		case !categoryName.MatchString(name):
			bad(p+".name", "%q must be lower case letters, digits and underscores, starting with a letter", name)
		case seen[name]:
			bad(p+".name", "category %q is defined twice", name)
		}
		seen[name] = true
		label := fmt.Sprintf("%s (%s)", p, name)

		action, ok := t["action"].(string)
		switch {
		case t["action"] == nil:
			bad(p+".action", "missing (warn or block)")
		case !ok || (Action(action) != ActionWarn && Action(action) != ActionBlock):
			bad(p+".action", "%v is not a valid action (warn or block)", t["action"])
		}

		c := category{name: name, action: Action(action)}
		ci := len(r.cats)
		terms, err := stringList(t["terms"])
		if err != nil {
			bad(p+".terms", "%v", err)
		}
		for j, term := range terms {
			words := termWords(term)
			if len(words) == 0 {
				bad(fmt.Sprintf("%s.terms[%d]", p, j), "%s: term %q has no letters or digits", label, term)
				continue
			}
			r.index[words[0]] = append(r.index[words[0]], phrase{cat: ci, term: term, rest: words[1:]})
		}
		pats, err := stringList(t["patterns"])
		if err != nil {
			bad(p+".patterns", "%v", err)
		}
		for j, src := range pats {
			re, err := regexp.Compile(src)
			if err != nil {
				bad(fmt.Sprintf("%s.patterns[%d]", p, j), "%s: pattern %q does not compile: %v", label, src, err)
				continue
			}
			c.patterns = append(c.patterns, pattern{re: re, need: requiredLiteral(src)})
		}
		if len(terms) == 0 && len(pats) == 0 {
			bad(p, "%s has neither terms nor patterns", label)
		}
		r.cats = append(r.cats, c)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("compliance: invalid rules:\n%w", errors.Join(problems...))
	}
	return r, nil
}

// termWords normalises a rules term into folded words.
func termWords(term string) []string {
	n := normalize(term)
	words := make([]string, len(n.toks))
	for i, t := range n.toks {
		words[i] = n.folded[t.s:t.e]
	}
	return words
}

// requiredLiteral returns the longest literal that every match of the
// regular expression src contains, or "" when it cannot tell.
func requiredLiteral(src string) string {
	re, err := syntax.Parse(src, syntax.Perl)
	if err != nil {
		return ""
	}
	return mustContain(re)
}

func mustContain(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return ""
		}
		return string(re.Rune)
	case syntax.OpCapture, syntax.OpPlus:
		return mustContain(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min < 1 {
			return ""
		}
		sub := re.Sub[0]
		if sub.Op == syntax.OpLiteral && sub.Flags&syntax.FoldCase == 0 && re.Min <= 8 {
			return strings.Repeat(string(sub.Rune), re.Min)
		}
		return mustContain(sub)
	case syntax.OpConcat:
		best := ""
		for _, sub := range re.Sub {
			if l := mustContain(sub); len(l) > len(best) {
				best = l
			}
		}
		return best
	}
	return ""
}

func stringList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be an array of strings")
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("element %d (%v) is not a string", i, e)
		}
		out = append(out, s)
	}
	return out, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Categories lists the rule set's categories in file order.
func (r *Rules) Categories() []Category {
	if r == nil {
		return nil
	}
	out := make([]Category, len(r.cats))
	for i, c := range r.cats {
		out[i] = Category{Name: c.name, Action: c.action}
	}
	return out
}

// Screen reports the categories whose terms or patterns occur in text.
//
// overrides maps a category name to "warn", "block" or "allow" for one org;
// allow skips the category, other values are ignored. The result holds one
// Match per category (its earliest match in the text), block matches first,
// then warn, each group in text order. It is nil when nothing matched.
//
// Terms match whole words and phrases of the normalised text, so the case,
// accents, zero-width characters, look-alike Cyrillic/Greek letters,
// leetspeak inside words ("w33d", "m@rijuana") and spaced or dotted letters
// ("c.b.d", "C B D") do not hide a term, while a term inside a longer word
// ("grassland", "Scunthorpe") does not match.
func (r *Rules) Screen(text string, overrides map[string]string) []Match {
	if r == nil || len(r.cats) == 0 {
		return nil
	}
	var (
		actStack [16]Action
		posStack [16]int
		act      = actStack[:0]
		pos      = posStack[:0]
		terms    = make([]string, len(r.cats))
	)
	for _, c := range r.cats {
		a := c.action
		if o, ok := overrides[c.name]; ok {
			switch Action(o) {
			case ActionWarn, ActionBlock, ActionAllow:
				a = Action(o)
			}
		}
		act = append(act, a)
		pos = append(pos, -1)
	}

	n := normalize(text)
	found := 0
	for i, t := range n.toks {
		cands, ok := r.index[n.folded[t.s:t.e]]
		if !ok {
			continue
		}
	cand:
		for _, ph := range cands {
			if pos[ph.cat] >= 0 || act[ph.cat] == ActionAllow {
				continue
			}
			if i+len(ph.rest) >= len(n.toks) {
				continue
			}
			for k, w := range ph.rest {
				nt := n.toks[i+1+k]
				if n.folded[nt.s:nt.e] != w {
					continue cand
				}
			}
			pos[ph.cat] = t.s
			terms[ph.cat] = ph.term
			found++
		}
	}
	for ci, c := range r.cats {
		if act[ci] == ActionAllow {
			continue
		}
		for _, p := range c.patterns {
			if p.need != "" && !strings.Contains(n.text, p.need) {
				continue
			}
			loc := p.re.FindStringIndex(n.text)
			if loc == nil || (pos[ci] >= 0 && pos[ci] <= loc[0]) {
				continue
			}
			if pos[ci] < 0 {
				found++
			}
			pos[ci] = loc[0]
			terms[ci] = strings.TrimSpace(n.text[loc[0]:loc[1]])
		}
	}
	if found == 0 {
		return nil
	}
	type hit struct {
		m   Match
		pos int
	}
	hits := make([]hit, 0, found)
	for ci, c := range r.cats {
		if pos[ci] >= 0 {
			hits = append(hits, hit{Match{Category: c.name, Term: terms[ci], Action: act[ci]}, pos[ci]})
		}
	}
	slices.SortStableFunc(hits, func(a, b hit) int {
		if a.m.Action != b.m.Action {
			if a.m.Action == ActionBlock {
				return -1
			}
			return 1
		}
		return a.pos - b.pos
	})
	out := make([]Match, len(hits))
	for i, h := range hits {
		out[i] = h.m
	}
	return out
}
