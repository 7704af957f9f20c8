// Package schemas is agentrail's event contract: the Avro schemas of the four
// events an agent action goes through (intent, policy decision, approval,
// result), their Go types, validation, the action digest, the canonical JSON
// form, and the two wire framings (Avro single-object encoding and the
// Confluent Schema Registry framing).
//
// All four events share one record, Event: the envelope plus exactly one of
// the bodies Intent, Decision, Approval or Result, chosen by Type. One record
// keeps a trace's events in one topic and one schema subject, so they stay in
// order in one partition and evolve together.
//
// The package does no I/O except through a caller-supplied registry client.
package schemas

import (
	"embed"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"
)

//go:embed avro/*.avsc
var avscFS embed.FS

// Version is one published revision of the Event schema.
type Version struct {
	N      int         // 1, 2, ...
	Schema avro.Schema // parsed schema
	// Fingerprint is the CRC-64-AVRO fingerprint of the schema's Parsing
	// Canonical Form as the Avro specification defines it (CanonicalForm),
	// little-endian, as the single-object encoding carries it. Producers
	// write it.
	Fingerprint [8]byte
	// LegacyFingerprint is what agentrail wrote before it followed the
	// specification: hamba/avro's CRC-64-AVRO, whose canonical form keeps
	// logicalType. Consumers still accept it, for records already written
	// (schemas/README.md says until when).
	LegacyFingerprint [8]byte
}

// Versions lists every published schema revision, oldest first. The last one
// is what producers write and what consumers decode into.
var versionFiles = []string{"avro/event.v1.avsc", "avro/event.v2.avsc"}

var (
	loadOnce sync.Once
	versions []Version
	loadErr  error
)

func load() {
	for i, name := range versionFiles {
		raw, err := avscFS.ReadFile(name)
		if err != nil {
			loadErr = fmt.Errorf("schemas: read %s: %w", name, err)
			return
		}
		// Each version gets its own cache: v1 and v2 share the full name
		// io.agentrail.Event, and a shared cache would hand back the first.
		s, err := avro.ParseBytesWithCache(raw, "", &avro.SchemaCache{})
		if err != nil {
			loadErr = fmt.Errorf("schemas: parse %s: %w", name, err)
			return
		}
		fp, err := SpecFingerprint(s)
		if err != nil {
			loadErr = fmt.Errorf("schemas: fingerprint %s: %w", name, err)
			return
		}
		legacy, err := s.FingerprintUsing(avro.CRC64AvroLE)
		if err != nil {
			loadErr = fmt.Errorf("schemas: legacy fingerprint %s: %w", name, err)
			return
		}
		v := Version{N: i + 1, Schema: s, Fingerprint: fp}
		copy(v.LegacyFingerprint[:], legacy)
		versions = append(versions, v)
	}
}

// Versions returns every published revision of the Event schema, oldest first.
func Versions() []Version {
	loadOnce.Do(load)
	if loadErr != nil {
		// The schemas are embedded and covered by tests: failing here is a
		// build defect, not a runtime condition.
		panic(loadErr)
	}
	return versions
}

// Latest returns the revision producers write and consumers read into.
func Latest() Version {
	vs := Versions()
	return vs[len(vs)-1]
}

// SchemaText returns the JSON text of schema revision n, as published.
func SchemaText(n int) (string, error) {
	if n < 1 || n > len(versionFiles) {
		return "", fmt.Errorf("schemas: no schema version %d (have 1..%d)", n, len(versionFiles))
	}
	raw, err := avscFS.ReadFile(versionFiles[n-1])
	return string(raw), err
}
