package redact

import (
	"errors"
	"fmt"
	"strings"
)

// Config is the `redaction:` section of the pipeline config.
type Config struct {
	// SecretFile or SecretEnv names where the pseudonym key is: a file
	// (trailing newline ignored) or an environment variable. At least 16
	// bytes; 32 random bytes recommended. Never the key itself.
	SecretFile string `yaml:"secret_file"`
	SecretEnv  string `yaml:"secret_env"`
	// Secret exists only so that a key written into the config file is
	// refused with an error that says where it belongs.
	Secret string `yaml:"secret"`
	// KeepRawUndecodable puts the bytes of a record that cannot be decoded
	// (or is oversize) on the dead-letter topic, with the spans the
	// detectors recognise masked in place. Off: only their size and
	// SHA-256 go there (the original stays in the events topic for its
	// retention).
	KeepRawUndecodable bool      `yaml:"keep_raw_undecodable"`
	Detectors          Detectors `yaml:"detectors"`
	Rules              []Rule    `yaml:"rules"`
}

// Detectors configures the built-in detectors.
type Detectors struct {
	Email       Detector `yaml:"email"`
	Card        Detector `yaml:"card"`
	Phone       Detector `yaml:"phone"`
	Secret      Detector `yaml:"secret"` // API keys, tokens, passwords, private keys
	HighEntropy Detector `yaml:"high_entropy"`
	IBAN        Detector `yaml:"iban"` // bank account numbers, mod-97 checked
	SSN         Detector `yaml:"ssn"`  // US social security numbers
}

// Detector turns one detector off, or chooses what replaces what it finds.
type Detector struct {
	Disabled bool `yaml:"disabled"`
	// Action is mask, pseudonym, or auto (pseudonym when a secret is
	// configured, else mask).
	Action string `yaml:"action"`
}

// Rule redacts field paths of events, optionally only for some tools and
// actions.
type Rule struct {
	Name string `yaml:"name"` // recorded with each redaction it makes
	// Tools and Actions, if set, limit the rule to intents whose tool and
	// action match one of them ('*' matches any run of characters). Only
	// intents carry the tool, so a scoped rule never matches a decision,
	// approval or result event.
	Tools   []string `yaml:"tools"`
	Actions []string `yaml:"actions"`
	// Paths are field paths (see FieldPaths), '*' matching any run of
	// characters in a map key: parameters.*, context.card_*, *.email.
	Paths []string `yaml:"paths"`
	// Action is drop, mask, pseudonym, or keep (store as is, detectors do
	// not look at it: for a known false positive).
	Action string `yaml:"action"`
}

// Actions a rule or detector can take.
const (
	ActionDrop      = "drop"
	ActionMask      = "mask"
	ActionPseudonym = "pseudonym"
	ActionKeep      = "keep"
	actionAuto      = "auto"
)

// Field paths: events' fields that can carry personal data or secrets, named
// as their ClickHouse columns. Maps take a key (parameters.to), arrays end
// in [] and name every element.
var (
	identityPaths = []string{"requested_by", "session_id", "approver", "executor"}
	textPaths     = []string{"target", "rationale", "reason", "comment", "error_message", "changed_resource"}
	arrayPaths    = []string{"side_effects[]", "evidence_ids[]"}
	mapPaths      = []string{"labels", "parameters", "context"}
)

// FieldPaths lists the paths rules may name; detectors scan all but the
// identity fields (requested_by, session_id, approver, executor), which
// analysts, correlation and the anomaly rules need as they are: redact them
// with an explicit rule.
func FieldPaths() []string {
	var p []string
	p = append(p, identityPaths...)
	p = append(p, textPaths...)
	p = append(p, arrayPaths...)
	for _, m := range mapPaths {
		p = append(p, m+".<key>")
	}
	return p
}

// Defaults fills unset fields, in one place.
func (c *Config) Defaults() {
	def := func(d *Detector, action string) {
		if d.Action == "" {
			d.Action = action
		}
	}
	def(&c.Detectors.Email, actionAuto)
	def(&c.Detectors.Phone, actionAuto)
	def(&c.Detectors.Card, ActionMask)
	def(&c.Detectors.Secret, ActionMask)
	def(&c.Detectors.HighEntropy, ActionMask)
	// Account and national id numbers are masked like cards: their value
	// space is small enough to enumerate against a leaked pseudonym key.
	def(&c.Detectors.IBAN, ActionMask)
	def(&c.Detectors.SSN, ActionMask)
}

// hasSecretSource reports whether a pseudonym key is configured.
func (c *Config) hasSecretSource() bool { return c.SecretFile != "" || c.SecretEnv != "" }

