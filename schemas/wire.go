package schemas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
)

// Framing markers. A record value starts with one of them; Decode tells the
// three framings apart by the first byte.
const (
	// jsonObject starts a record in the JSON framing: the value is one
	// event in its JSON form (json.go), exactly as its agent signed it.
	jsonObject = '{'

	// confluentMagic starts a Confluent Schema Registry framed value:
	// 0x00, then the schema id as a 4-byte big-endian integer.
	confluentMagic = 0x00
	// singleObject0/1 start an Avro single-object encoded value: C3 01, then
	// the schema's CRC-64-AVRO fingerprint as 8 little-endian bytes.
	singleObject0 = 0xC3
	singleObject1 = 0x01
)

// ErrMalformed marks a record that can never be decoded or accepted, however
// often it is retried: the caller should dead-letter it. Errors that do not
// wrap it (a schema registry that does not answer) are worth retrying.
var ErrMalformed = errors.New("malformed record")

// avroAPI bounds what a hostile record can make the decoder allocate.
var avroAPI = avro.Config{
	MaxByteSliceSize:  maxStringBytes,
	MaxSliceAllocSize: maxArrayItems,
}.Freeze()

// Encoder writes events in one wire framing with the latest schema. It is
// safe for concurrent use: it holds only the framing's header.
type Encoder struct {
	header []byte
}

// NewSingleObjectEncoder writes the Avro single-object encoding: it needs no
// schema registry, readers find the schema by its fingerprint.
func NewSingleObjectEncoder() *Encoder {
	fp := Latest().Fingerprint
	return &Encoder{header: append([]byte{singleObject0, singleObject1}, fp[:]...)}
}

// NewConfluentEncoder writes the Confluent Schema Registry framing for the
// schema registered under id.
func NewConfluentEncoder(id int) *Encoder {
	return &Encoder{header: binary.BigEndian.AppendUint32([]byte{confluentMagic}, uint32(id))}
}

// AppendEncode appends the framed encoding of e to dst; on error dst is
// returned as it was. An approval's empty approver_kind and scope are
// written as the schema's defaults (human, single): the contract lets them
// be empty, and Avro has no empty enum symbol. e itself is not changed.
//
// The encoder is written by hand for the latest schema (encode.go): on the
// producer's hot path hamba/avro's reflection cost about six times the time
// and 4 allocations per event, one per map iterated (BenchmarkEncode).
// Records of the latest schema are read by hand too (decode.go).
func (enc *Encoder) AppendEncode(dst []byte, e *Event) ([]byte, error) {
	n := len(dst)
	out, err := appendEvent(append(dst, enc.header...), e)
	if err != nil {
		return dst[:n], fmt.Errorf("schemas: encode event: %w", err)
	}
	return out, nil
}

// SchemaSource looks up a schema's text by its registry id; *sr.Client
// satisfies it.
type SchemaSource interface {
	SchemaTextByID(ctx context.Context, id int) (string, error)
}

// Decoder reads events in any of the three framings (JSON, single-object
// and Confluent Avro), written with any published schema
// version (or, through a registry, any compatible writer schema), into the
// latest Event type. It is safe for concurrent use.
type Decoder struct {
	reader      avro.Schema
	handWritten bool                    // decodeLatest is written for the reader schema
	byFP        map[[8]byte]avro.Schema // resolved writer->reader schemas, by spec and legacy fingerprint
	legacyFP    []legacyFP              // a few: a scan beats a map
	registry    SchemaSource            // nil: Confluent framing is rejected

	mu   sync.RWMutex
	byID map[int]avro.Schema
}

// NewDecoder returns a Decoder. registry may be nil when no schema registry is
// configured; Confluent-framed records are then malformed.
func NewDecoder(registry SchemaSource) (*Decoder, error) {
	d := &Decoder{
		reader:      Latest().Schema,
		handWritten: Latest().N == decodeLatestVersion,
		byFP:        make(map[[8]byte]avro.Schema),
		registry:    registry,
		byID:        make(map[int]avro.Schema),
	}
	for _, v := range Versions() {
		s, err := d.resolve(v.Schema)
		if err != nil {
			return nil, fmt.Errorf("schemas: version %d cannot be read as the latest: %w", v.N, err)
		}
		d.byFP[v.Fingerprint] = s
		d.byFP[v.LegacyFingerprint] = s
		d.legacyFP = append(d.legacyFP, legacyFP{v.LegacyFingerprint, v.N})
	}
	return d, nil
}

// LegacyVersion returns the schema version whose legacy fingerprint
// (Version.LegacyFingerprint) heads the single-object record b, or 0 if b
// does not carry one. Consumers count such records: the legacy fingerprints
// are accepted only for a while (schemas/README.md).
func (d *Decoder) LegacyVersion(b []byte) int {
	if len(b) < 10 || b[0] != singleObject0 || b[1] != singleObject1 {
		return 0
	}
	fp := [8]byte(b[2:10])
	for _, l := range d.legacyFP {
		if l.fp == fp {
			return l.version
		}
	}
	return 0
}

type legacyFP struct {
	fp      [8]byte
	version int
}

// resolve returns the schema that decodes data written with writer into the
// reader (latest) type.
func (d *Decoder) resolve(writer avro.Schema) (avro.Schema, error) {
	if writer.Fingerprint() == d.reader.Fingerprint() {
		return d.reader, nil
	}
	return avro.NewSchemaCompatibility().Resolve(d.reader, writer)
}

