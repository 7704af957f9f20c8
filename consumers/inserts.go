package consumers

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"
)

// insertColumns turns Inserts (the processors', the quarantine's and the
// dead letters') into ch-go queries for the events insert's connection:
// each Go slice is copied into a ch-go column of its type, as clickhouse-go
// appended it, and sent with insertSettings. A table's columns are kept
// and reset for its next insert, so after a few batches converting
// allocates next to nothing. Used by one insert at a time.
//
// Column types, by the slice's Go type (the server converts each to the
// table's column, as it did clickhouse-go's):
//
//	[]string                   String (LowCardinality(String) and FixedString take it)
//	[]uint8, []int32, []int64, []uint32, []uint64, []float64   the same
//	[]time.Time                DateTime64(6, 'UTC'); the zero time is 0 (goMicros)
//	[]*time.Time               Nullable(DateTime64(6, 'UTC')); nil is NULL
//	[]*int64, []*float64, []*string   Nullable of the same; nil is NULL
//	[][]string                 Array(String); nil is an empty array
//
// Any other type is an error naming the table and column.
type insertColumns struct {
	tables map[string]*tableColumns // by Insert.Table
}

// tableColumns are one table's reusable columns, for one column list.
type tableColumns struct {
	names []string
	cols  []insertColumn
	input proto.Input
	body  string
}

// insertColumn is a ch-go column that takes a whole Go slice of one type.
type insertColumn interface {
	proto.ColInput
	Reset()
	// appendSlice appends v and reports true if v is this column's type;
	// otherwise it appends nothing and reports false.
	appendSlice(v any) bool
}

// query returns the insert of ins and its number of rows. The query reads
// the columns, so it is valid until the next call for the same table.
func (ic *insertColumns) query(ins Insert) (ch.Query, int, error) {
	if len(ins.Columns) != len(ins.Values) {
		return ch.Query{}, 0, fmt.Errorf("consumers: insert into %s: %d columns named, %d given", ins.Table, len(ins.Columns), len(ins.Values))
	}
	if len(ins.Columns) == 0 {
		return ch.Query{}, 0, fmt.Errorf("consumers: insert into %s: no columns", ins.Table)
	}
	if ic.tables == nil {
		ic.tables = map[string]*tableColumns{}
	}
	tc := ic.tables[ins.Table]
	if tc == nil || !slices.Equal(tc.names, ins.Columns) {
		tc = &tableColumns{
			names: append([]string(nil), ins.Columns...),
			cols:  make([]insertColumn, len(ins.Columns)),
			input: make(proto.Input, len(ins.Columns)),
			body:  "INSERT INTO " + ins.Table + " (" + strings.Join(ins.Columns, ", ") + ") VALUES",
		}
		ic.tables[ins.Table] = tc
	}
	for i, v := range ins.Values {
		col := tc.cols[i]
		if col != nil {
			col.Reset()
			if col.appendSlice(v) {
				continue
			}
		}
		// First use, or the slice's type changed: a new column.
		if col = newInsertColumn(v); col == nil {
			tc.cols[i] = nil
			return ch.Query{}, 0, fmt.Errorf("consumers: insert into %s: column %s: unsupported Go type %T", ins.Table, ins.Columns[i], v)
		}
		col.appendSlice(v)
		tc.cols[i] = col
		tc.input[i] = proto.InputColumn{Name: ins.Columns[i], Data: col}
	}
	rows := tc.cols[0].Rows()
	for i, col := range tc.cols {
		if n := col.Rows(); n != rows {
			return ch.Query{}, 0, fmt.Errorf("consumers: insert into %s: column %s has %d rows, column %s %d", ins.Table, ins.Columns[i], n, ins.Columns[0], rows)
		}
	}
	return ch.Query{Body: tc.body, Input: tc.input, Settings: nativeInsertSettings}, rows, nil
}