// detectorList pairs each detector with its config, in kind order.
func (c *Config) detectorList() [numKinds]*Detector {
	d := &c.Detectors
	return [numKinds]*Detector{kindSecret: &d.Secret, kindCard: &d.Card, kindEmail: &d.Email, kindPhone: &d.Phone,
		kindEntropy: &d.HighEntropy, kindIBAN: &d.IBAN, kindSSN: &d.SSN}
}

// Validate checks the section without I/O; call Defaults first. Errors name
// the field; none quotes a secret.
func (c *Config) Validate() error {
	if c.Secret != "" {
		return errors.New("redaction.secret: a literal secret is not accepted in the config file; put it in a file (redaction.secret_file) or an environment variable (redaction.secret_env)")
	}
	if c.SecretFile != "" && c.SecretEnv != "" {
		return errors.New("redaction: set one of secret_file and secret_env, not both")
	}
	for k, d := range c.detectorList() {
		switch d.Action {
		case ActionMask, actionAuto:
		case ActionPseudonym:
			if !d.Disabled && !c.hasSecretSource() {
				return fmt.Errorf("redaction.detectors.%s.action: pseudonym needs a secret: set redaction.secret_file or redaction.secret_env (or use auto)", kind(k))
			}
		default:
			return fmt.Errorf("redaction.detectors.%s.action: %q is not one of mask, pseudonym, auto", kind(k), d.Action)
		}
	}
	names := map[string]bool{}
	for i, r := range c.Rules {
		at := fmt.Sprintf("redaction.rules[%d]", i)
		if err := checkName(r.Name); err != nil {
			return fmt.Errorf("%s.name: %w", at, err)
		}
		for _, k := range kindNames {
			if r.Name == k {
				return fmt.Errorf("%s.name: %q is a detector's name; redactions would not say which made them", at, r.Name)
			}
		}
		if names[r.Name] {
			return fmt.Errorf("%s.name: %q is used by an earlier rule", at, r.Name)
		}
		names[r.Name] = true
		switch r.Action {
		case ActionDrop, ActionMask, ActionKeep:
		case ActionPseudonym:
			if !c.hasSecretSource() {
				return fmt.Errorf("%s.action: pseudonym needs a secret: set redaction.secret_file or redaction.secret_env", at)
			}
		default:
			return fmt.Errorf("%s.action: %q is not one of drop, mask, pseudonym, keep", at, r.Action)
		}
		if len(r.Paths) == 0 {
			return fmt.Errorf("%s.paths: is empty", at)
		}
		for j, p := range r.Paths {
			fp, err := parsePath(p)
			if err != nil {
				return fmt.Errorf("%s.paths[%d]: %w", at, j, err)
			}
			if r.Action == ActionDrop && fp.base == "approver" {
				return fmt.Errorf("%s.paths[%d]: approver cannot be dropped: correlation must see that an approval named someone; mask or pseudonymise it", at, j)
			}
		}
		for j, t := range r.Tools {
			if t == "" {
				return fmt.Errorf("%s.tools[%d]: is empty", at, j)
			}
		}
		for j, a := range r.Actions {
			if a == "" {
				return fmt.Errorf("%s.actions[%d]: is empty", at, j)
			}
		}
	}
	return nil
}

func checkName(n string) error {
	if n == "" {
		return errors.New("is empty")
	}
	if len(n) > 64 {
		return fmt.Errorf("is %d characters, longer than 64", len(n))
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%q: use lower-case letters, digits, '_' and '-'", n)
		}
	}
	return nil
}

// fieldPath is a parsed rule path: base is a field, a map, or "*" (any
// map); key is the map key pattern.
type fieldPath struct {
	base  string
	key   string // maps only
	isMap bool
}

func parsePath(p string) (fieldPath, error) {
	for _, f := range identityPaths {
		if p == f {
			return fieldPath{base: p}, nil
		}
	}
	for _, f := range textPaths {
		if p == f {
			return fieldPath{base: p}, nil
		}
	}
	for _, f := range arrayPaths {
		if p == f || p+"[]" == f {
			return fieldPath{base: f}, nil
		}
	}
	if base, key, ok := strings.Cut(p, "."); ok && key != "" {
		if base == "*" {
			return fieldPath{base: base, key: key, isMap: true}, nil
		}
		for _, m := range mapPaths {
			if base == m {
				return fieldPath{base: base, key: key, isMap: true}, nil
			}
		}
	}
	return fieldPath{}, fmt.Errorf("unknown field path %q; one of %s, where <key> may use '*' and *.<key> means any map", p, strings.Join(FieldPaths(), ", "))
}

// glob matches s against pattern, where '*' matches any run of characters.
func glob(pattern, s string) bool {
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && pattern[px] == '*':
			star, mark = px, sx
			px++
		case px < len(pattern) && pattern[px] == s[sx]:
			px++
			sx++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
