package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/signing"
)

// keygenCmd makes a signing key for an agent (agentrail registry keygen):
// the private key (or HMAC secret) goes to a new file, readable by its
// owner only; the registry entry is printed. With --demo FILE it instead
// writes every agent's demo key into the registry FILE.
type keygenCmd struct {
	Agent     string `placeholder:"ID" help:"the agent id the key is for"`
	KeyID     string `name:"key-id" help:"the key's id, unique in the registry (default <agent>-<UTC date>)"`
	Alg       string `default:"ed25519" enum:"ed25519,hmac-sha256" help:"ed25519 or hmac-sha256"`
	Out       string `placeholder:"FILE" help:"file to write the private key (ed25519) or shared secret (hmac-sha256) to; must not exist"`
	NotBefore string `name:"not-before" placeholder:"TIME" help:"RFC 3339 time the key becomes valid (default: now)"`
	Demo      string `placeholder:"FILE" help:"write the simulated fleet's demo keys (DEMO ONLY: derived from a public seed) into this registry file"`
	JSON      bool   `name:"json" help:"print the key's file, id and registry entry as one JSON object"`
}

func (c *keygenCmd) Run(g *globals) error {
	if c.Demo != "" {
		n, err := writeDemoKeys(c.Demo)
		if err != nil {
			return err
		}
		if c.JSON {
			return g.printJSON(struct {
				Registry string `json:"registry"`
				Agents   int    `json:"agents"`
			}{c.Demo, n})
		}
		fmt.Fprintf(g.stdout, "%s: demo keys of %d agents written (DEMO ONLY)\n", c.Demo, n)
		return nil
	}
	nb := time.Now().UTC().Truncate(time.Second)
	if c.NotBefore != "" {
		t, err := time.Parse(time.RFC3339, c.NotBefore)
		if err != nil {
			return usageErr("--not-before: %w", err)
		}
		nb = t.UTC()
	}
	kid := c.KeyID
	if kid == "" {
		kid = c.Agent + "-" + nb.Format("20060102")
	}
	switch {
	case c.Agent == "":
		return usageErr("--agent is required")
	case registry.CheckAgentID("--agent", c.Agent) != nil:
		return usageErr("%w", registry.CheckAgentID("--agent", c.Agent))
	case c.Out == "":
		return usageErr("--out is required (where the private key goes; it never goes in the registry)")
	case !signing.KeyIDRE.MatchString(kid):
		return usageErr("--key-id %q must match %s", kid, signing.KeyIDRE)
	}
	entry, err := keygen(c.Alg, kid, c.Out, nb)
	if err != nil {
		return err
	}
	if c.JSON {
		return g.printJSON(struct {
			Agent     string    `json:"agent"`
			KeyID     string    `json:"key_id"`
			Alg       string    `json:"alg"`
			File      string    `json:"file"`
			NotBefore time.Time `json:"not_before"`
			Entry     string    `json:"registry_entry"`
		}{c.Agent, kid, c.Alg, c.Out, nb, entry})
	}
	fmt.Fprintf(g.stdout, "# %s written to %s (mode 0600). Add to agent %s's keys in the registry:\n%s", secretKind(c.Alg), c.Out, c.Agent, entry)
	return nil
}

func secretKind(alg string) string {
	if alg == signing.HMACSHA256 {
		return "shared secret"
	}
	return "private key"
}

// keygen writes a new key's secret material to path and returns its
// registry entry.
func keygen(alg, kid, path string, notBefore time.Time) (string, error) {
	var material []byte
	var entry string
	switch alg {
	case signing.Ed25519:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", err
		}
		material = priv.Seed()
		entry = fmt.Sprintf("      - {id: %s, alg: ed25519, public_key: %s, not_before: %s}\n", kid, signing.EncodePublicKey(pub), notBefore.Format(time.RFC3339))
	case signing.HMACSHA256:
		material = make([]byte, 32)
		if _, err := rand.Read(material); err != nil {
			return "", err
		}
		entry = fmt.Sprintf("      - {id: %s, alg: hmac-sha256, secret_file: %s, not_before: %s}\n", kid, path, notBefore.Format(time.RFC3339))
	default:
		return "", fmt.Errorf("--alg %q must be %s or %s", alg, signing.Ed25519, signing.HMACSHA256)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	_, werr := io.WriteString(f, base64.StdEncoding.EncodeToString(material)+"\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return "", fmt.Errorf("--out: %w", err)
	}
	return entry, nil
}

var (
	agentLineRE = regexp.MustCompile(`^  - id: (\S+)\s*$`)
	keysLineRE  = regexp.MustCompile(`^    keys:\s*$`)
	grantsRE    = regexp.MustCompile(`^    grants:\s*$`)
)

// writeDemoKeys gives every agent of a registry file in the layout of
// deployments/registry.yaml ("  - id: X" items, four-space fields) exactly
// its demo key: a `keys:` block before `grants:`, replacing any there.
// Comments and the rest of the file stay as they are.
func writeDemoKeys(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	lines := strings.SplitAfter(string(raw), "\n")
	var out []string
	agent, n := "", 0
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		trimmed := strings.TrimRight(l, "\n")
		if m := agentLineRE.FindStringSubmatch(trimmed); m != nil {
			agent = m[1]
		}
		if keysLineRE.MatchString(trimmed) {
			// Drop the old block: the line and its deeper-indented items.
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "      ") {
				i++
			}
			continue
		}
		if grantsRE.MatchString(trimmed) && agent != "" {
			s := simulate.DemoSigner(agent)
			out = append(out, "    keys:\n", fmt.Sprintf("      - {id: %s, alg: ed25519, public_key: %s, not_before: %s}\n",
				s.KeyID(), signing.EncodePublicKey(s.PublicKey()), simulate.DemoKeyNotBefore.Format(time.RFC3339)))
			n++
			agent = ""
		}
		out = append(out, l)
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: no agent with a grants: line found (expected the layout of deployments/registry.yaml)", path)
	}
	return n, os.WriteFile(path, []byte(strings.Join(out, "")), 0o644)
}
