package consumers

import (
	"encoding/binary"

	"github.com/ClickHouse/ch-go/proto"
)

// wireStr is a String column for inserts that is kept in the native
// protocol's wire format as it is built: each value's length as a uvarint,
// then its bytes. Sending it is one chained write of that buffer, where
// proto.ColStr keeps values and their positions apart and writes every
// length and value anew at send time, which showed in ingest's profile for
// the events table's 40 string columns (docs/PERFORMANCE-HISTORY.md,
// "Ingest, fifth session: one pass to decode and validate, strings sent as
// built").
//
// It is insert-only: it cannot decode a result, nor be the inner column
// of an array or map (those take a proto.ColumnOf[string]).
type wireStr struct {
	buf  []byte
	rows int
}

var _ proto.ColInput = (*wireStr)(nil)

// Append adds one value.
func (c *wireStr) Append(s string) {
	c.buf = binary.AppendUvarint(c.buf, uint64(len(s)))
	c.buf = append(c.buf, s...)
	c.rows++
}

func (c *wireStr) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c *wireStr) Rows() int              { return c.rows }

// Reset empties the column and keeps its buffer.
func (c *wireStr) Reset() {
	c.buf = c.buf[:0]
	c.rows = 0
}

// EncodeColumn appends the column's wire bytes to b (compressed inserts).
func (c *wireStr) EncodeColumn(b *proto.Buffer) { b.Buf = append(b.Buf, c.buf...) }

// WriteColumn hands the column's buffer to w, which writes it as it is at
// its next flush; the column must not change until the insert is done.
func (c *wireStr) WriteColumn(w *proto.Writer) { w.ChainWrite(c.buf) }
