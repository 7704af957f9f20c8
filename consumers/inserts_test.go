package consumers

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
)

// sendClickhouseGo is how ingest sent an Insert before inserts.go: one
// clickhouse-go batch, a whole Go slice appended per column. The
// reference the ch-go path is compared with.
func sendClickhouseGo(ctx context.Context, conn driver.Conn, ins Insert) error {
	q := "INSERT INTO " + ins.Table + " (" + strings.Join(ins.Columns, ", ") + ")"
	batch, err := conn.PrepareBatch(clickhouse.Context(ctx, clickhouse.WithSettings(insertSettings)), q)
	if err != nil {
		return err
	}
	for i, col := range ins.Values {
		if err := batch.Column(i).Append(col); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return batch.Send()
}

// tableColumn is a column of a table, as system.columns describes it.
type tableColumn struct{ name, typ string }

// writtenColumns returns the columns of db.table that have no default
// expression: those ingest writes.
func writtenColumns(t *testing.T, conn driver.Conn, db, table string) []tableColumn {
	t.Helper()
	rows, err := conn.Query(context.Background(),
		"SELECT name, type FROM system.columns WHERE database = ? AND table = ? AND default_kind = '' ORDER BY position", db, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []tableColumn
	for rows.Next() {
		var c tableColumn
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cols) == 0 {
		t.Fatalf("%s.%s: no columns", db, table)
	}
	return cols
}

// randomString is a string of one of several shapes: empty, ASCII,
// multi-byte, with the characters text formats escape, or long.
func randomString(r *rand.Rand, fixed int) string {
	if fixed > 0 { // FixedString(n): a hex digest, or empty
		if r.IntN(5) == 0 {
			return ""
		}
		const hex = "0123456789abcdef"
		b := make([]byte, fixed)
		for i := range b {
			b[i] = hex[r.IntN(16)]
		}
		return string(b)
	}
	switch r.IntN(6) {
	case 0:
		return ""
	case 1:
		return "é€😀-" + fmt.Sprint(r.Uint64())
	case 2:
		return "tab\there\nnew\\line'\"\x00nul"
	case 3:
		return strings.Repeat("x", 300+r.IntN(2000))
	default:
		return fmt.Sprintf("s-%x", r.Uint64())
	}
}

// randomTime is a time of one of several shapes: zero, the epoch, with
// nanoseconds, before 1970, in the bounds where clickhouse-go's UnixNano is
// exact (1678..2262).
func randomTime(r *rand.Rand) time.Time {
	switch r.IntN(6) {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(0, 0).UTC()
	case 2:
		return time.Unix(-r.Int64N(2_000_000_000), r.Int64N(1e9)) // 1906..1970, sub-µs
	case 3:
		return time.Date(2261, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
	case 4:
		return time.Now().Add(time.Duration(r.Int64N(1e15))).In(time.FixedZone("X", 5*3600+1800))
	default:
		return time.Unix(r.Int64N(4_000_000_000), r.Int64N(1e9)).UTC() // 1970..2096, sub-µs
	}
}

// randomValues returns a column of n values of the Go type the processors
// use for a ClickHouse type.
func randomValues(t *testing.T, r *rand.Rand, typ string, n int) any {
	t.Helper()
	null := func() bool { return r.IntN(3) == 0 }
	switch {
	case typ == "String" || typ == "LowCardinality(String)":
		v := make([]string, n)
		for i := range v {
			v[i] = randomString(r, 0)
			if typ != "String" {
				v[i] = v[i][:min(len(v[i]), 12)] // few distinct values, as in the tables
			}
		}
		return v
	case strings.HasPrefix(typ, "FixedString("):
		var size int
		fmt.Sscanf(typ, "FixedString(%d)", &size)
		v := make([]string, n)
		for i := range v {
			v[i] = randomString(r, size)
		}
		return v
	case typ == "UInt8":
		v := make([]uint8, n)
		for i := range v {
			v[i] = uint8(r.Uint32())
		}
		return v
	case typ == "Int32":
		v := make([]int32, n)
		for i := range v {
			v[i] = int32(r.Uint32())
		}
		return v
	case typ == "Int64":
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(r.Uint64())
		}
		return v
	case typ == "UInt32":
		v := make([]uint32, n)
		for i := range v {
			v[i] = r.Uint32()
		}
		return v
	case typ == "UInt64":
		v := make([]uint64, n)
		for i := range v {
			v[i] = r.Uint64()
		}
		return v
	case typ == "Float64":
		v := make([]float64, n)
		for i := range v {
			v[i] = []float64{0, math.Copysign(0, -1), 1.5, -3.25e300, math.Inf(1), math.NaN(), r.NormFloat64()}[r.IntN(7)]
		}
		return v
	case strings.HasPrefix(typ, "DateTime64("):
		v := make([]time.Time, n)
		for i := range v {
			v[i] = randomTime(r)
		}
		return v
	case strings.HasPrefix(typ, "Nullable(DateTime64("):
		v := make([]*time.Time, n)
		for i := range v {
			if !null() {
				tm := randomTime(r)
				v[i] = &tm
			}
		}
		return v
	case typ == "Nullable(Int64)":
		v := make([]*int64, n)
		for i := range v {
			if !null() {
				x := int64(r.Uint64()) >> r.IntN(64)
				v[i] = &x
			}
		}
		return v
	case typ == "Nullable(Float64)":
		v := make([]*float64, n)
		for i := range v {
			if !null() {
				x := r.NormFloat64()
				v[i] = &x
			}
		}
		return v
	case typ == "Nullable(String)":
		v := make([]*string, n)
		for i := range v {
			if !null() {
				s := randomString(r, 0)
				v[i] = &s
			}
		}
		return v
	case typ == "Array(String)" || typ == "Array(LowCardinality(String))":
		v := make([][]string, n)
		for i := range v {
			switch r.IntN(4) {
			case 0: // nil: an empty array
			case 1:
				v[i] = []string{}
			default:
				for range 1 + r.IntN(5) {
					v[i] = append(v[i], randomString(r, 0))
				}
			}
		}
		return v
	}
	t.Fatalf("no Go type for ClickHouse type %s: the processors write none (add one to inserts.go and here)", typ)
	return nil
}

// TestInsertColumnsMatchClickhouseGo inserts the same Inserts through
// clickhouse-go (as ingest did) and through inserts.go's ch-go columns into
// two copies of each table ingest writes, and compares every row, as
// ClickHouse prints it, column by column. The values come from the Go
// types the processors use for each column's ClickHouse type, with NULLs,
// nil and empty arrays, zero and pre-1970 times with nanoseconds, and
// strings text formats escape; the columns in a shuffled order. Two
// batches go through the same insertColumns, the second smaller, so
// values left over from a reused column would show.
func TestInsertColumnsMatchClickhouseGo(t *testing.T) {
	cfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	db := cfg.Database
	// Types the processors' tables do not have, but inserts.go takes.
	if err := conn.Exec(ctx, `CREATE TABLE `+db+`.extra_types (
		t3 DateTime64(3, 'UTC'), nt3 Nullable(DateTime64(3, 'UTC')), t0 DateTime64(0, 'UTC'),
		nf Nullable(Float64), ns Nullable(String), lc LowCardinality(String), arr Array(String)
	) ENGINE = MergeTree ORDER BY tuple()`); err != nil {
		t.Fatal(err)
	}
	opts, err := chstore.NativeOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var native nativeConn
	if err := native.open(ctx, opts); err != nil {
		t.Fatal(err)
	}
	defer native.close()
	var ic insertColumns

	for _, table := range []string{"traces", "violations", "alerts", "quarantine", "dead_letters", "extra_types"} {
		t.Run(table, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(len(table)), 7))
			cols := writtenColumns(t, conn, db, table)
			// Plain MergeTree copies: nothing collapses or is refused for
			// spanning many partitions; the columns' types are the table's.
			oldT, newT := db+"."+table+"_old", db+"."+table+"_new"
			for _, name := range []string{oldT, newT} {
				if err := conn.Exec(ctx, "CREATE TABLE "+name+" AS "+db+"."+table+" ENGINE = MergeTree PARTITION BY tuple() ORDER BY tuple()"); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range []int{400, 9} {
				r.Shuffle(len(cols), func(i, j int) { cols[i], cols[j] = cols[j], cols[i] })
				ins := Insert{}
				for _, c := range cols {
					ins.Columns = append(ins.Columns, c.name)
					ins.Values = append(ins.Values, randomValues(t, r, c.typ, n))
				}
				ins.Table = oldT
				if err := sendClickhouseGo(ctx, conn, ins); err != nil {
					t.Fatalf("clickhouse-go: %v", err)
				}
				ins.Table = newT
				q, rows, err := ic.query(ins)
				if err != nil {
					t.Fatal(err)
				}
				if rows != n {
					t.Fatalf("query has %d rows, want %d", rows, n)
				}
				if err := native.do(ctx, q); err != nil {
					t.Fatalf("ch-go: %v", err)
				}
			}
			names := make([]string, len(cols))
			for i, c := range cols {
				names[i] = c.name
			}
			want, got := tableText(t, conn, oldT, names), tableText(t, conn, newT, names)
			if len(want) != 409 {
				t.Fatalf("clickhouse-go's copy has %d rows, want 409", len(want))
			}
			diffs := 0
			for i := range want {
				if i < len(got) && got[i] == want[i] {
					continue
				}
				if diffs++; diffs <= 5 {
					t.Errorf("row %d (sorted): %s", i, rowDiff(names, want[i], at(got, i)))
				}
			}
			if len(got) != len(want) || diffs > 0 {
				t.Fatalf("%d of %d rows differ; ch-go's copy has %d rows", diffs, len(want), len(got))
			}
		})
	}
}

