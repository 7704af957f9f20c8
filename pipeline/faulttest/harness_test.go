package faulttest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const eventsTopic = "agentrail.events"

// full reports whether to run at full size (make faults).
func full() bool { return os.Getenv("AGENTRAIL_FAULTS_FULL") != "" }

// size picks the shortened or the full figure.
func size[T any](short, long T) T {
	if full() {
		return long
	}
	return short
}

// harness drives one scenario: it produces events (and poison), runs ingest
// processes, and accounts for everything at the end.
type harness struct {
	t      *testing.T
	bin    string
	broker string // host:port
	ch     chstore.Config
	conn   driver.Conn

	logDir string // the ingest processes' logs: <name>.log

	mu     sync.Mutex
	good   map[string]struct{} // event ids of acknowledged good records
	poison map[string]string   // sha-free marker (record key) -> expected reason class
	procs  []*exec.Cmd
}

func newHarness(t *testing.T, brokerAddr string, ch chstore.Config, conn driver.Conn) *harness {
	h := &harness{t: t, bin: testenv.Binary(t), broker: brokerAddr, ch: ch, conn: conn, logDir: logDir(t),
		good: map[string]struct{}{}, poison: map[string]string{}}
	// Registered after the broker's cleanup, so it runs first, with the
	// broker still up: on failure, who holds the partitions.
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(describeGroup(brokerAddr, "agentrail-ingest"))
		}
	})
	return h
}

// describeGroup says the group's state, members and their partitions.
func describeGroup(addr, group string) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := kadm.NewClient(cl).DescribeGroups(ctx, group)
	if err != nil {
		return "describe group: " + err.Error()
	}
	g := groups[group]
	out := fmt.Sprintf("group %s: state %s, protocol %s, %d members", group, g.State, g.Protocol, len(g.Members))
	for _, m := range g.Members {
		var parts []int32
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				parts = append(parts, t.Partitions...)
			}
		}
		out += fmt.Sprintf("\n  member %s client %s host %s: partitions %v", m.MemberID, m.ClientID, m.ClientHost, parts)
	}
	return out
}

