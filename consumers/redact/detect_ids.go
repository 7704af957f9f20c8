package redact

import "strings"

// --- bank accounts: IBAN (ISO 13616) ---

// ibanLengths is the length of an IBAN per country code, from the SWIFT
// IBAN registry: every SEPA country and the other registered ones. A
// country not listed is not matched.
var ibanLengths = map[string]uint8{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
	"BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
	"EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
	"GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
	"JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
	"MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
	"NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
	"SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// ibanLen is ibanLengths indexed by the two upper-case letters, one lookup
// per candidate in the hot loop.
var ibanLen = func() (t [26 * 26]uint8) {
	for cc, n := range ibanLengths {
		t[int(cc[0]-'A')*26+int(cc[1]-'A')] = n
	}
	return t
}()

// minIBANDigits is the fewest digits a string must hold for findIBANs to
// look at it: the two check digits (Saint Lucia's and Qatar's BBANs may be
// all letters; Luxembourg's carry as few as three digits).
const minIBANDigits = 2

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// findIBANs finds IBANs: a registered country code, two check digits and
// the BBAN, the whole of the country's length and passing the mod-97 check
// (ISO 7064 MOD 97-10), either compact (DE89370400440532013000) or in the
// print format's groups of four separated by single spaces
// (DE89 3704 0044 0532 0130 00). Case does not matter. A candidate glued to
// a word on either side, or longer than its country's length, is not one.
func findIBANs(s string, out []span) []span {
	for i := 0; i+15 <= len(s); i++ {
		if class[s[i]]&cAlpha == 0 || class[s[i+1]]&cAlpha == 0 || !isDigit(s[i+2]) || !isDigit(s[i+3]) {
			continue
		}
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '_' || s[i-1] == '-' && i >= 2 && isAlnum(s[i-2])) {
			continue
		}
		n := int(ibanLen[int(upper(s[i])-'A')*26+int(upper(s[i+1])-'A')])
		if n == 0 {
			continue
		}
		if end, ok := ibanAt(s, i, n); ok {
			out = append(out, span{i, end, kindIBAN})
			i = end - 1
		}
	}
	return out
}

// ibanAt checks the IBAN of n characters that would start at i and returns
// where it ends.
func ibanAt(s string, i, n int) (int, bool) {
	grouped := i+4 < len(s) && s[i+4] == ' '
	var buf [34]byte
	m, p := 0, i
	for m < n {
		if p >= len(s) {
			return 0, false
		}
		if grouped && m > 0 && m%4 == 0 {
			if s[p] != ' ' {
				return 0, false
			}
			p++
			if p >= len(s) {
				return 0, false
			}
		}
		if !isAlnum(s[p]) {
			return 0, false
		}
		buf[m] = upper(s[p])
		m++
		p++
	}
	if p < len(s) && (isAlnum(s[p]) || s[p] == '_') {
		return 0, false
	}
	return p, mod97(buf[:n]) == 1
}

// mod97 is the IBAN check: the number made of buf with its first four
// characters moved to the end and letters replaced by 10..35, modulo 97.
func mod97(buf []byte) int {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	for _, c := range buf[4:] {
		add(c)
	}
	for _, c := range buf[:4] {
		add(c)
	}
	return r
}

// --- US social security numbers ---

// findSSNs finds US social security numbers: AAA-GG-SSSS anywhere, and
// nine digits written AAAGGSSSS or AAA GG SSSS only after the keyword "SSN"
// or "social security" (within ssnKeywordWindow bytes before them), since
// bare nine-digit numbers are as often order and invoice numbers. Numbers
// the SSA never issues are not taken: area 000, 666 or 900-999, group 00,
// serial 0000. Glued to a word, an id (ORD-123-45-6789), a decimal or a
// longer digit run, it is not one.
func findSSNs(s string, out []span) []span {
	for i := 0; i+9 <= len(s); i++ {
		if !isDigit(s[i]) {
			continue
		}
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '+' || s[i-1] == '_' || s[i-1] == '/' ||
			(s[i-1] == '-' || s[i-1] == '.' || s[i-1] == ',') && i >= 2 && isAlnum(s[i-2])) {
			// skip the rest of this digit run
			for i+1 < len(s) && isDigit(s[i+1]) {
				i++
			}
			continue
		}
		end, sep, ok := ssnShape(s, i)
		if !ok || !ssnIssuable(s[i:end]) || sep != '-' && !ssnKeywordBefore(s, i) {
			continue
		}
		out = append(out, span{i, end, kindSSN})
		i = end - 1
	}
	return out
}

// ssnShape matches DDD-DD-DDDD, DDD DD DDDD or DDDDDDDDD at i, followed by
// neither a letter nor more digits, and returns its end and separator (0
// for none).
func ssnShape(s string, i int) (end int, sep byte, ok bool) {
	digits := func(p, n int) bool {
		if p+n > len(s) {
			return false
		}
		for k := p; k < p+n; k++ {
			if !isDigit(s[k]) {
				return false
			}
		}
		return true
	}
	if !digits(i, 3) || i+3 >= len(s) {
		return 0, 0, false
	}
	switch c := s[i+3]; {
	case c == '-' || c == ' ':
		if !digits(i+4, 2) || i+6 >= len(s) || s[i+6] != c || !digits(i+7, 4) {
			return 0, 0, false
		}
		end, sep = i+11, c
	case isDigit(c):
		if !digits(i, 9) {
			return 0, 0, false
		}
		end = i + 9
	default:
		return 0, 0, false
	}
	if end < len(s) && (isAlnum(s[end]) || s[end] == '_' ||
		(s[end] == '-' || s[end] == '.' || s[end] == ',' || s[end] == '/' || s[end] == sep) && end+1 < len(s) && isDigit(s[end+1])) {
		return 0, 0, false
	}
	return end, sep, true
}

// ssnIssuable excludes the ranges the SSA never assigns.
func ssnIssuable(v string) bool {
	var d [9]byte
	n := 0
	for i := 0; i < len(v) && n < 9; i++ {
		if isDigit(v[i]) {
			d[n] = v[i] - '0'
			n++
		}
	}
	area := int(d[0])*100 + int(d[1])*10 + int(d[2])
	group := int(d[3])*10 + int(d[4])
	serial := int(d[5])*1000 + int(d[6])*100 + int(d[7])*10 + int(d[8])
	return n == 9 && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

// ssnKeywordWindow is how far before a bare nine-digit number its keyword
// may be: "SSN: ", "social security number is ".
const ssnKeywordWindow = 32

// ssnKeywordBefore reports whether "ssn" (as a word) or "social security"
// appears, in any case, within ssnKeywordWindow bytes before i.
func ssnKeywordBefore(s string, i int) bool {
	w := s[max(0, i-ssnKeywordWindow):i]
	for k := 0; k+3 <= len(w); k++ {
		c := w[k] | 0x20
		switch {
		case c == 's' && (w[k+1]|0x20) == 's' && (w[k+2]|0x20) == 'n' &&
			(k == 0 || !isAlnum(w[k-1])) && (k+3 == len(w) || !isAlpha(w[k+3])):
			return true
		case c == 's' && k+15 <= len(w) && strings.EqualFold(w[k:k+15], "social security"):
			return true
		}
	}
	return false
}

func isAlpha(c byte) bool { return class[c]&cAlpha != 0 }
