package simulate

import (
	"crypto/sha256"
	"time"

	"github.com/agentrail/agentrail/signing"
)

// Demo signing keys. DEMO ONLY: each simulated agent's ed25519 private key
// is derived from a fixed, published seed and the agent id, so anyone can
// recompute it. They let the demo and the simulator sign events that
// deployments/registry.yaml (which carries the public keys) verifies. Never
// register them for a real agent.
const demoKeySeed = "agentrail demo signing keys v1: public, never use outside the demo"

// DemoKeyNotBefore is the not_before of every demo key.
var DemoKeyNotBefore = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// DemoKeyID is the id of agentID's demo key.
func DemoKeyID(agentID string) string { return agentID + "-demo" }

// DemoSigner returns agentID's demo signer.
func DemoSigner(agentID string) *signing.Signer {
	seed := sha256.Sum256([]byte(demoKeySeed + "\x00" + agentID))
	s, err := signing.NewSigner(agentID, DemoKeyID(agentID), signing.Ed25519, seed[:])
	if err != nil {
		panic("simulate: demo key for " + agentID + ": " + err.Error()) // agent ids of the catalog are valid key ids
	}
	return s
}

// DemoKeyring holds the demo key of every agent of the fleet.
func (f *Fleet) DemoKeyring() *signing.Keyring {
	ss := make([]*signing.Signer, 0, len(f.agents))
	for _, a := range f.agents {
		ss = append(ss, DemoSigner(a.Identity.ID))
	}
	return signing.NewKeyring(ss...)
}
