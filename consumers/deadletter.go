package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
)

// Dead letters: a record ingest cannot accept (too large, does not decode,
// not valid) is produced to the dead-letter topic, redacted, with its reason
// (deadLetterRecord), and recorded in the dead_letters table (flush.go's
// insert), in the batch's transaction.

// deadLetter is a rejected record and why.
type deadLetter struct {
	rec   *kgo.Record
	class string // oversize, decode, validation; "" for an accepted record
	field string
	err   error
}

// deadLetterColumns are the dead_letters columns ingest writes.
var deadLetterColumns = []string{"topic", "partition", "offset", "reason_class", "field", "reason", "raw_bytes", "raw_sha256"}

// Dead-letter record headers.
const (
	HeaderReason      = "agentrail.reason"
	HeaderReasonClass = "agentrail.reason_class"
	HeaderField       = "agentrail.field"
	HeaderSource      = "agentrail.source" // topic/partition/offset of the original
)

// deadLetterRecord is the dead-letter copy of a rejected record: redacted
// (deadLetterValue), with the reason and where the original is.
func (in *Ingest) deadLetterRecord(d deadLetter) *kgo.Record {
	src := d.rec.Topic + "/" + strconv.Itoa(int(d.rec.Partition)) + "/" + strconv.FormatInt(d.rec.Offset, 10)
	value, hdrs := in.deadLetterValue(d)
	return &kgo.Record{
		Topic: in.cfg.Kafka.Topics.DeadLetter,
		Key:   in.red.r.ScrubBytes(d.rec.Key),
		Value: value,
		Headers: append([]kgo.RecordHeader{
			{Key: HeaderReason, Value: []byte(in.reasonText(d))},
			{Key: HeaderReasonClass, Value: []byte(d.class)},
			{Key: HeaderField, Value: []byte(d.field)},
			{Key: HeaderSource, Value: []byte(src)},
		}, hdrs...),
	}
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
