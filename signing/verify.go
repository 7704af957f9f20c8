package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Reason is why an event is not genuine. The set is closed: it labels
// metrics and the quarantine table.
type Reason string

// Reasons, in the order Verify checks them.
const (
	Unsigned         Reason = "unsigned"          // no signature headers
	UnknownKey       Reason = "unknown_key"       // the key id is not in the registry
	BadSignature     Reason = "bad_signature"     // malformed headers, or the signature does not match the value
	IdentityMismatch Reason = "identity_mismatch" // a valid signature by a key of another agent
	KeyExpired       Reason = "key_expired"       // event_time after the key's not_after
	KeyNotYetValid   Reason = "key_not_yet_valid" // event_time before the key's not_before
)

// Reasons lists every reason (for metrics).
var Reasons = []Reason{Unsigned, UnknownKey, BadSignature, IdentityMismatch, KeyExpired, KeyNotYetValid}

// DefaultSkew is the clock skew allowed around a key's validity.
const DefaultSkew = 5 * time.Minute

// Verdict is the outcome of verifying one record.
type Verdict struct {
	Reason   Reason // "" when genuine
	KeyID    string // the key id the record names ("" when unsigned)
	KeyAgent string // the agent the named key belongs to ("" when unknown)
	Detail   string // one line for humans; never secret material
}

// Genuine reports whether the record passed.
func (v Verdict) Genuine() bool { return v.Reason == "" }

// Verifier checks record signatures against registered keys. It is
// immutable and safe for concurrent use; a changed registry makes a new one.
type Verifier struct {
	keys   map[string]*vkey
	skew   time.Duration
	agents int
}

type vkey struct {
	Key
	macs sync.Pool // *macState
}

// macState is a keyed HMAC with room for its sum, reused across records.
type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// NewVerifier returns a verifier of keys, allowing skew around their
// validity. Key ids must be unique.
func NewVerifier(skew time.Duration, keys ...Key) (*Verifier, error) {
	v := &Verifier{keys: make(map[string]*vkey, len(keys)), skew: skew}
	agents := map[string]bool{}
	for _, k := range keys {
		if _, dup := v.keys[k.ID]; dup {
			return nil, fmt.Errorf("signing: key id %s registered twice", k.ID)
		}
		vk := &vkey{Key: k}
		switch k.Alg {
		case Ed25519:
			if len(k.Public) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("signing: key %s: ed25519 public key is %d bytes", k.ID, len(k.Public))
			}
		case HMACSHA256:
			if len(k.Secret) < MinSecretBytes {
				return nil, fmt.Errorf("signing: key %s: hmac-sha256 secret is %d bytes, at least %d", k.ID, len(k.Secret), MinSecretBytes)
			}
			secret := k.Secret
			vk.macs.New = func() any { return &macState{h: hmac.New(sha256.New, secret)} }
		default:
			return nil, fmt.Errorf("signing: key %s: alg %q must be %s or %s", k.ID, k.Alg, Ed25519, HMACSHA256)
		}
		v.keys[k.ID] = vk
		agents[k.AgentID] = true
	}
	v.agents = len(agents)
	return v, nil
}

// Keys returns how many keys, and of how many agents, the verifier holds.
func (v *Verifier) Keys() (keys, agents int) { return len(v.keys), v.agents }

