package simulate

import (
	"crypto/sha256"
	"fmt"
	"sync"
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

// DemoSeed is agentID's demo ed25519 private key seed, for a demo agent
// written in another language that signs with it.
func DemoSeed(agentID string) []byte {
	seed := sha256.Sum256([]byte(demoKeySeed + "\x00" + agentID))
	return seed[:]
}

// DemoSigner returns agentID's demo signer.
func DemoSigner(agentID string) *signing.Signer {
	s, err := signing.NewSigner(agentID, DemoKeyID(agentID), signing.Ed25519, DemoSeed(agentID))
	if err != nil {
		panic("simulate: demo key for " + agentID + ": " + err.Error()) // agent ids of the catalog are valid key ids
	}
	return s
}

// DemoKeys signs each event with its agent's demo key, for any agent id
// (ingest verifies only those the registry lists). It is safe for
// concurrent use.
func DemoKeys() signing.EventSigner { return &demoKeys{} }

type demoKeys struct{ m sync.Map } // agent id -> *signing.Signer

func (d *demoKeys) SignerFor(agentID string) (*signing.Signer, error) {
	if s, ok := d.m.Load(agentID); ok {
		return s.(*signing.Signer), nil
	}
	if !signing.KeyIDRE.MatchString(DemoKeyID(agentID)) {
		return nil, fmt.Errorf("simulate: no demo key for agent id %q", agentID)
	}
	s, _ := d.m.LoadOrStore(agentID, DemoSigner(agentID))
	return s.(*signing.Signer), nil
}
