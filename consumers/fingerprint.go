package consumers

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/schemas"
)

// legacyFingerprints counts the committed records whose single-object header
// carries a schema version's legacy fingerprint (schemas.Version), the one
// agentrail wrote before it followed the Avro specification. Ingest still
// reads them; the counter says when nothing writes them any more, so that
// acceptance can end (schemas/README.md).
type legacyFingerprints struct {
	byVersion []prometheus.Counter // index: schema version
}

func newLegacyFingerprints(reg prometheus.Registerer) (legacyFingerprints, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentrail_ingest_legacy_fingerprint_records_total",
		Help: "Records read whose single-object header carries a schema version's legacy (pre-spec) fingerprint, by schema version.",
	}, []string{"schema_version"})
	if err := reg.Register(c); err != nil {
		return legacyFingerprints{}, fmt.Errorf("consumers: register metrics: %w", err)
	}
	vs := schemas.Versions()
	l := legacyFingerprints{byVersion: make([]prometheus.Counter, vs[len(vs)-1].N+1)}
	for _, v := range vs {
		l.byVersion[v.N] = c.WithLabelValues(strconv.Itoa(v.N))
	}
	return l, nil
}

// countLegacyFingerprints counts a committed batch's records framed with a
// legacy fingerprint, whatever became of them (stored, dead-lettered or
// quarantined): a batch consumed again after an abort is counted once.
func (in *Ingest) countLegacyFingerprints(b *batch) {
	for _, r := range b.recs {
		if n := in.dec.LegacyVersion(r.Value); n > 0 && n < len(in.legacy.byVersion) {
			in.legacy.byVersion[n].Inc()
		}
	}
}
