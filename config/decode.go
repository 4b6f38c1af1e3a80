package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// decoder fills a Go value from the generic tree that BurntSushi/toml parses
// a document into, strictly: every key must name a field (by its toml tag)
// and every value must have the field's type. Unlike toml.Decode straight
// into the struct, it reports every problem (not only the first) and names
// array elements by index ("carrier[0].bind[1].windw"), which
// MetaData.Undecoded cannot do. It also records which keys were present, so
// that defaults apply only to absent keys and an explicit `window = 0` is an
// error rather than silently replaced.
type decoder struct {
	problems []Problem
	defined  map[string]bool // paths of keys present in the document
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeTOML parses data and decodes it into cfg. Syntax errors are reported
// as one problem with line and column.
func decodeTOML(data []byte, cfg *Config) (defined map[string]bool, problems []Problem) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, []Problem{{Message: fmt.Sprintf("syntax error at line %d, column %d: %s",
				pe.Position.Line, pe.Position.Col, pe.Message)}}
		}
		return nil, []Problem{{Message: "syntax error: " + err.Error()}}
	}
	d := &decoder{defined: map[string]bool{}}
	d.decode("", raw, reflect.ValueOf(cfg).Elem())
	return d.defined, d.problems
}

func (d *decoder) add(path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(path string, raw any, v reflect.Value) {
	if path != "" {
		d.defined[path] = true
	}
	if v.Type() == durationType {
		s, ok := raw.(string)
		if !ok {
			d.add(path, "expected a duration string such as \"30s\", got %s", describe(raw))
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.add(path, "invalid duration %q (use a Go duration such as \"30s\", \"5m\", \"4h\")", s)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.add(path, "expected a table, got %s", describe(raw))
			return
		}
		d.decodeStruct(path, m, v)
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		before := len(d.problems)
		d.decode(path, raw, elem.Elem())
		if len(d.problems) == before {
			v.Set(elem)
		}
	case reflect.Slice:
		var items []any
		switch r := raw.(type) {
		case []any:
			items = r
		case []map[string]any:
			items = make([]any, len(r))
			for i := range r {
				items[i] = r[i]
			}
		default:
			if v.Type().Elem().Kind() == reflect.Struct {
				d.add(path, "expected an array of tables ([[%s]]), got %s", stripIndexes(path), describe(raw))
			} else {
				d.add(path, "expected an array, got %s", describe(raw))
			}
			return
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			d.decode(path+"["+strconv.Itoa(i)+"]", item, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok || v.Type().Key().Kind() != reflect.String {
			d.add(path, "expected a table, got %s", describe(raw))
			return
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m))
		for _, k := range sortedKeys(m) {
			elem := reflect.New(v.Type().Elem()).Elem()
			before := len(d.problems)
			d.decode(joinPath(path, k), m[k], elem)
			if len(d.problems) == before {
				out.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), elem)
			}
		}
		v.Set(out)
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.add(path, "expected a string, got %s", describe(raw))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.add(path, "expected a boolean, got %s", describe(raw))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(int64)
		if !ok {
			d.add(path, "expected an integer, got %s", describe(raw))
			return
		}
		if v.OverflowInt(n) {
			d.add(path, "integer %d is out of range", n)
			return
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := raw.(int64)
		if !ok {
			d.add(path, "expected an integer, got %s", describe(raw))
			return
		}
		if n < 0 || v.OverflowUint(uint64(n)) {
			d.add(path, "integer %d is out of range", n)
			return
		}
		v.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		switch n := raw.(type) {
		case float64:
			v.SetFloat(n)
		case int64:
			v.SetFloat(float64(n))
		default:
			d.add(path, "expected a number, got %s", describe(raw))
		}
	default:
		// A schema field of a type this decoder does not know: a bug in
		// schema.go, reported rather than panicking.
		d.add(path, "unsupported field type %s", v.Type())
	}
}

func (d *decoder) decodeStruct(path string, m map[string]any, v reflect.Value) {
	t := v.Type()
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name := tomlName(t.Field(i)); name != "" {
			fields[name] = i
		}
	}
	for _, k := range sortedKeys(m) {
		i, ok := fields[k]
		if !ok {
			msg := "unknown key"
			if s := suggest(k, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.add(joinPath(path, k), "%s", msg)
			continue
		}
		d.decode(joinPath(path, k), m[k], v.Field(i))
	}
}

// tomlName is the key of a struct field, "" when the field is not decoded.
func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" || name == "" {
		return ""
	}
	return name
}

func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// describe names a raw TOML value for an error message.
func describe(raw any) string {
	switch r := raw.(type) {
	case string:
		if len(r) > 40 {
			r = r[:40] + "…"
		}
		return fmt.Sprintf("string %q", r)
	case int64:
		return fmt.Sprintf("integer %d", r)
	case float64:
		return fmt.Sprintf("float %v", r)
	case bool:
		return fmt.Sprintf("boolean %v", r)
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case time.Time:
		return "a datetime"
	default:
		return fmt.Sprintf("%T", raw)
	}
}

// stripIndexes turns "carrier[0].bind" into "carrier.bind".
func stripIndexes(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// suggest returns the known key closest to an unknown one, if it is close
// enough to be a likely typo.
func suggest(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if d := editDistance(key, name); d < bestDist || (d == bestDist && best != "" && name < best) {
			best, bestDist = name, d
		}
	}
	if bestDist > 2 || bestDist*2 >= len(key) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
