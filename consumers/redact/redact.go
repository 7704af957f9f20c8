// Package redact removes secrets and personal data from agent events before
// ingest stores them, so the raw values never reach ClickHouse, the
// dead-letter topic, the logs or an error message.
//
// Two mechanisms, in this order for each field:
//   - rules, per tool and action and field path, that drop, mask or
//     pseudonymise a whole value (or keep it away from the detectors);
//   - built-in detectors (e-mail addresses, payment cards with a Luhn check,
//     phone numbers, API keys and tokens, high-entropy strings, IBANs with
//     their mod-97 check, US social security numbers) over free text and
//     map values, which replace only the span they match, so the rest of a
//     rationale stays readable.
//
// A pseudonym is HMAC-SHA256 over the value with a secret key, "ps:" and 16
// hex digits: stable across events and tables, so analysts can join on a
// value they cannot read. Redact reports what it did per field (path,
// action, rule or detector), never a value.
//
// It deliberately leaves alone the identity and structural fields (event and
// trace ids, agent, team, tool, action, policy, action_digest):
// action_digest is the producer's SHA-256 of the raw payload and must stay
// comparable between intent, approval and result. It does no I/O except
// reading the secret once, in New.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"

	"github.com/agentrail/agentrail/schemas"
)

// Redaction says that one field of an event was redacted, how and why. It
// holds no value.
type Redaction struct {
	Path   string `json:"path"`   // field path: rationale, parameters.to, side_effects[]
	Action string `json:"action"` // drop, mask or pseudonym
	Rule   string `json:"rule"`   // the rule's name, or the detector's: email, card, phone, secret, high_entropy, iban, ssn
}

// Redactor applies a Config. It is safe for concurrent use.
type Redactor struct {
	rules   []compiledRule
	det     detectors
	action  [numKinds]string // mask or pseudonym, per detector
	key     []byte           // nil: no secret configured
	macs    sync.Pool
	keepRaw bool
}

type compiledRule struct {
	name, action   string
	tools, actions []string
	paths          []fieldPath
}

// minSecretBytes is the shortest pseudonym key accepted.
const minSecretBytes = 16

// New validates cfg and reads the pseudonym secret, if one is configured.
func New(cfg Config) (*Redactor, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redact: %w", err)
	}
	key, err := loadSecret(cfg)
	if err != nil {
		return nil, err
	}
	r := &Redactor{key: key, keepRaw: cfg.KeepRawUndecodable}
	if key != nil {
		r.macs.New = func() any { return hmac.New(sha256.New, key) }
	}
	for k, d := range cfg.detectorList() {
		r.det.on[k] = !d.Disabled
		r.action[k] = d.Action
		if d.Action == actionAuto {
			r.action[k] = ActionMask
			if key != nil {
				r.action[k] = ActionPseudonym
			}
		}
	}
	for _, rc := range cfg.Rules {
		cr := compiledRule{name: rc.Name, action: rc.Action, tools: rc.Tools, actions: rc.Actions}
		for _, p := range rc.Paths {
			fp, _ := parsePath(p) // checked by Validate
			cr.paths = append(cr.paths, fp)
		}
		r.rules = append(r.rules, cr)
	}
	return r, nil
}

// loadSecret reads the key from the configured file or environment
// variable. Errors name the source, never the content.
func loadSecret(cfg Config) ([]byte, error) {
	var key []byte
	var from string
	switch {
	case cfg.SecretFile != "":
		b, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("redact: read redaction.secret_file: %w", err)
		}
		key, from = []byte(strings.TrimRight(string(b), "\r\n")), "redaction.secret_file "+cfg.SecretFile
	case cfg.SecretEnv != "":
		v, ok := os.LookupEnv(cfg.SecretEnv)
		if !ok {
			return nil, fmt.Errorf("redact: redaction.secret_env: environment variable %s is not set", cfg.SecretEnv)
		}
		key, from = []byte(v), "redaction.secret_env "+cfg.SecretEnv
	default:
		return nil, nil
	}
	if len(key) < minSecretBytes {
		return nil, fmt.Errorf("redact: the secret in %s is %d bytes; at least %d are required (32 random bytes recommended, e.g. `openssl rand -hex 32`)", from, len(key), minSecretBytes)
	}
	return key, nil
}

// Summary describes the redaction in force for a start-up log line: rule
// count, each enabled detector's action, whether a key is loaded. No secret.
func (r *Redactor) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rules=%d detectors=", len(r.rules))
	n := 0
	for k := range numKinds {
		if !r.det.on[k] {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteString(k.String() + ":" + r.action[k])
	}
	if n == 0 {
		b.WriteString("none")
	}
	fmt.Fprintf(&b, " pseudonym_key=%t keep_raw_undecodable=%t", r.key != nil, r.keepRaw)
	return b.String()
}

// KeepRawUndecodable reports the config's keep_raw_undecodable.
func (r *Redactor) KeepRawUndecodable() bool { return r.keepRaw }

