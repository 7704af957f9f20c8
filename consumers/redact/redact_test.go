package redact

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// newWithSecret builds a Redactor whose secret comes from a file.
func newWithSecret(t *testing.T, cfg Config) *Redactor {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SecretFile = p
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func intent(tool, action string, params, ctx map[string]string, rationale string) *schemas.Event {
	return &schemas.Event{
		EventID: "ev-1", TraceID: strings.Repeat("ab", 16), Type: schemas.TypeIntent, Time: time.Now(),
		Agent: schemas.Agent{ID: "agent-1", Team: "support"}, RequestedBy: "Nina.Patel@acme.example", Tier: 2,
		Intent: &schemas.Intent{Tool: tool, Action: action, Target: "customer:cus_1234567", ActionClass: "send", Tier: 2,
			Parameters: params, Context: ctx, Rationale: rationale,
			ActionDigest: schemas.ActionDigest("agent-1", tool, action, "customer:cus_1234567", params)},
	}
}

func has(reds []Redaction, path, action, rule string) bool {
	return slices.Contains(reds, Redaction{Path: path, Action: action, Rule: rule})
}

var psRE = regexp.MustCompile(`^ps:[0-9a-f]{16}$`)

func TestRedactDetectorsDefault(t *testing.T) {
	r, err := New(Config{}) // no secret: e-mail and phone are masked
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]string{"to": "alice@customer.example", "amount": "12.50", "api_key": "k-123", "note": "card 4111 1111 1111 1111 please"}
	e := intent("email", "send", params, map[string]string{"ticket": "SUP-123456", "callback": "+1 212 555 0142"}, "reply to alice@customer.example about order 20261116093000")
	digest := e.Intent.ActionDigest
	reds := r.Redact(e)

	in := e.Intent
	if in.ActionDigest != digest {
		t.Fatalf("action_digest changed: %s -> %s", digest, in.ActionDigest)
	}
	want := map[string]string{"to": "[email]", "amount": "12.50", "api_key": "[secret]", "note": "card [card:****1111] please"}
	for k, v := range want {
		if in.Parameters[k] != v {
			t.Errorf("parameters.%s = %q, want %q", k, in.Parameters[k], v)
		}
	}
	if in.Context["callback"] != "[phone]" || in.Context["ticket"] != "SUP-123456" {
		t.Errorf("context = %v", in.Context)
	}
	if in.Rationale != "reply to [email] about order 20261116093000" {
		t.Errorf("rationale = %q", in.Rationale)
	}
	if e.RequestedBy != "Nina.Patel@acme.example" {
		t.Errorf("requested_by = %q: identity fields are only redacted by rules", e.RequestedBy)
	}
	for _, w := range []Redaction{
		{"parameters.to", "mask", "email"}, {"parameters.api_key", "mask", "secret"}, {"parameters.note", "mask", "card"},
		{"context.callback", "mask", "phone"}, {"rationale", "mask", "email"},
	} {
		if !has(reds, w.Path, w.Action, w.Rule) {
			t.Errorf("redactions %v lack %v", reds, w)
		}
	}
	if len(reds) != 5 {
		t.Errorf("got %d redactions, want 5: %v", len(reds), reds)
	}

	// Nothing to redact: no allocation of a result, nothing changed.
	clean := intent("tickets", "read", map[string]string{"limit": "50"}, nil, "load ticket history")
	if reds := r.Redact(clean); reds != nil {
		t.Errorf("clean event: redactions %v", reds)
	}
}