// Decode decodes one framed record into e, which it resets first. Errors that
// wrap ErrMalformed are permanent; others (registry lookups) are transient.
//
// A record written with the latest schema (by fingerprint, or by a registry
// id whose schema is the latest) is decoded by hand (decode.go): hamba/avro's
// reflective decoder and its allocations were most of ingest's decoding CPU
// (docs/PERFORMANCE-HISTORY.md, "Avro decoding in ingest (hand-written for
// the latest schema)"). Any other writer schema is resolved by hamba/avro.
func (d *Decoder) Decode(ctx context.Context, b []byte, e *Event) error {
	if len(b) > 0 && b[0] == jsonObject {
		return decodeJSON(b, e)
	}
	s, payload, err := d.writerSchema(ctx, b)
	if err != nil {
		return err
	}
	if s == d.reader && d.handWritten {
		return decodeLatest(payload, e)
	}
	return decodeResolved(s, payload, e)
}

// DecodeValid is Decode, then Validate(e, now, lim): an error wrapping
// ErrMalformed if the record cannot be decoded, a *ValidationError if the
// event breaks the contract, and errors of neither kind (registry lookups)
// are transient. It is their cheaper composition for consumers: a record
// of the latest schema has its strings checked for length and UTF-8 while
// they are decoded, so only an event with a non-ASCII or over-long string
// takes checkStrings' second pass, which names the field.
func (d *Decoder) DecodeValid(ctx context.Context, b []byte, e *Event, now time.Time, lim Limits) error {
	if len(b) > 0 && b[0] == jsonObject {
		if err := decodeJSON(b, e); err != nil {
			return err
		}
		return Validate(e, now, lim)
	}
	s, payload, err := d.writerSchema(ctx, b)
	if err != nil {
		return err
	}
	if s != d.reader || !d.handWritten {
		if err := decodeResolved(s, payload, e); err != nil {
			return err
		}
		return Validate(e, now, lim)
	}
	st, err := decodeLatestStrings(payload, e)
	if err != nil {
		return err
	}
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	if err := checkShape(e, now, lim, nil); err != nil {
		return err
	}
	return st.check(e, lim.MaxString)
}

// decodeResolved decodes payload with hamba/avro and s, the writer schema
// resolved against the latest, into e, which it resets first.
func decodeResolved(s avro.Schema, payload []byte, e *Event) error {
	*e = Event{}
	r := readerPool.Get().(*avro.Reader)
	defer readerPool.Put(r)
	r.Reset(payload)
	r.Error = nil // Reset keeps the previous record's error
	r.ReadVal(s, e)
	// avro.Unmarshal forgives running out of bytes in some places (it
	// treats io.EOF as success), so a truncated record could pass as an
	// event with empty fields: any end of input is an error here, and so
	// are bytes left over after the record.
	if r.Error != nil {
		return fmt.Errorf("schemas: decode avro payload (%d bytes): %w: %w", len(payload), ErrMalformed, r.Error)
	}
	if r.Peek(); r.Error == nil {
		return fmt.Errorf("schemas: decode avro payload (%d bytes): %w: trailing bytes after the record", len(payload), ErrMalformed)
	}
	return nil
}

var readerPool = sync.Pool{New: func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(avroAPI)) }}

func (d *Decoder) writerSchema(ctx context.Context, b []byte) (avro.Schema, []byte, error) {
	switch {
	case len(b) == 0:
		return nil, nil, fmt.Errorf("schemas: empty record: %w", ErrMalformed)
	case b[0] == singleObject0:
		if len(b) < 10 || b[1] != singleObject1 {
			return nil, nil, fmt.Errorf("schemas: truncated single-object header: %w", ErrMalformed)
		}
		var fp [8]byte
		copy(fp[:], b[2:10])
		s, ok := d.byFP[fp]
		if !ok {
			return nil, nil, fmt.Errorf("schemas: unknown schema fingerprint %x: %w", fp, ErrMalformed)
		}
		return s, b[10:], nil
	case b[0] == confluentMagic:
		if len(b) < 5 {
			return nil, nil, fmt.Errorf("schemas: truncated schema registry header: %w", ErrMalformed)
		}
		id := int(binary.BigEndian.Uint32(b[1:5]))
		s, err := d.schemaByID(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		return s, b[5:], nil
	}
	return nil, nil, fmt.Errorf("schemas: unknown framing byte 0x%02x (want 0x00 schema registry, 0xC3 single-object or '{' json): %w", b[0], ErrMalformed)
}

func (d *Decoder) schemaByID(ctx context.Context, id int) (avro.Schema, error) {
	d.mu.RLock()
	s, ok := d.byID[id]
	d.mu.RUnlock()
	if ok {
		return s, nil
	}
	if d.registry == nil {
		return nil, fmt.Errorf("schemas: record framed with schema registry id %d but no registry is configured: %w", id, ErrMalformed)
	}
	text, err := d.registry.SchemaTextByID(ctx, id)
	if err != nil {
		// A registry that answers "not found" is as final as a bad byte; any
		// other failure may pass.
		if isNotFound(err) {
			return nil, fmt.Errorf("schemas: schema id %d not in registry: %w: %w", id, ErrMalformed, err)
		}
		return nil, fmt.Errorf("schemas: fetch schema id %d: %w", id, err)
	}
	w, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("schemas: parse registry schema id %d: %w: %w", id, ErrMalformed, err)
	}
	s, err = d.resolve(w)
	if err != nil {
		return nil, fmt.Errorf("schemas: registry schema id %d is incompatible with the reader: %w: %w", id, ErrMalformed, err)
	}
	d.mu.Lock()
	d.byID[id] = s
	d.mu.Unlock()
	return s, nil
}
