// Package demo is `agentrail demo` (`make demo`): the whole pipeline on the
// embedded default — the broker, a real ClickHouse in a child process,
// ingest with correlation and the anomaly rules through package pipeline,
// the sealer, and a simulated fleet of signed agents with governance
// violations, anomalies, poison records and forgeries planted — followed
// by what each stage found, as an analyst would query it.
//
// It reads deployments/registry.yaml from the working directory (the
// fleet's demo keys and grants) and deliberately does no setup a real
// deployment would skip: the same wiring, signatures enforced, redaction
// with a key.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
	"github.com/agentrail/agentrail/internal/broker"
	"github.com/agentrail/agentrail/internal/chserver"
	"github.com/agentrail/agentrail/internal/chstore"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Config is what one demo run needs.
type Config struct {
	Dir      string        // working directory for the broker's and ClickHouse's data (emptied first)
	Duration time.Duration // how long the simulated fleet runs
	Rate     float64       // events per second the fleet emits
	Seed     uint64        // simulator seed
	// Bin is the agentrail binary, which serves ClickHouse in a child
	// process (agentrail clickhouse); "" is this process's own executable.
	Bin string
	Out io.Writer    // where the demo prints what it found
	Log *slog.Logger // the components' logs
}

// Run runs the whole pipeline on the embedded default — broker,
// ClickHouse, ingest with its stages, the sealer and a simulated fleet —
// then prints what arrived and what the pipeline found, and stops
// everything it started.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	d := &demo{dir: cfg.Dir, bin: cfg.Bin, log: cfg.Log, out: cfg.Out}
	err := d.run(ctx, cfg.Duration, cfg.Rate, cfg.Seed)
	d.stop()
	return err
}

