package redact

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/agentrail/agentrail/schemas"
)

// ibanFormats are BBAN shapes of a few countries: n digits ('9'), upper-case
// letters ('A') or either ('X'), per ISO 13616's registry.
var ibanFormats = []struct{ cc, bban string }{
	{"DE", "999999999999999999"},           // 22
	{"GB", "AAAA99999999999999"},           // 22
	{"FR", "9999999999XXXXXXXXXXX99"},      // 27
	{"NL", "AAAA9999999999"},               // 18
	{"ES", "99999999999999999999"},         // 24
	{"IT", "A9999999999XXXXXXXXXXXX"},      // 27
	{"BE", "999999999999"},                 // 16
	{"AT", "9999999999999999"},             // 20
	{"CH", "99999XXXXXXXXXXXX"},            // 21
	{"PL", "999999999999999999999999"},     // 28
	{"NO", "99999999999"},                  // 15
	{"MT", "AAAA99999XXXXXXXXXXXXXXXXXX"},  // 31
	{"IE", "AAAA99999999999999"},           // 22
	{"SE", "99999999999999999999"},         // 24
	{"PT", "999999999999999999999"},        // 25
	{"LC", "AAAAXXXXXXXXXXXXXXXXXXXXXXXX"}, // 32
	{"FI", "99999999999999"},               // 18
	{"DK", "99999999999999"},               // 18
	{"HR", "99999999999999999"},            // 21
	{"LU", "999XXXXXXXXXXXXX"},             // 20
}

// checkDigits computes an IBAN's check digits with math/big, independently
// of the detector's streaming mod-97: 98 - (BBAN || CC || "00" as digits
// mod 97).
func checkDigits(cc, bban string) string {
	var digits strings.Builder
	for _, c := range bban + cc + "00" {
		if c >= 'A' && c <= 'Z' {
			fmt.Fprintf(&digits, "%d", c-'A'+10)
		} else {
			digits.WriteRune(c)
		}
	}
	n, _ := new(big.Int).SetString(digits.String(), 10)
	return fmt.Sprintf("%02d", 98-new(big.Int).Mod(n, big.NewInt(97)).Int64())
}

func genBBAN(rng *rand.Rand, format string) string {
	const up, alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, len(format))
	for i, f := range []byte(format) {
		switch f {
		case '9':
			b[i] = byte('0' + rng.IntN(10))
		case 'A':
			b[i] = up[rng.IntN(len(up))]
		default:
			b[i] = alnum[rng.IntN(len(alnum))]
		}
	}
	return string(b)
}

// group writes an IBAN in the print format, groups of four.
func group(iban string) string {
	var b strings.Builder
	for i := 0; i < len(iban); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(iban[i:min(i+4, len(iban))])
	}
	return b.String()
}

// corpus generates the values of TestCorpusEveryField: secrets and
// personal values that must be redacted, each with the kind that should
// find it, and benign look-alikes that must stay.
func corpus(rng *rand.Rand) (secret []struct{ v, kind string }, benign []string) {
	add := func(kind, v string) { secret = append(secret, struct{ v, kind string }{v, kind}) }
	for i, f := range ibanFormats {
		bban := genBBAN(rng, f.bban)
		iban := f.cc + checkDigits(f.cc, bban) + bban
		if i%2 == 0 {
			add("iban", iban)
		} else {
			add("iban", group(iban))
		}
		// The same with its last check digit changed by 1..9: the mod-97
		// remainder moves by as much, so it is never valid; it must stay.
		bad := []byte(iban)
		bad[3] = '0' + (bad[3]-'0'+1+byte(rng.IntN(9)))%10
		benign = append(benign, string(bad))
	}
	for len(secret) < len(ibanFormats)+12 {
		area, grp, serial := 1+rng.IntN(899), 1+rng.IntN(99), 1+rng.IntN(9999)
		if area == 666 {
			continue
		}
		add("ssn", fmt.Sprintf("%03d-%02d-%04d", area, grp, serial))
	}
	for _, v := range []string{"000-12-3456", "666-12-3456", "900-12-3456", "987-65-4321", "123-00-4567", "123-45-0000"} {
		benign = append(benign, v) // never issued
	}
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+"
	for i := range 16 {
		k := make([]byte, 40)
		for j := range k {
			k[j] = b64[rng.IntN(len(b64))]
		}
		k[0] = "/+"[i%2]
		k[1+rng.IntN(39)] = byte('0' + rng.IntN(10)) // AWS keys almost always hold a digit
		add("high_entropy", string(k))
	}
	benign = append(benign,
		"INV-2026-004417", "ORD-78412345", "order 123456789", "PO 4500012345", "550e8400-e29b-41d4-a716-446655440000",
		"3f2a9c0e1b4d5f6a7b8c9d0e1f2a3b4c5d6e7f8a", "EUR 1,234.56", "2026-11-16", "2026-11-16T09:30:00Z", "v10.200.3000",
		"/Users/JohnDoe/Documents/Report2026Final", "src/main/java/com/Acme/Billing/InvoiceService2Impl",
		"/api/v2/Customers/InvoiceHistory/Downloads2026", "ext. 4471", "DE-BY-80331", "case 12-3456789", "DE123456789",
	)
	return secret, benign
}

