package compliance

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normText is a text prepared for screening.
//
// text is the normalised text: lower case, compatibility-decomposed (NFKD)
// with combining marks, format characters (zero-width spaces, soft hyphens)
// and apostrophes removed, look-alike Cyrillic/Greek letters mapped to their
// Latin twins, leetspeak undone inside words that contain a letter, runs of
// single characters ("c.b.d", "w e e d") joined into one word, and words
// separated by exactly one space. Rule patterns run on it.
//
// folded has the same length as text with every 'l' replaced by 'i', so that
// a '1' standing for either letter compares equal; term look-ups use it.
type normText struct {
	text   string
	folded string
	toks   []span
}

// span is one word of normText.text: text[s:e].
type span struct{ s, e int }

// rawTok is a word found while scanning, before leet mapping and joining.
type rawTok struct {
	s, e      int // byte offsets in the scratch buffer
	runes     int
	hasLetter bool
}

// normalize prepares text for screening. It never fails: any byte sequence
// gives some normText (invalid UTF-8 becomes U+FFFD, a word separator).
func normalize(text string) normText {
	// Pass 1: split into words of letters, digits, '@' and '$', mapping case
	// and homoglyphs, dropping characters that are invisible inside words.
	var (
		stack   [32]rawTok
		toks    = stack[:0]
		scratch = make([]byte, 0, len(text))
		cur     = rawTok{s: -1}
	)
	flush := func() {
		if cur.s >= 0 {
			cur.e = len(scratch)
			toks = append(toks, cur)
			cur = rawTok{s: -1}
		}
	}
	add := func(r rune, letter bool) {
		if cur.s < 0 {
			cur.s = len(scratch)
		}
		scratch = utf8.AppendRune(scratch, r)
		cur.runes++
		cur.hasLetter = cur.hasLetter || letter
	}
	handle := func(r rune) {
		switch {
		case r >= 'a' && r <= 'z':
			add(r, true)
		case r >= 'A' && r <= 'Z':
			add(r+'a'-'A', true)
		case r >= '0' && r <= '9', r == '@', r == '$':
			add(r, false)
		case r == '\'' || r == '`':
			// "don't" is one word
		case r < utf8.RuneSelf:
			flush()
		case unicode.IsLetter(r):
			add(homoglyph(upperHomoglyph(r)), true)
		case unicode.IsDigit(r):
			add(r, false)
		case r == '\u2019' || r == '\u2018' || r == '\u02bc' || unicode.In(r, unicode.Mn, unicode.Cf):
			// typographic apostrophes, accents (after decomposition),
			// zero-width characters, soft hyphens: invisible inside a word
		default:
			flush()
		}
	}
	for i := 0; i < len(text); {
		if c := text[i]; c < utf8.RuneSelf {
			handle(rune(c))
			i++
			continue
		}
		// Compatibility decomposition (NFKD) rune by rune: fullwidth and
		// styled letters become plain ones, accents separate marks. The
		// order of marks does not matter as they are dropped.
		_, size := utf8.DecodeRuneInString(text[i:])
		if d := norm.NFKD.PropertiesString(text[i:]).Decomposition(); len(d) > 0 {
			for _, r := range string(d) {
				handle(r)
			}
		} else {
			r, _ := utf8.DecodeRuneInString(text[i:])
			handle(r)
		}
		i += size
	}
	flush()

	// Pass 2: join runs of single characters, undo leetspeak, write out.
	var b strings.Builder
	b.Grow(len(scratch) + len(toks))
	out := make([]span, 0, len(toks))
	word := make([]byte, 0, 32)
	emit := func(w []byte, hasLetter bool) {
		if !hasLetter {
			// Numbers stay numbers ("take 2 at 10:30"); stray '@' and '$' go.
			w = dropSymbols(w)
		} else {
			unleet(w)
		}
		if len(w) == 0 {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		s := b.Len()
		b.Write(w)
		out = append(out, span{s, b.Len()})
	}
	for i := 0; i < len(toks); {
		j := i
		letter := false
		for j < len(toks) && toks[j].runes == 1 {
			letter = letter || toks[j].hasLetter
			j++
		}
		if j-i >= 2 && letter {
			word = word[:0]
			for _, t := range toks[i:j] {
				word = append(word, scratch[t.s:t.e]...)
			}
			emit(word, true)
			i = j
			continue
		}
		if j == i {
			j = i + 1
		}
		for _, t := range toks[i:j] {
			word = append(word[:0], scratch[t.s:t.e]...)
			emit(word, t.hasLetter)
		}
		i = j
	}
	n := b.String()
	return normText{text: n, folded: foldL(n), toks: out}
}

// unleet undoes leetspeak in a word that contains a letter, in place. '@'
// and '$' always become letters. Digits do when one sits between letters
// ("w33d", "v0dk4"), or when the word is a single digit and 3 or more
// letters ("0xycodone"); otherwise they stay, so that numbers with units or
// suffixes ("10mg", "80s", "3rd", "b12") are left alone.
func unleet(w []byte) {
	digits := false
	for i, c := range w {
		if c == '@' || c == '$' {
			w[i] = leet[c]
		} else if c >= '0' && c <= '9' {
			digits = true
		}
	}
	if !digits {
		return
	}
	mapDigits := len(w) >= 4 && w[0] >= '0' && w[0] <= '9' && isLetters(w[1:])
	if !mapDigits {
		first, last := -1, -1
		for i, c := range w {
			if !(c >= '0' && c <= '9') {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		for i := first + 1; i < last; i++ {
			if w[i] >= '0' && w[i] <= '9' && leet[w[i]] != 0 {
				mapDigits = true
				break
			}
		}
	}
	if mapDigits {
		for i, c := range w {
			if m := leet[c]; m != 0 {
				w[i] = m
			}
		}
	}
}

// isLetters reports whether w has no ASCII digits.
func isLetters(w []byte) bool {
	for _, c := range w {
		if c >= '0' && c <= '9' {
			return false
		}
	}
	return true
}

// dropSymbols removes '@' and '$' from w in place.
func dropSymbols(w []byte) []byte {
	out := w[:0]
	for _, c := range w {
		if c != '@' && c != '$' {
			out = append(out, c)
		}
	}
	return out
}

// foldL replaces every ASCII 'l' by 'i' (same length).
func foldL(s string) string {
	if strings.IndexByte(s, 'l') < 0 {
		return s
	}
	return strings.ReplaceAll(s, "l", "i")
}

// leet maps the leetspeak characters undone inside words that contain a
// letter. '1' becomes 'i'; the folded form also treats 'l' as 'i'.
var leet = [256]byte{
	'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', '$': 's',
}

// upperHomoglyph lower-cases r, first mapping the Greek capitals whose
// lower case looks like another Latin letter than they do (Η is H, but η is
// n; Μ is M, but μ is u) to the Latin letter they look like.
func upperHomoglyph(r rune) rune {
	switch r {
	case 'Η':
		return 'h'
	case 'Μ':
		return 'm'
	case 'Ν':
		return 'n'
	case 'Υ':
		return 'y'
	case 'Ζ':
		return 'z'
	case 'Β':
		return 'b'
	}
	return unicode.ToLower(r)
}

// homoglyph maps a lower-case Cyrillic or Greek letter that looks like a
// Latin letter to that letter; other runes are returned unchanged.
func homoglyph(r rune) rune {
	switch r {
	// Cyrillic
	case 'а':
		return 'a'
	case 'в', 'ь':
		return 'b'
	case 'е':
		return 'e'
	case 'і', 'ї':
		return 'i'
	case 'ј':
		return 'j'
	case 'к':
		return 'k'
	case 'м':
		return 'm'
	case 'н', 'һ':
		return 'h'
	case 'о':
		return 'o'
	case 'р':
		return 'p'
	case 'с':
		return 'c'
	case 'т':
		return 't'
	case 'у':
		return 'y'
	case 'х':
		return 'x'
	case 'ѕ':
		return 's'
	case 'ԁ':
		return 'd'
	case 'ԛ':
		return 'q'
	case 'ԝ':
		return 'w'
	case 'ӏ':
		return 'l'
	// Greek
	case 'α':
		return 'a'
	case 'β':
		return 'b'
	case 'ε':
		return 'e'
	case 'η':
		return 'n'
	case 'ι':
		return 'i'
	case 'κ':
		return 'k'
	case 'ν':
		return 'v'
	case 'ο':
		return 'o'
	case 'ρ':
		return 'p'
	case 'τ':
		return 't'
	case 'υ', 'μ':
		return 'u'
	case 'χ':
		return 'x'
	case 'ω':
		return 'w'
	case 'γ':
		return 'y'
	// Latin look-alikes outside ASCII that NFKD leaves alone
	case 'ı':
		return 'i'
	case 'ɡ':
		return 'g'
	case 'ł':
		return 'l'
	case 'ø':
		return 'o'
	case 'đ':
		return 'd'
	case 'ß':
		return 's'
	}
	return r
}
