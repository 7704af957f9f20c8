// Package ledger makes later edits and deletions of stored events
// detectable. It seals the events table in Kafka offset ranges: each seal is
// an entry of a hash chain, signed with the pipeline's Ed25519 key, holding
// per range the row count, a SHA-256 digest over the rows (as v_events shows
// them) and 64 bucket fingerprints that locate a changed row. Entries are
// kept in the ledger table and on the ledger topic; retention records what it
// removes or rewrites as entries of the same chain, so verify passes across
// a retention run and fails on any other change (see Verify). Seals run on
// the ledger's own timer (Run, every Config.Interval) up to the ingest
// group's committed offsets, so they never wait for more events.
//
// Metrics:
//
//	agentrail_ledger_entries_total{kind="seal|retention"}
//	agentrail_ledger_sealed_rows_total
//	agentrail_ledger_last_seal_timestamp_seconds
//	agentrail_ledger_errors_total
//
// It deliberately does not decide what is stored (ingest does) nor what
// retention removes (reports/retention does); it only records and checks.
package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Entry kinds.
const (
	KindSeal      = "seal"
	KindRetention = "retention"
)

// Config configures the ledger: the sealer, the retention records and verify.
type Config struct {
	// Enabled runs the sealer in `agentrail ledger serve` and makes
	// retention runs record themselves in the chain.
	Enabled bool `yaml:"enabled"`
	// Interval is how often the sealer seals what ingest committed since.
	Interval time.Duration `yaml:"interval"`
	// The pipeline's Ed25519 private key (PKCS#8 PEM, as `agentrail ledger
	// keygen` or `openssl genpkey -algorithm ed25519` write it): from a
	// file, or an environment variable holding the PEM text. Never from
	// this file.
	PrivateKeyFile string `yaml:"private_key_file"`
	PrivateKeyEnv  string `yaml:"private_key_env"`
	// PublicKeys are the Ed25519 public keys (base64 of the 32-byte key)
	// whose signatures verify accepts: the current key and retired ones.
	PublicKeys []string `yaml:"public_keys"`
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
}

// Validate checks the settings without I/O; call Defaults first.
func (c *Config) Validate() error {
	if c.Interval < time.Second || c.Interval > time.Hour {
		return fmt.Errorf("ledger.interval: %s out of range 1s..1h", c.Interval)
	}
	if c.PrivateKeyFile != "" && c.PrivateKeyEnv != "" {
		return errors.New("ledger: set private_key_file or private_key_env, not both")
	}
	if c.Enabled && c.PrivateKeyFile == "" && c.PrivateKeyEnv == "" {
		return errors.New("ledger.enabled: needs the signing key: set ledger.private_key_file or ledger.private_key_env")
	}
	for i, k := range c.PublicKeys {
		if _, err := ParsePublicKey(k); err != nil {
			return fmt.Errorf("ledger.public_keys[%d]: %w", i, err)
		}
	}
	return nil
}

// Entry is one link of the chain.
type Entry struct {
	Seq       uint64    `json:"seq"`
	Kind      string    `json:"kind"`
	At        time.Time `json:"at"`
	PrevHash  string    `json:"prev_hash"`  // hex SHA-256 of the previous entry; 64 zeros for seq 1
	Hash      string    `json:"entry_hash"` // hex SHA-256 of the canonical encoding
	KeyID     string    `json:"key_id"`     // which key signed it
	Signature string    `json:"signature"`  // base64 Ed25519 signature over the 32 hash bytes
	Body      string    `json:"body"`       // JSON: SealBody or RetentionBody
}

// genesis is the previous hash of the first entry.
var genesis = strings.Repeat("0", 64)

const atLayout = "2006-01-02T15:04:05.000000Z"

// canonical is the byte string an entry's hash covers: every field but the
// hash and signature, each on its own line, the body last and verbatim.
func (e *Entry) canonical() []byte {
	var b strings.Builder
	b.WriteString("agentrail-ledger/1\n")
	b.WriteString(strconv.FormatUint(e.Seq, 10))
	b.WriteByte('\n')
	b.WriteString(e.Kind)
	b.WriteByte('\n')
	b.WriteString(e.At.UTC().Format(atLayout))
	b.WriteByte('\n')
	b.WriteString(e.PrevHash)
	b.WriteByte('\n')
	b.WriteString(e.KeyID)
	b.WriteByte('\n')
	b.WriteString(e.Body)
	return []byte(b.String())
}

// ComputeHash returns the hex SHA-256 of the entry's canonical encoding.
func (e *Entry) ComputeHash() string {
	s := sha256.Sum256(e.canonical())
	return hex.EncodeToString(s[:])
}

// seal sets the entry's hash and signature.
func (e *Entry) seal(key ed25519.PrivateKey, keyID string) {
	e.At = e.At.UTC().Truncate(time.Microsecond)
	e.KeyID = keyID
	e.Hash = e.ComputeHash()
	raw, _ := hex.DecodeString(e.Hash)
	e.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, raw))
}

// checkSignature reports whether one of keys signed the entry's hash.
func (e *Entry) checkSignature(keys map[string]ed25519.PublicKey) error {
	pub, ok := keys[e.KeyID]
	if !ok {
		return fmt.Errorf("signed by key %q, which is not among ledger.public_keys", e.KeyID)
	}
	raw, err := hex.DecodeString(e.Hash)
	if err != nil || len(raw) != sha256.Size {
		return errors.New("entry hash is not 64 hex digits")
	}
	sig, err := base64.StdEncoding.DecodeString(e.Signature)
	if err != nil || !ed25519.Verify(pub, raw, sig) {
		return errors.New("signature does not verify")
	}
	return nil
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// ParsePublicKey reads a public key as the config holds it: base64 of the
// raw 32 bytes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key (base64 of 32 bytes, as `agentrail ledger keygen` prints it)")
	}
	return ed25519.PublicKey(b), nil
}

// EncodePublicKey is the config form of pub.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// PrivateKey loads the signing key from the file or environment variable
// the config names. Errors name the source, never the key material.
func (c *Config) PrivateKey() (ed25519.PrivateKey, error) {
	var raw []byte
	src := ""
	switch {
	case c.PrivateKeyFile != "":
		src = "ledger.private_key_file " + c.PrivateKeyFile
		b, err := os.ReadFile(c.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("ledger: read %s: %w", src, err)
		}
		raw = b
	case c.PrivateKeyEnv != "":
		src = "ledger.private_key_env " + c.PrivateKeyEnv
		v, ok := os.LookupEnv(c.PrivateKeyEnv)
		if !ok {
			return nil, fmt.Errorf("ledger: ledger.private_key_env: environment variable %s is not set", c.PrivateKeyEnv)
		}
		raw = []byte(v)
	default:
		return nil, errors.New("ledger: no signing key: set ledger.private_key_file or ledger.private_key_env")
	}
	k, err := ParsePrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("ledger: %s: %w", src, err)
	}
	return k, nil
}

// ParsePrivateKey reads a PKCS#8 PEM Ed25519 private key.
func ParsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block (PKCS#8, as `agentrail ledger keygen` writes it)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS#8 private key")
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T key, not Ed25519", k)
	}
	return ek, nil
}

// MarshalPrivateKey encodes k as PKCS#8 PEM.
func MarshalPrivateKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