func TestRedactPseudonyms(t *testing.T) {
	r := newWithSecret(t, Config{Rules: []Rule{
		{Name: "requester", Paths: []string{"requested_by", "approver"}, Action: ActionPseudonym},
	}})
	a := intent("email", "send", map[string]string{"to": "Alice@Customer.example"}, nil, "mail alice@customer.example now")
	b := intent("crm", "update", map[string]string{"contact": " alice@customer.example"}, nil, "")
	reds := r.Redact(a)
	r.Redact(b)

	to := a.Intent.Parameters["to"]
	if !psRE.MatchString(to) {
		t.Fatalf("parameters.to = %q, want a bare pseudonym", to)
	}
	// The same address joins: across fields, events, case and the span form.
	if b.Intent.Parameters["contact"] != to {
		t.Errorf("same address, different pseudonyms: %q vs %q", b.Intent.Parameters["contact"], to)
	}
	if a.Intent.Rationale != "mail [email:"+to+"] now" {
		t.Errorf("rationale = %q", a.Intent.Rationale)
	}
	if !psRE.MatchString(a.RequestedBy) || a.RequestedBy == to {
		t.Errorf("requested_by = %q", a.RequestedBy)
	}
	if !has(reds, "requested_by", "pseudonym", "requester") || !has(reds, "parameters.to", "pseudonym", "email") {
		t.Errorf("redactions = %v", reds)
	}
	// Pseudonym() gives an investigator the stored form of a known value.
	if p, _ := r.Pseudonym("alice@customer.example"); p != to {
		t.Errorf("Pseudonym = %q, stored %q", p, to)
	}
	// Another key, other pseudonyms: they are keyed, not plain hashes.
	t.Setenv("OTHER_SECRET", "another secret of 32 bytes......")
	r2, err := New(Config{SecretEnv: "OTHER_SECRET"})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := r2.Pseudonym("alice@customer.example"); p == to || !psRE.MatchString(p) {
		t.Errorf("pseudonym under another key = %q (first key %q)", p, to)
	}
}

