package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Name rules. Team names end up in report file names, mail headers and
// attachment names, so they are a portable file-name component; agent ids
// are wider (upper case, ':') and are never used in a path.
const (
	TeamNameRule = "1 to 64 bytes of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
	AgentIDRule  = "1 to 128 bytes of A-Z, a-z, 0-9, '.', '_', ':', '-', starting with a letter or digit"
)

// CheckTeamName returns an error naming field and the rule when name is not
// a valid team name (TeamNameRule).
func CheckTeamName(field, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("registry: %s: is empty; a team name is %s", field, TeamNameRule)
	case !nameRE.MatchString(name):
		return fmt.Errorf("registry: %s: %q is not a team name: use %s", field, name, TeamNameRule)
	}
	return nil
}

// CheckAgentID returns an error naming field and the rule when id is not a
// valid agent id (AgentIDRule).
func CheckAgentID(field, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("registry: %s: is empty; an agent id is %s", field, AgentIDRule)
	case !agentIDRE.MatchString(id):
		return fmt.Errorf("registry: %s: %q is not an agent id: use %s", field, id, AgentIDRule)
	}
	return nil
}

// maxFileComponent is the longest FileComponent returns, well under the
// 255 bytes file systems allow, with room for a prefix and a suffix.
const maxFileComponent = 64

// FileComponent returns name as one safe file-name component, for every
// place that builds a path or an attachment name from a team or agent
// name: a valid team name unchanged; anything else (a team name that came
// from events, which no registry checked) percent-encoded byte by byte, so
// it holds only a-z 0-9 . _ - % and no separator, quote or leading dot,
// upper case encoded too so two names never share a file on a
// case-insensitive file system. An encoded name longer than 64 bytes is cut
// to 40 and followed by '~' and 16 hex digits of its SHA-256. Distinct
// names give distinct components; an encoded one never equals a valid
// name (which has no '%' or '~').
func FileComponent(name string) string {
	if nameRE.MatchString(name) {
		return name
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	out := b.String()
	if len(out) <= maxFileComponent && out != "" {
		return out
	}
	cut := min(40, len(out))
	for cut >= 1 && out[cut-1] == '%' || cut >= 2 && out[cut-2] == '%' {
		cut-- // never cut inside a %XX
	}
	sum := sha256.Sum256([]byte(name))
	return out[:cut] + "~" + hex.EncodeToString(sum[:8])
}
