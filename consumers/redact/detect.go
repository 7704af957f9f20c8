package redact

import (
	"math"
	"strings"
)

// kind is a built-in detector.
type kind uint8

const (
	kindSecret kind = iota // API keys, tokens, passwords: checked first, they win overlaps
	kindCard
	kindEmail
	kindPhone
	kindEntropy
	kindIBAN
	kindSSN
	numKinds
)

// kindNames are the detectors' names in config, in redaction records and in
// mask tokens. find runs the detectors in its own priority order, not this
// one.
var kindNames = [numKinds]string{"secret", "card", "email", "phone", "high_entropy", "iban", "ssn"}

func (k kind) String() string { return kindNames[k] }

// span is one detected value inside a string: s[start:end].
type span struct {
	start, end int
	kind       kind
}

// Byte classes, one table lookup per byte in the hot loops.
const (
	cDigit  = 1 << iota // 0-9
	cAlpha              // A-Z a-z
	cUpper              // A-Z
	cWord               // A-Z a-z 0-9 _ - : token runs (API keys, keywords, base64url)
	cB64                // cWord plus + / = : high-entropy runs
	cLocal              // e-mail local part: A-Z a-z 0-9 . _ % + -
	cDomain             // e-mail domain: A-Z a-z 0-9 . -
	cCred               // a credential after "Bearer ": cB64 plus . ~
)

var class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		var v uint8
		switch {
		case '0' <= b && b <= '9':
			v = cDigit | cWord | cB64 | cLocal | cDomain | cCred
		case 'A' <= b && b <= 'Z':
			v = cAlpha | cUpper | cWord | cB64 | cLocal | cDomain | cCred
		case 'a' <= b && b <= 'z':
			v = cAlpha | cWord | cB64 | cLocal | cDomain | cCred
		}
		switch b {
		case '_':
			v |= cWord | cB64 | cLocal | cCred
		case '-':
			v |= cWord | cB64 | cLocal | cDomain | cCred
		case '+':
			v |= cB64 | cLocal | cCred
		case '/', '=':
			v |= cB64 | cCred
		case '.':
			v |= cLocal | cDomain | cCred
		case '%':
			v |= cLocal
		case '~':
			v |= cCred
		}
		t[c] = v
	}
	return t
}()

func isDigit(c byte) bool { return class[c]&cDigit != 0 }
func isAlnum(c byte) bool { return class[c]&(cDigit|cAlpha) != 0 }

// minDetectLen is the shortest string any detector can match ("a@b.io" is 6).
const minDetectLen = 6

// detectors is the set of enabled detectors.
type detectors struct {
	on [numKinds]bool
}

// find appends the detected spans of s to out, sorted by start and not
// overlapping. Strings that cannot hold a match are ruled out by one pass
// over their bytes that counts what each detector needs (an '@', enough
// digits, a long enough token run, a ':' or '='), so most strings cost that
// pass and nothing else.
func (d *detectors) find(s string, out []span) []span {
	if len(s) < minDetectLen {
		return out
	}
	var at, digits, assign, dashes int
	var word, maxWord, tok, maxTok int
	for i := 0; i < len(s); i++ {
		c := s[i]
		k := class[c]
		if k&cWord != 0 {
			word++
		} else {
			maxWord = max(maxWord, word)
			word = 0
		}
		if k&cB64 != 0 {
			tok++
		} else {
			maxTok = max(maxTok, tok)
			tok = 0
		}
		if k&cDigit != 0 {
			digits++
			continue
		}
		switch c {
		case '@':
			at++
		case ':', '=':
			assign++
		case '-':
			dashes++
		}
	}
	maxWord, maxTok = max(maxWord, word), max(maxTok, tok)

	n0 := len(out)
	if d.on[kindSecret] && (maxWord >= 15 || maxTok >= 16 || assign > 0 || dashes >= 10) {
		out = findSecrets(s, out, assign > 0, at > 0, dashes >= 10)
	}
	if d.on[kindIBAN] && digits >= minIBANDigits {
		out = findIBANs(s, out)
	}
	if d.on[kindCard] && digits >= 13 {
		out = findCards(s, out)
	}
	if d.on[kindSSN] && digits >= 9 {
		out = findSSNs(s, out)
	}
	if d.on[kindEmail] && at > 0 {
		out = findEmails(s, out)
	}
	if d.on[kindPhone] && digits >= 8 {
		out = findPhones(s, out)
	}
	if d.on[kindEntropy] && maxTok >= minEntropyLen {
		out = findHighEntropy(s, out)
	}
	out = dropOverlaps(out, n0)
	sortSpans(out[n0:])
	return out
}