// KeyIDs returns the key ids, sorted.
func (v *Verifier) KeyIDs() []string {
	out := make([]string, 0, len(v.keys))
	for id := range v.keys {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// ParseHeaders finds the signature headers. A record with neither is
// unsigned (ok false, err nil); one with only one of them, either twice, or
// values out of shape is an error (the reason is bad_signature). kid and
// sig alias the headers' values.
func ParseHeaders(hs []kgo.RecordHeader) (kid, sig []byte, ok bool, err error) {
	var nKid, nSig int
	for i := range hs {
		switch hs[i].Key {
		case HeaderKeyID:
			nKid++
			kid = hs[i].Value
		case HeaderSignature:
			nSig++
			sig = hs[i].Value
		}
	}
	switch {
	case nKid == 0 && nSig == 0:
		return nil, nil, false, nil
	case nKid > 1 || nSig > 1:
		return nil, nil, false, fmt.Errorf("header %s or %s appears more than once", HeaderKeyID, HeaderSignature)
	case nKid == 0:
		return nil, nil, false, fmt.Errorf("header %s without %s", HeaderSignature, HeaderKeyID)
	case nSig == 0:
		return nil, nil, false, fmt.Errorf("header %s without %s", HeaderKeyID, HeaderSignature)
	case !KeyIDRE.Match(kid):
		return nil, nil, false, fmt.Errorf("header %s is not a key id (%d bytes)", HeaderKeyID, len(kid))
	case len(sig) == 0 || len(sig) > MaxSignatureSize:
		return nil, nil, false, fmt.Errorf("header %s is %d bytes", HeaderSignature, len(sig))
	}
	return kid, sig, true, nil
}

// Verify checks the record whose value and headers are given, decoded into
// an event of agentID at eventTime (both read from the signed value): it is
// VerifySignature, then VerifyClaims.
func (v *Verifier) Verify(hs []kgo.RecordHeader, value []byte, agentID string, eventTime time.Time) Verdict {
	out := v.VerifySignature(hs, value)
	if !out.Genuine() {
		return out
	}
	return v.VerifyClaims(out, agentID, eventTime)
}

// VerifySignature checks what needs no decoding, over the exact bytes of
// the value: the headers are present and well formed (else unsigned or
// bad_signature), the key id is registered (unknown_key) and the signature
// matches (bad_signature). A genuine verdict names the key and its agent;
// only then is the value worth decoding, and the event's claims are checked
// with VerifyClaims.
func (v *Verifier) VerifySignature(hs []kgo.RecordHeader, value []byte) Verdict {
	kid, sig, ok, err := ParseHeaders(hs)
	if err != nil {
		return Verdict{Reason: BadSignature, Detail: err.Error()}
	}
	if !ok {
		return Verdict{Reason: Unsigned, Detail: "no " + HeaderKeyID + " and " + HeaderSignature + " headers"}
	}
	k, found := v.keys[string(kid)] // no allocation: the compiler looks up bytes
	if !found {
		return Verdict{Reason: UnknownKey, KeyID: string(kid), Detail: "key " + string(kid) + " is not in the registry"}
	}
	out := Verdict{KeyID: k.ID, KeyAgent: k.AgentID}
	if !k.verify(value, sig) {
		out.Reason, out.Detail = BadSignature, fmt.Sprintf("%s signature by key %s does not match the record's %d bytes", k.Alg, k.ID, len(value))
	}
	return out
}

// VerifyClaims checks the decoded event of a record whose signature
// verified (signed, a genuine verdict of VerifySignature by this verifier):
// the key belongs to the agent the event claims to be (identity_mismatch),
// and the key was valid at the event's event_time, with the clock skew
// allowed (key_expired, key_not_yet_valid).
func (v *Verifier) VerifyClaims(signed Verdict, agentID string, eventTime time.Time) Verdict {
	if !signed.Genuine() {
		return signed
	}
	k, found := v.keys[signed.KeyID]
	if !found { // a verdict of another verifier: the key is not in this one
		return Verdict{Reason: UnknownKey, KeyID: signed.KeyID, Detail: "key " + signed.KeyID + " is not in the registry"}
	}
	out := Verdict{KeyID: k.ID, KeyAgent: k.AgentID}
	if k.AgentID != agentID {
		out.Reason, out.Detail = IdentityMismatch, fmt.Sprintf("signed with key %s of agent %s, the event claims agent %s", k.ID, k.AgentID, agentID)
		return out
	}
	switch k.validAt(eventTime, v.skew) {
	case KeyNotYetValid:
		out.Reason, out.Detail = KeyNotYetValid, fmt.Sprintf("event_time %s is before key %s's not_before %s", eventTime.UTC().Format(time.RFC3339), k.ID, k.NotBefore.UTC().Format(time.RFC3339))
	case KeyExpired:
		out.Reason, out.Detail = KeyExpired, fmt.Sprintf("event_time %s is after key %s's not_after %s", eventTime.UTC().Format(time.RFC3339), k.ID, k.NotAfter.UTC().Format(time.RFC3339))
	}
	return out
}

func (k *vkey) verify(value, sig []byte) bool {
	if k.Alg == Ed25519 {
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.Public, value, sig)
	}
	if len(sig) != sha256.Size {
		return false
	}
	m := k.macs.Get().(*macState)
	m.h.Reset()
	m.h.Write(value)
	ok := hmac.Equal(m.h.Sum(m.sum[:0]), sig)
	k.macs.Put(m)
	return ok
}