func TestRedactRules(t *testing.T) {
	r := newWithSecret(t, Config{Rules: []Rule{
		{Name: "payments-card", Tools: []string{"payments"}, Paths: []string{"parameters.card_*"}, Action: ActionDrop},
		{Name: "crm-notes", Tools: []string{"crm*"}, Actions: []string{"update"}, Paths: []string{"*.notes", "rationale"}, Action: ActionMask},
		{Name: "customer-id", Paths: []string{"parameters.customer"}, Action: ActionPseudonym},
		{Name: "known-fp", Paths: []string{"context.build"}, Action: ActionKeep},
		{Name: "effects", Tools: []string{"payments"}, Paths: []string{"side_effects[]"}, Action: ActionDrop},
	}})
	cases := []struct {
		name    string
		ev      *schemas.Event
		check   func(t *testing.T, e *schemas.Event)
		wantRed []Redaction
	}{
		{"tool-scoped drop with key wildcard", intent("payments", "refund",
			map[string]string{"card_number": "4111111111111111", "card_holder": "A. Smith", "amount": "10.00"}, nil, ""),
			func(t *testing.T, e *schemas.Event) {
				if _, ok := e.Intent.Parameters["card_number"]; ok || len(e.Intent.Parameters) != 1 {
					t.Errorf("parameters = %v", e.Intent.Parameters)
				}
			},
			[]Redaction{{"parameters.card_number", "drop", "payments-card"}, {"parameters.card_holder", "drop", "payments-card"}}},
		{"other tool: rule does not apply, detector does", intent("billing", "charge",
			map[string]string{"card_number": "4111111111111111"}, nil, ""),
			func(t *testing.T, e *schemas.Event) {
				if e.Intent.Parameters["card_number"] != "[card:****1111]" {
					t.Errorf("parameters = %v", e.Intent.Parameters)
				}
			},
			[]Redaction{{"parameters.card_number", "mask", "card"}}},
		{"tool glob, action, any map", intent("crm-eu", "update",
			map[string]string{"notes": "called back"}, map[string]string{"notes": "vip"}, "customer asked to be called"),
			func(t *testing.T, e *schemas.Event) {
				if e.Intent.Parameters["notes"] != "***" || e.Intent.Context["notes"] != "***" || e.Intent.Rationale != "***" {
					t.Errorf("intent = %+v", e.Intent)
				}
			},
			[]Redaction{{"parameters.notes", "mask", "crm-notes"}, {"context.notes", "mask", "crm-notes"}, {"rationale", "mask", "crm-notes"}}},
		{"action outside the rule", intent("crm-eu", "read", map[string]string{"notes": "called back"}, nil, ""),
			func(t *testing.T, e *schemas.Event) {
				if e.Intent.Parameters["notes"] != "called back" {
					t.Errorf("parameters = %v", e.Intent.Parameters)
				}
			}, nil},
		{"unscoped pseudonym", intent("invoices", "draft", map[string]string{"customer": "cus_1234567"}, nil, ""),
			func(t *testing.T, e *schemas.Event) {
				if !psRE.MatchString(e.Intent.Parameters["customer"]) {
					t.Errorf("parameters = %v", e.Intent.Parameters)
				}
			},
			[]Redaction{{"parameters.customer", "pseudonym", "customer-id"}}},
		{"keep silences the detectors", intent("deploy", "run", nil, map[string]string{"build": "212-555-0142"}, ""),
			func(t *testing.T, e *schemas.Event) {
				if e.Intent.Context["build"] != "212-555-0142" {
					t.Errorf("context = %v", e.Intent.Context)
				}
			}, nil},
		{"scoped rule never matches a result event", &schemas.Event{Type: schemas.TypeResult,
			Result: &schemas.Result{Status: "success", SideEffects: []string{"refund:re_1", "mail to bob@x.example"}}},
			func(t *testing.T, e *schemas.Event) {
				if !slices.Equal(e.Result.SideEffects, []string{"refund:re_1", "mail to [email:" + mustPseudonym(t, r, "bob@x.example") + "]"}) {
					t.Errorf("side_effects = %v", e.Result.SideEffects)
				}
			},
			[]Redaction{{"side_effects[]", "pseudonym", "email"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reds := r.Redact(tc.ev)
			tc.check(t, tc.ev)
			if len(reds) != len(tc.wantRed) {
				t.Fatalf("redactions = %v, want %v", reds, tc.wantRed)
			}
			for _, w := range tc.wantRed {
				if !has(reds, w.Path, w.Action, w.Rule) {
					t.Errorf("redactions = %v, want %v among them", reds, w)
				}
			}
		})
	}
}

func mustPseudonym(t *testing.T, r *Redactor, v string) string {
	p, err := r.Pseudonym(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDropArrayElement(t *testing.T) {
	r, err := New(Config{Rules: []Rule{{Name: "no-effects", Paths: []string{"side_effects"}, Action: ActionDrop}}})
	if err != nil {
		t.Fatal(err)
	}
	shared := []string{"a", "b"}
	e := &schemas.Event{Type: schemas.TypeResult, Result: &schemas.Result{SideEffects: shared}}
	reds := r.Redact(e)
	if len(e.Result.SideEffects) != 0 || !has(reds, "side_effects[]", "drop", "no-effects") || len(reds) != 1 {
		t.Errorf("side_effects = %v, redactions %v", e.Result.SideEffects, reds)
	}
	if shared[0] != "a" || shared[1] != "b" {
		t.Errorf("the original slice was changed: %v", shared)
	}
}

func TestSecretLoading(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tooshort-9x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENTRAIL_TEST_SECRET", testSecret)
	pseudo := []Rule{{Name: "p", Paths: []string{"requested_by"}, Action: ActionPseudonym}}
	cases := []struct {
		name string
		cfg  Config
		want string // "" = no error
	}{
		{"env", Config{SecretEnv: "AGENTRAIL_TEST_SECRET", Rules: pseudo}, ""},
		{"no secret, no pseudonym rule", Config{}, ""},
		{"literal refused", Config{Secret: "hunter2-hunter2-hunter2", Rules: pseudo}, "redaction.secret: a literal secret is not accepted"},
		{"env unset", Config{SecretEnv: "AGENTRAIL_TEST_NOT_SET", Rules: pseudo}, "environment variable AGENTRAIL_TEST_NOT_SET is not set"},
		{"file missing", Config{SecretFile: filepath.Join(dir, "none"), Rules: pseudo}, "read redaction.secret_file"},
		{"too short", Config{SecretFile: short}, "is 11 bytes; at least 16"},
		{"both", Config{SecretFile: short, SecretEnv: "X"}, "not both"},
		{"pseudonym rule without secret", Config{Rules: pseudo}, "redaction.rules[0].action: pseudonym needs a secret"},
		{"pseudonym detector without secret", Config{Detectors: Detectors{Email: Detector{Action: "pseudonym"}}}, "redaction.detectors.email.action: pseudonym needs a secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "tooshort") || strings.Contains(err.Error(), testSecret)) {
				t.Fatalf("error quotes the secret: %v", err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown path", Config{Rules: []Rule{{Name: "x", Paths: []string{"parameter.to"}, Action: "mask"}}}, `redaction.rules[0].paths[0]: unknown field path "parameter.to"`},
		{"id path", Config{Rules: []Rule{{Name: "x", Paths: []string{"action_digest"}, Action: "mask"}}}, `unknown field path "action_digest"`},
		{"bad action", Config{Rules: []Rule{{Name: "x", Paths: []string{"rationale"}, Action: "hash"}}}, `redaction.rules[0].action: "hash" is not one of drop, mask, pseudonym, keep`},
		{"no paths", Config{Rules: []Rule{{Name: "x", Action: "mask"}}}, "redaction.rules[0].paths: is empty"},
		{"no name", Config{Rules: []Rule{{Paths: []string{"rationale"}, Action: "mask"}}}, "redaction.rules[0].name: is empty"},
		{"duplicate name", Config{Rules: []Rule{{Name: "x", Paths: []string{"rationale"}, Action: "mask"}, {Name: "x", Paths: []string{"comment"}, Action: "mask"}}}, "redaction.rules[1].name"},
		{"detector name", Config{Rules: []Rule{{Name: "email", Paths: []string{"rationale"}, Action: "mask"}}}, "is a detector's name"},
		{"drop approver", Config{Rules: []Rule{{Name: "x", Paths: []string{"approver"}, Action: "drop"}}}, "approver cannot be dropped"},
		{"bad detector action", Config{Detectors: Detectors{Card: Detector{Action: "drop"}}}, `redaction.detectors.card.action: "drop"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Defaults()
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDisabledDetectors(t *testing.T) {
	cfg := Config{}
	cfg.Detectors.Email.Disabled = true
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Summary(), "rules=0 detectors=secret:mask,card:mask,phone:mask,high_entropy:mask,iban:mask,ssn:mask pseudonym_key=false keep_raw_undecodable=false"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	e := intent("email", "send", map[string]string{"to": "alice@customer.example", "token": "abc"}, nil, "")
	r.Redact(e)
	if e.Intent.Parameters["to"] != "alice@customer.example" || e.Intent.Parameters["token"] != "[secret]" {
		t.Errorf("parameters = %v", e.Intent.Parameters)
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"card_*", "card_number", true}, {"card_*", "xcard_number", false},
		{"*_email", "billing_email", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"exact", "exact", true},
	} {
		if got := glob(tc.p, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestScrub(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte("\x00\x02\x16alice@customer.example\x08abc")
	got := r.ScrubBytes(raw)
	if len(got) != len(raw) || strings.Contains(string(got), "alice") || !strings.HasSuffix(string(got), "\x08abc") {
		t.Errorf("ScrubBytes = %q", got)
	}
	if raw[3] != 'a' {
		t.Error("ScrubBytes changed its input")
	}
	if s := r.ScrubText("field parameters.bob@x.example: bad"); strings.Contains(s, "bob@") {
		t.Errorf("ScrubText = %q", s)
	}
}

// An IBAN and an SSN pseudonymise the same whatever their grouping or case,
// as phone and card numbers do.
func TestPseudonymIDNormalized(t *testing.T) {
	r := newWithSecret(t, Config{Detectors: Detectors{IBAN: Detector{Action: ActionPseudonym}, SSN: Detector{Action: ActionPseudonym}}})
	a := intent("payments", "payout", map[string]string{"iban": "DE89 3704 0044 0532 0130 00", "ssn": "078-05-1121"}, nil, "")
	b := intent("payments", "payout", map[string]string{"iban": "de89370400440532013000", "ssn": "SSN 078 05 1121"}, nil, "")
	r.Redact(a)
	r.Redact(b)
	pa, pb := a.Intent.Parameters, b.Intent.Parameters
	if !psRE.MatchString(pa["iban"]) || pa["iban"] != pb["iban"] {
		t.Errorf("iban pseudonyms %q and %q", pa["iban"], pb["iban"])
	}
	if !psRE.MatchString(pa["ssn"]) || pb["ssn"] != "SSN [ssn:"+pa["ssn"]+"]" {
		t.Errorf("ssn pseudonyms %q and %q", pa["ssn"], pb["ssn"])
	}
}