// dropOverlaps keeps, of spans that overlap, the one found first: the
// detectors run in priority order (a password in a URL is a secret, not
// the e-mail address it looks like; an IBAN, checked by mod-97, is not the
// card number its digits may also spell). It filters out[n0:] in place.
func dropOverlaps(out []span, n0 int) []span {
	kept := out[:n0]
	for _, a := range out[n0:] {
		ok := true
		for _, o := range kept[n0:] {
			if a.start < o.end && o.start < a.end {
				ok = false
				break
			}
		}
		if ok {
			kept = append(kept, a)
		}
	}
	return kept
}

func sortSpans(s []span) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].start < s[j-1].start; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// --- secrets: API keys, tokens, passwords ---

// tokenPrefix is a credential format that announces itself by its prefix.
type tokenPrefix struct {
	prefix string
	min    int  // shortest whole token
	exact  bool // min is the only length (AWS access key ids)
}

// tokenPrefixes are vendors' documented credential formats. A token must
// also be one run of [A-Za-z0-9_-] and mix letters and digits after the
// prefix, so prose and slugs that share a prefix do not match.
var tokenPrefixes = []tokenPrefix{
	{"AKIA", 20, true}, {"ASIA", 20, true}, // AWS access key ids
	{"ghp_", 40, false}, {"gho_", 40, false}, {"ghu_", 40, false}, {"ghs_", 40, false}, {"ghr_", 40, false},
	{"github_pat_", 40, false},
	{"glpat-", 26, false},
	{"xoxb-", 15, false}, {"xoxp-", 15, false}, {"xoxa-", 15, false}, {"xoxr-", 15, false}, {"xoxs-", 15, false}, {"xapp-", 15, false},
	{"sk_live_", 24, false}, {"sk_test_", 24, false}, {"rk_live_", 24, false}, {"rk_test_", 24, false}, {"whsec_", 24, false},
	{"sk-ant-", 40, false}, {"sk-proj-", 40, false}, {"sk-", 40, false},
	{"AIza", 39, false},
	{"npm_", 40, false}, {"pypi-", 50, false}, {"hf_", 37, false}, {"shpat_", 38, false}, {"dop_v1_", 64, false},
}

// findSecrets finds well-known token formats, JWTs, "Bearer <token>",
// "password=<value>"-style assignments, passwords in URLs and PEM private
// keys.
func findSecrets(s string, out []span, assign, at, pem bool) []span {
	if pem {
		out = findPEM(s, out)
	}
	if assign && at {
		out = findURLPasswords(s, out)
	}
	for i := 0; i < len(s); {
		if class[s[i]]&cWord == 0 {
			i++
			continue
		}
		j := i
		for j < len(s) && class[s[j]]&cWord != 0 {
			j++
		}
		if sp, ok := secretAt(s, i, j, assign); ok {
			out = append(out, sp)
			if sp.end > j {
				j = sp.end
			}
		}
		i = j
	}
	return out
}

// secretAt looks at the word run s[i:j].
func secretAt(s string, i, j int, assign bool) (span, bool) {
	w := s[i:j]
	if len(w) >= 15 {
		for _, p := range tokenPrefixes {
			if len(w) < p.min || (p.exact && len(w) != p.min) || !strings.HasPrefix(w, p.prefix) {
				continue
			}
			if mixed(w[len(p.prefix):]) {
				return span{i, j, kindSecret}, true
			}
		}
		if strings.HasPrefix(w, "eyJ") && j < len(s) && s[j] == '.' {
			if end, ok := jwtEnd(s, i); ok {
				return span{i, end, kindSecret}, true
			}
		}
	}
	if len(w) == 6 && strings.EqualFold(w, "bearer") || len(w) == 5 && strings.EqualFold(w, "basic") {
		if start, end, ok := credentialAfter(s, j); ok {
			return span{start, end, kindSecret}, true
		}
	}
	if assign {
		if start, end, ok := assignedValue(s, j); ok && secretName(w) {
			return span{start, end, kindSecret}, true
		}
	}
	return span{}, false
}