// startIngest runs `agentrail ingest` as its own process, logging to a file.
func (h *harness) startIngest(name string) *exec.Cmd {
	h.t.Helper()
	cfg := filepath.Join(h.t.TempDir(), "ingest.yaml")
	// Short batches and session timeout: faults land mid-batch, and a killed
	// member's partitions move quickly.
	if err := os.WriteFile(cfg, []byte("ingest:\n  batch_rows: 5000\n  batch_interval: 100ms\n  session_timeout: 6s\n  rebalance_timeout: 6s\n  max_record_bytes: 65536\nsignatures:\n  mode: off\n"), 0o644); err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(h.bin, "ingest", "--config", cfg, "--brokers", h.broker,
		"--clickhouse", h.ch.Addr[0], "--database", h.ch.Database, "--metrics", "")
	logf, err := os.Create(filepath.Join(h.logDir, name+".log"))
	if err != nil {
		h.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.procs = append(h.procs, cmd)
	h.mu.Unlock()
	h.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// logDir keeps the processes' logs of a test: in $AGENTRAIL_FAULT_LOGS/<test>
// when set (to read after a failure), else in the test's temp dir.
func logDir(t *testing.T) string {
	base := os.Getenv("AGENTRAIL_FAULT_LOGS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// assignments counts the completed joins in the named process's log (one
// "partitions assigned" line per join, with or without new partitions).
func (h *harness) assignments(name string) int {
	b, _ := os.ReadFile(filepath.Join(h.logDir, name+".log"))
	return bytes.Count(b, []byte(`msg="partitions assigned"`))
}

// waitAssigned waits until the named process has completed more than n
// joins, and returns their count.
//
// The tests SIGKILL a member only after this: kfake (the embedded broker)
// keeps a member that dies while its JoinGroup waits for the rebalance in
// the group past its session timeout, with the partitions it is then
// assigned, because it arms the session timer only once the join's answer
// is delivered. The other members then never get those partitions back
// (seen here: nine of twelve partitions held for minutes). A real Kafka
// broker expires such a member after its session timeout.
func (h *harness) waitAssigned(name string, n int, timeout time.Duration) int {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := h.assignments(name); got > n {
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%s completed no group join within %s", name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stopProc(cmd *exec.Cmd, sig syscall.Signal) {
	_ = cmd.Process.Signal(sig)
	_ = cmd.Wait()
}

// producer publishes simulated events (and, at poisonRate, poison records)
// in acknowledged batches, retrying a failed batch until it is acknowledged:
// a broker that is down delays it, never loses it. Only acknowledged
// records are accounted for.
type producer struct {
	h          *harness
	cl         *kgo.Client
	fleet      *simulate.Fleet
	enc        *schemas.Encoder
	poisonRate float64
	r          *rand.Rand
	n          int // poison records made
}

func (h *harness) newProducer(seed uint64, poisonRate float64) *producer {
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.broker), kgo.ProducerLinger(2*time.Millisecond),
		kgo.RecordDeliveryTimeout(5*time.Second), kgo.AllowIdempotentProduceCancellation())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	return &producer{h: h, cl: cl, fleet: simulate.New(simulate.Config{Seed: seed, DuplicateRate: simulate.DefaultDuplicateRate,
		ReorderRate: simulate.DefaultReorderRate}), enc: schemas.NewSingleObjectEncoder(), poisonRate: poisonRate, r: rand.New(rand.NewPCG(seed, 1))}
}

// run produces total events, at most rate per second (0: as fast as it can),
// until done or ctx ends.
func (p *producer) run(ctx context.Context, total int, rate float64) error {
	sent := 0
	start := time.Now()
	for sent < total && ctx.Err() == nil {
		var recs []*kgo.Record
		good := map[string]struct{}{}
		poison := map[string]string{}
		for len(recs) < 500 && sent+len(good) < total {
			for _, ev := range p.fleet.NextTrace(time.Now().UTC()) {
				if sent+len(good) == total {
					break
				}
				if p.r.Float64() < p.poisonRate {
					rec, class := p.poisonRecord(ev)
					poison[string(rec.Key)] = class
					recs = append(recs, rec)
					continue
				}
				b, err := p.enc.AppendEncode(nil, &ev)
				if err != nil {
					return err
				}
				good[ev.EventID] = struct{}{}
				recs = append(recs, &kgo.Record{Topic: eventsTopic, Key: []byte(ev.TraceID), Value: b})
			}
		}
		for ctx.Err() == nil {
			if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond) // the broker is down: try the batch again
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.h.mu.Lock()
		for id := range good {
			p.h.good[id] = struct{}{}
		}
		for k, c := range poison {
			p.h.poison[k] = c
		}
		p.h.mu.Unlock()
		sent += len(good)
		if rate > 0 {
			if ahead := time.Duration(float64(sent)/rate*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return ctx.Err()
}

// poisonRecord makes one poison record of a random kind from a good event.
// Its key is unique, so the accounting can find it in the dead letters.
func (p *producer) poisonRecord(ev schemas.Event) (*kgo.Record, string) {
	p.n++
	key := []byte("poison-" + strconv.Itoa(p.n) + "-" + ev.EventID)
	good, _ := p.enc.AppendEncode(nil, &ev)
	mut := func(f func(e *schemas.Event)) []byte {
		e := ev
		f(&e)
		b, err := p.enc.AppendEncode(nil, &e)
		if err != nil {
			p.h.t.Fatal(err)
		}
		return b
	}
	var v []byte
	class := "validation"
	switch p.n % 7 {
	case 0: // truncated Avro
		v, class = good[:len(good)/2], "decode"
	case 1: // a schema id no registry knows (Confluent framing, none configured)
		v, class = append([]byte{0, 0, 0, 0, 77}, good[10:]...), "decode"
	case 2: // oversized (ingest's limit is 64 KiB in these tests)
		v, class = append(append([]byte{}, good...), make([]byte, 80<<10)...), "oversize"
	case 3:
		v = mut(func(e *schemas.Event) { e.TraceID = "" })
	case 4:
		v = mut(func(e *schemas.Event) { e.Time = time.Now().Add(30 * 24 * time.Hour) })
	case 5:
		v = mut(func(e *schemas.Event) { e.Time = time.Now().AddDate(-3, 0, 0) })
	case 6:
		v = mut(func(e *schemas.Event) { e.RequestedBy = "bad \xff\xfe utf-8" })
	}
	return &kgo.Record{Topic: eventsTopic, Key: key, Value: v}, class
}

func (h *harness) query(q string, dest ...any) {
	h.t.Helper()
	if err := h.conn.QueryRow(context.Background(), q).Scan(dest...); err != nil {
		h.t.Fatalf("%s: %v", q, err)
	}
}

// account waits until ClickHouse holds every acknowledged event and every
// poison record is dead-lettered, then checks it exactly: each good event
// once through v_events, nothing else, each poison with its reason class.
func (h *harness) account(timeout time.Duration) {
	h.t.Helper()
	db := h.ch.Database
	h.mu.Lock()
	wantGood, wantPoison := len(h.good), len(h.poison)
	h.mu.Unlock()
	testenv.Eventually(h.t, timeout, "every record accounted for", func() (bool, error) {
		var distinct, dead uint64
		if err := h.conn.QueryRow(context.Background(), "SELECT uniqExact(event_id) FROM "+db+".events").Scan(&distinct); err != nil {
			return false, err
		}
		if err := h.conn.QueryRow(context.Background(), "SELECT uniqExact(raw_sha256) FROM "+db+".dead_letters").Scan(&dead); err != nil {
			return false, err
		}
		return int(distinct) == wantGood && int(dead) == wantPoison,
			fmt.Errorf("events %d/%d, dead letters %d/%d", distinct, wantGood, dead, wantPoison)
	})
	var seen, raw, dlRows uint64
	h.query("SELECT count() FROM "+db+".v_events", &seen)
	h.query("SELECT count() FROM "+db+".events", &raw)
	h.query("SELECT count() FROM "+db+".dead_letters FINAL", &dlRows)
	if int(seen) != wantGood {
		h.t.Fatalf("analysts see %d events, want exactly %d", seen, wantGood)
	}
	// The stored ids are the acknowledged ids, no more, no fewer.
	rows, err := h.conn.Query(context.Background(), "SELECT DISTINCT event_id FROM "+db+".events")
	if err != nil {
		h.t.Fatal(err)
	}
	stored := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			h.t.Fatal(err)
		}
		if _, ok := h.good[id]; !ok {
			h.t.Fatalf("stored event %s was never acknowledged as produced", id)
		}
		stored++
	}
	rows.Close()
	// Each poison record is dead-lettered with the class its kind implies.
	classes := map[string]uint64{}
	for _, c := range h.poison {
		classes[c]++
	}
	for class, want := range classes {
		var got uint64
		h.query("SELECT uniqExact(raw_sha256) FROM "+db+".dead_letters WHERE reason_class = '"+class+"'", &got)
		if got != want {
			h.t.Errorf("dead letters of class %s: %d, want %d", class, got, want)
		}
	}
	h.t.Logf("accounted: %d events produced and acknowledged, %d stored distinct (%d rows before merge), %d seen by analysts; %d poison, %d dead-lettered (%d rows)",
		wantGood, stored, raw, seen, wantPoison, len(h.poison), dlRows)
}
