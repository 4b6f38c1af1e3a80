package compliance

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultRulesCategories(t *testing.T) {
	got := DefaultRules().Categories()
	want := []Category{
		{"cannabis", ActionBlock},
		{"sex", ActionBlock},
		{"hate", ActionBlock},
		{"firearms", ActionBlock},
		{"alcohol", ActionWarn},
		{"tobacco", ActionWarn},
		{"prescription_drugs", ActionWarn},
	}
	require.Equal(t, want, got)

	// The exported copy parses to the same rule set and cannot alter it.
	data := DefaultRulesTOML()
	data[0] = 'X'
	require.Equal(t, want, DefaultRules().Categories())
}

func TestScreenDefault(t *testing.T) {
	r := DefaultRules()
	tests := []struct {
		name string
		text string
		want []Match // nil: nothing matches
	}{
		// evasions
		{"plain", "Get your CBD oil here", []Match{{"cannabis", "cbd", ActionBlock}}},
		{"upper case", "MARIJUANA delivery", []Match{{"cannabis", "marijuana", ActionBlock}}},
		{"dotted letters", "c.b.d gummies", []Match{{"cannabis", "cbd", ActionBlock}}},
		{"spaced letters", "try our C B D oil", []Match{{"cannabis", "cbd", ActionBlock}}},
		{"spaced word", "w e e d for sale", []Match{{"cannabis", "weed", ActionBlock}}},
		{"dashed letters", "c-b-d vapes", []Match{{"cannabis", "cbd", ActionBlock}, {"tobacco", "vapes", ActionWarn}}},
		{"leet digits", "w33d", []Match{{"cannabis", "weed", ActionBlock}}},
		{"leet at", "m@rijuana", []Match{{"cannabis", "marijuana", ActionBlock}}},
		{"leet leading digit", "0xycodone", []Match{{"prescription_drugs", "oxycodone", ActionWarn}}},
		{"leet zero", "oxyc0d0ne 10mg", []Match{{"prescription_drugs", "oxycodone", ActionWarn}}},
		{"leet warn", "v0dka night", []Match{{"alcohol", "vodka", ActionWarn}}},
		{"leet one as l", "a1e and c1gars", []Match{{"tobacco", "cigars", ActionWarn}}},
		{"leet one as i", "percocet and xan4x p1lls", []Match{{"prescription_drugs", "percocet", ActionWarn}}},
		{"leet dollar", "$exy pics", []Match{{"sex", "sexy", ActionBlock}}},
		{"greek omega", "ωeed", []Match{{"cannabis", "weed", ActionBlock}}},
		{"greek capitals", "ΜARIJUANA and ΝUDES", []Match{{"cannabis", "marijuana", ActionBlock}, {"sex", "nudes", ActionBlock}}},
		{"model plural", "AK-47s in stock", []Match{{"firearms", "ak-47s", ActionBlock}}},
		{"selling phrase of a clinical word", "THC gummies and firearms for sale", []Match{{"cannabis", "thc gummies", ActionBlock}, {"firearms", "firearms for sale", ActionBlock}}},
		{"cyrillic homoglyphs", "wееd", []Match{{"cannabis", "weed", ActionBlock}}},
		{"cyrillic mixed", "сbd оil", []Match{{"cannabis", "cbd", ActionBlock}}},
		{"fullwidth", "ｗｅｅｄ", []Match{{"cannabis", "weed", ActionBlock}}},
		{"accents", "mārijuána", []Match{{"cannabis", "marijuana", ActionBlock}}},
		{"zero width", "we\u200bed and th\u00adc", []Match{{"cannabis", "weed", ActionBlock}}},
		{"phrase across punctuation", "Buy now: NO. PRESCRIPTION!! needed", []Match{{"prescription_drugs", "no prescription needed", ActionWarn}}},
		{"phrase with leet", "order without a prescr1pt1on", []Match{{"prescription_drugs", "without a prescription", ActionWarn}}},
		{"hyphenated term", "AR-15 and ak47 in stock", []Match{{"firearms", "ar-15", ActionBlock}}},
		{"hate pattern", "n1iigguhz", []Match{{"hate", "niiigguhz", ActionBlock}}},
		{"apostrophe", "it's the weed's fault", nil}, // "weeds" is not a term
		// ordering: blocks first, then warns, each in text order
		{"order", "beer, cigars, then cbd and a rifle", []Match{
			{"cannabis", "cbd", ActionBlock}, {"firearms", "rifle", ActionBlock},
			{"alcohol", "beer", ActionWarn}, {"tobacco", "cigars", ActionWarn},
		}},
		{"one per category", "weed, cbd, thc", []Match{{"cannabis", "weed", ActionBlock}}},
		// false positives that must not happen
		{"scunthorpe", "Scunthorpe clinic", nil},
		{"grassland", "grassland walk", nil},
		{"inside word", "abcbdx thcx xweed tweed", nil},
		{"numbers stay numbers", "take 2 tablets at 10:30, 5mg, 3x daily, 1 in 4", nil},
		{"clinical words", "Your prescription refill is at the pharmacy; medication dose 5 mg.", nil},
		{"avoid alcohol", "Avoid alcohol while taking this antibiotic", nil},
		{"sexual health", "Sexual health clinic: STI testing, sex: F", nil},
		{"joint pain", "joint pain after blunt trauma", nil},
		{"hospital dispensary", "collect it from the hospital dispensary", nil},
		{"escort", "a nurse will escort you", nil},
		{"delta flight", "Your Delta 8:40 am flight, gate 9", nil},
		{"delta thc", "Delta-8 THC gummies", []Match{{"cannabis", "delta 8 thc", ActionBlock}}},
		{"words containing terms", "begin the serum; the weeds grow; weedy; cannabisx", nil},
		{"numbers with suffixes", "the 80s, covid19, 3rd dose, 10am, 0.5mg", nil},
		{"empty", "", nil},
		{"punctuation only", "?!... --- @@@ $$$", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, r.Screen(tt.text, nil))
		})
	}
}

