package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Signature modes.
const (
	// SignaturesEnforce verifies every event against the registry's keys;
	// an event that fails is quarantined, never stored as genuine.
	SignaturesEnforce = "enforce"
	// SignaturesOff stores events without verifying them (signer_key_id
	// stays empty).
	SignaturesOff = "off"
)

// SignatureConfig is the `signatures` section: how ingest checks that each
// event comes from the agent it names (package signing).
type SignatureConfig struct {
	Mode string `yaml:"mode"` // enforce (default) or off
	// RegistryFile is the agent registry whose agents' keys verify events
	// (the file `agentrail registry apply` takes). It is reloaded when it
	// changes; a file with mistakes is refused and the keys in force stay.
	RegistryFile string `yaml:"registry_file"`
	// ClockSkew is allowed around a key's validity, against event_time.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// DisableWatch stops reloading RegistryFile when it changes.
	DisableWatch bool `yaml:"disable_watch"`
}

// DefaultRegistryFile is where ingest looks for the registry's keys unless
// told otherwise (relative to the working directory).
const DefaultRegistryFile = "deployments/registry.yaml"

func (c *SignatureConfig) defaults() {
	if c.Mode == "" {
		c.Mode = SignaturesEnforce
	}
	if c.RegistryFile == "" {
		c.RegistryFile = DefaultRegistryFile
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = signing.DefaultSkew
	}
}

func (c *SignatureConfig) validate() error {
	switch {
	case c.Mode != SignaturesEnforce && c.Mode != SignaturesOff:
		return fmt.Errorf("signatures.mode: %q must be %s or %s", c.Mode, SignaturesEnforce, SignaturesOff)
	case c.Mode == SignaturesEnforce && c.RegistryFile == "":
		return fmt.Errorf("signatures.registry_file: is required when signatures.mode is %s", SignaturesEnforce)
	case c.ClockSkew < 0 || c.ClockSkew > time.Hour:
		return fmt.Errorf("signatures.clock_skew: %s out of range 0..1h", c.ClockSkew)
	}
	return nil
}

// Quarantined is a record that failed signature verification: not shown to
// come from the agent it names. Event is what the record claims (decoded,
// valid and redacted), or, when its value is not a valid event, only the
// key's agent and the record's timestamp (see describeQuarantined). Ingest
// writes it to the quarantine table instead of events, and processors see it
// in Batch.Quarantined (the anomaly stage raises an alert).
type Quarantined struct {
	schemas.Event
	Topic     string
	Partition int32
	Offset    int64
	Verdict   signing.Verdict
	RawBytes  int    // size of the record value
	RawSHA256 string // of the record value, hex
}

// signatures verifies events against the registry's keys.
type signatures struct {
	cfg SignatureConfig
	log *slog.Logger

	v       atomic.Pointer[signing.Verifier]
	mu      sync.Mutex // serialises reloads
	fileSum [32]byte   // of the registry file in force, to ignore no-op writes

	quarantined *prometheus.CounterVec
	reloadOK    prometheus.Gauge
	keys        prometheus.Gauge
}

func newSignatures(cfg SignatureConfig, reg prometheus.Registerer, log *slog.Logger) (*signatures, error) {
	s := &signatures{cfg: cfg, log: log,
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentrail_ingest_quarantined_total", Help: "Events quarantined because their signature did not verify, by reason.",
		}, []string{"reason"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_ingest_signature_keys_reload_success", Help: "1 if the last (re)load of the registry's signing keys succeeded, else 0.",
		}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "agentrail_ingest_signature_keys", Help: "Signing keys in force.",
		}),
	}
	for _, r := range signing.Reasons {
		s.quarantined.WithLabelValues(string(r))
	}
	for _, c := range []prometheus.Collector{s.quarantined, s.reloadOK, s.keys} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("consumers: register metrics: %w", err)
		}
	}
	if cfg.Mode == SignaturesOff {
		return s, nil
	}
	if err := s.reload(); err != nil {
		return nil, fmt.Errorf("consumers: signatures.registry_file: %w (set signatures.mode: off to store events unverified)", err)
	}
	return s, nil
}

// reload reads the registry's keys again; a file with mistakes is refused
// and the keys in force stay.
func (s *signatures) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, err := os.ReadFile(s.cfg.RegistryFile)
	if err == nil && sha256.Sum256(raw) == s.fileSum && s.v.Load() != nil {
		return nil
	}
	var v *signing.Verifier
	if err == nil {
		v, err = signing.LoadRegistry(s.cfg.RegistryFile, s.cfg.ClockSkew)
	}
	if err != nil {
		s.reloadOK.Set(0)
		return err
	}
	s.v.Store(v)
	s.fileSum = sha256.Sum256(raw)
	n, agents := v.Keys()
	s.keys.Set(float64(n))
	s.reloadOK.Set(1)
	s.log.Info("signing keys loaded", "registry", s.cfg.RegistryFile, "keys", n, "agents", agents)
	return nil
}

