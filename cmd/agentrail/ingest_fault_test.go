package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestIngestSurvivesSIGKILL kills the ingest process three times in the middle of a
// run of 120,000 events and restarts it each time; in the end ClickHouse holds
// exactly the produced events, each once as analysts see it.
func TestIngestSurvivesSIGKILL(t *testing.T) {
	const total = 120_000
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, conn := testenv.ClickHouse(t)
	bin := testenv.Binary(t)

	ids := produceFleet(t, addr, kc.Topics.Events, total)
	if len(ids) != total {
		t.Fatalf("generated %d distinct events, want %d", len(ids), total)
	}

	db := chCfg.Database
	stored := func() uint64 { return countRows(t, conn, "SELECT count() FROM "+db+".events") }
	// The fleet here is unsigned: this test is about crash accounting.
	// Batches of 20,000 put several batches between the kills below. Every
	// run is the same static member (instance_id), as a restarted pod of a
	// StatefulSet is: it takes the killed run's place in the group and
	// fences its open transaction at once. (Dynamic members killed
	// repeatedly: pipeline/faulttest's TestIngestKilledRepeatedly.)
	cfgFile := filepath.Join(t.TempDir(), "ingest.yaml")
	if err := os.WriteFile(cfgFile, []byte("ingest:\n  batch_rows: 20000\n  instance_id: ingest-0\nsignatures:\n  mode: off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(run int) *ingestRun {
		cmd := exec.Command(bin, "ingest", "--config", cfgFile, "--brokers", addr, "--clickhouse", chCfg.Addr[0], "--database", db, "--metrics", "")
		logPath := filepath.Join(t.TempDir(), fmt.Sprintf("ingest-%d.log", run))
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		// On failure, the run's log says where ingest stalled; the
		// directory is removed after this.
		t.Cleanup(func() {
			if b, err := os.ReadFile(logPath); err == nil && t.Failed() {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("last lines of ingest run %d's log:\n%s", run, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		})
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := &ingestRun{cmd: cmd, done: make(chan struct{})}
		go func() { r.err = cmd.Wait(); close(r.done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-r.done })
		return r
	}

	for run, killAt := range []uint64{25_000, 55_000, 85_000} {
		r := start(run)
		deadline := time.Now().Add(2 * time.Minute)
		for stored() < killAt {
			if r.exited() {
				t.Fatalf("ingest run %d exited with %d rows stored: %v", run, stored(), r.err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d rows stored after 2 minutes", killAt)
			}
			time.Sleep(2 * time.Millisecond)
		}
		// The first kill lands right after a batch's insert, most likely
		// before its commit; the others anywhere in the next batch's life.
		if run > 0 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		}
		if r.exited() {
			t.Fatalf("ingest run %d exited before its kill: %v", run, r.err)
		}
		if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-r.done
		// Rows stored beyond the committed offsets belong to a batch whose
		// commit the kill prevented: the next run consumes them again.
		committed := committedRecords(t, addr, "agentrail-ingest")
		t.Logf("kill %d: SIGKILL with %d rows stored, %d records committed: %d to be re-delivered",
			run+1, stored(), committed, int64(stored())-committed)
	}
	last := start(3)
	testenv.Eventually(t, 3*time.Minute, "all events stored", func() (bool, error) {
		n := countRows(t, conn, "SELECT count(DISTINCT event_id) FROM "+db+".events")
		if n != total && last.exited() {
			t.Fatalf("the last ingest run exited with %d of %d distinct events stored: %v", n, total, last.err)
		}
		return n == total, fmt.Errorf("%d of %d distinct events", n, total)
	})
	_ = last.cmd.Process.Signal(syscall.SIGTERM)
	<-last.done

	raw := stored()
	distinct := countRows(t, conn, "SELECT count(DISTINCT event_id) FROM "+db+".events")
	seen := countRows(t, conn, "SELECT count() FROM "+db+".v_events")
	dead := countRows(t, conn, "SELECT count() FROM "+db+".dead_letters")
	t.Logf("produced %d; stored rows %d (re-delivered before merge: %d); distinct %d; analysts see %d; dead letters %d",
		total, raw, raw-distinct, distinct, seen, dead)
	if distinct != total || seen != total || dead != 0 {
		t.Fatalf("distinct %d, seen %d, dead letters %d; want %d, %d, 0", distinct, seen, dead, total, total)
	}
	// The stored ids are exactly the produced ids: compare digests of the
	// sorted id lists.
	var got string
	if err := conn.QueryRow(context.Background(),
		"SELECT lower(hex(SHA256(arrayStringConcat(arraySort(groupArray(event_id)), '\\n')))) FROM "+db+".v_events").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := idDigest(ids); got != want {
		t.Fatalf("digest of stored event ids %s != digest of produced ids %s", got, want)
	}
}

// ingestRun is one `agentrail ingest` process; done closes when it exits,
// with err its exit status.
type ingestRun struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (r *ingestRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// produceFleet publishes total simulated events and returns their ids.
func produceFleet(t *testing.T, addr, topic string, total int) map[string]struct{} {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fleet := simulate.New(simulate.Config{Seed: 42})
	enc := schemas.NewSingleObjectEncoder()
	ids := make(map[string]struct{}, total)
	now := time.Now().UTC()
	var recs []*kgo.Record
	for len(ids) < total {
		for _, e := range fleet.NextTrace(now) {
			if _, dup := ids[e.EventID]; dup || len(ids) == total {
				continue
			}
			ids[e.EventID] = struct{}{}
			b, err := enc.AppendEncode(nil, &e)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.TraceID), Value: b})
		}
		if len(recs) >= 10_000 || len(ids) == total {
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	return ids
}

// committedRecords sums the group's committed offsets over all partitions.
func committedRecords(t *testing.T, addr, group string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	return sum
}

func countRows(t *testing.T, conn driver.Conn, q string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func idDigest(ids map[string]struct{}) string {
	sorted := make([]string, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(strings.Join(sorted, "\n")))
	return hex.EncodeToString(sum[:])
}
