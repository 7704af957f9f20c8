package correlate

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// The 10-million-event table: 2.5 million traces of four events (intent,
// decision, approval, result) two seconds apart from 2026-08-01, across six
// teams, 42 agents, three tiers (so 31 partitions) and 12 Kafka partitions.
// Traces with an even index also have their traces row, as the correlator
// writes it; odd ones do not, so both lookup paths are measured.
const (
	benchEvents = 10_000_000
	benchTraces = benchEvents / 4
	benchDB     = "agentrail_bench_10m"
)

const benchEventsSQL = `INSERT INTO {db}.events (event_id, trace_id, span_id, event_type, event_time, tier, agent_id,
  agent_version, team, environment, tenant, requested_by, producer_name, producer_host, tool, action, target, action_class,
  action_digest, rationale, outcome, policy_id, policy_version, matched_rule, approval_id, approval_status, approver,
  approver_kind, scope, expires_at, result_status, executor, changed_resource, duration_us, kafka_partition, kafka_offset)
SELECT
  concat(tid, '-', toString(k)), tid, substring(tid, 1, 16), ['intent','policy_decision','approval','result'][k + 1],
  addMilliseconds(toDateTime64('2026-08-01 00:00:00', 6, 'UTC'), tr * 2000 + k * 45000), tier, agent, '1.2.3', team,
  'prod', 'acme', concat('user', toString(tr % 97), '@acme.example'), 'agentrail-go', concat(team, '-worker-', toString(tr % 4)),
  if(k = 0, 'payments', ''), if(k = 0, 'refund', ''), if(k = 0, concat('order:', toString(tr)), ''), if(k = 0, 'refund', ''),
  if(k IN (0, 2, 3), lower(hex(SHA256(toString(tr)))), ''), if(k = 0, 'customer charged twice', ''),
  if(k = 1, 'require_approval', ''), if(k = 1, 'refunds', ''), if(k = 1, 12, 0), if(k = 1, 'high_value_refund', ''),
  if(k = 2, concat('apr-', toString(tr)), ''), if(k = 2, 'granted', ''), if(k = 2, 'dana@acme.example', ''),
  if(k = 2, 'human', ''), if(k = 2, 'single', ''),
  if(k = 2, addMilliseconds(toDateTime64('2026-08-01 01:00:00', 6, 'UTC'), tr * 2000), NULL),
  if(k = 3, 'success', ''), if(k = 3, agent, ''), if(k = 3, concat('order:', toString(tr)), ''), if(k = 3, 120000, 0),
  toInt32(tr % 12), toInt64(intDiv(tr, 12) * 4 + k)
FROM (
  SELECT number, intDiv(number, 4) AS tr, number % 4 AS k, lower(hex(MD5(concat('t', toString(intDiv(number, 4)))))) AS tid,
    toUInt8(1 + cityHash64(intDiv(number, 4)) % 3) AS tier,
    ['finance','support','devops','sales','legal','hr'][1 + intDiv(number, 4) % 6] AS team,
    concat(team, '-bot-', toString(cityHash64(intDiv(number, 4), 1) % 7)) AS agent
  FROM numbers({n})
)`

const benchTracesSQL = `INSERT INTO {db}.traces (trace_id, kafka_partition, team, agent_id, tool, action, target, tier,
  first_event_time, last_event_time, events, intents, decisions, approvals, results, actions, abandon_at, updated_at, version)
SELECT lower(hex(MD5(concat('t', toString(tr))))), toInt32(tr % 12), team, concat(team, '-bot-', toString(cityHash64(tr, 1) % 7)),
  'payments', 'refund', concat('order:', toString(tr)), toUInt8(1 + cityHash64(tr) % 3),
  addMilliseconds(toDateTime64('2026-08-01 00:00:00', 6, 'UTC'), tr * 2000),
  addMilliseconds(toDateTime64('2026-08-01 00:00:00', 6, 'UTC'), tr * 2000 + 135000),
  4, 1, 1, 1, 1, 1, addMilliseconds(toDateTime64('2026-08-02 00:00:00', 6, 'UTC'), tr * 2000), now64(6), 4
FROM (
  SELECT number * 2 AS tr, ['finance','support','devops','sales','legal','hr'][1 + (number * 2) % 6] AS team FROM numbers({n})
)`

var (
	benchOnce sync.Once
	benchConn driver.Conn
	benchErr  error
)

