package redact

import (
	"math/rand/v2"
	"strings"
	"testing"
)

var allOn = func() (d detectors) {
	for k := range d.on {
		d.on[k] = true
	}
	return d
}()

// found renders what the detectors find in s as "kind=match" strings.
func found(s string) []string {
	var out []string
	for _, sp := range allOn.find(s, nil) {
		out = append(out, sp.kind.String()+"="+s[sp.start:sp.end])
	}
	return out
}

func TestDetectors(t *testing.T) {
	cases := []struct {
		name, in string
		want     []string // nil: nothing may be found
	}{
		// e-mail
		{"email", "mail alice.smith+x@Example.COM now", []string{"email=alice.smith+x@Example.COM"}},
		{"email in brackets", "<bob@acme.example>, (carol@sub.acme.co.uk).", []string{"email=bob@acme.example", "email=carol@sub.acme.co.uk"}},
		{"email after mailto", "mailto:dana@acme.example", []string{"email=dana@acme.example"}},
		{"no tld", "user@localhost is a login", nil},
		{"numeric tld", "x@10.0.0.1", nil},
		{"mention", "ping @oncall about it", nil},
		{"at in version", "pkg@1.2.3", nil},

		// payment cards
		{"visa", "card 4111 1111 1111 1111 ok", []string{"card=4111 1111 1111 1111"}},
		{"visa plain", "4111111111111111", []string{"card=4111111111111111"}},
		{"mastercard dashes", "mc 5555-5555-5555-4444.", []string{"card=5555-5555-5555-4444"}},
		{"mastercard 2-series", "2223003122003222", []string{"card=2223003122003222"}},
		{"amex", "amex 3782 822463 10005", []string{"card=3782 822463 10005"}},
		{"after a date", "2026-11-16 4111 1111 1111 1111", []string{"card=4111 1111 1111 1111"}},
		{"luhn invalid", "card 4111111111111112", nil},
		{"unix ms timestamp", "at 1763285400123 ms", nil},
		{"compact timestamp", "build 20261116093000", nil},
		{"crm id", "account:001123456789012", nil},
		{"order id", "order ORD-4111111111111111", nil},
		{"hex digest", "3f2a9c0e1b4d4111111111111111a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4", nil},
		{"amount", "refund 4111111111111111.50 USD", nil},
		{"too long", "41111111111111111111111", nil},

		// phone numbers
		{"e164", "call +4915112345678 now", []string{"phone=+4915112345678"}},
		{"intl grouped", "call +49 30 1234567 or (212) 555-0142", []string{"phone=+49 30 1234567", "phone=(212) 555-0142"}},
		{"intl parens", "+1 (555) 123-4567", []string{"phone=+1 (555) 123-4567"}},
		{"uk trunk", "tel +44 (0)20 7946 0958.", []string{"phone=+44 (0)20 7946 0958"}},
		{"nanp dashes", "212-555-0142", []string{"phone=212-555-0142"}},
		{"nanp dots", "212.555.0142", []string{"phone=212.555.0142"}},
		{"nanp spaces", "212 555 0142", []string{"phone=212 555 0142"}},
		{"iso timestamp", "ts 2026-11-16T09:30:00.123456+01:00", nil},
		{"signed amount", "delta +1234567.89", nil},
		{"date", "2026-11-16", nil},
		{"ssn, not a phone", "id 123-45-6789", []string{"ssn=123-45-6789"}},
		{"version", "v10.200.3000 and 1.2.3", nil},
		{"ip", "10.0.0.1:8080", nil},
		{"area code from 1", "100-200-3000", nil},
		{"longer run", "212-555-01423", nil},
		{"short intl", "+12345", nil},
		{"uuid", "550e8400-e29b-41d4-a716-446655440000", nil},

		// secrets
		{"aws key id", "key AKIAIOSFODNN7EXAMPLE set", []string{"secret=AKIAIOSFODNN7EXAMPLE"}},
		{"github", "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", []string{"secret=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}},
		{"slack", "xoxb-1234567890-abcdefghijkl", []string{"secret=xoxb-1234567890-abcdefghijkl"}},
		{"stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", []string{"secret=sk_live_4eC39HqLyjWDarjtT1zdp7dc"}},
		{"google", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", []string{"secret=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe"}},
		{"bearer", "Authorization: Bearer abcdef0123456789abcdef", []string{"secret=abcdef0123456789abcdef"}},
		{"jwt", "jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
			[]string{"secret=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"}},
		{"url password", "postgres://admin:s3cr3tpw@db.internal:5432/app", []string{"secret=s3cr3tpw"}},
		{"assignment", "password=hunter2&user=bob", []string{"secret=hunter2"}},
		{"json assignment", `{"api_key": "abc123xyz", "limit": 5}`, []string{"secret=abc123xyz"}},
		{"camel case", "accessToken: q1w2e3r4", []string{"secret=q1w2e3r4"}},
		{"pem", "k=-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY----- x",
			[]string{"secret=-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"}},
		// Not a private key; the fallback still takes the base64 body.
		{"public key", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
			[]string{"high_entropy=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"}},
		{"max tokens", "max_tokens: 512, token_count=9", nil},
		{"prose", "customer reports a login loop after password reset", nil},
		{"basic prose", "basic internationalization support", nil},
		{"slug with prefix", "sk-learn-is-a-python-library-for-machine-learning", nil},
		{"url without password", "https://admin@example.com/path", []string{"email=admin@example.com"}},

		// high entropy
		{"random base62", "key aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5 end", []string{"high_entropy=aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"}},
		{"aws secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", []string{"high_entropy=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}},
		{"sha256 hex", "3f2a9c0e1b4d5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a", nil},
		{"trace id", "trace 4bf92f3577b34da6a3ce929d0e0e4736", nil},
		{"camel identifier", "ThisIsAVeryLongCamelCaseIdentifierName2", nil},
		{"path", "/Users/JohnDoe/Documents/Report2026Final.pdf", nil},
		{"relative path", "src/main/java/com/Acme/Billing/InvoiceService2Impl.java", nil},
		{"pseudonym", "[email:ps:0123456789abcdef] and ps:fedcba9876543210", nil},
		{"aws secret, leading slash", "approved; key /K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI2a rotated",
			[]string{"high_entropy=/K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI2a"}},
		{"aws secret, leading plus", "+K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI2a", []string{"high_entropy=+K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI2a"}},
		{"aws secret, three slashes", "k=x wJalrXUt/nFEMIK7M/DENGbPxR/fiCYEXAMPLEKEY", []string{"high_entropy=wJalrXUt/nFEMIK7M/DENGbPxR/fiCYEXAMPLEKEY"}},
		{"aws secret, no digit", "wJalrXUtnFEMI/KqMDENG/bPxRfiCYEXAMPLEKEY", []string{"high_entropy=wJalrXUtnFEMI/KqMDENG/bPxRfiCYEXAMPLEKEY"}},
		{"url path", "GET /api/v2/Customers/InvoiceHistory/Downloads2026/Statements", nil},
		{"no digit, no slash", "ThisIsAVeryLongCamelCaseIdentifierNameX", nil},

		// IBAN
		{"iban compact", "pay to DE89370400440532013000 today", []string{"iban=DE89370400440532013000"}},
		{"iban grouped", "IBAN: GB29 NWBK 6016 1331 9268 19.", []string{"iban=GB29 NWBK 6016 1331 9268 19"}},
		{"iban lower case", "nl91abna0417164300", []string{"iban=nl91abna0417164300"}},
		{"iban shortest", "NO9386011117947", []string{"iban=NO9386011117947"}},
		{"iban bad check", "DE88370400440532013000", nil},
		{"iban wrong length", "DE8937040044053201300", nil},
		{"iban too long", "DE893704004405320130001", nil},
		{"iban glued", "refDE89370400440532013000", nil},
		{"iban in an id", "ORD-DE89370400440532013000", nil},
		{"iban unknown country", "ZZ89370400440532013000", nil},
		{"iban grouping broken", "DE89 3704 00440532 0130 00", nil},

		// US social security numbers
		{"ssn", "SSN 078-05-1121 on file", []string{"ssn=078-05-1121"}},
		{"ssn keyword plain", "ssn: 078051121", []string{"ssn=078051121"}},
		{"ssn keyword spaces", "Social Security number 078 05 1121", []string{"ssn=078 05 1121"}},
		{"ssn plain without keyword", "order 078051121 shipped", nil},
		{"ssn spaces without keyword", "078 05 1121", nil},
		{"ssn area 000", "000-12-3456", nil},
		{"ssn area 666", "666-12-3456", nil},
		{"ssn area 9xx", "912-12-3456", nil},
		{"ssn group 00", "123-00-4567", nil},
		{"ssn serial 0000", "123-45-0000", nil},
		{"ssn in an id", "INV-123-45-6789", nil},
		{"ssn longer run", "123-45-67890", nil},
		{"ssn keyword, longer number", "ssn 0780511210", nil},
		{"ssn-like part number", "part 123-45-6789-01", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := found(tc.in)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("find(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

// The high-entropy threshold must catch random keys and pass identifiers:
// measured over many generated strings, not one example of each.
func TestHighEntropyRates(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	caught := 0
	const n = 2000
	for range n {
		b := make([]byte, 32+rng.IntN(33))
		for i := range b {
			b[i] = alnum[rng.IntN(len(alnum))]
		}
		if len(findHighEntropy(string(b), nil)) == 1 {
			caught++
		}
	}
	// A random 32..64-character key lacks one of upper, lower or digit, or
	// reads like words, with probability well under 1%.
	t.Logf("random base62 keys caught: %d of %d", caught, n)
	if caught < n*98/100 {
		t.Errorf("random base62 keys caught: %d of %d, want >= 98%%", caught, n)
	}

	words := strings.Fields("customer invoice refund Payment Account Service Handler Manager Report Monthly Export Bucket Temp Data Pipeline Order Ticket Support Billing Renewal")
	flagged := 0
	for range n {
		var sb strings.Builder
		for sb.Len() < 32 {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(3) == 0 {
				sb.WriteString(string(rune('0' + rng.IntN(10))))
			}
		}
		if len(findHighEntropy(sb.String(), nil)) > 0 {
			flagged++
		}
	}
	t.Logf("identifiers made of words flagged: %d of %d", flagged, n)
	if flagged > n/200 {
		t.Errorf("identifiers made of words flagged: %d of %d, want <= 0.5%%", flagged, n)
	}

	// AWS secret access keys: 40 of [A-Za-z0-9/+], '/' and '+' anywhere,
	// the first character included.
	const b64 = alnum + "/+"
	caught, lead := 0, 0
	for range n {
		b := make([]byte, 40)
		for i := range b {
			b[i] = b64[rng.IntN(len(b64))]
		}
		if b[0] == '/' || b[0] == '+' {
			lead++
		}
		if len(findHighEntropy("key "+string(b)+" rotated", nil)) == 1 {
			caught++
		}
	}
	t.Logf("random AWS-style secret keys caught: %d of %d (%d begin with '/' or '+')", caught, n, lead)
	if caught < n*995/1000 {
		t.Errorf("random AWS-style secret keys caught: %d of %d, want >= 99.5%%", caught, n)
	}

	// Paths made of words, with digits and capitals, are not keys.
	flagged = 0
	for range n {
		var sb strings.Builder
		if rng.IntN(2) == 0 {
			sb.WriteByte('/')
		}
		for sb.Len() < 40 {
			sb.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(2) == 0 {
				sb.WriteString(words[rng.IntN(len(words))])
			}
			if rng.IntN(3) == 0 {
				sb.WriteString(string(rune('0' + rng.IntN(10))))
			}
			sb.WriteByte('/')
		}
		if len(findHighEntropy(sb.String(), nil)) > 0 {
			flagged++
		}
	}
	t.Logf("paths made of words flagged: %d of %d", flagged, n)
	if flagged > n/200 {
		t.Errorf("paths made of words flagged: %d of %d, want <= 0.5%%", flagged, n)
	}
}

func TestSecretName(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "db_password": true, "API_KEY": true, "apiKey": true, "x-api-key": true,
		"access_token": true, "refreshToken": true, "client_secret": true, "Authorization": true,
		"private_key": true, "cookie": true, "pwd": true,
		"max_tokens": false, "token_count": false, "idempotency_key": false, "password_hash": false,
		"amount": false, "to": false, "key": false, "tokens": false,
	} {
		if got := secretName(name); got != want {
			t.Errorf("secretName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestLuhnCardIssuers(t *testing.T) {
	for in, want := range map[string]bool{
		"4111111111111111":    true,  // Visa 16
		"4222222222222":       true,  // Visa 13
		"378282246310005":     true,  // Amex 15
		"3782822463100050":    false, // Amex has 15 digits
		"6011111111111117":    true,  // Discover
		"3530111333300000":    true,  // JCB
		"30569309025904":      true,  // Diners 14
		"5105105105105100":    true,  // Mastercard
		"1234567812345670":    false, // Luhn-valid, no such issuer
		"7992739871300000":    false,
		"4111111111111121":    false, // Luhn-invalid
		"6200000000000005":    true,  // UnionPay
		"2720990000000008":    false, // Luhn-invalid 2-series
		"2221000000000009":    true,
		"9111111111111111111": false,
	} {
		if got := luhnCard(in); got != want {
			t.Errorf("luhnCard(%s) = %v, want %v", in, got, want)
		}
	}
}
