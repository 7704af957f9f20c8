package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
)

const debianPython = "/usr/bin/python3"

// requirePython fails under CI (CI set, as .ci/run runs) and skips
// elsewhere when Debian's python3 cannot import cryptography.
func requirePython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(debianPython, "-c", "import cryptography").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s cannot import cryptography (apt-get install python3-cryptography): %v\n%s", debianPython, err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// pipelineEnv is the embedded broker, real ClickHouse and the real ingest
// (enforcing signatures with the test registry) behind a gateway.
type pipelineEnv struct {
	gw   *Gateway
	url  string
	stop context.CancelFunc // ends the gateway's Run: it drains and closes
	done chan error
	conn driver.Conn
	db   string
}

func startPipeline(t *testing.T) *pipelineEnv {
	t.Helper()
	var kc kafkacfg.Config
	kc.Defaults()
	kc.Brokers = []string{testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)}
	chCfg, conn := testenv.ClickHouse(t)
	regFile := writeRegistry(t)

	ctx, cancel := context.WithCancel(context.Background())
	icfg := consumers.Config{Kafka: kc, ClickHouse: chCfg, Signatures: consumers.SignatureConfig{RegistryFile: regFile, DisableWatch: true}}
	icfg.Defaults()
	icfg.Ingest.BatchInterval = 50 * time.Millisecond
	in, err := consumers.New(ctx, icfg, prometheus.NewRegistry(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			t.Errorf("ingest: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = in.Close(context.Background())
	})

	var cfg Config
	cfg.Listen = "127.0.0.1:0"
	cfg.RegistryFile = regFile
	cfg.Kafka = kc
	cfg.Defaults()
	g, err := New(context.Background(), cfg, prometheus.NewRegistry(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(context.Background())
	p := &pipelineEnv{gw: g, url: "http://" + g.Addr().String(), stop: gcancel, done: make(chan error, 1), conn: conn, db: chCfg.Database}
	go func() { p.done <- g.Run(gctx) }()
	t.Cleanup(func() {
		gcancel()
		if err := <-p.done; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	})
	waitReady(t, p.url)
	return p
}

// stored is the set of event ids with prefix in v_events.
func (p *pipelineEnv) stored(t *testing.T, prefix string) map[string]bool {
	t.Helper()
	rows, err := p.conn.Query(context.Background(), "SELECT event_id FROM "+p.db+".v_events WHERE startsWith(event_id, ?)", prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out[id] = true
	}
	return out
}

type pyAnswer struct {
	Code     int      `json:"code"`
	Sent     []string `json:"sent"`
	Accepted []string `json:"accepted"`
	Rejected []string `json:"rejected"`
	Error    string   `json:"error"`
}

// pyClient starts testdata/post_events.py against url; its answers arrive
// on the channel, closed when the script ends (wait returns its error).
func pyClient(t *testing.T, url, prefix string, batch, requests int, loop bool) (<-chan pyAnswer, func() error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "schemas", "testdata", "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{
		"url": url, "kid": "billing-bot-1", "seed_hex": hex.EncodeToString(billingSeed),
		"template": json.RawMessage(bytes.SplitN(b, []byte("\n"), 2)[0]),
		"prefix":   prefix, "batch": batch, "bad_per_batch": 1, "requests": requests, "loop": loop,
	})
	cmd := exec.Command(debianPython, filepath.Join("testdata", "post_events.py"))
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan pyAnswer, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var a pyAnswer
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				t.Errorf("post_events.py printed %q", sc.Text())
				continue
			}
			ch <- a
		}
	}()
	return ch, func() error {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("post_events.py: %w\n%s", err, stderr.String())
		}
		return nil
	}
}

// A Python agent signs events and posts NDJSON through the gateway to the
// real broker, ingest and ClickHouse: every accepted event is stored (with
// the key that signed it), no rejected one is.
func TestPythonAgentThroughGateway(t *testing.T) {
	requirePython(t)
	p := startPipeline(t)
	answers, wait := pyClient(t, p.url, "py-", 4, 3, false)
	accepted, rejected := map[string]bool{}, map[string]bool{}
	for a := range answers {
		if a.Code != 200 || len(a.Accepted) != 4 || len(a.Rejected) != 1 {
			t.Errorf("answer %+v, want 200 with 4 accepted and 1 rejected", a)
		}
		for _, id := range a.Accepted {
			accepted[id] = true
		}
		for _, id := range a.Rejected {
			rejected[id] = true
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if len(accepted) != 12 || len(rejected) != 3 {
		t.Fatalf("accepted %d/12, rejected %d/3", len(accepted), len(rejected))
	}
	testenv.Eventually(t, time.Minute, "the accepted events in v_events", func() (bool, error) {
		s := p.stored(t, "py-")
		return len(s) >= len(accepted), fmt.Errorf("%d of %d stored", len(s), len(accepted))
	})
	for id := range p.stored(t, "py-") {
		if !accepted[id] {
			t.Errorf("%s stored but not accepted", id)
		}
	}
	var kid string
	if err := p.conn.QueryRow(context.Background(), "SELECT any(signer_key_id) FROM "+p.db+".v_events WHERE startsWith(event_id, 'py-')").Scan(&kid); err != nil || kid != "billing-bot-1" {
		t.Errorf("signer_key_id %q (%v)", kid, err)
	}
}

// The gateway closes while a Python agent posts in a loop: every event the
// agent got a 2xx for is in ClickHouse, and nothing it was not sent.
func TestCloseMidStream(t *testing.T) {
	requirePython(t)
	p := startPipeline(t)
	answers, wait := pyClient(t, p.url, "mid-", 20, 100000, true)
	accepted, rejected, sent := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var oks, unanswered int
	closed := false
	for a := range answers {
		for _, id := range a.Sent {
			sent[id] = true
		}
		if a.Code >= 200 && a.Code < 300 {
			oks++
			for _, id := range a.Accepted {
				accepted[id] = true
			}
		}
		for _, id := range a.Rejected {
			rejected[id] = true
		}
		if a.Code == 0 {
			unanswered++
		}
		if oks == 5 && !closed {
			closed = true
			go p.stop() // Close while the agent keeps posting
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if !closed || unanswered == 0 {
		t.Fatalf("the gateway was not closed mid-stream (2xx %d, unanswered %d)", oks, unanswered)
	}
	t.Logf("%d requests answered 2xx, %d events accepted, %d sent, %d requests unanswered", oks, len(accepted), len(sent), unanswered)
	testenv.Eventually(t, time.Minute, "every accepted event in v_events", func() (bool, error) {
		s := p.stored(t, "mid-")
		var missing []string
		for id := range accepted {
			if !s[id] {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0, fmt.Errorf("%d accepted events not stored, e.g. %s", len(missing), strings.Join(missing[:min(3, len(missing))], " "))
	})
	for id := range p.stored(t, "mid-") {
		if !sent[id] || rejected[id] {
			t.Errorf("%s stored: sent %v, rejected %v", id, sent[id], rejected[id])
		}
	}
}
