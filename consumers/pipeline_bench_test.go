package consumers_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/consumers/correlate"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// BenchmarkIngestPipeline ingests a backlog of simulated events (a week of
// the fleet's life, as `agentrail bench` loads it) from the embedded broker
// into a ClickHouse server of its own, with correlation and the anomaly
// rules on, and reports the CPU each side spent per event: "go" is this
// process (ingest and the in-process broker), "ch" the ClickHouse server.
// AGENTRAIL_BENCH_EVENTS sets the backlog (default 200,000);
// AGENTRAIL_BENCH_CH_EVENTS=1 also prints how ClickHouse's own counters
// (system.events: insert, merge, sort, index times) grew during the run. Run it with
// -benchtime 1x: each iteration ingests the whole backlog into a fresh
// database with a fresh consumer group.
func BenchmarkIngestPipeline(b *testing.B) {
	n := 200_000
	if s := os.Getenv("AGENTRAIL_BENCH_EVENTS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("AGENTRAIL_BENCH_EVENTS=%q: want a positive integer", s)
		}
		n = v
	}
	ctx := context.Background()
	var kc kafkacfg.Config
	kc.Defaults()
	kc.Brokers = []string{testenv.Broker(b, kc.Topics.Events, kc.Topics.DeadLetter,
		correlate.DefaultViolationTopic, "agentrail.alerts")}
	ch := testenv.StartClickHouse(b, "")
	b.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = ch.Stop(c)
	})
	produceBacklog(b, kc, n)
	log := slog.New(slog.DiscardHandler)

	b.ResetTimer()
	var goCPU, chCPU, wall time.Duration
	for i := range b.N {
		cfg := consumers.Config{Kafka: kc, ClickHouse: chstore.Config{Addr: []string{ch.Addr()}, Database: fmt.Sprintf("pb_%d", i)},
			Signatures: consumers.SignatureConfig{Mode: consumers.SignaturesOff}} // the backlog is unsigned, as in agentrail bench
		cfg.Defaults()
		cfg.Ingest.Group = fmt.Sprintf("pb-%d", i)
		conn, err := chstore.Open(ctx, cfg.ClickHouse)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := chstore.Migrate(ctx, conn, cfg.ClickHouse.Database); err != nil {
			b.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		var cc correlate.Config
		cc.Defaults()
		corr, err := correlate.New(cc, conn, cfg.ClickHouse.Database, reg, log)
		if err != nil {
			b.Fatal(err)
		}
		var ac anomaly.Config
		ac.Defaults()
		ac.DisableWatch = true
		an, err := anomaly.New(ac, conn, cfg.ClickHouse.Database, reg, log)
		if err != nil {
			b.Fatal(err)
		}
		in, err := consumers.New(ctx, cfg, reg, log, consumers.WithProcessors(corr, an))
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		ev0 := chEvents(ctx, conn)
		g0, c0 := selfCPU(b), procCPU(b, ch.Pid())
		start := time.Now()
		go func() { done <- in.Run(runCtx) }()
		waitCommitted(b, kc, cfg.Ingest.Group, done)
		wall += time.Since(start)
		goCPU += selfCPU(b) - g0
		chCPU += procCPU(b, ch.Pid()) - c0
		if os.Getenv("AGENTRAIL_BENCH_CH_EVENTS") != "" {
			for k, v := range chEvents(ctx, conn) {
				if d := v - ev0[k]; d > 0 {
					fmt.Fprintf(os.Stderr, "system.events %-55s %d\n", k, d)
				}
			}
		}
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		_ = in.Close(ctx)
		var stored uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.ClickHouse.Database+".v_events").Scan(&stored); err != nil {
			b.Fatal(err)
		}
		if int(stored) != n {
			b.Fatalf("stored %d events, want %d", stored, n)
		}
		_ = an.Close(ctx)
		_ = conn.Exec(ctx, "DROP DATABASE "+cfg.ClickHouse.Database+" SYNC")
		conn.Close()
	}
	b.StopTimer()
	events := float64(n * b.N)
	b.ReportMetric(events/wall.Seconds(), "events/s")
	b.ReportMetric(float64(goCPU.Microseconds())/events, "go-cpu-µs/event")
	b.ReportMetric(float64(chCPU.Microseconds())/events, "ch-cpu-µs/event")
	b.ReportMetric(0, "ns/op")
}

// produceBacklog loads n simulated events, event times spread over the last
// week, keyed by trace id.
func produceBacklog(b *testing.B, kc kafkacfg.Config, n int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	fleet := simulate.New(simulate.Config{Seed: 2026, ReorderRate: simulate.DefaultReorderRate})
	enc := schemas.NewSingleObjectEncoder()
	const span = 7 * 24 * time.Hour
	at := time.Now().UTC().Add(-span)
	step := span / time.Duration(n/3+1)
	var firstErr error
	for i := 0; i < n; {
		at = at.Add(step)
		for _, ev := range fleet.NextTrace(at) {
			if i == n {
				break
			}
			v, err := enc.AppendEncode(nil, &ev)
			if err != nil {
				b.Fatal(err)
			}
			cl.Produce(context.Background(), &kgo.Record{Topic: kc.Topics.Events, Key: []byte(ev.TraceID), Value: v},
				func(_ *kgo.Record, err error) {
					if err != nil && firstErr == nil {
						firstErr = err
					}
				})
			i++
		}
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// waitCommitted waits until group has committed the end of every partition.
func waitCommitted(b *testing.B, kc kafkacfg.Config, group string, done <-chan error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, kc.Topics.Events)
	if err != nil {
		b.Fatal(err)
	}
	for {
		select {
		case err := <-done:
			b.Fatalf("ingest stopped early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			continue
		}
		caughtUp := true
		ends.Each(func(o kadm.ListedOffset) {
			if c, ok := offs.Lookup(o.Topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
				caughtUp = false
			}
		})
		if caughtUp {
			return
		}
	}
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is utime+stime of pid, from /proc (ticks of 10ms).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// chEvents reads ClickHouse's cumulative counters.
func chEvents(ctx context.Context, conn driver.Conn) map[string]uint64 {
	m := map[string]uint64{}
	rows, err := conn.Query(ctx, "SELECT event, value FROM system.events")
	if err != nil {
		return m
	}
	for rows.Next() {
		var k string
		var v uint64
		_ = rows.Scan(&k, &v)
		m[k] = v
	}
	return m
}