// Pseudonym returns the pseudonym of v, as a rule stores it, so an
// investigator who holds the secret can find the events about a known value.
func (r *Redactor) Pseudonym(v string) (string, error) {
	if r.key == nil {
		return "", fmt.Errorf("redact: no secret configured (redaction.secret_file or redaction.secret_env)")
	}
	return string(r.appendPseudonym(nil, normalize(v))), nil
}

// pseudonymDomain separates these MACs from any other use of the key.
const pseudonymDomain = "agentrail/pseudonym/v1\x00"

// appendPseudonym appends "ps:" and the first 8 bytes of
// HMAC-SHA256(key, domain || v) in hex: 64 bits, so distinct values collide
// only beyond billions of them.
func (r *Redactor) appendPseudonym(dst []byte, v string) []byte {
	h := r.macs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(pseudonymDomain))
	h.Write([]byte(v))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	r.macs.Put(h)
	dst = append(dst, "ps:"...)
	return hex.AppendEncode(dst, sum[:8])
}

// normalize makes values that mean the same thing pseudonymise the same:
// surrounding space and case do not count (e-mail addresses, user names).
func normalize(v string) string { return strings.ToLower(strings.TrimSpace(v)) }

// normalizeSpan is normalize, but phone numbers keep only '+' and digits,
// card and social security numbers only digits, and IBANs only their
// letters (lower-cased) and digits, so formatting does not count either.
func normalizeSpan(k kind, v string) string {
	if k != kindPhone && k != kindCard && k != kindSSN && k != kindIBAN {
		return normalize(v)
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case isDigit(c), c == '+' && k == kindPhone:
			b = append(b, c)
		case k == kindIBAN && isAlpha(c):
			b = append(b, c|0x20)
		}
	}
	return string(b)
}

// Replacements.
const (
	maskValue = "***" // what a mask rule stores
)

// Redact redacts e in place and returns what it redacted, or nil. It never
// touches action_digest or any id.
func (r *Redactor) Redact(e *schemas.Event) []Redaction {
	w := walker{r: r}
	if in := e.Intent; in != nil {
		w.tool, w.act, w.intent = in.Tool, in.Action, true
	}
	w.str("requested_by", &e.RequestedBy, false)
	w.str("session_id", &e.SessionID, false)
	w.strMap("labels", e.Labels)
	if in := e.Intent; in != nil {
		w.str("target", &in.Target, true)
		w.strMap("parameters", in.Parameters)
		w.str("rationale", &in.Rationale, true)
		w.strMap("context", in.Context)
		w.strs("evidence_ids[]", &in.EvidenceIDs)
	}
	if d := e.Decision; d != nil {
		w.str("reason", &d.Reason, true)
	}
	if a := e.Approval; a != nil {
		w.str("approver", &a.Approver, false)
		w.str("comment", &a.Comment, true)
	}
	if res := e.Result; res != nil {
		w.str("executor", &res.Executor, false)
		w.str("changed_resource", &res.ChangedResource, true)
		w.strs("side_effects[]", &res.SideEffects)
		w.str("error_message", &res.ErrorMessage, true)
	}
	return w.out
}

// ScrubText masks what the detectors find in s: for error messages and
// other text that is not an event field.
func (r *Redactor) ScrubText(s string) string {
	var buf [8]span
	spans := r.det.find(s, buf[:0])
	if len(spans) == 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	prev := 0
	for _, sp := range spans {
		b = append(b, s[prev:sp.start]...)
		b = appendMask(b, sp.kind, s[sp.start:sp.end])
		prev = sp.end
	}
	return string(append(b, s[prev:]...))
}

// ScrubBytes returns a copy of b with every span the detectors find
// overwritten by '*', keeping the length: for bytes that cannot be parsed
// (an undecodable record), where only what the detectors recognise can be
// found. It is best effort by nature.
func (r *Redactor) ScrubBytes(b []byte) []byte {
	out := append([]byte(nil), b...)
	for _, sp := range r.det.find(string(b), nil) {
		for i := sp.start; i < sp.end; i++ {
			out[i] = '*'
		}
	}
	return out
}

func appendMask(b []byte, k kind, v string) []byte {
	if k == kindCard {
		// The last four digits are what receipts print and PCI DSS allows
		// to be shown: enough to tell cards apart.
		var last [4]byte
		n := 0
		for i := len(v) - 1; i >= 0 && n < 4; i-- {
			if isDigit(v[i]) {
				n++
				last[4-n] = v[i]
			}
		}
		b = append(b, "[card:****"...)
		b = append(b, last[4-n:]...)
		return append(b, ']')
	}
	b = append(b, '[')
	b = append(b, k.String()...)
	return append(b, ']')
}

// walker carries one event's redaction.
type walker struct {
	r         *Redactor
	tool, act string
	intent    bool
	out       []Redaction
	spans     [8]span
}