// mixed reports whether s has both a letter and a digit.
func mixed(s string) bool {
	var k uint8
	for i := 0; i < len(s); i++ {
		k |= class[s[i]]
	}
	return k&cDigit != 0 && k&cAlpha != 0
}

// jwtEnd returns the end of a JWT starting at i: three base64url segments
// separated by dots, the first two at least 10 characters.
func jwtEnd(s string, i int) (int, bool) {
	seg := func(p int) int {
		for p < len(s) && class[s[p]]&cWord != 0 {
			p++
		}
		return p
	}
	e1 := seg(i)
	if e1-i < 10 || e1 >= len(s) || s[e1] != '.' {
		return 0, false
	}
	e2 := seg(e1 + 1)
	if e2-e1-1 < 10 || e2 >= len(s) || s[e2] != '.' {
		return 0, false
	}
	return seg(e2 + 1), true
}

// credentialAfter finds the credential after "Bearer" or "Basic" at j: one
// space, then at least 16 credential characters with a digit or base64
// padding, so "basic" in prose does not match.
func credentialAfter(s string, j int) (int, int, bool) {
	if j >= len(s) || s[j] != ' ' {
		return 0, 0, false
	}
	start := j + 1
	end := start
	hasDigit := false
	for end < len(s) && class[s[end]]&cCred != 0 {
		hasDigit = hasDigit || isDigit(s[end])
		end++
	}
	if end-start < 16 || !(hasDigit || s[end-1] == '=') {
		return 0, 0, false
	}
	return start, end, true
}

// assignedValue finds the value in `<name>=<value>`, `<name>: <value>` or
// `"<name>": "<value>"` after the name ending at j. The value runs to the
// next white space, quote or separator; an "Authorization: Bearer x" value
// skips the scheme word.
func assignedValue(s string, j int) (int, int, bool) {
	p := j
	if p < len(s) && (s[p] == '"' || s[p] == '\'') {
		p++
	}
	for p < len(s) && s[p] == ' ' {
		p++
	}
	if p >= len(s) || (s[p] != '=' && s[p] != ':') {
		return 0, 0, false
	}
	if s[p] == ':' && strings.HasPrefix(s[p:], "://") {
		return 0, 0, false
	}
	p++
	for p < len(s) && (s[p] == ' ' || s[p] == '"' || s[p] == '\'') {
		p++
	}
	start := p
	end := valueEnd(s, p)
	if w := s[start:end]; (strings.EqualFold(w, "bearer") || strings.EqualFold(w, "basic")) && end < len(s) && s[end] == ' ' {
		start = end + 1
		end = valueEnd(s, start)
	}
	if end == start {
		return 0, 0, false
	}
	return start, end, true
}

func valueEnd(s string, p int) int {
	for p < len(s) {
		switch s[p] {
		case ' ', '\t', '\n', '\r', '"', '\'', ',', ';', '&', ')', '}', ']', '<', '>':
			return p
		}
		p++
	}
	return p
}

// secretSuffixes end names of fields and assignments whose value is a
// credential, compared with case, '_', '-' and '.' removed: api_key, apiKey
// and API-KEY all end in "apikey"; max_tokens and token_count do not end in
// "token".
var secretSuffixes = []string{
	"password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "accesskey",
	"secretkey", "privatekey", "signingkey", "encryptionkey", "credential", "credentials",
	"authorization", "cookie",
}

