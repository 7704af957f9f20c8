package schemas

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/pkg/crc64"
)

// CanonicalForm returns s in the Avro specification's Parsing Canonical Form
// ("Parsing Canonical Form for Schemas" in the specification): primitives in
// their simple form [PRIMITIVES], full names [FULLNAMES], only the attributes
// that matter to parsing (type, name, fields, symbols, items, values, size) in
// that order [STRIP] [ORDER], integers unquoted [INTEGERS], no white space
// [WHITESPACE], and each named type written in full once, by name after.
//
// It exists because hamba/avro's own canonical form keeps logicalType, which
// [STRIP] removes, so hamba's fingerprint is not the one Avro's other
// implementations compute (TestFingerprintsMatchJava).
func CanonicalForm(s avro.Schema) (string, error) {
	var b strings.Builder
	if err := writeCanonical(&b, s, map[string]bool{}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// SpecFingerprint returns the CRC-64-AVRO fingerprint of s's Parsing
// Canonical Form as the single-object encoding carries it: 8 bytes,
// little-endian (Java's SchemaNormalization.parsingFingerprint64).
func SpecFingerprint(s avro.Schema) ([8]byte, error) {
	pcf, err := CanonicalForm(s)
	if err != nil {
		return [8]byte{}, err
	}
	return crc64.SumWithByteOrder([]byte(pcf), crc64.LittleEndian), nil
}

func writeCanonical(b *strings.Builder, s avro.Schema, seen map[string]bool) error {
	switch t := s.(type) {
	case *avro.PrimitiveSchema:
		// [PRIMITIVES], and [STRIP] drops logicalType with every other
		// attribute.
		writeString(b, string(t.Type()))
	case *avro.NullSchema:
		b.WriteString(`"null"`)
	case *avro.RefSchema:
		writeString(b, t.Schema().FullName())
	case *avro.RecordSchema:
		if named(b, t.FullName(), seen) {
			return nil
		}
		b.WriteString(`{"name":`)
		writeString(b, t.FullName())
		b.WriteString(`,"type":"record","fields":[`)
		for i, f := range t.Fields() {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"name":`)
			writeString(b, f.Name())
			b.WriteString(`,"type":`)
			if err := writeCanonical(b, f.Type(), seen); err != nil {
				return err
			}
			b.WriteByte('}')
		}
		b.WriteString(`]}`)
	case *avro.EnumSchema:
		if named(b, t.FullName(), seen) {
			return nil
		}
		b.WriteString(`{"name":`)
		writeString(b, t.FullName())
		b.WriteString(`,"type":"enum","symbols":[`)
		for i, sym := range t.Symbols() {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, sym)
		}
		b.WriteString(`]}`)
	case *avro.FixedSchema:
		if named(b, t.FullName(), seen) {
			return nil
		}
		b.WriteString(`{"name":`)
		writeString(b, t.FullName())
		b.WriteString(`,"type":"fixed","size":`)
		b.WriteString(strconv.Itoa(t.Size())) // [INTEGERS]
		b.WriteByte('}')
	case *avro.ArraySchema:
		b.WriteString(`{"type":"array","items":`)
		if err := writeCanonical(b, t.Items(), seen); err != nil {
			return err
		}
		b.WriteByte('}')
	case *avro.MapSchema:
		b.WriteString(`{"type":"map","values":`)
		if err := writeCanonical(b, t.Values(), seen); err != nil {
			return err
		}
		b.WriteByte('}')
	case *avro.UnionSchema:
		b.WriteByte('[')
		for i, u := range t.Types() {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, u, seen); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		return fmt.Errorf("schemas: canonical form: unsupported schema type %T", s)
	}
	return nil
}

// named writes a named type already written in full as its name, and
// reports whether it did.
func named(b *strings.Builder, fullName string, seen map[string]bool) bool {
	if seen[fullName] {
		writeString(b, fullName)
		return true
	}
	seen[fullName] = true
	return false
}

// writeString writes s as a JSON string literal with UTF-8 left as it is
// [STRINGS]. Avro names and symbols are [A-Za-z_][A-Za-z0-9_.]*, so only a
// quote, a backslash or a control character would need escaping at all.
func writeString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
