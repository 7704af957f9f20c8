package ledger

import (
	"crypto/ed25519"
	"os"
	"strings"
	"testing"
	"time"
)

// A key written by `openssl genpkey -algorithm ed25519` loads, and its public
// key is the one `openssl pkey -pubout -outform DER | tail -c 32 | base64`
// printed when the fixture was made.
func TestOpenSSLKey(t *testing.T) {
	raw, err := os.ReadFile("testdata/openssl-ed25519.pem")
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := EncodePublicKey(k.Public().(ed25519.PublicKey)); got != "JtVKnDbMjmDEzJi7gp2cpTaX561p9BLcrZifDmVhXUs=" {
		t.Fatalf("public key %s", got)
	}
	for _, bad := range []string{"", "not pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := ParsePrivateKey([]byte(bad)); err == nil {
			t.Fatalf("%q parsed as a key", bad)
		}
	}
}

func TestEntryHashAndSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	other, _, _ := ed25519.GenerateKey(nil)
	keys := map[string]ed25519.PublicKey{KeyID(pub): pub}
	e := &Entry{Seq: 7, Kind: KindSeal, At: time.Date(2026, 11, 20, 10, 0, 0, 123456789, time.UTC), PrevHash: genesis, Body: `{"ranges":[]}`}
	e.seal(priv, KeyID(pub))
	if e.At.Nanosecond() != 123456000 || e.ComputeHash() != e.Hash || e.checkSignature(keys) != nil {
		t.Fatalf("sealed entry does not check: %+v", e)
	}
	cases := []struct {
		name string
		mut  func(e *Entry)
		want string // "" = the hash no longer matches
	}{
		{"body", func(e *Entry) { e.Body = `{"ranges":[1]}` }, ""},
		{"seq", func(e *Entry) { e.Seq++ }, ""},
		{"time", func(e *Entry) { e.At = e.At.Add(time.Microsecond) }, ""},
		{"link", func(e *Entry) { e.PrevHash = strings.Repeat("1", 64) }, ""},
		{"re-hashed without the key", func(e *Entry) { e.Body = "{}"; e.Hash = e.ComputeHash() }, "signature does not verify"},
		{"unknown key", func(e *Entry) { e.KeyID = KeyID(other); e.Hash = e.ComputeHash() }, "not among ledger.public_keys"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := *e
			tc.mut(&c)
			if tc.want == "" {
				if c.ComputeHash() == c.Hash {
					t.Fatal("hash still matches")
				}
				return
			}
			if err := c.checkSignature(keys); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("signature check: %v, want %q", err, tc.want)
			}
		})
	}
}

// One bad bucket per dimension names an offset of the range's block exactly.
func TestBucketsNameOneOffset(t *testing.T) {
	seen := map[[2]int]int64{}
	for off := int64(3 * BlockSize); off < 4*BlockSize; off++ {
		i, j := bucketsOf(off)
		k := [2]int{i, j}
		if prev, dup := seen[k]; dup {
			t.Fatalf("offsets %d and %d share buckets %v", prev, off, k)
		}
		seen[k] = off
	}
}
