package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
)

// Redaction in ingest: every accepted event is redacted before its row is
// added to the batch (so before ClickHouse, the processors and their logs
// see it), and every dead letter is redacted before it is produced or
// inserted. See consumers/redact and docs/ARCHITECTURE.md.

// redaction is ingest's redaction state.
type redaction struct {
	r     *redact.Redactor
	count *prometheus.CounterVec // agentrail_ingest_redactions_total{rule,action}
}

func newRedaction(cfg redact.Config, reg prometheus.Registerer, log *slog.Logger) (redaction, error) {
	r, err := redact.New(cfg)
	if err != nil {
		return redaction{}, fmt.Errorf("consumers: %w", err)
	}
	log.Info("redaction before storage", "config", r.Summary())
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentrail_ingest_redactions_total",
		Help: "Fields redacted in accepted events, by rule or detector and action (a re-consumed batch counts again).",
	}, []string{"rule", "action"})
	if err := reg.Register(c); err != nil {
		return redaction{}, fmt.Errorf("consumers: register metrics: %w", err)
	}
	return redaction{r: r, count: c}, nil
}

// redact redacts an accepted event in place and returns what it redacted.
// action_digest is left as the producer computed it, over the raw payload.
func (in *Ingest) redact(e *schemas.Event) []redact.Redaction {
	reds := in.red.r.Redact(e)
	for _, rd := range reds {
		in.red.count.WithLabelValues(rd.Rule, rd.Action).Inc()
	}
	return reds
}

// reasonText is a dead letter's reason as stored and produced: validation
// errors never quote values, and decode errors should not; the detectors
// make sure.
func (in *Ingest) reasonText(d deadLetter) string {
	return in.red.r.ScrubText(d.err.Error())
}

// Dead-letter headers that describe the redacted copy.
const (
	// HeaderRedacted says what the value is: "event" (the decoded event,
	// redacted, re-encoded in Avro single-object framing), "withheld" (no
	// value: the record could not be decoded, see the source header), or
	// "masked" (the original bytes with what the detectors found
	// overwritten by '*'; redaction.keep_raw_undecodable).
	HeaderRedacted       = "agentrail.redacted"
	HeaderRedactions     = "agentrail.redactions"      // JSON [{path, action, rule}] for "event"
	HeaderOriginalSHA256 = "agentrail.original_sha256" // hex SHA-256 of the original value
	HeaderOriginalBytes  = "agentrail.original_bytes"  // its length
)

// deadLetterValue returns the dead-letter copy of a rejected record and the
// headers that describe it. The raw value is never copied as it came: a
// record that decoded (it failed validation) is redacted field by field
// like an accepted event; one that did not decode is withheld, or masked
// by the detectors when keep_raw_undecodable is set.
func (in *Ingest) deadLetterValue(d deadLetter) ([]byte, []kgo.RecordHeader) {
	sum := sha256.Sum256(d.rec.Value)
	hdrs := []kgo.RecordHeader{
		{Key: HeaderOriginalSHA256, Value: []byte(hex.EncodeToString(sum[:]))},
		{Key: HeaderOriginalBytes, Value: []byte(strconv.Itoa(len(d.rec.Value)))},
	}
	if d.class == "validation" {
		var e schemas.Event
		if err := in.dec.Decode(context.Background(), d.rec.Value, &e); err == nil {
			reds := in.red.r.Redact(&e)
			if v, err := schemas.NewSingleObjectEncoder().AppendEncode(nil, &e); err == nil {
				if reds == nil {
					reds = []redact.Redaction{}
				}
				js, _ := json.Marshal(reds)
				return v, append(hdrs,
					kgo.RecordHeader{Key: HeaderRedacted, Value: []byte("event")},
					kgo.RecordHeader{Key: HeaderRedactions, Value: js})
			}
		}
	}
	if in.red.r.KeepRawUndecodable() {
		return in.red.r.ScrubBytes(d.rec.Value), append(hdrs, kgo.RecordHeader{Key: HeaderRedacted, Value: []byte("masked")})
	}
	return nil, append(hdrs, kgo.RecordHeader{Key: HeaderRedacted, Value: []byte("withheld")})
}