// record notes a redaction once per path, action and reason.
func (w *walker) record(base, key, action, rule string) {
	path := base
	if key != "" || isMapBase(base) {
		path = base + "." + key
	}
	for _, o := range w.out {
		if o.Path == path && o.Action == action && o.Rule == rule {
			return
		}
	}
	w.out = append(w.out, Redaction{Path: path, Action: action, Rule: rule})
}

func isMapBase(b string) bool { return b == "labels" || b == "parameters" || b == "context" }

// rule returns the first rule that applies to the field, or nil.
func (w *walker) rule(base, key string, isMap bool) *compiledRule {
	for i := range w.r.rules {
		cr := &w.r.rules[i]
		if !w.inScope(cr) {
			continue
		}
		for _, p := range cr.paths {
			if p.isMap != isMap {
				continue
			}
			if isMap {
				if (p.base == "*" || p.base == base) && glob(p.key, key) {
					return cr
				}
			} else if p.base == base {
				return cr
			}
		}
	}
	return nil
}

func (w *walker) inScope(cr *compiledRule) bool {
	if len(cr.tools) == 0 && len(cr.actions) == 0 {
		return true
	}
	if !w.intent {
		return false
	}
	return matchAny(cr.tools, w.tool) && matchAny(cr.actions, w.act)
}

func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if glob(p, s) {
			return true
		}
	}
	return false
}

// value redacts one value of the field base[.key]; keep is false when the
// value is to be dropped.
func (w *walker) value(base, key string, isMap bool, v string, scan bool) (out string, keep bool) {
	if len(w.r.rules) > 0 {
		if cr := w.rule(base, key, isMap); cr != nil {
			switch cr.action {
			case ActionKeep:
				return v, true
			case ActionDrop:
				if v != "" || isMap {
					w.record(base, key, ActionDrop, cr.name)
				}
				return "", false
			case ActionMask:
				if v == "" {
					return v, true
				}
				w.record(base, key, ActionMask, cr.name)
				return maskValue, true
			case ActionPseudonym:
				if v == "" {
					return v, true
				}
				w.record(base, key, ActionPseudonym, cr.name)
				return string(w.r.appendPseudonym(nil, normalize(v))), true
			}
		}
	}
	if !scan || v == "" {
		return v, true
	}
	if isMap && w.r.det.on[kindSecret] && secretName(key) {
		act := w.r.action[kindSecret]
		w.record(base, key, act, kindSecret.String())
		return string(w.r.replace(nil, kindSecret, act, v, true)), true
	}
	spans := w.r.det.find(v, w.spans[:0])
	if len(spans) == 0 {
		return v, true
	}
	if sp := spans[0]; len(spans) == 1 && isSpace(v[:sp.start]) && isSpace(v[sp.end:]) {
		// The match is the value: store the bare replacement, so a
		// pseudonymised address equals the same address pseudonymised by
		// a rule elsewhere.
		act := w.r.action[sp.kind]
		w.record(base, key, act, sp.kind.String())
		return string(w.r.replace(nil, sp.kind, act, v[sp.start:sp.end], true)), true
	}
	b := make([]byte, 0, len(v)+16)
	prev := 0
	for _, sp := range spans {
		act := w.r.action[sp.kind]
		w.record(base, key, act, sp.kind.String())
		b = append(b, v[prev:sp.start]...)
		b = w.r.replace(b, sp.kind, act, v[sp.start:sp.end], false)
		prev = sp.end
	}
	return string(append(b, v[prev:]...)), true
}

// replace appends what stands for v, a match of detector k: a mask token
// ([email], [card:****1234]), or a pseudonym, bare (ps:…) when v was the
// whole value and in brackets ([email:ps:…]) inside text.
func (r *Redactor) replace(b []byte, k kind, action, v string, whole bool) []byte {
	if action != ActionPseudonym {
		return appendMask(b, k, v)
	}
	if whole {
		return r.appendPseudonym(b, normalizeSpan(k, v))
	}
	b = append(b, '[')
	b = append(b, k.String()...)
	b = append(b, ':')
	b = r.appendPseudonym(b, normalizeSpan(k, v))
	return append(b, ']')
}

func isSpace(s string) bool { return strings.TrimSpace(s) == "" }

func (w *walker) str(base string, p *string, scan bool) {
	if *p == "" {
		return
	}
	v, keep := w.value(base, "", false, *p, scan)
	if !keep {
		v = ""
	}
	*p = v
}

func (w *walker) strs(base string, p *[]string) {
	for i := 0; i < len(*p); i++ {
		v, keep := w.value(base, "", false, (*p)[i], true)
		if keep {
			(*p)[i] = v
			continue
		}
		// Copy before removing: the slice may be shared.
		s := append([]string(nil), (*p)[:i]...)
		*p = append(s, (*p)[i+1:]...)
		i--
	}
}

func (w *walker) strMap(base string, m map[string]string) {
	for k, v := range m {
		nv, keep := w.value(base, k, true, v, true)
		switch {
		case !keep:
			delete(m, k)
		case nv != v:
			m[k] = nv
		}
	}
}
