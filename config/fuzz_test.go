package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to Parse. It must never panic; it
// either returns a configuration that validates, or a *ValidationError with
// at least one problem.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*/*.toml")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "../smsgate.example.toml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[[org]]\nnumber = [{e164 = 1}, [1], {mms = [true]}]\n"))
	f.Add([]byte("carrier = [[1, 2], {bind = {}}]\nroute = 5\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			if len(ve.Problems) == 0 || cfg != nil {
				t.Fatalf("error without problems, or with a config: %v", err)
			}
			_ = ve.Error()
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		_ = cfg.Summary()
		for _, o := range cfg.Orgs {
			if _, ok := cfg.OrgByID(o.ID); !ok {
				t.Fatalf("org %q not found by id", o.ID)
			}
			for _, n := range o.Numbers {
				if _, _, ok := cfg.Number(n.E164); !ok {
					t.Fatalf("number %q not found", n.E164)
				}
				if n.EffectiveRate() <= 0 {
					t.Fatalf("number %q has rate %v", n.E164, n.EffectiveRate())
				}
			}
		}
	})
}