// benchTable returns a connection to the populated table. It is built once
// per server: a benchmark function runs several times (b.N ramp-up,
// -count), and populating takes a minute or more on two cores.
func benchTable(b *testing.B) driver.Conn {
	b.Helper()
	cfg, _ := testenv.ClickHouse(b) // starts the server; its own database is dropped at the end
	benchOnce.Do(func() {
		ctx := context.Background()
		cfg.Database = benchDB
		conn, err := chstore.Open(ctx, cfg)
		if err != nil {
			benchErr = err
			return
		}
		benchConn = conn
		if _, err := chstore.Migrate(ctx, conn, benchDB); err != nil {
			benchErr = err
			return
		}
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+benchDB+".events").Scan(&n); err != nil || n == benchEvents {
			benchErr = err
			return
		}
		start := time.Now()
		for _, q := range []string{"TRUNCATE TABLE " + benchDB + ".events", "TRUNCATE TABLE " + benchDB + ".traces",
			strings.NewReplacer("{db}", benchDB, "{n}", strconv.Itoa(benchEvents)).Replace(benchEventsSQL),
			strings.NewReplacer("{db}", benchDB, "{n}", strconv.Itoa(benchTraces/2)).Replace(benchTracesSQL),
		} {
			if err := conn.Exec(ctx, q); err != nil {
				benchErr = fmt.Errorf("%.60s: %w", q, err)
				return
			}
		}
		fmt.Printf("populated %s.events with %d events (%d traces) in %s\n", benchDB, benchEvents, benchTraces, time.Since(start).Round(time.Second))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchConn
}

func benchTraceID(i int) string {
	sum := md5.Sum([]byte("t" + strconv.Itoa(i)))
	return hex.EncodeToString(sum[:])
}

// BenchmarkTraceLookup10M measures `agentrail trace` (Lookup: the trace's
// events, its violations, its record recomputed) on a table of 10 million
// events, for traces the correlator has a row for (the usual case) and for
// traces it has not (the bloom filter alone). It reports the median and
// 99th percentile.
func BenchmarkTraceLookup10M(b *testing.B) {
	conn := benchTable(b)
	for _, tc := range []struct {
		name   string
		parity int
	}{{"with_trace_row", 0}, {"bloom_only", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, uint64(tc.parity)))
			var lat []time.Duration
			b.ResetTimer()
			for b.Loop() {
				i := r.IntN(benchTraces/2)*2 + tc.parity
				start := time.Now()
				rep, err := Lookup(context.Background(), conn, benchDB, benchTraceID(i), time.Now(), DefaultAbandonAfter)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				if len(rep.Events) != 4 || rep.Trace.ApprovalStatus != schemas.ApprovalGranted {
					b.Fatalf("trace %d: %d events, approval %q", i, len(rep.Events), rep.Trace.ApprovalStatus)
				}
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkCorrelatorStart10M measures what a (re)started correlator does on
// its first batch over the 10-million-event table: load every policy
// version, and for all 12 partitions delete rows of an uncommitted batch,
// learn the traces of the last lookback (7 days: 1.2 million events) and
// the traces waiting to settle.
func BenchmarkCorrelatorStart10M(b *testing.B) {
	conn := benchTable(b)
	last := time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC).Add(benchTraces * 2 * time.Second)
	batch := &consumers.Batch{FirstOffset: map[int32]int64{}, Now: last}
	for p := int32(0); p < 12; p++ {
		batch.FirstOffset[p] = benchTraces / 12 * 4
	}
	intent := intentEv("bench-1", "0s", 1, digestA)
	intent.TraceID, intent.Time = "0123456789abcdef0123456789abcdef", last
	batch.Events = []consumers.Accepted{{Event: intent, Partition: 3, Offset: batch.FirstOffset[3]}}
	cfg := testConfig()
	cfg.MaxTraces = DefaultMaxTraces
	for b.Loop() {
		c, err := New(cfg, conn, benchDB, prometheus.NewRegistry(), quiet)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Process(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		if len(c.parts) != 12 {
			b.Fatalf("%d partitions initialized", len(c.parts))
		}
	}
}

// BenchmarkTraceStateMemory reports the heap one cached trace takes: the
// simulated fleet's traces (four events on average, stripped as the cache
// holds them) in the LRU. It sizes correlation.max_traces.
func BenchmarkTraceStateMemory(b *testing.B) {
	const n = 50_000
	f := simulate.New(simulate.Config{Seed: 1})
	traces := make([][]schemas.Event, n)
	for i := range traces {
		traces[i] = f.NextTrace(t0)
	}
	var perTrace float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := newLRU()
		for i, evs := range traces {
			st := &traceState{id: strings.Clone(evs[0].TraceID)}
			for j := range evs {
				// Fresh strings, as the decoder makes them for each batch.
				var e schemas.Event
				raw, _ := json.Marshal(&evs[j])
				if err := json.Unmarshal(raw, &e); err != nil {
					b.Fatal(err)
				}
				st.add(stored{ev: strip(&e), partition: 1, offset: int64(i*4 + j), seenAt: t0})
			}
			l.touch(st)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perTrace = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perTrace, "bytes/trace")
}