type demo struct {
	dir string
	bin string
	log *slog.Logger
	out io.Writer

	cluster interface{ Close() }
	ch      *chserver.Process
	stopIn  func()

	led        *ledger.Ledger
	stopLedger func()
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context, duration time.Duration, rate float64, seed uint64) error {
	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	var kc kafkacfg.Config
	kc.Defaults()

	// 1. The embedded broker, persistent in dir/kafka.
	cl, err := broker.Start(broker.Config{DataDir: filepath.Join(d.dir, "kafka"), Partitions: 12,
		Topics: []string{kc.Topics.Events, kc.Topics.DeadLetter}})
	if err != nil {
		return err
	}
	d.cluster = cl
	kc.Brokers = cl.ListenAddrs()

	// 2. A real ClickHouse server in a child process.
	self := d.bin
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	tcp, err1 := chserver.FreePort()
	httpPort, err2 := chserver.FreePort()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	started := time.Now()
	d.ch, err = chserver.StartProcess(ctx, self, chserver.Config{DataDir: filepath.Join(d.dir, "clickhouse"),
		TCPPort: tcp, HTTPPort: httpPort, Logger: d.log})
	if err != nil {
		return err
	}
	d.printf("agentrail demo\n  Kafka (kfake, real protocol)   %s\n  ClickHouse %s (libchdb)  %s native, %s http — up in %s\n",
		kc.Brokers[0], chserver.LibVersion, d.ch.Addr(), d.ch.HTTPAddr(), time.Since(started).Round(time.Millisecond))

	// 3. Migrate and start ingest.
	cfg := pipeline.Config{Config: consumers.Config{Kafka: kc, ClickHouse: chstore.Config{Addr: []string{d.ch.Addr()}}}}
	// Violations that rest on missing evidence (no approval, no decision)
	// wait this long for it: short, so the demo shows them before it ends.
	cfg.Correlation.SettleAfter = 5 * time.Second
	// A pseudonym key for this run, so redaction pseudonymises e-mail
	// addresses and phone numbers (production: a mounted secret file).
	if cfg.Redaction.SecretFile, err = writeDemoSecret(d.dir); err != nil {
		return err
	}
	// Every event is verified against the example registry, which lists
	// the fleet's demo keys.
	cfg.Signatures = consumers.SignatureConfig{Mode: consumers.SignaturesEnforce, RegistryFile: filepath.Join("deployments", "registry.yaml")}
	cfg.Defaults()
	applied, err := pipeline.Migrate(ctx, cfg.ClickHouse)
	if err != nil {
		return err
	}
	fp := schemas.Latest().Fingerprint
	d.printf("  migrations applied             %v\n", applied)
	d.printf("  events on the wire             Avro single-object, schema v%d, fingerprint %x (the Avro spec's CRC-64-AVRO)\n\n", schemas.Latest().N, fp[:])
	reg := prometheus.NewRegistry()
	in, err := pipeline.NewIngest(ctx, cfg, reg, d.log)
	if err != nil {
		return err
	}
	inCtx, cancelIn := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(inCtx) }()
	d.stopIn = func() {
		cancelIn()
		<-done
		_ = in.Close(context.Background())
	}
	if err := d.startLedger(ctx, &cfg); err != nil {
		return err
	}

	// 4. The simulated fleet, through the producer SDK, on a clock inside
	// every team's business hours, with a few of each governance violation
	// planted; then one of each anomaly; then silence: violations that wait
	// for missing evidence settle on ingest's clock, with no more traffic.
	em, err := producers.New(producers.Config{Kafka: kc, Signer: simulate.DemoKeys()}, prometheus.NewRegistry(), d.log)
	if err != nil {
		return err
	}
	clock := businessClock(time.Now())
	violations, err := simulate.ViolationScenarios(0.002)
	if err != nil {
		return err
	}
	fleet := simulate.New(simulate.Config{Seed: seed, ReorderRate: simulate.DefaultReorderRate,
		DuplicateRate: simulate.DefaultDuplicateRate, Scenarios: violations})
	d.printf("simulating a fleet of %d agents for %s at %.0f events/s (event times from %s UTC, inside business hours) ...\n",
		len(fleet.Agents()), duration, rate, clock().Format("Mon 2006-01-02 15:04"))
	stats, runErr := fleet.Run(ctx, em.Emit, rate, duration, clock)
	if runErr != nil && ctx.Err() == nil {
		return runErr
	}
	planted, err := d.plantAnomalies(ctx, fleet, em, clock)
	if err != nil {
		return err
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	closeErr := em.Close(closeCtx)
	cancel()
	if closeErr != nil && ctx.Err() == nil {
		return closeErr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	lastEvent := time.Now()
	d.printf("published %d events in %d traces (%d re-delivered duplicates, %d traces out of order) in %s\n",
		stats.Events, stats.Traces, stats.Duplicates, stats.Reordered, stats.Elapsed.Round(time.Millisecond))
	d.printf("planted %d governance violations (%s) and %d anomalies (%s)\n",
		sumCounts(stats.Planted), describeCounts(stats.Planted), len(planted), strings.Join(planted, ", "))

	// An agent in another language, through the gateway.
	gwTraces, note, err := d.postThroughGateway(ctx, kc, clock())
	if err != nil {
		return err
	}
	d.printf("%s\n", note)

	// 5. A few poison records, as a misbehaving producer would send.
	poison, err := d.sendPoison(ctx, kc)
	if err != nil {
		return err
	}
	d.printf("sent %d poison records, signed by their agent (garbage, truncated Avro, invalid trace id, far-future time)\n", poison)
	forged, err := d.plantForgeries(ctx, kc, clock())
	if err != nil {
		return err
	}
	d.printf("sent %d forged events (unsigned, altered after signing, signed with another agent's key, signed with an unregistered key, cut short after signing so it no longer decodes)\n", forged)

	// 6. Wait until ingest has committed everything, then report.
	caughtUp := time.Now()
	if err := d.waitCaughtUp(ctx, kc, cfg.Ingest.Group); err != nil {
		return err
	}
	d.printf("ingest caught up %s after the last event\n", time.Since(caughtUp).Round(time.Millisecond))
	if err := d.waitViolations(ctx, cfg, sumCounts(stats.Planted), lastEvent); err != nil {
		return err
	}
	if err := d.gatewayFindings(ctx, cfg.ClickHouse.Database, gwTraces); err != nil {
		return err
	}
	d.printf("\n")
	if err := d.report(ctx, cfg.ClickHouse.Database); err != nil {
		return err
	}
	if err := d.findings(ctx, cfg); err != nil {
		return err
	}
	if err := d.signatureFindings(ctx, cfg.ClickHouse.Database); err != nil {
		return err
	}
	if err := d.weeklyReport(ctx, cfg.ClickHouse, clock()); err != nil {
		return err
	}
	return d.verifyLedger(ctx, cfg)
}

// writeDemoSecret writes a random pseudonym key into dir, readable by the
// owner only, and returns its path.
func writeDemoSecret(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "redaction.key")
	return p, os.WriteFile(p, []byte(hex.EncodeToString(key)), 0o600)
}

