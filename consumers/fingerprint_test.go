package consumers

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// debianPython is Debian's interpreter, which has python3-avro and
// python3-confluent-kafka (a python3 earlier on PATH may not).
const debianPython = "/usr/bin/python3"

// needPython skips without Debian's python3-avro and python3-confluent-kafka,
// except in CI (CI=true), where their absence fails the test: .ci/run
// installs them, and CI must not pass without them.
func needPython(t *testing.T) {
	t.Helper()
	err := exec.Command(debianPython, "-c", "import avro.io, confluent_kafka").Run()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s with python3-avro and python3-confluent-kafka: %v (CI=true: .ci/run installs them)", debianPython, err)
	}
	t.Skipf("%s with python3-avro and python3-confluent-kafka: %v", debianPython, err)
}

// TestIngestPythonProducer is an agent written from schemas/README.md alone:
// Apache Avro's Python library encodes the body, the header carries the
// spec's fingerprint, librdkafka sends it. Its traces must be stored in
// ClickHouse, none dead-lettered. Records framed with the legacy fingerprint,
// as agentrail wrote them before, are stored too and counted, and only they.
func TestIngestPythonProducer(t *testing.T) {
	needPython(t)
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, conn := testenv.ClickHouse(t)

	const pyTraces = 5
	v := schemas.Latest()
	schemaPath := filepath.Join("..", "schemas", "avro", fmt.Sprintf("event.v%d.avsc", v.N))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, debianPython, filepath.Join("testdata", "python", "produce.py"),
		addr, kc.Topics.Events, schemaPath, hex.EncodeToString(v.Fingerprint[:]), fmt.Sprint(pyTraces)).CombinedOutput()
	if err != nil {
		t.Fatalf("python producer: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != fmt.Sprint(4*pyTraces) {
		t.Fatalf("python producer delivered %q records, want %d", got, 4*pyTraces)
	}

	// Already-written records: our bytes, under v2's legacy fingerprint.
	now := time.Now().UTC()
	var legacy []*schemas.Event
	for i := range 3 {
		legacy = append(legacy, traceEvents(i, now)...)
	}
	recs := encodeAll(t, kc.Topics.Events, legacy)
	for _, r := range recs {
		copy(r.Value[2:10], v.LegacyFingerprint[:])
	}
	produce(t, addr, recs)

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg, Signatures: SignatureConfig{Mode: SignaturesOff}}
	cfg.Defaults()
	cfg.Ingest.BatchInterval = 50 * time.Millisecond
	reg := prometheus.NewRegistry()
	stop := startIngest(t, cfg, reg)

	db := chCfg.Database
	want := uint64(4*pyTraces + len(legacy))
	testenv.Eventually(t, 60*time.Second, "python's and the legacy records stored", func() (bool, error) {
		n := count(t, conn, "SELECT count() FROM "+db+".v_events")
		d := count(t, conn, "SELECT count() FROM "+db+".dead_letters FINAL")
		if d > 0 {
			var reason string
			_ = conn.QueryRow(context.Background(), "SELECT any(reason) FROM "+db+".dead_letters FINAL").Scan(&reason)
			return false, fmt.Errorf("%d dead-lettered, e.g. %q", d, reason)
		}
		// Counted at commit, which follows the insert.
		l := metricValue(t, reg, "agentrail_ingest_legacy_fingerprint_records_total", fmt.Sprint(v.N))
		return n == want && l == float64(len(legacy)), fmt.Errorf("events %d/%d, legacy fingerprint records %v/%d", n, want, l, len(legacy))
	})
	stop()
	if d := count(t, conn, "SELECT count() FROM "+db+".dead_letters FINAL"); d != 0 {
		t.Fatalf("%d records dead-lettered", d)
	}
	var py uint64
	var approver string
	err = conn.QueryRow(context.Background(), "SELECT count(), anyIf(approver, event_type = 'approval') FROM "+db+".v_events WHERE agent_id = 'py-agent'").Scan(&py, &approver)
	if err != nil {
		t.Fatal(err)
	}
	if py != 4*pyTraces || approver != "bob@acme.test" {
		t.Fatalf("python's rows: %d (want %d), approver %q", py, 4*pyTraces, approver)
	}
	if got := metricValue(t, reg, "agentrail_ingest_legacy_fingerprint_records_total", fmt.Sprint(v.N)); got != float64(len(legacy)) {
		t.Errorf("legacy fingerprint records (v%d) = %v, want %d", v.N, got, len(legacy))
	}
	if got := metricValue(t, reg, "agentrail_ingest_legacy_fingerprint_records_total", "1"); got != 0 {
		t.Errorf("legacy fingerprint records (v1) = %v, want 0", got)
	}
}
