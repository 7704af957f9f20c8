package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"unicode/utf8"
)

// ActionDigest returns the SHA-256, in lowercase hex, of the canonical JSON of
// the exact action payload: agent, tool, action, target and parameters.
//
// The canonical JSON is RFC 8785 (JCS) for an object of strings: members
// sorted by key, no white space, minimal string escaping. For example
//
//	{"action":"send","agent_id":"a1","parameters":{"to":"x"},"target":"t","tool":"email"}
//
// Any language can reproduce it; schemas/README.md gives a test vector.
func ActionDigest(agentID, tool, action, target string, params map[string]string) string {
	b := make([]byte, 0, 128+32*len(params))
	b = append(b, `{"action":`...)
	b = appendJCSString(b, action)
	b = append(b, `,"agent_id":`...)
	b = appendJCSString(b, agentID)
	b = append(b, `,"parameters":{`...)
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	// JCS orders members by their UTF-16 code units; for the keys that agents
	// use (ASCII and the BMP) that is byte order, and we document the
	// restriction rather than pay for the conversion on every call.
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJCSString(b, k)
		b = append(b, ':')
		b = appendJCSString(b, params[k])
	}
	b = append(b, `},"target":`...)
	b = appendJCSString(b, target)
	b = append(b, `,"tool":`...)
	b = appendJCSString(b, tool)
	b = append(b, '}')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// appendJCSString appends s as a JSON string the way RFC 8785 serializes it:
// only '"', '\\' and control characters are escaped, with the short forms
// where JSON has them. Invalid UTF-8 becomes U+FFFD, as in every JSON encoder.
func appendJCSString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\b':
				b = append(b, `\b`...)
			case c == '\f':
				b = append(b, `\f`...)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20:
				b = append(b, `\u00`...)
				b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