func TestScreenOverrides(t *testing.T) {
	r := DefaultRules()
	text := "oxycodone and weed"
	tests := []struct {
		name      string
		overrides map[string]string
		want      []Match
	}{
		{"none", nil, []Match{{"cannabis", "weed", ActionBlock}, {"prescription_drugs", "oxycodone", ActionWarn}}},
		{"downgrade", map[string]string{"cannabis": "warn"}, []Match{
			{"prescription_drugs", "oxycodone", ActionWarn}, {"cannabis", "weed", ActionWarn},
		}},
		{"upgrade", map[string]string{"prescription_drugs": "block"}, []Match{
			{"prescription_drugs", "oxycodone", ActionBlock}, {"cannabis", "weed", ActionBlock},
		}},
		{"allow", map[string]string{"cannabis": "allow"}, []Match{{"prescription_drugs", "oxycodone", ActionWarn}}},
		{"allow all", map[string]string{"cannabis": "allow", "prescription_drugs": "allow"}, nil},
		{"invalid value ignored", map[string]string{"cannabis": "maybe"}, []Match{
			{"cannabis", "weed", ActionBlock}, {"prescription_drugs", "oxycodone", ActionWarn},
		}},
		{"unknown category ignored", map[string]string{"gambling": "block"}, []Match{
			{"cannabis", "weed", ActionBlock}, {"prescription_drugs", "oxycodone", ActionWarn},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, r.Screen(text, tt.overrides))
		})
	}
}

func TestScreenPatternEarliestWins(t *testing.T) {
	r, err := ParseRules([]byte(`
[[category]]
name = "fireworks"
action = "warn"
terms = ["fireworks"]
patterns = ['\bm ?80s?\b']
`))
	require.NoError(t, err)
	require.Equal(t, []Match{{"fireworks", "m 80s", ActionWarn}}, r.Screen("M-80s and fireworks", nil))
	require.Equal(t, []Match{{"fireworks", "fireworks", ActionWarn}}, r.Screen("fireworks and M 80", nil))
	require.Nil(t, r.Screen("room 80", nil))
	require.Nil(t, r.Screen("fireworks", map[string]string{"fireworks": "allow"}))
}

func TestScreenNilRules(t *testing.T) {
	var r *Rules
	require.Nil(t, r.Screen("weed", nil))
}

// readLines reads a testdata file of one item per line, skipping blank lines
// and # comments.
func readLines(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	require.NoError(t, sc.Err())
	return out
}

func TestOrdinaryMessagesClean(t *testing.T) {
	r := DefaultRules()
	msgs := readLines(t, "ordinary_messages.txt")
	require.Len(t, msgs, 206)
	for _, m := range msgs {
		require.Empty(t, r.Screen(m, nil), "false positive on %q", m)
	}
}

