package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smsgate/smsgate/app"
	"github.com/smsgate/smsgate/config"
)

func runCmd(t *testing.T, stdin string, args ...string) (out, errOut string, err error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestCheckConfigExample(t *testing.T) {
	out, _, err := runCmd(t, "", "check-config", "-config", "../../smsgate.example.toml")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "config ok"), out)
}

func TestCheckConfigReportsKeyPaths(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	require.NoError(t, os.WriteFile(path, []byte(`
[[carrier]]
name = "a"
  [[carrier.bind]]
  host = "127.0.0.1"
  port = 2775
  system_id = "x"
  password = "y"
  window = 0
  windw = 3
`), 0o600))
	out, _, err := runCmd(t, "", "check-config", "-config", path)
	var ec exitCode
	require.True(t, errors.As(err, &ec))
	require.Equal(t, exitCode(1), ec)
	require.Contains(t, out, "carrier[0].bind[0].windw")
	require.Contains(t, out, "carrier[0].bind[0].window")
}

func TestCheckConfigRefusesUnknownScreeningCategory(t *testing.T) {
	example, err := os.ReadFile("../../smsgate.example.toml")
	require.NoError(t, err)
	bad := strings.Replace(string(example), `screening = { prescription_drugs = "warn" }`, `screening = { prescription_drug = "warn" }`, 1)
	require.NotEqual(t, string(example), bad, "the example config has the override this test misspells")
	path := filepath.Join(t.TempDir(), "bad.toml")
	require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
	out, _, err := runCmd(t, "", "check-config", "-config", path)
	var ec exitCode
	require.True(t, errors.As(err, &ec), "%v", err)
	require.Equal(t, exitCode(1), ec)
	require.Contains(t, out, "org[0].screening.prescription_drug: no such category in the screening rules")
	require.Contains(t, out, "prescription_drugs", "the error names the categories there are")
}

func TestHashKey(t *testing.T) {
	tests := []struct {
		name, stdin, want string
		wantErr           bool
	}{
		{"plain", "dev-key-acme", config.HashKey("dev-key-acme"), false},
		{"trailing newline", "dev-key-acme\n", config.HashKey("dev-key-acme"), false},
		{"empty", "\n", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCmd(t, tc.stdin, "hash-key")
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want+"\n", out)
			require.Len(t, strings.TrimSpace(out), 64)
		})
	}
}

// Usage mistakes exit 2 with a line saying what to do; -h exits 0.
func TestUsageMistakes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stdin  string
		args   []string
		code   exitCode
		stderr string
	}{
		{"unknown command", "", []string{"serv"}, 2, `unknown command "serv"; the commands are serve, check-config, hash-key, simulate and help`},
		{"check-config with the file as an argument", "", []string{"check-config", "smsgate.toml"}, 2, `check-config: unexpected argument "smsgate.toml"; name the file with -config FILE`},
		{"check-config with an extra argument", "", []string{"check-config", "-config", "../../smsgate.example.toml", "extra"}, 2, `unexpected argument "extra"`},
		{"hash-key with the key as an argument", "other", []string{"hash-key", "dev-key-acme"}, 2, "hash-key reads the key from standard input"},
		{"simulate -h", "", []string{"simulate", "-h"}, 0, ""},
		{"check-config -h", "", []string{"check-config", "-h"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := runCmd(t, tc.stdin, tc.args...)
			if tc.code == 0 {
				require.NoError(t, err)
				return
			}
			var ec exitCode
			require.True(t, errors.As(err, &ec), "%v", err)
			require.Equal(t, tc.code, ec)
			require.Contains(t, errOut, tc.stderr)
		})
	}
}

func TestDevBanner(t *testing.T) {
	example, err := app.CheckConfig("../../smsgate.example.toml")
	require.NoError(t, err)
	b := devBanner("http://127.0.0.1:8080", "http://127.0.0.1:9090", example)
	require.Contains(t, b, "running with the embedded store and an embedded simulator carrier")
	require.Contains(t, b, "Bearer dev-key-acme")
	require.Contains(t, b, `"from":"+15550001111"`)

	other := *example
	other.Redis.Addr = "127.0.0.1:6379"
	other.Orgs = []config.Org{{ID: "beta", APIKeySHA256: []string{config.HashKey("another-key")},
		Numbers: []config.Number{{E164: "+15550009999", Registered: false}, {E164: "+15550008888", Registered: true}}}}
	b = devBanner("http://127.0.0.1:8080", "http://127.0.0.1:9090", &other)
	require.Contains(t, b, "running with Redis at 127.0.0.1:6379")
	require.Contains(t, b, "Bearer <your API key>")
	require.Contains(t, b, `"from":"+15550008888"`)
}
