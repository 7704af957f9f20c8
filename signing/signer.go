package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
)

// Record header names (see the package comment).
const (
	HeaderKeyID     = "agentrail.sig.kid"
	HeaderSignature = "agentrail.sig"
)

// MaxSignatureSize is the longest signature of any algorithm.
const MaxSignatureSize = ed25519.SignatureSize

// Signer signs record values with one key of one agent. It is safe for
// concurrent use.
type Signer struct {
	agentID string
	kid     string
	kidB    []byte // kid as header value, shared by every record
	alg     string
	priv    ed25519.PrivateKey
	macs    sync.Pool // hash.Hash (HMAC keyed with the secret)
}

// NewSigner returns a signer for agentID with key keyID. material is, for
// ed25519, the 32-byte seed (or the 64-byte private key); for hmac-sha256,
// the shared secret (at least MinSecretBytes).
func NewSigner(agentID, keyID, alg string, material []byte) (*Signer, error) {
	if !KeyIDRE.MatchString(keyID) {
		return nil, fmt.Errorf("signing: key id %q must match %s", keyID, KeyIDRE)
	}
	if agentID == "" {
		return nil, errors.New("signing: agent id is empty")
	}
	s := &Signer{agentID: agentID, kid: keyID, kidB: []byte(keyID), alg: alg}
	switch alg {
	case Ed25519:
		switch len(material) {
		case ed25519.SeedSize:
			s.priv = ed25519.NewKeyFromSeed(material)
		case ed25519.PrivateKeySize:
			s.priv = ed25519.NewKeyFromSeed(material[:ed25519.SeedSize])
		default:
			return nil, fmt.Errorf("signing: key %s: ed25519 private key is %d bytes, want a %d-byte seed", keyID, len(material), ed25519.SeedSize)
		}
	case HMACSHA256:
		if len(material) < MinSecretBytes {
			return nil, fmt.Errorf("signing: key %s: hmac-sha256 secret is %d bytes, at least %d", keyID, len(material), MinSecretBytes)
		}
		secret := append([]byte(nil), material...)
		s.macs.New = func() any { return hmac.New(sha256.New, secret) }
	default:
		return nil, fmt.Errorf("signing: key %s: alg %q must be %s or %s", keyID, alg, Ed25519, HMACSHA256)
	}
	return s, nil
}

// SignerConfig is how an agent's configuration names its signing key: the
// key id registered for it, the algorithm, and where the private key (or
// HMAC secret) is — a file or an environment variable, never the config
// file itself.
type SignerConfig struct {
	KeyID   string `yaml:"key_id"`
	Alg     string `yaml:"alg"`
	KeyFile string `yaml:"key_file"` // base64, or PEM PKCS #8 for ed25519
	KeyEnv  string `yaml:"key_env"`
}

// Validate checks c without I/O; prefix names the section in errors.
func (c *SignerConfig) Validate(prefix string) error {
	switch {
	case !KeyIDRE.MatchString(c.KeyID):
		return fmt.Errorf("%s.key_id: %q must match %s", prefix, c.KeyID, KeyIDRE)
	case c.Alg != Ed25519 && c.Alg != HMACSHA256:
		return fmt.Errorf("%s.alg: %q must be %s or %s", prefix, c.Alg, Ed25519, HMACSHA256)
	case (c.KeyFile == "") == (c.KeyEnv == ""):
		return fmt.Errorf("%s: set exactly one of key_file and key_env", prefix)
	}
	return nil
}

// LoadSigner reads the key c names and returns a signer for agentID.
func LoadSigner(agentID string, c SignerConfig) (*Signer, error) {
	if err := c.Validate("signing"); err != nil {
		return nil, err
	}
	m, err := ReadMaterial(c.KeyFile, c.KeyEnv, "key")
	if err != nil {
		return nil, fmt.Errorf("signing: key %s: %w", c.KeyID, err)
	}
	return NewSigner(agentID, c.KeyID, c.Alg, m)
}

// AgentID is the agent identity the key belongs to.
func (s *Signer) AgentID() string { return s.agentID }

// KeyID is the key's id, as registered.
func (s *Signer) KeyID() string { return s.kid }

// KeyIDHeader is the key id as a header value. Callers must not modify it.
func (s *Signer) KeyIDHeader() []byte { return s.kidB }

// Alg is the key's algorithm.
func (s *Signer) Alg() string { return s.alg }

// PublicKey is the ed25519 public key (nil for HMAC).
func (s *Signer) PublicKey() ed25519.PublicKey {
	if s.priv == nil {
		return nil
	}
	return s.priv.Public().(ed25519.PublicKey)
}

// AppendSign appends the signature of value to dst. With a dst of capacity
// MaxSignatureSize it does not allocate.
func (s *Signer) AppendSign(dst, value []byte) []byte {
	if s.priv != nil {
		sig := ed25519.Sign(s.priv, value)
		return append(dst, sig...)
	}
	m := s.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(value)
	dst = m.Sum(dst)
	s.macs.Put(m)
	return dst
}

// SignerFor returns s if agentID is its agent: an agent's SDK signs only
// its own events.
func (s *Signer) SignerFor(agentID string) (*Signer, error) {
	if agentID != s.agentID {
		return nil, fmt.Errorf("signing: key %s belongs to agent %s, not %s", s.kid, s.agentID, agentID)
	}
	return s, nil
}

// EventSigner picks the key an event is signed with, by the agent the event
// is for. *Signer (one agent) and *Keyring (several: a gateway, the
// simulator) implement it.
type EventSigner interface {
	SignerFor(agentID string) (*Signer, error)
}

// Keyring holds one signer per agent. It is safe for concurrent use once
// built.
type Keyring struct {
	byAgent map[string]*Signer
}

// NewKeyring returns a keyring of the given signers; an agent given twice
// keeps the last (the current key after a rotation).
func NewKeyring(signers ...*Signer) *Keyring {
	k := &Keyring{byAgent: make(map[string]*Signer, len(signers))}
	for _, s := range signers {
		k.byAgent[s.agentID] = s
	}
	return k
}

// SignerFor returns the agent's signer.
func (k *Keyring) SignerFor(agentID string) (*Signer, error) {
	if s, ok := k.byAgent[agentID]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("signing: no key for agent %s", agentID)
}
