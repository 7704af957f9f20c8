package consumers

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// TestWireStrEncodesAsColStr: a wireStr sends the bytes a proto.ColStr of
// the same values sends, on both of ch-go's paths (a chained write when
// blocks go uncompressed, EncodeColumn when they are compressed), across
// lengths whose uvarint takes one, two and three bytes, and after a reset.
func TestWireStrEncodesAsColStr(t *testing.T) {
	values := []string{"", "a", "billing-bot", strings.Repeat("x", 127), strings.Repeat("y", 128),
		strings.Repeat("é", 9000), "", "zoë"}
	var w wireStr
	w.Append("stale")
	w.Reset()
	var want proto.ColStr
	for _, v := range values {
		w.Append(v)
		want.Append(v)
	}
	if w.Rows() != want.Rows() || w.Type() != want.Type() {
		t.Fatalf("rows %d type %s, want %d %s", w.Rows(), w.Type(), want.Rows(), want.Type())
	}
	var wb, gb proto.Buffer
	want.EncodeColumn(&wb)
	w.EncodeColumn(&gb)
	if !bytes.Equal(gb.Buf, wb.Buf) {
		t.Fatalf("EncodeColumn wrote %d bytes, ColStr %d, or other bytes", len(gb.Buf), len(wb.Buf))
	}
	var out bytes.Buffer
	pw := proto.NewWriter(&out, new(proto.Buffer))
	w.WriteColumn(pw)
	if _, err := pw.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), wb.Buf) {
		t.Fatalf("WriteColumn wrote %d bytes, ColStr's encoding is %d, or other bytes", out.Len(), len(wb.Buf))
	}
	// And ColStr reads them back as the values.
	var back proto.ColStr
	if err := back.DecodeColumn(proto.NewReader(bytes.NewReader(out.Bytes())), len(values)); err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		if back.Row(i) != v {
			t.Fatalf("row %d read back as %q, want %q", i, back.Row(i), v)
		}
	}
}