func (d *demo) sendPoison(ctx context.Context, kc kafkacfg.Config) (int, error) {
	cl, err := pipeline.KafkaClient(kc)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	now := time.Now().UTC()
	agent := simulate.New(simulate.Config{Seed: 99}).NextTrace(now)[0].Agent.ID
	bad := func(mut func(e *schemas.Event)) []byte {
		e := simulate.New(simulate.Config{Seed: 99}).NextTrace(now)[0]
		mut(&e)
		b, _ := schemas.NewSingleObjectEncoder().AppendEncode(nil, &e)
		return b
	}
	good := bad(func(*schemas.Event) {})
	values := [][]byte{
		[]byte(`{"this is":"not avro"}`),
		good[:len(good)/3],
		bad(func(e *schemas.Event) { e.TraceID = "not-a-trace-id" }),
		bad(func(e *schemas.Event) { e.Time = now.Add(72 * time.Hour) }),
	}
	// Signed with the agent's own key, as its broken producer would: the
	// signature verifies, so each is the agent's own mistake and goes to
	// the dead letters (an unsigned one would be quarantined first).
	signer := simulate.DemoSigner(agent)
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: kc.Topics.Events, Value: v, Headers: []kgo.RecordHeader{
			{Key: signing.HeaderKeyID, Value: signer.KeyIDHeader()}, {Key: signing.HeaderSignature, Value: signer.AppendSign(nil, v)}}})
	}
	return len(recs), cl.ProduceSync(ctx, recs...).FirstErr()
}

