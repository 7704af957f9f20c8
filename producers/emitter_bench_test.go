package producers

import (
	"context"
	"errors"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

// BenchmarkEmit measures the emit hot path (validate, encode, hand to
// franz-go) against an in-process broker, on simulated events. A call that
// finds the buffer full is retried and counted in the same op, so a broker
// slower than the emitter shows up here.
func BenchmarkEmit(b *testing.B) {
	benchmarkEmit(b, simulate.New(simulate.Config{Seed: 1}).Events(10_000, time.Now()))
}

// BenchmarkEmitHot is BenchmarkEmit on 16 events that stay in the CPU's
// caches, as an event an agent has just built does; BenchmarkEmit cycles
// through 10,000 (about 7 MB), so it also measures cache misses.
func BenchmarkEmitHot(b *testing.B) {
	benchmarkEmit(b, simulate.New(simulate.Config{Seed: 1}).Events(16, time.Now()))
}

func benchmarkEmit(b *testing.B, events []schemas.Event) {
	c := startBroker(b)
	em, _ := newTestEmitter(b, c.ListenAddrs(), func(cfg *Config) { cfg.MaxBufferedRecords = 100_000 })
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startThreadCPU()
	i := 0
	for b.Loop() {
		for {
			err := em.Emit(ctx, &events[i%len(events)])
			if err == nil {
				break
			}
			if !errors.Is(err, ErrBufferFull) {
				b.Fatal(err)
			}
		}
		i++
	}
	cpu.report(b)
	b.StopTimer()
	if err := em.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEmitResult measures a typed method: it also builds the event
// (event id, time, envelope) from a pooled box.
func BenchmarkEmitResult(b *testing.B) {
	c := startBroker(b)
	em, _ := newTestEmitter(b, c.ListenAddrs(), func(cfg *Config) { cfg.MaxBufferedRecords = 100_000 })
	ctx := context.Background()
	act := Action{Trace: NewTraceContext(), RequestedBy: "alice@acme.test", Tier: 2,
		Digest: schemas.ActionDigest("billing-bot", "email", "send", "customer:42", nil)}
	res := schemas.Result{Status: schemas.ResultSuccess, Executor: "billing-bot", ChangedResource: "customer:42", DurationUS: 1200}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startThreadCPU()
	for b.Loop() {
		for {
			err := em.Result(ctx, &act, res)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrBufferFull) {
				b.Fatal(err)
			}
		}
	}
	cpu.report(b)
	b.StopTimer()
	if err := em.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEmitParallel is BenchmarkEmit from GOMAXPROCS goroutines, the
// way a busy agent process calls it.
func BenchmarkEmitParallel(b *testing.B) {
	c := startBroker(b)
	em, _ := newTestEmitter(b, c.ListenAddrs(), func(cfg *Config) { cfg.MaxBufferedRecords = 100_000 })
	events := simulate.New(simulate.Config{Seed: 1}).Events(10_000, time.Now())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	m := startMallocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			for {
				err := em.Emit(ctx, &events[i%len(events)])
				if err == nil {
					break
				}
				if !errors.Is(err, ErrBufferFull) {
					b.Error(err)
					return
				}
			}
			i++
		}
	})
	m.report(b)
	b.StopTimer()
	if err := em.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// mallocs counts heap allocations per op with their fraction: allocs/op is
// truncated to a whole number, which hides the occasional allocation (a
// pooled record refilled after the garbage collector emptied the pool).
type mallocs uint64

func startMallocs() mallocs {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return mallocs(ms.Mallocs)
}

func (m mallocs) report(b *testing.B) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Mallocs-uint64(m))/float64(b.N), "mallocs/op")
}

// threadCPU measures the CPU time of the benchmark's own OS thread: what an
// emit costs its caller. ns/op also counts franz-go's background work
// (batching, compression), the in-process broker's, and on a busy machine
// the time spent waiting for a CPU; cpu-ns/op counts none of them.
//
// It also reports proc-cpu-ns/op, the CPU time of the whole process per
// event: the caller, the Emitter's and franz-go's goroutines, the garbage
// collector, and the in-process broker too (which a real producer does not
// carry), so work moved off the caller's thread still shows there.
type threadCPU struct {
	start, proc time.Duration
	m           mallocs
}

func startThreadCPU() threadCPU {
	runtime.LockOSThread() // the goroutine's thread is the one measured
	return threadCPU{start: rusage(syscall.RUSAGE_THREAD), proc: rusage(syscall.RUSAGE_SELF), m: startMallocs()}
}

func (c threadCPU) report(b *testing.B) {
	d := rusage(syscall.RUSAGE_THREAD) - c.start
	p := rusage(syscall.RUSAGE_SELF) - c.proc
	runtime.UnlockOSThread()
	c.m.report(b)
	b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(p.Nanoseconds())/float64(b.N), "proc-cpu-ns/op")
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
