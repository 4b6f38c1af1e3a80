package config

import "fmt"

// secretRef is one secret that may be given directly or as `<key>_env`.
type secretRef struct {
	path, key string  // path of the table ("" at top level), name of the secret key
	value     *string // the secret
	env       string  // the variable named by <key>_env
}

// secrets lists every secret of the configuration that has an _env form.
func (c *Config) secrets() []secretRef {
	refs := []secretRef{
		{"admin", "token_sha256", &c.Admin.TokenSHA256, c.Admin.TokenSHA256Env},
		{"redis", "password", &c.Redis.Password, c.Redis.PasswordEnv},
		{"webhook", "secret", &c.Webhook.Secret, c.Webhook.SecretEnv},
	}
	for i := range c.Carriers {
		for j := range c.Carriers[i].Binds {
			b := &c.Carriers[i].Binds[j]
			refs = append(refs, secretRef{fmt.Sprintf("carrier[%d].bind[%d]", i, j), "password", &b.Password, b.PasswordEnv})
		}
	}
	for i := range c.Orgs {
		o := &c.Orgs[i]
		refs = append(refs, secretRef{fmt.Sprintf("org[%d]", i), "webhook_secret", &o.WebhookSecret, o.WebhookSecretEnv})
	}
	return refs
}

// resolveSecrets reads every `<key>_env` variable into its key. The
// variable must be set and not empty, and the key itself must not be given
// as well.
func (c *Config) resolveSecrets(lookup func(string) (string, bool)) []Problem {
	var problems []Problem
	for _, s := range c.secrets() {
		if s.env == "" {
			continue
		}
		envPath := joinPath(s.path, s.key+"_env")
		if *s.value != "" {
			problems = append(problems, Problem{envPath, fmt.Sprintf("cannot be used together with %s", s.key)})
			continue
		}
		if !envName(s.env) {
			// Most likely the secret itself: do not repeat it in the error.
			problems = append(problems, Problem{envPath, "must name an environment variable (letters, digits and _, not starting with a digit), not hold the secret itself"})
			continue
		}
		v, ok := lookup(s.env)
		switch {
		case !ok:
			problems = append(problems, Problem{envPath, fmt.Sprintf("environment variable %q is not set", s.env)})
		case v == "":
			problems = append(problems, Problem{envPath, fmt.Sprintf("environment variable %q is empty", s.env)})
		default:
			*s.value = v
		}
	}
	return problems
}

// envName reports whether s is a portable environment variable name.
func envName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}