// secretName reports whether a field or assignment name says its value is a
// credential. It compares from the end, skipping separators, so the common
// case (a key like "amount") costs a byte or two.
func secretName(name string) bool {
	if len(name) < 3 || len(name) > 64 {
		return false
	}
	last := name[len(name)-1] | 0x20
	for _, suf := range secretSuffixes {
		if suf[len(suf)-1] == last && hasSuffixFold(name, suf) {
			return true
		}
	}
	return false
}

// hasSuffixFold reports whether name ends in suf (lower case) when case and
// the separators '_', '-', '.' are ignored.
func hasSuffixFold(name, suf string) bool {
	i := len(name) - 1
	for k := len(suf) - 1; k >= 0; k-- {
		for i >= 0 && (name[i] == '_' || name[i] == '-' || name[i] == '.') {
			i--
		}
		if i < 0 {
			return false
		}
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != suf[k] {
			return false
		}
		i--
	}
	return true
}

// findURLPasswords finds the password of user:password@host after "://".
func findURLPasswords(s string, out []span) []span {
	for off := 0; ; {
		k := strings.Index(s[off:], "://")
		if k < 0 {
			return out
		}
		p := off + k + 3
		colon := -1
		q := p
	scan:
		for ; q < len(s); q++ {
			switch s[q] {
			case '@':
				if colon >= 0 && q > colon+1 {
					out = append(out, span{colon + 1, q, kindSecret})
				}
				break scan
			case ':':
				if colon < 0 {
					colon = q
				}
			case '/', '?', '#', ' ', '\t', '\n', '"', '\'', '<', '>':
				break scan
			}
		}
		off = q
	}
}

// findPEM finds PEM private key blocks, BEGIN line to END line.
func findPEM(s string, out []span) []span {
	for off := 0; ; {
		k := strings.Index(s[off:], "-----BEGIN ")
		if k < 0 {
			return out
		}
		start := off + k
		hdrEnd := strings.Index(s[start+11:], "-----")
		if hdrEnd < 0 {
			return out
		}
		hdr := s[start+11 : start+11+hdrEnd]
		p := start + 11 + hdrEnd + 5
		if !strings.HasSuffix(hdr, "PRIVATE KEY") {
			off = p
			continue
		}
		end := len(s)
		if e := strings.Index(s[p:], "-----END "); e >= 0 {
			end = p + e + 9
			if c := strings.Index(s[end:], "-----"); c >= 0 {
				end += c + 5
			} else {
				end = len(s)
			}
		}
		out = append(out, span{start, end, kindSecret})
		off = end
	}
}

// --- e-mail addresses ---

// findEmails finds local@domain.tld with a dotted domain and an alphabetic
// top-level domain of two or more letters.
func findEmails(s string, out []span) []span {
	for at := strings.IndexByte(s, '@'); at >= 0; {
		a := at
		for a > 0 && class[s[a-1]]&cLocal != 0 {
			a--
		}
		for a < at && s[a] == '.' {
			a++
		}
		b := at + 1
		for b < len(s) && class[s[b]]&cDomain != 0 {
			b++
		}
		for b > at+1 && (s[b-1] == '.' || s[b-1] == '-') {
			b--
		}
		if a < at && validDomain(s[at+1:b]) {
			out = append(out, span{a, b, kindEmail})
		}
		next := strings.IndexByte(s[at+1:], '@')
		if next < 0 {
			break
		}
		at += 1 + next
	}
	return out
}

func validDomain(d string) bool {
	dot := strings.LastIndexByte(d, '.')
	if dot <= 0 || len(d)-dot-1 < 2 || !isAlnum(d[0]) || strings.Contains(d, "..") {
		return false
	}
	for i := dot + 1; i < len(d); i++ {
		if class[d[i]]&cAlpha == 0 {
			return false
		}
	}
	return true
}

// --- payment cards ---

