package redact

import (
	"strings"
	"testing"
)

// FuzzDetectors feeds arbitrary text to the detectors and to a full event
// redaction. The spans must be in bounds, sorted and disjoint; masking must
// replace exactly them, so a detected value survives only where the input
// also has it outside every detected span; redaction never panics and never
// touches action_digest.
func FuzzDetectors(f *testing.F) {
	for _, s := range []string{
		"reply to alice@customer.example re card 4111 1111 1111 1111",
		"call +44 (0)20 7946 0958 or (212) 555-0142; ts 2026-11-16T09:30:00Z",
		"Authorization: Bearer abcdef0123456789abcdef password=hunter2",
		"postgres://admin:s3cr3t@db:5432 AKIAIOSFODNN7EXAMPLE ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
		"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
		"key aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5 =",
		"IBAN GB29 NWBK 6016 1331 9268 19 or DE89370400440532013000; SSN 078-05-1121, ssn: 078051121",
		"approved /K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI2a and wJalrXUt/nFEMIK7M/DENGbPxR/fiCYEXAMPLEKEY",
		"",
	} {
		f.Add(s, "to")
	}
	r, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	rp := newWithSecretF(f)
	f.Fuzz(func(t *testing.T, s, key string) {
		spans := allOn.find(s, nil)
		prev := 0
		var rest, tokens []string
		for _, sp := range spans {
			if sp.start < prev || sp.end <= sp.start || sp.end > len(s) {
				t.Fatalf("bad span %+v after %d in %q (all %+v)", sp, prev, s, spans)
			}
			rest = append(rest, s[prev:sp.start])
			tokens = append(tokens, string(appendMask(nil, sp.kind, s[sp.start:sp.end])))
			prev = sp.end
		}
		rest = append(rest, s[prev:])
		out := r.ScrubText(s)
		if want := interleave(rest, tokens); out != want {
			t.Fatalf("ScrubText(%q) = %q, want %q", s, out, want)
		}
		restS, tokS := strings.Join(rest, "\x00"), strings.Join(tokens, "\x00")
		for _, sp := range spans {
			v := s[sp.start:sp.end]
			if strings.Count(out, v) > strings.Count(restS, v)+strings.Count(tokS, v) {
				t.Fatalf("detected %s %q survives in %q", sp.kind, v, out)
			}
		}
		if b := r.ScrubBytes([]byte(s)); len(b) != len(s) {
			t.Fatalf("ScrubBytes changed the length: %d -> %d", len(s), len(b))
		}

		for _, red := range []*Redactor{r, rp} {
			e := intent("email", "send", map[string]string{key: s, "x": s}, map[string]string{"note": s}, s)
			digest := e.Intent.ActionDigest
			reds := red.Redact(e)
			if e.Intent.ActionDigest != digest {
				t.Fatal("action_digest changed")
			}
			if len(spans) > 0 && len(reds) == 0 {
				t.Fatalf("detected %v in %q but redacted nothing", spans, s)
			}
			for _, rd := range reds {
				known := rd.Rule == "requester" || rd.Rule == "notes" || strings.Contains(" email card phone secret high_entropy iban ssn ", " "+rd.Rule+" ")
				if !known || (rd.Action != ActionDrop && rd.Action != ActionMask && rd.Action != ActionPseudonym) {
					t.Fatalf("unexpected redaction record %+v", rd)
				}
			}
		}
	})
}

func interleave(rest, tokens []string) string {
	var b strings.Builder
	for i, r := range rest {
		b.WriteString(r)
		if i < len(tokens) {
			b.WriteString(tokens[i])
		}
	}
	return b.String()
}

func newWithSecretF(f *testing.F) *Redactor {
	f.Setenv("AGENTRAIL_FUZZ_SECRET", testSecret)
	r, err := New(Config{SecretEnv: "AGENTRAIL_FUZZ_SECRET", Rules: []Rule{
		{Name: "requester", Paths: []string{"requested_by"}, Action: ActionPseudonym},
		{Name: "notes", Paths: []string{"context.note"}, Action: ActionDrop},
	}})
	if err != nil {
		f.Fatal(err)
	}
	return r
}