// newInsertColumn returns an empty column for v's Go type, nil if there is
// none.
func newInsertColumn(v any) insertColumn {
	switch v.(type) {
	case []string:
		return new(stringColumn)
	case []uint8:
		return sliceColumn[uint8]{new(proto.ColUInt8)}
	case []int32:
		return sliceColumn[int32]{new(proto.ColInt32)}
	case []int64:
		return sliceColumn[int64]{new(proto.ColInt64)}
	case []uint32:
		return sliceColumn[uint32]{new(proto.ColUInt32)}
	case []uint64:
		return sliceColumn[uint64]{new(proto.ColUInt64)}
	case []float64:
		return sliceColumn[float64]{new(proto.ColFloat64)}
	case []*int64:
		return nullableColumn[int64]{proto.NewColNullable[int64](new(proto.ColInt64))}
	case []*float64:
		return nullableColumn[float64]{proto.NewColNullable[float64](new(proto.ColFloat64))}
	case []*string:
		return nullableColumn[string]{proto.NewColNullable[string](new(proto.ColStr))}
	case []time.Time:
		c := &timeColumn{}
		c.WithPrecision(proto.PrecisionMicro).WithLocation(time.UTC)
		return c
	case []*time.Time:
		raw := &proto.ColDateTime64Raw{}
		raw.WithPrecision(proto.PrecisionMicro).WithLocation(time.UTC)
		return nullableTimeColumn{proto.NewColNullable[proto.DateTime64](raw)}
	case [][]string:
		return stringsColumn{proto.NewArray[string](new(proto.ColStr))}
	}
	return nil
}

// sliceColumn takes a []T as is.
type sliceColumn[T any] struct{ proto.ColumnOf[T] }

func (c sliceColumn[T]) appendSlice(v any) bool {
	s, ok := v.([]T)
	if ok {
		c.AppendArr(s)
	}
	return ok
}

// stringColumn takes a []string, kept in wire format (wireStr).
type stringColumn struct{ wireStr }

func (c *stringColumn) appendSlice(v any) bool {
	s, ok := v.([]string)
	if ok {
		for _, x := range s {
			c.Append(x)
		}
	}
	return ok
}

// nullableColumn takes a []*T, nil being NULL.
type nullableColumn[T any] struct{ *proto.ColNullable[T] }

func (c nullableColumn[T]) appendSlice(v any) bool {
	s, ok := v.([]*T)
	if !ok {
		return false
	}
	for _, p := range s {
		if p == nil {
			c.Append(proto.Null[T]())
		} else {
			c.Append(proto.NewNullable(*p))
		}
	}
	return true
}

// timeColumn takes a []time.Time as DateTime64(6, 'UTC') (see dateTime64 in
// columns.go for why it keeps its declared precision).
type timeColumn struct{ dateTime64 }

func (c *timeColumn) appendSlice(v any) bool {
	s, ok := v.([]time.Time)
	if !ok {
		return false
	}
	for _, t := range s {
		c.AppendRaw(goMicros(t))
	}
	return true
}

// nullableTimeColumn takes a []*time.Time as Nullable(DateTime64(6, 'UTC')).
// ColNullable does not infer its type from the table's, so it keeps its
// declared precision too.
type nullableTimeColumn struct {
	*proto.ColNullable[proto.DateTime64]
}

func (c nullableTimeColumn) appendSlice(v any) bool {
	s, ok := v.([]*time.Time)
	if !ok {
		return false
	}
	for _, t := range s {
		if t == nil {
			c.Append(proto.Null[proto.DateTime64]())
		} else {
			c.Append(proto.NewNullable(goMicros(*t)))
		}
	}
	return true
}

// goMicros is t in microseconds as clickhouse-go sent it for a
// DateTime64(6): its nanoseconds divided by 1,000, so rounded toward zero
// (micros, like time.UnixMicro, rounds down: a time before 1970 with a
// fraction of a microsecond is one less). Outside the years 1678..2262,
// where UnixNano overflows and clickhouse-go sent a wrong time, micros.
func goMicros(t time.Time) proto.DateTime64 {
	if s := t.Unix(); t.IsZero() || s <= minNanoSec || s >= maxNanoSec {
		return micros(t)
	}
	return proto.DateTime64(t.UnixNano() / 1e3)
}

// The seconds within which UnixNano is exact, less a second on each side.
const (
	minNanoSec = math.MinInt64 / 1_000_000_000
	maxNanoSec = math.MaxInt64 / 1_000_000_000
)

// stringsColumn takes a [][]string as Array(String).
type stringsColumn struct{ *proto.ColArr[string] }

func (c stringsColumn) appendSlice(v any) bool {
	s, ok := v.([][]string)
	if !ok {
		return false
	}
	for _, row := range s {
		c.Append(row) // nil: an empty array
	}
	return true
}