// verifySignature is ingest's first look at a record (v is the verifier in
// force, nil with signatures off, when every record passes unattributed):
// its signature over the exact bytes of its value, before anything is
// decoded.
func (in *Ingest) verifySignature(v *signing.Verifier, r *kgo.Record) signing.Verdict {
	if v == nil {
		return signing.Verdict{}
	}
	return v.VerifySignature(r.Headers, r.Value)
}

// verifyClaims checks what needs the decoded event, for a record whose
// signature verified: the key's agent is the event's agent_id, and the key
// was valid at its event_time.
func (in *Ingest) verifyClaims(v *signing.Verifier, signed signing.Verdict, e *schemas.Event) signing.Verdict {
	if v == nil {
		return signed
	}
	return v.VerifyClaims(signed, e.Agent.ID, e.Time)
}

// describeQuarantined fills a with what a record whose signature did not
// verify claims, for its quarantine row and its alert; the verdict (*v) is
// already reached and nothing here changes it. A value that decodes into a
// valid event is kept as its claim, redacted like an accepted event (*reds).
// Any other value is withheld, as a dead letter's undecodable value is:
// nothing of it but its size and SHA-256 is kept, the row names the agent
// the key belongs to (none for an unsigned record or an unknown key) and the
// record's Kafka timestamp as its event_time, and the detail says why.
func (in *Ingest) describeQuarantined(ctx context.Context, r *kgo.Record, a *Accepted, reds *[]redact.Redaction, v *signing.Verdict) error {
	e := &a.Event
	invalid, decErr, err := in.decodeValid(ctx, r, e)
	if err != nil {
		return err
	}
	if decErr == nil {
		*reds = in.redact(e) // redaction.go
		return nil
	}
	*e = schemas.Event{} // a failed decode may have filled part of it
	e.Agent.ID = v.KeyAgent
	e.Time = in.receivedAt(r)
	if invalid != nil {
		v.Detail += "; the value is not a valid event (validation of " + invalid.Field + "), its content is withheld"
	} else {
		v.Detail += "; the value does not decode, its content is withheld"
	}
	return nil
}

// receivedAt is the event_time of a quarantined record whose value is
// withheld: its Kafka timestamp, which a redone batch reads again, or
// ingest's clock when that is outside the event_time validation accepts
// (ingest.max_past, ingest.max_future), so a forged timestamp cannot put
// the row out of the table's range.
func (in *Ingest) receivedAt(r *kgo.Record) time.Time {
	now := in.now()
	t := r.Timestamp
	if t.IsZero() || t.Before(now.Add(-in.lim.MaxPast)) || t.After(now.Add(in.lim.MaxFuture)) {
		return now.UTC()
	}
	return t.UTC()
}

// quarantine keeps an event that failed verification with the batch.
func (b *batch) quarantine(r *kgo.Record, e *schemas.Event, v signing.Verdict) {
	sum := sha256.Sum256(r.Value)
	b.quarantined = append(b.quarantined, Quarantined{Event: *e, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Verdict: v, RawBytes: len(r.Value), RawSHA256: hex.EncodeToString(sum[:])})
}

// quarantineColumns are the quarantine table's columns ingest writes.
var quarantineColumns = []string{"topic", "partition", "offset", "reason", "detail", "key_id", "key_agent_id",
	"event_id", "trace_id", "span_id", "event_type", "event_time", "tier", "agent_id", "agent_version", "team", "environment", "tenant",
	"requested_by", "producer_name", "producer_version", "producer_host", "tool", "action", "target", "action_class", "action_digest",
	"outcome", "policy_id", "approval_id", "approval_status", "approver", "result_status", "raw_bytes", "raw_sha256"}

