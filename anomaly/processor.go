package anomaly

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers"
)

// Processor runs the rules inside ingest on every batch (a
// consumers.Processor). Its state is rebuilt from ClickHouse before the
// first batch, when a batch is redone, after partitions were revoked, and
// after the rules changed.
type Processor struct {
	cfg  Config
	log  *slog.Logger
	conn driver.Conn
	db   string
	m    *metrics
	hook *webhook

	mu            sync.Mutex
	en            *Engine
	pending       *RuleSet // loaded by Reload, applied before the next batch
	stale         string   // why the state must be rebuilt before the next batch ("" it need not)
	next          map[int32]int64
	skipUpTo      map[int32]int64
	last          map[string]RuleStats
	lastTrace     uint64
	lastEvictWarn time.Time
	rulesSum      [32]byte // of the last loaded rule file, to ignore no-op writes
	closeOnce     sync.Once
	watching      chan struct{} // closed once the rule file is watched
}

// New builds the stage. conn and database are where events are read back
// from (restore) and alerts go; conn may be nil in tests, which then run
// without restore. It loads cfg.RulesFile (or the built-in rules).
func New(cfg Config, conn driver.Conn, database string, reg prometheus.Registerer, log *slog.Logger) (*Processor, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("anomaly: %w", err)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p := &Processor{cfg: cfg, log: log, conn: conn, db: database, m: m, stale: "start",
		next: map[int32]int64{}, skipUpTo: map[int32]int64{}, last: map[string]RuleStats{}, watching: make(chan struct{})}
	rs, sum, err := p.loadRules()
	if err != nil {
		m.reloadOK.Set(0)
		m.reloads.WithLabelValues("error").Inc()
		return nil, err
	}
	if p.en, err = newEngine(rs, cfg.limits()); err != nil {
		return nil, err
	}
	p.rulesSum = sum
	m.reloadOK.Set(1)
	m.reloadTS.SetToCurrentTime()
	m.reloads.WithLabelValues("ok").Inc()
	if cfg.Webhook.URL != "" {
		p.hook, err = newWebhook(cfg.Webhook, m, log)
		if err != nil {
			return nil, err
		}
	}
	log.Info("anomaly rules loaded", "source", rs.Source(), "rules", rs.Summary())
	return p, nil
}

func (p *Processor) loadRules() (*RuleSet, [32]byte, error) {
	if p.cfg.RulesFile == "" {
		return DefaultRules(), sha256.Sum256(defaultRules), nil
	}
	raw, err := os.ReadFile(p.cfg.RulesFile)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("anomaly: read rules: %w", err)
	}
	rs, err := ParseRules(p.cfg.RulesFile, raw)
	if err != nil {
		return nil, [32]byte{}, err
	}
	return rs, sha256.Sum256(raw), nil
}

// Name identifies the stage.
func (p *Processor) Name() string { return "anomaly" }

// Reload reads the rule file again. A file with mistakes is refused (the
// rules in force stay, agentrail_rules_reload_success drops to 0); good
// rules take effect before the next batch, their state rebuilt from
// ClickHouse. The binary calls it on SIGHUP; Run calls it when the file
// changes.
func (p *Processor) Reload() error {
	rs, sum, err := p.loadRules()
	if err == nil {
		_, err = newEngine(rs, p.cfg.limits())
	}
	if err != nil {
		p.m.reloadOK.Set(0)
		p.m.reloads.WithLabelValues("error").Inc()
		p.log.Error("anomaly rules not reloaded; the rules in force stay", "source", p.cfg.RulesFile, "err", err)
		return err
	}
	p.mu.Lock()
	changed := sum != p.rulesSum
	if changed {
		p.pending, p.rulesSum = rs, sum
	}
	p.mu.Unlock()
	p.m.reloadOK.Set(1)
	p.m.reloadTS.SetToCurrentTime()
	p.m.reloads.WithLabelValues("ok").Inc()
	if changed {
		p.log.Info("anomaly rules reloaded", "source", rs.Source(), "rules", rs.Summary())
	}
	return nil
}

// PartitionsRevoked forgets the stream position: the state is rebuilt from
// ClickHouse before the next batch.
func (p *Processor) PartitionsRevoked(partitions []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(partitions) > 0 {
		p.stale = "revoked"
	}
}