// rowDiff names the columns where two TSV rows differ.
func rowDiff(names []string, want, got string) string {
	w, g := strings.Split(strings.TrimSuffix(want, "\n"), "\t"), strings.Split(strings.TrimSuffix(got, "\n"), "\t")
	var out []string
	for i, name := range names {
		if i >= len(w) || i >= len(g) {
			return fmt.Sprintf("%d and %d fields", len(w), len(g))
		}
		if w[i] != g[i] {
			out = append(out, fmt.Sprintf("%s: clickhouse-go %.80q, ch-go %.80q", name, w[i], g[i]))
		}
	}
	return strings.Join(out, "; ")
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}

// tableText is every row of table as ClickHouse prints it (TSV: NULL is
// \N, times at the column's precision), the columns in the given order,
// sorted.
func tableText(t *testing.T, conn driver.Conn, table string, columns []string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(),
		"SELECT formatRow('TSV', "+strings.Join(columns, ", ")+") AS r FROM "+table+" ORDER BY r")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInsertColumnsErrors: what inserts.go cannot send is an error that
// names the table and the column, before anything is sent.
func TestInsertColumnsErrors(t *testing.T) {
	type kind string
	for _, tc := range []struct {
		name string
		ins  Insert
		want string
	}{
		{"unsupported type", Insert{Table: "db.t", Columns: []string{"a", "kind"}, Values: []any{[]string{"x"}, []kind{"k"}}},
			"insert into db.t: column kind: unsupported Go type []consumers.kind"},
		{"not a slice", Insert{Table: "db.t", Columns: []string{"a"}, Values: []any{"x"}},
			"insert into db.t: column a: unsupported Go type string"},
		{"nil", Insert{Table: "db.t", Columns: []string{"a"}, Values: []any{nil}},
			"insert into db.t: column a: unsupported Go type <nil>"},
		{"lengths differ", Insert{Table: "db.t", Columns: []string{"a", "b"}, Values: []any{[]string{"x", "y"}, []int64{1}}},
			"insert into db.t: column b has 1 rows, column a 2"},
		{"columns and values", Insert{Table: "db.t", Columns: []string{"a", "b"}, Values: []any{[]string{"x"}}},
			"insert into db.t: 2 columns named, 1 given"},
		{"no columns", Insert{Table: "db.t"}, "insert into db.t: no columns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ic insertColumns
			_, _, err := ic.query(tc.ins)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestInsertColumnsReuse: the same table's columns are reused and reset
// for its next insert, and a column whose Go type changed gets a new
// column.
func TestInsertColumnsReuse(t *testing.T) {
	var ic insertColumns
	ins := Insert{Table: "db.t", Columns: []string{"a", "b"}, Values: []any{[]string{"x", "y", "z"}, []int64{1, 2, 3}}}
	q1, n, err := ic.query(ins)
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	first := q1.Input[0].Data
	ins.Values = []any{[]string{"w"}, []*int64{nil}}
	q2, n, err := ic.query(ins)
	if err != nil || n != 1 {
		t.Fatal(n, err)
	}
	if q2.Input[0].Data != first {
		t.Error("column a was not reused")
	}
	if got := q2.Input[1].Data.Type(); got != "Nullable(Int64)" {
		t.Errorf("column b is %s, want Nullable(Int64)", got)
	}
	if q2.Body != "INSERT INTO db.t (a, b) VALUES" {
		t.Errorf("body %q", q2.Body)
	}
}

// TestGoMicros: clickhouse-go's rounding (toward zero) within UnixNano's
// years, exact microseconds outside them, 0 for the zero time.
func TestGoMicros(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Time{}, 0},
		{time.Unix(0, 0), 0},
		{time.Unix(1, 1999), 1_000_001},
		{time.Unix(-1, 999_999_500), 0}, // -0.5 µs: micros says -1
		{time.Unix(-2, 1), -1_999_999},
		{time.Date(2290, 1, 2, 3, 4, 5, 6_007_000, time.UTC), time.Date(2290, 1, 2, 3, 4, 5, 6_007_000, time.UTC).UnixMicro()},
		{time.Date(1600, 1, 2, 3, 4, 5, 6_007_000, time.UTC), time.Date(1600, 1, 2, 3, 4, 5, 6_007_000, time.UTC).UnixMicro()},
	} {
		if got := int64(goMicros(tc.t)); got != tc.want {
			t.Errorf("goMicros(%s) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

// BenchmarkStageInsert sends a traces insert of 10,000 rows shaped like the
// correlator's (short strings, a third of the times NULL, one-element
// arrays) to a Null-engine copy of the traces table, through clickhouse-go
// as ingest did ("clickhouse-go") and through inserts.go ("ch-go"), and
// reports this process's CPU per row (the server's work is not counted).
func BenchmarkStageInsert(b *testing.B) {
	cfg, conn := testenv.ClickHouse(b)
	ctx := context.Background()
	table := cfg.Database + ".traces_null"
	if err := conn.Exec(ctx, "CREATE TABLE "+table+" AS "+cfg.Database+".traces ENGINE = Null"); err != nil {
		b.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'traces' ORDER BY position", cfg.Database)
	if err != nil {
		b.Fatal(err)
	}
	var cols []tableColumn
	for rows.Next() {
		var c tableColumn
		if err := rows.Scan(&c.name, &c.typ); err != nil {
			b.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	const n = 10_000
	ins := Insert{Table: table}
	base := time.Date(2026, 11, 20, 10, 0, 0, 123_456_000, time.UTC)
	for _, c := range cols {
		ins.Columns = append(ins.Columns, c.name)
		var v any
		switch {
		case c.typ == "String" || c.typ == "LowCardinality(String)":
			s := make([]string, n)
			for i := range s {
				s[i] = fmt.Sprintf("%s-%d", c.name, i%37)
			}
			v = s
		case c.typ == "UInt8":
			v = make([]uint8, n)
		case c.typ == "Int32":
			v = make([]int32, n)
		case c.typ == "Int64":
			v = make([]int64, n)
		case c.typ == "UInt32":
			v = make([]uint32, n)
		case c.typ == "UInt64":
			v = make([]uint64, n)
		case strings.HasPrefix(c.typ, "DateTime64("):
			s := make([]time.Time, n)
			for i := range s {
				s[i] = base.Add(time.Duration(i) * time.Second)
			}
			v = s
		case strings.HasPrefix(c.typ, "Nullable(DateTime64("):
			s := make([]*time.Time, n)
			for i := range s {
				if i%3 != 0 {
					tm := base.Add(time.Duration(i) * time.Millisecond)
					s[i] = &tm
				}
			}
			v = s
		case c.typ == "Nullable(Int64)":
			s := make([]*int64, n)
			for i := range s {
				if i%3 != 0 {
					x := int64(i)
					s[i] = &x
				}
			}
			v = s
		case strings.HasPrefix(c.typ, "Array("):
			s := make([][]string, n)
			for i := range s {
				s[i] = []string{"missing_approval"}
			}
			v = s
		default:
			b.Fatalf("column %s: type %s", c.name, c.typ)
		}
		ins.Values = append(ins.Values, v)
	}
	opts, err := chstore.NativeOptions(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var native nativeConn
	if err := native.open(ctx, opts); err != nil {
		b.Fatal(err)
	}
	defer native.close()
	var ic insertColumns

	run := func(b *testing.B, send func() error) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			if err := send(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N*n), "go-cpu-ns/row")
	}
	b.Run("clickhouse-go", func(b *testing.B) {
		run(b, func() error { return sendClickhouseGo(ctx, conn, ins) })
	})
	b.Run("ch-go", func(b *testing.B) {
		run(b, func() error {
			q, _, err := ic.query(ins)
			if err != nil {
				return err
			}
			return native.do(ctx, q)
		})
	})
}

// cpuTime is this process's CPU time, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