func TestParseRulesFixtures(t *testing.T) {
	tests := []struct {
		file    string
		wantErr []string // substrings of the error; none: valid
	}{
		{"good.toml", nil},
		{"unknown_top_key.toml", []string{"version: unknown key"}},
		{"unknown_category_key.toml", []string{"category[1].term: unknown key", "category[1]: category[1] (tobacco) has neither terms nor patterns"}},
		{"bad_action.toml", []string{"category[0].action: deny is not a valid action"}},
		{"bad_pattern.toml", []string{"category[0].patterns[0]", `category[0] (alcohol): pattern "\\bvod(ka" does not compile`}},
		{"duplicate_name.toml", []string{`category[1].name: category "alcohol" is defined twice`}},
		{"empty_category.toml", []string{"has neither terms nor patterns"}},
		{"no_categories.toml", []string{"no [[category]] defined"}},
		{"bad_types.toml", []string{"category[0].name:", "category[0].terms: element 1 (3) is not a string", "category[0].patterns: must be an array of strings"}},
		{"bad_term.toml", []string{`category[0].terms[1]: category[0] (alcohol): term "!!!" has no letters or digits`}},
		{"not_toml.toml", []string{"compliance: parse rules:"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "rules", tt.file)
			r, err := LoadRules(path)
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.NotNil(t, r)
				return
			}
			require.Error(t, err)
			require.Nil(t, r)
			require.Contains(t, err.Error(), path)
			for _, s := range tt.wantErr {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

func TestLoadRulesGood(t *testing.T) {
	r, err := LoadRules(filepath.Join("testdata", "rules", "good.toml"))
	require.NoError(t, err)
	require.Equal(t, []Category{{"alcohol", ActionWarn}, {"fireworks", ActionBlock}}, r.Categories())
	require.Equal(t, []Match{{"fireworks", "m 80", ActionBlock}, {"alcohol", "happy hour", ActionWarn}},
		r.Screen("Happy  hour! M-80 for everyone", nil))
	require.Nil(t, r.Screen("a happy hourly rate", nil))
}

func TestLoadRulesMissingFile(t *testing.T) {
	_, err := LoadRules(filepath.Join(t.TempDir(), "nope.toml"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Hello, World!", "hello world"},
		{"c.b.d", "cbd"},
		{"w 3 3 d", "weed"},
		{"1 2 3", "1 2 3"},
		{"$20 @ 5", "20 5"},
		{"don't", "dont"},
		{"I'm a b c", "im abc"},
		{"ﬁne Ⓦeed", "fine weed"},
		{"\xff\xfeweed", "weed"},
		{"naïve café", "naive cafe"},
		{"10mg 80s 3rd b12 hba1c", "10mg 80s 3rd b12 hbaic"},
		{"0xycodone w33d v0dk4 0xy", "oxycodone weed vodka 0xy"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n := normalize(tt.in)
			require.Equal(t, tt.want, n.text)
			require.Len(t, n.folded, len(n.text))
			var words []string
			for _, s := range n.toks {
				words = append(words, n.text[s.s:s.e])
			}
			require.Equal(t, strings.Fields(tt.want), words)
		})
	}
}

func FuzzScreen(f *testing.F) {
	for _, s := range []string{"", "c.b.d", "w33d", "ωeed", "take 2 at 10:30", "\xff\xfe", "a b c d e f", "n1ggaz", "ﬁ Ⓦ ｗ"} {
		f.Add(s, "")
	}
	f.Add("weed and beer", "cannabis")
	r := DefaultRules()
	f.Fuzz(func(t *testing.T, text, allow string) {
		ov := map[string]string{allow: "allow"}
		a := r.Screen(text, ov)
		b := r.Screen(text, ov)
		require.Equal(t, a, b)
		seen := map[string]bool{}
		blocks := true
		for _, m := range a {
			require.NotEqual(t, allow, m.Category)
			require.False(t, seen[m.Category], "two matches for %s", m.Category)
			seen[m.Category] = true
			require.Contains(t, []Action{ActionWarn, ActionBlock}, m.Action)
			if m.Action == ActionWarn {
				blocks = false
			} else {
				require.True(t, blocks, "block after warn")
			}
		}
		n := normalize(text)
		require.Len(t, n.folded, len(n.text))
		for _, s := range n.toks {
			require.Less(t, s.s, s.e)
			require.NotContains(t, n.text[s.s:s.e], " ")
		}
	})
}

func FuzzParseRules(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "rules"))
	require.NoError(f, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata", "rules", e.Name()))
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add(DefaultRulesTOML())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRules(data)
		if err != nil {
			require.Nil(t, r)
			return
		}
		require.NotEmpty(t, r.Categories())
		_ = r.Screen(string(data), nil)
	})
}

// text160 is a realistic 160-character message with a warn match at the end.
const text160 = "Hi Maria, reminder: your appointment with Dr. Patel is Tue 3/4 at 10:30 AM. " +
	"Bring your meds list & insurance card. Avoid food after midnight. No beer, ok? Thx!!"

func BenchmarkScreenDefault160(b *testing.B) {
	r := DefaultRules()
	require.Len(b, []rune(text160), 160)
	b.ReportAllocs()
	for b.Loop() {
		if len(r.Screen(text160, nil)) != 1 {
			b.Fatal("expected one match")
		}
	}
}

func BenchmarkScreenDefault160NonASCII(b *testing.B) {
	r := DefaultRules()
	text := string([]rune(strings.Repeat("Ваш приём у врача во вторник в 10:30. ", 5))[:160])
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Screen(text, nil)
	}
}

func TestRequiredLiteral(t *testing.T) {
	tests := []struct{ src, want string }{
		{`\bn+i+g{2,}(?:e+r+|a+h?|u+h+)[sz]?\b`, "gg"},
		{`\bm ?80s?\b`, "80"},
		{`\bhappy hour\b`, "happy hour"},
		{`(?i)vodka`, ""},
		{`a|b`, ""},
		{`x*`, ""},
		{`(abc)+d`, "abc"},
		{`(`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) { require.Equal(t, tt.want, requiredLiteral(tt.src)) })
	}
}