// Process evaluates one batch in event-time order and returns its alerts
// as ClickHouse rows and Kafka records. It fails only while restoring state
// from ClickHouse, before anything changed, so ingest may simply retry.
func (p *Processor) Process(ctx context.Context, b *consumers.Batch) (consumers.Output, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Before anything changes, so a failure (ClickHouse away) is retried
	// with the state untouched.
	qAlerts, qNew, err := p.quarantineAlerts(ctx, b)
	if err != nil {
		return consumers.Output{}, err
	}
	reason := p.stale
	for part, first := range b.FirstOffset {
		if n, ok := p.next[part]; ok && first < n {
			reason = "redo" // this batch, or part of it, was evaluated already
		}
	}
	rs := p.en.Rules()
	if p.pending != nil {
		rs = p.pending
		if reason == "" {
			reason = "reload"
		}
	}
	if reason != "" {
		en, err := newEngine(rs, p.cfg.limits())
		if err != nil {
			return consumers.Output{}, err
		}
		if p.conn != nil {
			if err := p.restore(ctx, en, b, reason); err != nil {
				return consumers.Output{}, err
			}
		}
		p.en, p.pending, p.stale = en, nil, ""
		p.next = map[int32]int64{}
		p.last = map[string]RuleStats{}
		p.lastTrace = 0
		p.m.groups.Reset()
	}

	order := evalOrder(b.Events)
	p.en.Advance(b.Now)
	latest := map[string]int{} // alert id -> index in alerts
	var alerts []Alert
	isNew := map[string]bool{}
	evaluated, skipped := 0, 0
	skipPart, skipUpTo, skipping := int32(0), int64(0), false // the last partition looked up in skipUpTo
	for k, i := range order {
		ev := &b.Events[i]
		if k == 0 || ev.Partition != skipPart {
			skipPart = ev.Partition
			skipUpTo, skipping = p.skipUpTo[skipPart]
		}
		if skipping && ev.Offset <= skipUpTo {
			skipped++ // restored from ClickHouse already
			continue
		}
		evaluated++
		for _, a := range p.en.Observe(&ev.Event) {
			if a.Version == 1 {
				isNew[a.ID] = true
			}
			if j, ok := latest[a.ID]; ok {
				alerts[j] = a
			} else {
				latest[a.ID] = len(alerts)
				alerts = append(alerts, a)
			}
		}
	}
	p.en.Advance(b.Now)
	for part, first := range b.FirstOffset {
		p.next[part] = max(p.next[part], first)
	}
	// Per partition, in poll order: runs of one partition's events are the
	// rule, so the maps are touched once per run, not once per event.
	for i := 0; i < len(b.Events); {
		part, hi := b.Events[i].Partition, b.Events[i].Offset
		j := i + 1
		for ; j < len(b.Events) && b.Events[j].Partition == part; j++ {
			hi = max(hi, b.Events[j].Offset)
		}
		p.next[part] = max(p.next[part], hi+1)
		if upto, ok := p.skipUpTo[part]; ok && hi >= upto {
			delete(p.skipUpTo, part)
		}
		i = j
	}
	p.m.events.WithLabelValues("evaluated").Add(float64(evaluated))
	if skipped > 0 {
		p.m.events.WithLabelValues("already_restored").Add(float64(skipped))
	}
	p.observeStats()
	for _, a := range qAlerts {
		alerts = append(alerts, a)
		isNew[a.ID] = qNew[a.ID]
	}
	if len(alerts) == 0 {
		return consumers.Output{}, nil
	}

	out := consumers.Output{Inserts: []consumers.Insert{{Table: p.db + ".alerts", Columns: alertColumns, Values: alertValues(alerts)}}}
	for _, a := range alerts {
		val, err := json.Marshal(a)
		if err != nil {
			return consumers.Output{}, fmt.Errorf("anomaly: encode alert: %w", err)
		}
		out.Records = append(out.Records, &kgo.Record{
			Topic: p.cfg.AlertTopic, Key: []byte(a.ID), Value: val,
			Headers: []kgo.RecordHeader{
				{Key: "content-type", Value: []byte("application/json")},
				{Key: "agentrail.alert_version", Value: []byte(strconv.FormatUint(a.Version, 10))},
			},
		})
		if isNew[a.ID] {
			p.m.alerts.WithLabelValues(a.Rule, a.Severity).Inc()
			p.log.Info("alert", "rule", a.Rule, "severity", a.Severity, "group", a.GroupKey, "alert_id", a.ID, "summary", a.Summary)
			if p.hook != nil {
				p.hook.enqueue(a)
			}
		} else {
			p.m.updates.WithLabelValues(a.Rule).Inc()
		}
	}
	return out, nil
}

// evalKey is an event's place in evaluation order: its event time in
// nanoseconds, then its partition; ties on both (rare) compare the offsets.
type evalKey struct {
	ns        int64
	partition int32
	idx       int32 // into the batch's events
}

// evalOrder returns the indexes of the batch's events in evaluation order:
// by event time, then partition and offset, ties kept in batch order (as
// sort.SliceStable on those did). Sorting small keys whose comparison
// mostly reads one integer costs a fraction of sorting indexes whose
// comparison reads two events.
func evalOrder(evs []consumers.Accepted) []int {
	out := make([]int, len(evs))
	keys := make([]evalKey, len(evs))
	for i := range evs {
		t := evs[i].Time
		if s := t.Unix(); s < minNanoSec || s > maxNanoSec || len(evs) > math.MaxInt32 {
			return evalOrderTimes(evs, out) // beyond int64 nanoseconds (years 1678..2262)
		}
		keys[i] = evalKey{ns: t.UnixNano(), partition: evs[i].Partition, idx: int32(i)}
	}
	slices.SortFunc(keys, func(a, c evalKey) int {
		if a.ns != c.ns {
			return cmp.Compare(a.ns, c.ns)
		}
		if a.partition != c.partition {
			return cmp.Compare(a.partition, c.partition)
		}
		if oa, oc := evs[a.idx].Offset, evs[c.idx].Offset; oa != oc {
			return cmp.Compare(oa, oc)
		}
		return cmp.Compare(a.idx, c.idx)
	})
	for i, k := range keys {
		out[i] = int(k.idx)
	}
	return out
}

