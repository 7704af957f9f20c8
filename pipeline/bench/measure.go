package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// settleLimit bounds settle, so that merges which never go quiet cannot
// hold up the benchmark; a run's leftover merges normally end well within
// it (each run prints how long they took).
const settleLimit = 2 * time.Minute

// settle waits for the merges ClickHouse still runs on db's tables after a
// throughput run: until system.merges lists none of them in three looks in
// a row, 250 ms apart, or settleLimit passes. It returns the CPU the
// pipeline's processes (ClickHouse's, mostly) spent meanwhile and how long
// it waited. A run's clock stops when its events are queryable, but the
// merges its inserts caused go on after it, and the next phase drops the
// database: without this, their CPU would count nowhere. Merges run below
// inserts and queries (chserver's os_threads_nice_value_merge_mutate), so
// during a run that keeps both cores busy they fall behind, and more of
// them are left for after.
func (e *env) settle(ctx context.Context, db string) (cpuSample, time.Duration, error) {
	c0, err := e.cpuNow()
	if err != nil {
		return cpuSample{}, 0, err
	}
	start := time.Now()
	for quiet := 0; quiet < 3 && time.Since(start) < settleLimit; {
		select {
		case <-ctx.Done():
			return cpuSample{}, 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		var n uint64
		if err := e.conn.QueryRow(ctx, "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&n); err != nil {
			return cpuSample{}, 0, fmt.Errorf("bench: merges left in %s: %w", db, err)
		}
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	took := time.Since(start)
	c1, err := e.cpuNow()
	return c1.sub(c0), took, err
}

// cpuSample is the CPU time (user + system) used so far by each process of
// the pipeline: this one (ingest, when ours runs), the broker and ClickHouse.
type cpuSample struct{ self, broker, clickhouse time.Duration }

func (e *env) cpuNow() (cpuSample, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuSample{}, err
	}
	s := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	var err1, err2 error
	s.broker, err1 = procCPU(e.broker.Process.Pid)
	s.clickhouse, err2 = procCPU(e.ch.Pid())
	return s, errors.Join(err1, err2)
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{self: s.self - o.self, broker: s.broker - o.broker, clickhouse: s.clickhouse - o.clickhouse}
}

// cpuPerEvent is CPU-µs per event, by process and in total.
type cpuPerEvent struct{ total, self, broker, clickhouse float64 }

func (s cpuSample) per(events int) cpuPerEvent {
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(events) }
	return cpuPerEvent{total: us(s.self + s.broker + s.clickhouse), self: us(s.self), broker: us(s.broker), clickhouse: us(s.clickhouse)}
}

func (c cpuPerEvent) plus(o cpuPerEvent) cpuPerEvent {
	return cpuPerEvent{total: c.total + o.total, self: c.self + o.self, broker: c.broker + o.broker, clickhouse: c.clickhouse + o.clickhouse}
}

func (c cpuPerEvent) String() string {
	return fmt.Sprintf("%.1f (bench process %.1f, broker %.1f, ClickHouse %.1f)", c.total, c.self, c.broker, c.clickhouse)
}

// procCPU reads utime+stime of pid from /proc/pid/stat (clock ticks of
// 1/100 s, the Linux USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: parse /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// stats is min/median/max of repeated measurements.
type stats struct{ min, median, max float64 }

func summarize(xs []float64) stats {
	if len(xs) == 0 {
		return stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return stats{min: s[0], median: s[len(s)/2], max: s[len(s)-1]}
}

func (s stats) format(unit string, prec int) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', prec, 64) }
	return fmt.Sprintf("%s / %s / %s %s", f(s.min), f(s.median), f(s.max), unit)
}
