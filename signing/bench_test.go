package signing

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkSign and BenchmarkVerify measure one record of a typical size
// (600 bytes) per algorithm: the producer's and ingest's cost per event.
func BenchmarkSign(b *testing.B) {
	value := bytes.Repeat([]byte{1}, 600)
	for _, alg := range []string{Ed25519, HMACSHA256} {
		b.Run(alg, func(b *testing.B) {
			s := mustSigner(b, "a", "a-1", alg, seed(1))
			buf := make([]byte, 0, MaxSignatureSize)
			b.ReportAllocs()
			for b.Loop() {
				buf = s.AppendSign(buf[:0], value)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	value := bytes.Repeat([]byte{1}, 600)
	for _, alg := range []string{Ed25519, HMACSHA256} {
		b.Run(alg, func(b *testing.B) {
			s := mustSigner(b, "a", "a-1", alg, seed(1))
			v, err := NewVerifier(time.Minute, keyOf(s, seed(1), time.Time{}, time.Time{}))
			if err != nil {
				b.Fatal(err)
			}
			hs := headers(s, value)
			b.ReportAllocs()
			for b.Loop() {
				if vd := v.Verify(hs, value, "a", t0); !vd.Genuine() {
					b.Fatal(vd)
				}
			}
		})
	}
}