// insertQuarantine writes the batch's quarantined events (idempotent: the
// table is keyed on the Kafka position).
func (in *Ingest) insertQuarantine(ctx context.Context, b *batch) error {
	if len(b.quarantined) == 0 {
		return nil
	}
	n := len(b.quarantined)
	str := func() []string { return make([]string, n) }
	var (
		topics, reasons, details, kids, kagents                       = str(), str(), str(), str(), str()
		ids, traces, spans, types, agents, versions, teams, envs      = str(), str(), str(), str(), str(), str(), str(), str()
		tenants, reqs, pnames, pversions, phosts                      = str(), str(), str(), str(), str()
		tools, actions, targets, classes, digests                     = str(), str(), str(), str(), str()
		outcomes, policies, apIDs, apStatuses, approvers, resStatuses = str(), str(), str(), str(), str(), str()
		sums                                                          = str()
		parts                                                         = make([]int32, n)
		offsets                                                       = make([]int64, n)
		times                                                         = make([]time.Time, n)
		tiers                                                         = make([]uint8, n)
		sizes                                                         = make([]uint32, n)
	)
	for i := range b.quarantined {
		q := &b.quarantined[i]
		e := &q.Event
		topics[i], parts[i], offsets[i] = q.Topic, q.Partition, q.Offset
		reasons[i], details[i], kids[i], kagents[i] = string(q.Verdict.Reason), q.Verdict.Detail, q.Verdict.KeyID, q.Verdict.KeyAgent
		ids[i], traces[i], spans[i], types[i], times[i], tiers[i] = e.EventID, e.TraceID, e.SpanID, string(e.Type), e.Time, uint8(e.Tier)
		agents[i], versions[i], teams[i], envs[i], tenants[i] = e.Agent.ID, e.Agent.Version, e.Agent.Team, e.Agent.Environment, e.Agent.Tenant
		reqs[i], pnames[i], pversions[i], phosts[i] = e.RequestedBy, e.Producer.Name, e.Producer.Version, e.Producer.Host
		switch {
		case e.Intent != nil:
			tools[i], actions[i], targets[i], classes[i], digests[i] = e.Intent.Tool, e.Intent.Action, e.Intent.Target, e.Intent.ActionClass, e.Intent.ActionDigest
		case e.Decision != nil:
			outcomes[i], policies[i] = e.Decision.Outcome, e.Decision.PolicyID
		case e.Approval != nil:
			apIDs[i], apStatuses[i], approvers[i], digests[i] = e.Approval.ApprovalID, e.Approval.Status, e.Approval.Approver, e.Approval.ActionDigest
		case e.Result != nil:
			resStatuses[i], digests[i] = e.Result.Status, e.Result.ActionDigest
		}
		sizes[i], sums[i] = uint32(q.RawBytes), q.RawSHA256
	}
	if err := in.send(ctx, Insert{Table: in.cfg.ClickHouse.Database + ".quarantine", Columns: quarantineColumns, Values: []any{topics, parts, offsets, reasons, details, kids, kagents,
		ids, traces, spans, types, times, tiers, agents, versions, teams, envs, tenants,
		reqs, pnames, pversions, phosts, tools, actions, targets, classes, digests,
		outcomes, policies, apIDs, apStatuses, approvers, resStatuses, sizes, sums}}); err != nil {
		return fmt.Errorf("insert %d quarantined events: %w", n, err)
	}
	return nil
}

// maxQuarantineLogs bounds the lines one batch logs about quarantined
// events: a producer that stopped signing would otherwise log every event.
const maxQuarantineLogs = 5

// countQuarantined counts a committed batch's quarantined events and logs
// the first few: a forged or misattributed event is worth a line.
func (in *Ingest) countQuarantined(b *batch) {
	if len(b.quarantined) == 0 {
		return
	}
	in.m.records.WithLabelValues("quarantined").Add(float64(len(b.quarantined)))
	for i := range b.quarantined {
		q := &b.quarantined[i]
		in.sig.quarantined.WithLabelValues(string(q.Verdict.Reason)).Inc()
		if i < maxQuarantineLogs {
			in.log.Warn("event quarantined", "reason", q.Verdict.Reason, "agent", q.Agent.ID, "key_id", q.Verdict.KeyID,
				"event_id", q.EventID, "partition", q.Partition, "offset", q.Offset, "detail", q.Verdict.Detail)
		}
	}
	if n := len(b.quarantined); n > maxQuarantineLogs {
		in.log.Warn("more events quarantined in this batch (see the quarantine table)", "not_logged", n-maxQuarantineLogs, "quarantined", n)
	}
}

// watchRegistry reloads the registry's keys when the file changes, until
// ctx ends or stop is called. Like the rule file, it watches the directory:
// editors and ConfigMaps replace files by renaming.
func (in *Ingest) watchRegistry(ctx context.Context) (stop func()) {
	s := in.sig
	if s.cfg.Mode == SignaturesOff || s.cfg.DisableWatch {
		return func() {}
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(filepath.Dir(s.cfg.RegistryFile))
	}
	if err != nil {
		if w != nil {
			w.Close()
		}
		in.log.Warn("not watching the registry for key changes; restart ingest to load new keys", "registry", s.cfg.RegistryFile, "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Close()
		const settle = 200 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
					continue
				}
				timer.Reset(settle)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				in.log.Warn("watching the registry", "err", err)
			case <-timer.C:
				if err := s.reload(); err != nil && !errors.Is(err, context.Canceled) {
					in.log.Error("signing keys not reloaded; the keys in force stay", "registry", s.cfg.RegistryFile, "err", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
