package signing

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzVerifyHeaders feeds arbitrary signature headers and values to the
// verifier: it must never panic, must call nothing genuine that a
// registered key did not sign, and must always give a reason from the
// closed set.
func FuzzVerifyHeaders(f *testing.F) {
	s, err := NewSigner("a", "a-1", Ed25519, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	h, err := NewSigner("a", "a-h", HMACSHA256, bytes.Repeat([]byte{2}, 32))
	if err != nil {
		f.Fatal(err)
	}
	v, err := NewVerifier(time.Minute, keyOf(s, nil, time.Time{}, time.Time{}), keyOf(h, bytes.Repeat([]byte{2}, 32), time.Time{}, time.Time{}))
	if err != nil {
		f.Fatal(err)
	}
	val := []byte("\xc3\x01value")
	f.Add("a-1", s.AppendSign(nil, val), val, uint8(0))
	f.Add("a-h", h.AppendSign(nil, val), val, uint8(0))
	f.Add("a-1", []byte{}, val, uint8(1))
	f.Add("", []byte{1, 2}, []byte{}, uint8(2))
	f.Add("a-1", s.AppendSign(nil, val), val, uint8(3))
	f.Fuzz(func(t *testing.T, kid string, sig, value []byte, shape uint8) {
		var hs []kgo.RecordHeader
		switch shape % 4 {
		case 0:
			hs = []kgo.RecordHeader{{Key: HeaderKeyID, Value: []byte(kid)}, {Key: HeaderSignature, Value: sig}}
		case 1:
			hs = []kgo.RecordHeader{{Key: HeaderSignature, Value: sig}}
		case 2:
			hs = []kgo.RecordHeader{{Key: HeaderKeyID, Value: []byte(kid)}}
		case 3:
			hs = []kgo.RecordHeader{{Key: HeaderKeyID, Value: []byte(kid)}, {Key: HeaderSignature, Value: sig}, {Key: HeaderKeyID, Value: []byte(kid)}}
		}
		vd := v.Verify(hs, value, "a", time.Now())
		known := vd.Reason == ""
		for _, r := range Reasons {
			known = known || vd.Reason == r
		}
		if !known {
			t.Fatalf("reason %q is not in the closed set", vd.Reason)
		}
		if vd.Genuine() {
			var signer *Signer
			switch kid {
			case "a-1":
				signer = s
			case "a-h":
				signer = h
			default:
				t.Fatalf("genuine under unregistered key %q", kid)
			}
			if shape%4 != 0 {
				t.Fatalf("genuine with header shape %d", shape%4)
			}
			if signer.Alg() == HMACSHA256 && !bytes.Equal(signer.AppendSign(nil, value), sig) {
				t.Fatalf("hmac genuine with a signature the key did not make")
			}
		}
	})
}

// FuzzParseRegistryKeys feeds arbitrary YAML to the registry key reader: it
// must return errors naming the file, never panic, and keys it accepts
// must pass Check.
func FuzzParseRegistryKeys(f *testing.F) {
	f.Add([]byte(strings.Replace(registryYAML, "%s", "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=", 1)))
	f.Add([]byte("agents:\n  - id: a\n    keys:\n      - {id: k, alg: ed25519, public_key: AAAA}\n"))
	f.Add([]byte("agents: [{keys: [{}]}, 3, {id: x, keys: 7}]\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		agents, err := ParseRegistryKeys(b, "fuzz.yaml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		ids := map[string]bool{}
		for _, a := range agents {
			for _, k := range a.Keys {
				if ps := k.Check(); len(ps) > 0 {
					t.Fatalf("accepted a key with problems: %+v", ps)
				}
				if ids[k.ID] {
					t.Fatalf("accepted key id %q twice", k.ID)
				}
				ids[k.ID] = true
				if a.AgentID == "" {
					t.Fatalf("accepted key %q of an agent without id", k.ID)
				}
			}
		}
	})
}
