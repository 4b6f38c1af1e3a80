package main

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/config"
)

// schemaKeys walks a configuration struct by its toml tags and returns the
// dotted path of every leaf key ("carrier.bind.window"). Tables and arrays
// of tables are walked into; maps and scalars are leaves.
func schemaKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath() {
			out = append(out, schemaKeys(ft, path+".")...)
			continue
		}
		out = append(out, path)
	}
	return out
}

func TestSchemaKeysWalk(t *testing.T) {
	keys := schemaKeys(reflect.TypeFor[config.Config](), "")
	for _, want := range []string{"http.listen", "carrier.bind.window", "org.number.e164", "org.screening", "redis.cluster", "org.number.mms"} {
		require.Contains(t, keys, want)
	}
	require.NotContains(t, keys, "carrier.bind", "tables are not leaves")
	require.Greater(t, len(keys), 60)
}

// TestOperationsDocCoversEveryConfigKey fails when a key of config.Config is
// missing from docs/OPERATIONS.md (written as `full.dotted.path`), or the
// doc names a key that does not exist, so the reference cannot drift.
func TestOperationsDocCoversEveryConfigKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	require.NoError(t, err)
	keys := schemaKeys(reflect.TypeFor[config.Config](), "")
	known := map[string]bool{}
	var missing []string
	for _, k := range keys {
		known[k] = true
		if !strings.Contains(string(doc), "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "configuration keys missing from docs/OPERATIONS.md")

	// Every key row of the reference tables names a real key.
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9_]+(?:\\.[a-z0-9_]+)+)` \\|")
	rows := row.FindAllStringSubmatch(string(doc), -1)
	require.NotEmpty(t, rows)
	for _, m := range rows {
		require.True(t, known[m[1]], "docs/OPERATIONS.md documents %q, which is not a configuration key", m[1])
	}
}

// TestHelpDocumentsCommandsAndFlags checks -help names every sub-command and
// every serve flag, and the operations guide lists the same flags.
func TestHelpDocumentsCommandsAndFlags(t *testing.T) {
	_, stderr, err := runCmd(t, "", "-help")
	require.NoError(t, err)
	out, _, err := runCmd(t, "", "help")
	require.NoError(t, err)
	require.Equal(t, out, stderr, "help and -help print the same text")
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	require.NoError(t, err)
	for _, s := range []string{"serve", "check-config", "hash-key", "simulate", "-config", "-log-format", "-log-level", "-lame-duck", "SIGHUP", "SIGTERM"} {
		require.Contains(t, out, s)
		require.Contains(t, string(doc), s)
	}
}

func TestServeRejectsBadLogFlags(t *testing.T) {
	_, _, err := runCmd(t, "", "-config", "../../smsgate.example.toml", "-log-format", "xml")
	require.ErrorContains(t, err, "log format")
	_, _, err = runCmd(t, "", "serve", "-config", "../../smsgate.example.toml", "-log-level", "loud")
	require.ErrorContains(t, err, "log level")
	_, _, err = runCmd(t, "", "serve", "extra")
	require.Equal(t, exitCode(2), err)
}
