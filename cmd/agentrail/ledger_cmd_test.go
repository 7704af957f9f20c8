package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/ledger"
)

// The commands as an operator runs them: keygen, ledger seal, verify (text
// and JSON), exit status 0 on an untouched store and 1 once a row changed.
func TestLedgerCommands(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events)
	chCfg, conn := testenv.ClickHouse(t)
	ctx := context.Background()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "ledger.pem")
	var out bytes.Buffer
	if err := ledgerKeygen(keyFile, &out); err != nil {
		t.Fatal(err)
	}
	if err := ledgerKeygen(keyFile, &out); err == nil {
		t.Fatal("keygen overwrote an existing key")
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	pubLine := out.String()[strings.Index(out.String(), "public_keys:"):]
	cfgFile := filepath.Join(dir, "agentrail.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("kafka:\n  brokers: [%q]\nclickhouse:\n  addr: [%q]\n  database: %s\nledger:\n  enabled: true\n  private_key_file: %s\n  %s",
		addr, chCfg.Addr[0], chCfg.Database, keyFile, pubLine)), 0o644); err != nil {
		t.Fatal(err)
	}

	// 50 stored events in partition 4, committed by the ingest group.
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+chCfg.Database+".events (event_id, trace_id, event_type, event_time, tier, agent_id, team, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for off := int64(0); off < 50; off++ {
		if err := b.Append(fmt.Sprint("e", off), "t", "intent", time.Now(), uint8(2), "a", "ops", int32(4), off); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: kc.Topics.Events, Partition: 4, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: kc.Topics.Events, Partition: 4, At: 50, LeaderEpoch: -1})
	if _, err := kadm.NewClient(cl).CommitOffsets(ctx, "agentrail-ingest", offs); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, int) {
		cmd := exec.Command(testenv.Binary(t), append(args, "--config", cfgFile)...)
		o, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(o), code
	}
	if o, code := run("ledger", "seal"); code != 0 || !strings.Contains(o, "sealed 50 rows in 1 ranges, 1 entries; chain head 1") {
		t.Fatalf("ledger seal: exit %d\n%s", code, o)
	}
	if o, code := run("verify"); code != 0 || !strings.Contains(o, "recomputed all seals: 1 ranges, 50 rows sealed") || !strings.Contains(o, "result: OK") {
		t.Fatalf("verify: exit %d\n%s", code, o)
	}
	if err := conn.Exec(ctx, "ALTER TABLE "+chCfg.Database+".events UPDATE requested_by = 'nobody' WHERE event_id = 'e17' SETTINGS mutations_sync = 2"); err != nil {
		t.Fatal(err)
	}
	o, code := run("verify")
	if code != 1 || !strings.Contains(o, "FAIL seal 1 partition 4 offsets 0-50: 1 row altered (sealed 50 rows, found 50): altered at offset 17 (event_id e17)") {
		t.Fatalf("verify after tampering: exit %d\n%s", code, o)
	}
	o, code = run("verify", "--json", "--from", time.Now().Add(-time.Hour).Format(time.RFC3339))
	var rep ledger.Report
	if err := json.Unmarshal([]byte(o), &rep); err != nil || code != 1 || rep.OK || len(rep.Changed) != 1 || rep.Changed[0].Rows[0].EventID != "e17" {
		t.Fatalf("verify --json: exit %d, %v\n%s", code, err, o)
	}
	// A window before the seal recomputes nothing; the chain still holds.
	if o, code := run("verify", "--to", "2020-01-01"); code != 0 || !strings.Contains(o, "0 ranges") {
		t.Fatalf("verify --to 2020-01-01: exit %d\n%s", code, o)
	}
}
