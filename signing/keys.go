package signing

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

// Algorithms.
const (
	Ed25519    = "ed25519"
	HMACSHA256 = "hmac-sha256"
)

// MinSecretBytes is the shortest HMAC secret accepted (RFC 2104: at least
// the hash's output length).
const MinSecretBytes = 32

// KeySpec is one key of an agent as the registry file states it (the
// `keys:` list of an agent). Secret values never appear in it: an HMAC
// secret is named by file or environment variable.
type KeySpec struct {
	ID         string    `yaml:"id"`
	Alg        string    `yaml:"alg"`
	PublicKey  string    `yaml:"public_key"`  // ed25519: the 32-byte public key, base64
	SecretFile string    `yaml:"secret_file"` // hmac-sha256: a file holding the secret, base64
	SecretEnv  string    `yaml:"secret_env"`  // hmac-sha256: or an environment variable holding it
	NotBefore  time.Time `yaml:"not_before"`  // zero: valid since ever
	NotAfter   time.Time `yaml:"not_after"`   // zero: valid until removed
}

// specFields are KeySpec's YAML keys, for strict decoding.
var specFields = []string{"id", "alg", "public_key", "secret_file", "secret_env", "not_before", "not_after"}

// KeyIDRE is what a key id looks like.
var KeyIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

var envRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Problem is one mistake in a key spec: the field (relative to the key,
// "public_key") and what is wrong. It never contains a secret.
type Problem struct {
	Field string
	Msg   string
}

// Check validates a key spec without I/O: it does not read secrets.
func (k *KeySpec) Check() []Problem {
	var ps []Problem
	bad := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case k.ID == "":
		bad("id", "is required")
	case !KeyIDRE.MatchString(k.ID):
		bad("id", "%q must match %s", k.ID, KeyIDRE)
	}
	switch k.Alg {
	case Ed25519:
		if k.PublicKey == "" {
			bad("public_key", "is required for ed25519 (base64 of the 32-byte public key; `agentrail registry keygen` prints it)")
		} else if _, err := DecodePublicKey(k.PublicKey); err != nil {
			bad("public_key", "%v", err)
		}
		if k.SecretFile != "" || k.SecretEnv != "" {
			bad("secret_file", "ed25519 keys take public_key only: the private key stays with the agent")
		}
	case HMACSHA256:
		if k.PublicKey != "" {
			bad("public_key", "hmac-sha256 keys have no public key; name the shared secret with secret_file or secret_env")
		}
		switch {
		case k.SecretFile == "" && k.SecretEnv == "":
			bad("secret_file", "hmac-sha256 keys need secret_file or secret_env (the secret itself never goes in the registry)")
		case k.SecretFile != "" && k.SecretEnv != "":
			bad("secret_env", "set secret_file or secret_env, not both")
		case k.SecretEnv != "" && !envRE.MatchString(k.SecretEnv):
			bad("secret_env", "%q is not an environment variable name", k.SecretEnv)
		}
	case "":
		bad("alg", "is required (%s or %s)", Ed25519, HMACSHA256)
	default:
		bad("alg", "%q must be %s or %s", k.Alg, Ed25519, HMACSHA256)
	}
	if !k.NotBefore.IsZero() && !k.NotAfter.IsZero() && !k.NotAfter.After(k.NotBefore) {
		bad("not_after", "%s is not after not_before %s", k.NotAfter.UTC().Format(time.RFC3339), k.NotBefore.UTC().Format(time.RFC3339))
	}
	return ps
}

// DecodePublicKey decodes an ed25519 public key from base64 (standard or
// URL alphabet, padded or not).
func DecodePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := decodeBase64(s)
	if err != nil {
		return nil, fmt.Errorf("is not base64: %w", err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("is %d bytes, an ed25519 public key is %d", len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// EncodePublicKey is how the registry writes a public key.
func EncodePublicKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// ReadMaterial reads key material from a file or an environment variable
// (exactly one of them non-empty): base64, or for ed25519 private keys also
// a PEM "PRIVATE KEY" block (PKCS #8, as `openssl genpkey -algorithm
// ed25519` writes). what names the setting in errors, which never contain
// the value.
func ReadMaterial(file, env, what string) ([]byte, error) {
	var raw string
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s_file: %w", what, err)
		}
		raw = string(b)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("%s_env: environment variable %s is not set", what, env)
		}
		raw = v
	default:
		return nil, fmt.Errorf("%s_file or %s_env is required", what, what)
	}
	src := what + "_file " + file
	if file == "" {
		src = what + "_env " + env
	}
	if blk, _ := pem.Decode([]byte(raw)); blk != nil {
		if blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("%s: PEM block %q, want PRIVATE KEY (PKCS #8)", src, blk.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s: PEM key is a %T, want ed25519", src, k)
		}
		return ek.Seed(), nil
	}
	b, err := decodeBase64(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: not base64 or PEM: %w", src, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s: is empty", src)
	}
	return b, nil
}

// Key is a resolved key: its material loaded, ready to verify with.
type Key struct {
	ID        string
	AgentID   string // the agent identity the key belongs to
	Alg       string
	Public    ed25519.PublicKey // ed25519
	Secret    []byte            // hmac-sha256
	NotBefore time.Time         // zero: unbounded
	NotAfter  time.Time
}

// Resolve checks spec and loads its material (reads an HMAC secret from
// its file or environment variable) as a key of agentID.
func Resolve(agentID string, spec KeySpec) (Key, error) {
	if ps := spec.Check(); len(ps) > 0 {
		return Key{}, fmt.Errorf("%s: %s", ps[0].Field, ps[0].Msg)
	}
	k := Key{ID: spec.ID, AgentID: agentID, Alg: spec.Alg, NotBefore: spec.NotBefore, NotAfter: spec.NotAfter}
	switch spec.Alg {
	case Ed25519:
		k.Public, _ = DecodePublicKey(spec.PublicKey) // checked above
	case HMACSHA256:
		s, err := ReadMaterial(spec.SecretFile, spec.SecretEnv, "secret")
		if err != nil {
			return Key{}, err
		}
		if len(s) < MinSecretBytes {
			return Key{}, fmt.Errorf("secret: is %d bytes, at least %d", len(s), MinSecretBytes)
		}
		k.Secret = s
	}
	return k, nil
}

// validAt reports how t relates to the key's validity, with skew allowed on
// both ends: "" inside it, else the reason.
func (k *Key) validAt(t time.Time, skew time.Duration) Reason {
	if !k.NotBefore.IsZero() && t.Before(k.NotBefore.Add(-skew)) {
		return KeyNotYetValid
	}
	if !k.NotAfter.IsZero() && !t.Before(k.NotAfter.Add(skew)) {
		return KeyExpired
	}
	return ""
}
