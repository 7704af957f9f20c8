package producers

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/signing"
)

// BenchmarkEmitSigned is BenchmarkEmit with every event signed: the
// simulator's agents each with their own key, ed25519 or hmac-sha256, so
// the cost of signing shows against the unsigned figure.
func BenchmarkEmitSigned(b *testing.B) {
	for _, alg := range []string{signing.Ed25519, signing.HMACSHA256} {
		b.Run(alg, func(b *testing.B) {
			c := startBroker(b)
			fleet := simulate.New(simulate.Config{Seed: 1})
			var signers []*signing.Signer
			for i, a := range fleet.Agents() {
				s, err := signing.NewSigner(a.Identity.ID, a.Identity.ID+"-1", alg, bytes.Repeat([]byte{byte(i)}, 32))
				if err != nil {
					b.Fatal(err)
				}
				signers = append(signers, s)
			}
			em, _ := newTestEmitter(b, c.ListenAddrs(), func(cfg *Config) {
				cfg.MaxBufferedRecords = 100_000
				cfg.Signer = signing.NewKeyring(signers...)
			})
			events := fleet.Events(10_000, time.Now())
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				for {
					err := em.Emit(ctx, &events[i%len(events)])
					if err == nil {
						break
					}
					if !errors.Is(err, ErrBufferFull) {
						b.Fatal(err)
					}
				}
				i++
			}
			b.StopTimer()
			if err := em.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