// The Unix seconds whose times UnixNano represents (with a second of margin).
const (
	minNanoSec = math.MinInt64/1_000_000_000 + 1
	maxNanoSec = math.MaxInt64/1_000_000_000 - 1
)

// evalOrderTimes is evalOrder by comparing the events' times, for times
// outside UnixNano's range.
func evalOrderTimes(evs []consumers.Accepted, order []int) []int {
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		a, c := &evs[i], &evs[j]
		if r := a.Time.Compare(c.Time); r != 0 {
			return r
		}
		if a.Partition != c.Partition {
			return cmp.Compare(a.Partition, c.Partition)
		}
		return cmp.Compare(a.Offset, c.Offset)
	})
	return order
}

// restore rebuilds en from ClickHouse as of the batch: every event below
// the batch's first offsets, and the open alerts.
func (p *Processor) restore(ctx context.Context, en *Engine, b *consumers.Batch, reason string) error {
	start := time.Now()
	ref := b.Now
	if len(b.Events) > 0 {
		newest := b.Events[0].Time
		for i := range b.Events {
			if b.Events[i].Time.After(newest) {
				newest = b.Events[i].Time
			}
		}
		if newest.Before(ref) || ref.IsZero() {
			ref = newest
		}
	}
	if ref.IsZero() {
		ref = time.Now()
	}
	en.Advance(b.Now)
	st, err := restore(ctx, p.conn, p.db, en, ref, b.FirstOffset, time.Time{}, true)
	if err != nil {
		return err
	}
	p.skipUpTo = map[int32]int64{}
	for part, off := range st.MaxOffset {
		if _, inBatch := b.FirstOffset[part]; !inBatch {
			p.skipUpTo[part] = off
		}
	}
	d := time.Since(start)
	p.m.restores.WithLabelValues(reason).Inc()
	p.m.restoreSecs.Observe(d.Seconds())
	p.m.restored.Add(float64(st.Events))
	p.log.Info("anomaly state restored from ClickHouse", "reason", reason, "as_of", ref, "events", st.Events,
		"first_use_rows", st.Seeded, "open_alerts", st.OpenAlerts, "took", d.Round(time.Millisecond))
	return nil
}

// observeStats turns the engine's running totals into metrics.
func (p *Processor) observeStats() {
	st := p.en.Stats()
	for _, r := range st.Rules {
		prev := p.last[r.Rule]
		p.m.late.WithLabelValues(r.Rule).Add(float64(r.Late - prev.Late))
		p.m.evicted.WithLabelValues(r.Rule).Add(float64(r.Evicted - prev.Evicted))
		p.m.truncated.WithLabelValues(r.Rule).Add(float64(r.Truncated - prev.Truncated))
		p.m.groups.WithLabelValues(r.Rule).Set(float64(r.Groups))
		if r.Evicted > prev.Evicted && time.Since(p.lastEvictWarn) >= time.Minute {
			p.lastEvictWarn = time.Now()
			p.log.Warn("anomaly groups evicted at the per-rule bound (see agentrail_anomaly_evicted_groups_total); raise anomaly.max_groups_per_rule",
				"rule", r.Rule, "evicted", r.Evicted, "bound", p.cfg.MaxGroupsPerRule)
		}
		p.last[r.Rule] = r
	}
	p.m.traceEvictions.Add(float64(st.TraceEvictions - p.lastTrace))
	p.lastTrace = st.TraceEvictions
	if wm := p.en.Watermark(); !wm.IsZero() {
		p.m.watermark.Set(float64(wm.UnixMicro()) / 1e6)
	}
}

// Engine returns the engine in force (for tests; not safe while Process
// runs).
func (p *Processor) Engine() *Engine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.en
}

// Run watches the rule file and delivers webhooks until ctx ends.
func (p *Processor) Run(ctx context.Context) error {
	done := make(chan struct{})
	if p.hook != nil {
		go func() {
			defer close(done)
			p.hook.run(ctx)
		}()
	} else {
		close(done)
	}
	err := p.watch(ctx)
	<-done
	return err
}

// Close delivers the webhooks still queued, within ctx. It is idempotent.
func (p *Processor) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		if p.hook != nil {
			p.hook.drain(ctx)
		}
	})
	return nil
}

// jsonLine encodes an alert as one JSON line (webhook bodies, CLI output).
func jsonLine(a Alert) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a)
	return b.Bytes()
}