// TestCorpusEveryField places each corpus value in every field the
// detectors scan, one event per value and event type, and checks that each
// secret is gone from the whole event with a record of its detector, and
// each benign value intact.
func TestCorpusEveryField(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	secret, benign := corpus(rand.New(rand.NewPCG(20, 4)))
	if len(benign) < 20 {
		t.Fatalf("only %d benign values generated", len(benign))
	}
	fields := 0
	check := func(v string, want string) (ok bool) {
		for _, e := range everyField(v) {
			fields++
			reds := r.Redact(e)
			js, _ := json.Marshal(e)
			survived := strings.Contains(string(js), v)
			switch {
			case want != "" && survived:
				t.Errorf("%s %q survives in %s", want, v, js)
				return false
			case want != "" && !slicesHasRule(reds, want):
				t.Errorf("%q: redactions %v, want rule %s", v, reds, want)
				return false
			case want == "" && (!survived || reds != nil):
				t.Errorf("benign %q changed: %s, redactions %v", v, js, reds)
				return false
			}
		}
		return true
	}
	redacted, intact := 0, 0
	for _, s := range secret {
		if check(s.v, s.kind) {
			redacted++
		}
	}
	for _, b := range benign {
		if check(b, "") {
			intact++
		}
	}
	t.Logf("corpus: %d of %d secrets and personal values redacted in every field, %d of %d benign values intact (%d field placements)",
		redacted, len(secret), intact, len(benign), fields)
}

func slicesHasRule(reds []Redaction, rule string) bool {
	for _, rd := range reds {
		if rd.Rule == rule {
			return true
		}
	}
	return false
}

// everyField returns events that carry v, inside a sentence, in each free
// text field the detectors scan: one intent with all of its fields, a
// decision, an approval and a result.
func everyField(v string) []*schemas.Event {
	text := "see " + v + " please"
	base := func(typ schemas.EventType) *schemas.Event {
		return &schemas.Event{EventID: "ev-1", TraceID: strings.Repeat("ab", 16), Type: typ, Time: time.Now(),
			Agent: schemas.Agent{ID: "agent-1", Team: "finance"}, Labels: map[string]string{"note": text}}
	}
	in := base(schemas.TypeIntent)
	in.Intent = &schemas.Intent{Tool: "payments", Action: "refund", Target: text, Tier: 3,
		Parameters: map[string]string{"memo": text, "bare": v}, Context: map[string]string{"ticket": text},
		Rationale: text, EvidenceIDs: []string{text}}
	dec := base(schemas.TypeDecision)
	dec.Decision = &schemas.Decision{Reason: text}
	ap := base(schemas.TypeApproval)
	ap.Approval = &schemas.Approval{Approver: "lead@acme.example", Comment: text}
	apBare := base(schemas.TypeApproval)
	apBare.Approval = &schemas.Approval{Approver: "lead@acme.example", Comment: v}
	res := base(schemas.TypeResult)
	res.Result = &schemas.Result{Status: "failure", ChangedResource: text, SideEffects: []string{text}, ErrorMessage: text}
	return []*schemas.Event{in, dec, ap, apBare, res}
}
