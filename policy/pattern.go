package policy

import "strings"

// pattern is a grant's resource pattern compiled once: "*" matches any run
// of characters, everything else is literal, exactly as
// registry.MatchResource (and the weekly report's LIKE) read it.
type pattern struct {
	src            string
	exact          bool
	prefix, suffix string
	middle         []string
	minLen         int // literal bytes: no shorter resource can match
}

func compilePattern(src string) pattern {
	parts := strings.Split(src, "*")
	p := pattern{src: src, minLen: len(src) - (len(parts) - 1)}
	if len(parts) == 1 {
		p.exact, p.prefix = true, src
		return p
	}
	p.prefix, p.suffix = parts[0], parts[len(parts)-1]
	for _, m := range parts[1 : len(parts)-1] {
		if m != "" {
			p.middle = append(p.middle, m)
		}
	}
	return p
}

func (p *pattern) match(s string) bool {
	if p.exact {
		return s == p.prefix
	}
	if len(s) < p.minLen || !strings.HasPrefix(s, p.prefix) || !strings.HasSuffix(s, p.suffix) {
		return false
	}
	// The leftmost placement of each middle part leaves the most room for
	// the rest, so taking it never misses a match.
	s = s[len(p.prefix) : len(s)-len(p.suffix)]
	for _, m := range p.middle {
		i := strings.Index(s, m)
		if i < 0 {
			return false
		}
		s = s[i+len(m):]
	}
	return true
}

// specificity orders the grants that match one resource: more literal
// bytes first, then fewer wildcards; an exact pattern beats any wildcard.
func (p *pattern) specificity() (literal, stars int) {
	return p.minLen, len(p.src) - p.minLen
}