// findCards finds 13 to 19 digits, optionally grouped by single spaces or
// dashes, that start with a card network's issuer prefix, have one of its
// lengths and pass the Luhn check. A digit run glued to letters, or to a
// decimal point, is not a card (hex digests, amounts).
func findCards(s string, out []span) []span {
	type group struct{ start, end, n int }
	var groups [24]group
	for i := 0; i < len(s); {
		if !isDigit(s[i]) || gluedBefore(s, i) {
			i++
			continue
		}
		// Collect digit groups separated by one space or dash.
		ng := 0
		j := i
		for ng < len(groups) {
			g := group{start: j}
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			g.end, g.n = j, j-g.start
			groups[ng] = g
			ng++
			if j+1 < len(s) && (s[j] == ' ' || s[j] == '-') && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		last := groups[ng-1].end
		if last < len(s) && (class[s[last]]&cAlpha != 0 || decimalAfter(s, last)) {
			// glued to a word or a decimal: only whole groups before it count
			ng--
		}
		// Try windows of whole groups, longest first from each start.
		found := false
		for a := 0; a < ng && !found; a++ {
			n := 0
			for b := a; b < ng; b++ {
				n += groups[b].n
				if n > 19 {
					break
				}
				if n >= 13 && luhnCard(s[groups[a].start:groups[b].end]) {
					// keep extending: a longer window may also be valid
					end := b
					m := n
					for c := b + 1; c < ng; c++ {
						m += groups[c].n
						if m > 19 {
							break
						}
						if luhnCard(s[groups[a].start:groups[c].end]) {
							end = c
						}
					}
					out = append(out, span{groups[a].start, groups[end].end, kindCard})
					found = true
					break
				}
			}
		}
		i = max(j, i+1)
	}
	return out
}

// gluedBefore reports whether the digit at i continues something else: a
// word, an id (ORD-4111...), a decimal, a phone number's '+'.
func gluedBefore(s string, i int) bool {
	if i == 0 {
		return false
	}
	c := s[i-1]
	return isAlnum(c) || c == '+' || decimalBefore(s, i) ||
		(c == '-' || c == '_' || c == '/') && i >= 2 && isAlnum(s[i-2])
}

func decimalBefore(s string, i int) bool {
	return i >= 2 && (s[i-1] == '.' || s[i-1] == ',') && isDigit(s[i-2])
}

func decimalAfter(s string, j int) bool {
	return j+1 < len(s) && (s[j] == '.' || s[j] == ',') && isDigit(s[j+1])
}

// luhnCard checks digits (with separators) against the issuer prefixes and
// lengths of the card networks, and the Luhn checksum.
func luhnCard(g string) bool {
	var d [19]byte
	n := 0
	for i := 0; i < len(g); i++ {
		if isDigit(g[i]) {
			if n == len(d) {
				return false
			}
			d[n] = g[i] - '0'
			n++
		}
	}
	if n < 13 || !issuerLength(d[:n]) {
		return false
	}
	sum := 0
	for i := 0; i < n; i++ {
		v := int(d[n-1-i])
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

func issuerLength(d []byte) bool {
	n := len(d)
	p2 := int(d[0])*10 + int(d[1])
	p4 := p2*100 + int(d[2])*10 + int(d[3])
	switch d[0] {
	case 4: // Visa
		return n == 13 || n == 16 || n == 19
	case 5: // Mastercard 51-55; Maestro 50, 56-59
		if p2 >= 51 && p2 <= 55 {
			return n == 16
		}
		return n >= 13
	case 2: // Mastercard 2221-2720
		return p4 >= 2221 && p4 <= 2720 && n == 16
	case 3:
		switch {
		case p2 == 34 || p2 == 37: // American Express
			return n == 15
		case p4 >= 3528 && p4 <= 3589: // JCB
			return n >= 16
		case p2 == 36 || p2 == 38 || p2 == 39 || p2 == 30: // Diners Club
			return n >= 14
		}
		return false
	case 6: // Discover, UnionPay, Maestro
		return n >= 16 || (p2 == 63 || p2 == 67) && n >= 13
	}
	return false
}

// --- phone numbers ---

// findPhones finds international numbers (+ and 8 to 15 digits, grouped by
// spaces, dashes, dots or parentheses) and North American numbers in their
// grouped forms ((212) 555-0142, 212-555-0142, 212.555.0142,
// 212 555 0142). Ungrouped national numbers look like ids and amounts and
// are left to rules.
func findPhones(s string, out []span) []span {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '+' || s[i-1] == '.' || s[i-1] == '-' && i >= 2 && isDigit(s[i-2])) {
			continue
		}
		switch {
		case c == '+' && i+1 < len(s) && (isDigit(s[i+1]) || s[i+1] == '('):
			if end, ok := intlPhone(s, i+1); ok {
				out = append(out, span{i, end, kindPhone})
				i = end
			}
		case c == '(' || isDigit(c):
			if end, ok := nanpPhone(s, i); ok {
				out = append(out, span{i, end, kindPhone})
				i = end
			}
		}
	}
	return out
}

func intlPhone(s string, p int) (int, bool) {
	digits, seps, dots, end := 0, 0, 0, p
	for p < len(s) {
		c := s[p]
		next := byte(0)
		if p+1 < len(s) {
			next = s[p+1]
		}
		switch {
		case isDigit(c):
			digits++
			p++
			end = p
			continue
		case c == ')' && end == p:
			p++
			end = p
			if next == ' ' && p+1 < len(s) && isDigit(s[p+1]) {
				p++
			}
			continue
		case (c == ' ' || c == '-' || c == '.' || c == '(') && (isDigit(next) || next == '('):
			seps++
			if c == '.' {
				dots++
			}
			p++
			continue
		}
		break
	}
	if digits < 8 || digits > 15 {
		return 0, false
	}
	if seps == 1 && dots == 1 {
		return 0, false // +1234567.89 is a signed amount
	}
	if end < len(s) && (isAlnum(s[end]) || decimalAfter(s, end) || s[end] == ':') {
		return 0, false
	}
	return end, true
}

// nanpPhone matches (NXX) NXX-XXXX and NXX-NXX-XXXX with one consistent
// separator (-, . or space), area code and exchange starting 2-9.
func nanpPhone(s string, p int) (int, bool) {
	digitsAt := func(p, n int) bool {
		if p+n > len(s) {
			return false
		}
		for k := 0; k < n; k++ {
			if !isDigit(s[p+k]) {
				return false
			}
		}
		return true
	}
	var sep byte
	switch {
	case s[p] == '(':
		if !digitsAt(p+1, 3) || p+4 >= len(s) || s[p+4] != ')' || s[p+1] < '2' {
			return 0, false
		}
		p += 5
		if p < len(s) && s[p] == ' ' {
			p++
		}
		if !digitsAt(p, 3) || s[p] < '2' || p+3 >= len(s) || (s[p+3] != '-' && s[p+3] != ' ') {
			return 0, false
		}
		sep = s[p+3]
		p += 4
	default:
		if !digitsAt(p, 3) || s[p] < '2' || p+3 >= len(s) {
			return 0, false
		}
		sep = s[p+3]
		if sep != '-' && sep != '.' && sep != ' ' {
			return 0, false
		}
		p += 4
		if !digitsAt(p, 3) || s[p] < '2' || p+3 >= len(s) || s[p+3] != sep {
			return 0, false
		}
		p += 4
	}
	if !digitsAt(p, 4) {
		return 0, false
	}
	p += 4
	if p < len(s) && (isAlnum(s[p]) || (s[p] == sep || s[p] == '.' || s[p] == '-') && p+1 < len(s) && isDigit(s[p+1])) {
		return 0, false
	}
	return p, true
}

// --- high-entropy strings ---

// minEntropyLen is the shortest run the high-entropy fallback considers.
const minEntropyLen = 32

// entropyBits is the Shannon entropy, in bits per character, below which a
// run is not taken for a random secret: random base62 of 32 characters
// measures 4.0 at the very least (4.56 typically). Identifiers made of words
// reach it too; wordLike tells them apart.
const entropyBits = 4.0

// findHighEntropy finds runs of base64 characters at least minEntropyLen
// long that mix upper case, lower case and digits and look random (high
// entropy, letter pairs unlike words): secrets in formats no prefix
// announces. Hex (digests, trace ids, UUIDs) has no upper case and is never
// taken; paths are not either (pathLike). '/' and '+' are ordinary
// characters of base64: an AWS secret access key is 40 of [A-Za-z0-9/+] and
// may begin with '/' or hold three of them.
func findHighEntropy(s string, out []span) []span {
	for i := 0; i < len(s); {
		if class[s[i]]&cB64 == 0 {
			i++
			continue
		}
		j := i
		var k uint8
		slashes, plus := 0, 0
		for j < len(s) && class[s[j]]&cB64 != 0 {
			k |= class[s[j]]
			switch s[j] {
			case '/':
				slashes++
			case '+':
				plus++
			}
			j++
		}
		e := j
		for e > i && s[e-1] == '=' {
			e--
		}
		n := e - i
		// Without a digit only base64 with '+' or '/' counts: a word
		// identifier has neither.
		if n >= minEntropyLen && k&cUpper != 0 && hasLower(s[i:e]) &&
			(k&cDigit != 0 || slashes+plus > 0) &&
			(slashes == 0 || !pathLike(s[i:e])) &&
			entropy(s[i:e]) >= entropyBits && !wordLike(s[i:e]) {
			out = append(out, span{i, j, kindEntropy})
		}
		i = j
	}
	return out
}

// minRandomSegment is the shortest path segment pathLike judges: shorter
// ones ("v1", "JohnDoe") say nothing either way.
const minRandomSegment = 8

// pathLike reports whether a run with '/' in it is a path rather than a key:
// no segment between slashes of minRandomSegment or more characters mixes
// upper and lower case without reading as words. Path segments are words,
// lower case, or upper case (Documents, InvoiceService2Impl, src, T0001);
// a random key cut by its own slashes leaves at least one long mixed-case
// segment that does not read as words.
func pathLike(s string) bool {
	for len(s) > 0 {
		seg := s
		if k := strings.IndexByte(s, '/'); k >= 0 {
			seg, s = s[:k], s[k+1:]
		} else {
			s = ""
		}
		if len(seg) < minRandomSegment {
			continue
		}
		var k uint8
		for i := 0; i < len(seg); i++ {
			k |= class[seg[i]]
		}
		if k&cUpper != 0 && hasLower(seg) && !wordLike(seg) {
			return false
		}
	}
	return true
}

// commonBigrams are the 150 most frequent letter pairs of English text.
// Random letters form one of them about a fifth of the time, words and
// identifiers made of words four times in five.
const commonBigrams = "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng " +
	"se ha as ou io le ve co me de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di " +
	"fo ho pe ec pr no ct us ac ot il tr ly nc et ut ss so rs un lo wa ge ie wh ee wi em ad ol rt po " +
	"we na ul ni ts mo ow pa im mi ai sh ir su id os iv ia am fi ci vi pl ig tu ev ld ry mp fe bl ab " +
	"gh ty op wo sa ay ex ke fr oo av ag if ap gr od bo sp rd do uc bu ei ov by rm ep tt oc fa ef cu"

var bigram = func() (t [26 * 26]bool) {
	for i := 0; i+1 < len(commonBigrams); i += 3 {
		t[int(commonBigrams[i]-'a')*26+int(commonBigrams[i+1]-'a')] = true
	}
	return t
}()

// wordLike reports whether s reads as words (CamelCaseIdentifiers2): 60% or
// more of its adjacent letter pairs are common English bigrams. Random
// base62 of 32 characters exceeds that about once in a thousand, words
// about as rarely fall below it.
func wordLike(s string) bool {
	pairs, common := 0, 0
	for i := 1; i < len(s); i++ {
		a, b := s[i-1]|0x20, s[i]|0x20 // ASCII lower case
		if a < 'a' || a > 'z' || b < 'a' || b > 'z' || class[s[i-1]]&cAlpha == 0 || class[s[i]]&cAlpha == 0 {
			continue
		}
		pairs++
		if bigram[int(a-'a')*26+int(b-'a')] {
			common++
		}
	}
	return pairs > 0 && common*10 >= pairs*6
}

func hasLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			return true
		}
	}
	return false
}

func entropy(s string) float64 {
	var counts [256]uint16
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