// waitCaughtUp waits until the ingest group has committed the end of every
// partition of the events topic.
func (d *demo) waitCaughtUp(ctx context.Context, kc kafkacfg.Config, group string) error {
	cl, err := pipeline.KafkaClient(kc)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		lag, err := adm.Lag(ctx, group)
		if err == nil {
			total := int64(0)
			ok := true
			lag.Each(func(l kadm.DescribedGroupLag) {
				for _, ps := range l.Lag {
					for _, p := range ps {
						if p.Err != nil {
							ok = false
						}
						total += p.Lag
					}
				}
			})
			if ok && total == 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ingest did not catch up within 5 minutes (last error: %v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// report prints what arrived and two analyst queries, through ClickHouse's
// HTTP interface, so the tables are ClickHouse's own rendering.
func (d *demo) report(ctx context.Context, db string) error {
	sections := []struct{ title, sql string }{
		{"Events by type and tier (as analysts see them: v_events, each event once)",
			`SELECT event_type, countIf(tier = 1) AS tier1, countIf(tier = 2) AS tier2, countIf(tier = 3) AS tier3, count() AS total
			 FROM {db}.v_events GROUP BY event_type ORDER BY event_type`},
		{"Traces",
			`SELECT uniqExact(trace_id) AS traces,
			        uniqExactIf(trace_id, event_type = 'result') AS with_result,
			        uniqExactIf(trace_id, event_type = 'approval') AS with_approval,
			        uniqExactIf(trace_id, outcome = 'deny') AS denied,
			        uniqExactIf(trace_id, result_status IN ('failure', 'error')) AS failed
			 FROM {db}.v_events`},
		{"Redactions before storage, by detector or rule (the raw values never reached ClickHouse, the dead-letter topic or the logs)",
			`SELECT redactions.rule AS rule, redactions.action AS action, count() AS fields, uniqExact(event_id) AS events,
			        any(redactions.path) AS example_path
			 FROM {db}.v_events ARRAY JOIN redactions GROUP BY rule, action ORDER BY fields DESC`},
		{"Customers support wrote to, joined on their pseudonymised addresses",
			`SELECT parameters['to'] AS customer, count() AS emails, uniqExact(agent_id) AS agents, uniqExact(requested_by) AS requesters
			 FROM {db}.v_events WHERE tool = 'email' AND action = 'send' AND has(redactions.rule, 'email')
			 GROUP BY customer ORDER BY emails DESC`},
		{"Dead letters (redacted copies on the agentrail.events.dlq topic)",
			`SELECT reason_class, field, count() AS records, any(reason) AS example_reason
			 FROM {db}.dead_letters FINAL GROUP BY reason_class, field ORDER BY records DESC`},
	}
	for _, s := range sections {
		if err := d.query(ctx, db, s.title, s.sql, false); err != nil {
			return err
		}
	}
	var trace string
	if err := d.scalar(ctx, strings.ReplaceAll(`SELECT trace_id FROM {db}.v_events WHERE event_type = 'approval' AND tier = 3
		ORDER BY event_time DESC LIMIT 1`, "{db}", db), &trace); err != nil {
		return err
	}
	analyst := []struct{ title, sql string }{
		{"Analyst query 1 — everything about one tier-3 trace: who asked, what was intended, which policy, who approved, what happened",
			`SELECT event_time, event_type, agent_id, requested_by,
			        if(event_type = 'intent', concat(tool, '.', action, ' ', target), '') AS intended,
			        if(event_type = 'policy_decision', concat(outcome, ' by ', policy_id, ' v', toString(policy_version)), '') AS policy,
			        if(event_type = 'approval', concat(approval_status, ' by ', approver, ' (', approver_role, ')'), '') AS approval,
			        if(event_type = 'result', concat(result_status, if(changed_resource != '', concat(' -> ', changed_resource), '')), '') AS happened,
			        substring(action_digest, 1, 12) AS digest
			 FROM {db}.v_events WHERE trace_id = '` + trace + `' ORDER BY event_time`},
		{"Analyst query 2 — what each team's agents did in the last week: actions, denials, approvals, failures",
			`SELECT team, uniqExact(agent_id) AS agents,
			        countIf(event_type = 'intent') AS actions,
			        countIf(outcome = 'deny') AS denied,
			        countIf(approval_status = 'granted') AS approved,
			        countIf(result_status IN ('failure', 'error')) AS failed,
			        round(quantileIf(0.5)(duration_us, event_type = 'result') / 1000) AS median_ms
			 FROM {db}.v_events WHERE event_time >= now() - INTERVAL 7 DAY GROUP BY team ORDER BY actions DESC`},
	}
	for _, s := range analyst {
		if err := d.query(ctx, db, s.title, s.sql, true); err != nil {
			return err
		}
	}
	d.printf("Data stays in %s; query it with any ClickHouse client after `agentrail clickhouse --data-dir %s`.\n",
		d.dir, filepath.Join(d.dir, "clickhouse"))
	return nil
}

func (d *demo) query(ctx context.Context, db, title, sql string, showSQL bool) error {
	sql = strings.ReplaceAll(sql, "{db}", db)
	d.printf("%s\n", title)
	if showSQL {
		d.printf("%s\n", indent(dedent(sql), "  SQL> "))
	}
	body, err := d.http(ctx, sql+" FORMAT PrettyCompactMonoBlock")
	if err != nil {
		return err
	}
	d.printf("%s\n", body)
	return nil
}

func (d *demo) scalar(ctx context.Context, sql string, into *string) error {
	body, err := d.http(ctx, sql+" FORMAT TabSeparatedRaw")
	*into = strings.TrimSpace(body)
	return err
}

func (d *demo) http(ctx context.Context, sql string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.ch.HTTPAddr()+"/?"+url.Values{
		"output_format_pretty_color": {"0"}, "output_format_pretty_row_numbers": {"0"},
	}.Encode(), strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	resp, err := demoHTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("query clickhouse: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("query clickhouse: %s: %s", resp.Status, b)
	}
	return string(b), nil
}

// demoHTTP keeps no idle connections: the embedded server waits for open
// connections when it stops.
var demoHTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Minute}

func dedent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", len(prefix)))
}

// stop stops whatever run started, in reverse order.
func (d *demo) stop() {
	if d.stopLedger != nil {
		d.stopLedger()
	}
	if d.stopIn != nil {
		d.stopIn()
	}
	if d.ch != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := d.ch.Stop(ctx); err != nil {
			d.log.Warn("stop clickhouse", "err", err)
		}
		cancel()
	}
	if d.cluster != nil {
		d.cluster.Close()
	}
}
