package bench

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/agentrail/agentrail/internal/chstore"
)

// peerKafkaTable reads the canonical JSON form: the envelope's and bodies'
// nested objects parse into named tuples, omitted fields take defaults.
const peerKafkaTable = `CREATE TABLE {db}.kafka_events (
	event_id String, trace_id String, span_id String, event_type String,
	event_time DateTime64(6, 'UTC'), tier UInt8,
	agent Tuple(agent_id String, agent_version String, team String, environment String, tenant String),
	requested_by String,
	producer Tuple(name String, version String, host String),
	session_id String, labels Map(String, String),
	intent Tuple(tool String, action String, target String, action_class String, tier UInt8,
		parameters Map(String, String), action_digest String, rationale String, context Map(String, String),
		model_id String, prompt_version String, evidence_ids Array(String), confidence Nullable(Float64)),
	policy_decision Tuple(outcome String, policy_id String, policy_version Int64, matched_rule String,
		reason String, tier UInt8, remaining_quota Nullable(Int64)),
	approval Tuple(approval_id String, status String, approver String, approver_role String,
		approver_kind String, action_digest String, scope String, expires_at Nullable(DateTime64(6, 'UTC')),
		channel String, comment String),
	result Tuple(status String, action_digest String, executor String, changed_resource String,
		side_effects Array(String), error_class String, error_message String, duration_us Int64)
) ENGINE = Kafka SETTINGS
	kafka_broker_list = '{brokers}', kafka_topic_list = '{topic}', kafka_group_name = '{group}',
	kafka_format = 'JSONEachRow', {settings}`

// peerView flattens into the same events table our migrations create.
const peerView = `CREATE MATERIALIZED VIEW {db}.kafka_to_events TO {db}.events AS SELECT
	event_id, trace_id, span_id, event_type, event_time, tier,
	agent.agent_id AS agent_id, agent.agent_version AS agent_version, agent.team AS team,
	agent.environment AS environment, agent.tenant AS tenant, requested_by,
	producer.name AS producer_name, producer.version AS producer_version, producer.host AS producer_host,
	session_id, labels,
	intent.tool AS tool, intent.action AS action, intent.target AS target, intent.action_class AS action_class,
	intent.parameters AS parameters,
	multiIf(event_type = 'result', result.action_digest, event_type = 'approval', approval.action_digest, intent.action_digest) AS action_digest,
	intent.rationale AS rationale, intent.context AS context, intent.model_id AS model_id,
	intent.prompt_version AS prompt_version, intent.evidence_ids AS evidence_ids, intent.confidence AS confidence,
	policy_decision.outcome AS outcome, policy_decision.policy_id AS policy_id,
	policy_decision.policy_version AS policy_version, policy_decision.matched_rule AS matched_rule,
	policy_decision.reason AS reason, policy_decision.remaining_quota AS remaining_quota,
	approval.approval_id AS approval_id, approval.status AS approval_status, approval.approver AS approver,
	approval.approver_role AS approver_role, approval.approver_kind AS approver_kind, approval.scope AS scope,
	approval.expires_at AS expires_at, approval.channel AS channel, approval.comment AS comment,
	result.status AS result_status, result.executor AS executor, result.changed_resource AS changed_resource,
	result.side_effects AS side_effects, result.error_class AS error_class, result.error_message AS error_message,
	result.duration_us AS duration_us,
	toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_events`

// PeerSettings are the Kafka-engine table's tuning knobs: the peer gets its
// best reasonable settings on this machine, stated with its results.
type PeerSettings struct {
	Consumers         int           // kafka_num_consumers; default the CPU count
	ThreadPerConsumer bool          // kafka_thread_per_consumer: each consumer flushes in parallel
	MaxBlockSize      int           // kafka_max_block_size: rows per insert
	PollMaxBatch      int           // kafka_poll_max_batch_size: messages per poll
	FlushInterval     time.Duration // kafka_flush_interval_ms: flush a smaller block after this
}

func (p *PeerSettings) defaults() {
	if p.Consumers == 0 {
		p.Consumers = runtime.NumCPU()
	}
	if p.MaxBlockSize == 0 {
		p.MaxBlockSize = 262_144
	}
	if p.PollMaxBatch == 0 {
		p.PollMaxBatch = 65_536
	}
	if p.FlushInterval == 0 {
		p.FlushInterval = time.Second
	}
}

func (p PeerSettings) validate() error {
	switch {
	case p.Consumers < 1 || p.Consumers > 12:
		return fmt.Errorf("bench: --peer-consumers %d out of range 1..12 (the topic's partitions)", p.Consumers)
	case p.MaxBlockSize < 1000 || p.MaxBlockSize > 10_000_000:
		return fmt.Errorf("bench: --peer-max-block-size %d out of range 1000..10000000", p.MaxBlockSize)
	case p.PollMaxBatch < 100 || p.PollMaxBatch > 10_000_000:
		return fmt.Errorf("bench: --peer-poll-max-batch %d out of range 100..10000000", p.PollMaxBatch)
	case p.FlushInterval < 100*time.Millisecond || p.FlushInterval > time.Minute:
		return fmt.Errorf("bench: --peer-flush-interval %s out of range 100ms..1m", p.FlushInterval)
	}
	return nil
}

func (p PeerSettings) sql() string {
	return fmt.Sprintf("kafka_num_consumers = %d, kafka_thread_per_consumer = %d, kafka_max_block_size = %d, "+
		"kafka_poll_max_batch_size = %d, kafka_flush_interval_ms = %d",
		p.Consumers, b2i(p.ThreadPerConsumer), p.MaxBlockSize, p.PollMaxBatch, p.FlushInterval.Milliseconds())
}

func (p PeerSettings) String() string { return p.sql() }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runPeer has ClickHouse's Kafka engine read the canonical-JSON copy of the
// same events into an equivalent table through a materialized view, timing
// from the table's creation until every event is stored.
func (e *env) runPeer(ctx context.Context, i int) (throughput, error) {
	db := fmt.Sprintf("bench_peer_%d", i)
	if _, err := chstore.Migrate(ctx, e.conn, db); err != nil {
		return throughput{}, err
	}
	r := strings.NewReplacer("{db}", db, "{brokers}", strings.Join(e.kc.Brokers, ","), "{topic}", jsonTopic,
		"{group}", fmt.Sprintf("bench-peer-%d", i), "{settings}", e.cfg.Peer.sql())
	cpu0, err := e.cpuNow()
	if err != nil {
		return throughput{}, err
	}
	start := time.Now()
	// The view first, so nothing the Kafka table reads is lost.
	for _, ddl := range []string{peerKafkaTable, peerView} {
		if err := e.conn.Exec(ctx, r.Replace(ddl)); err != nil {
			return throughput{}, fmt.Errorf("%s: %w", strings.SplitN(ddl, "(", 2)[0], err)
		}
	}
	// A bound against a peer that stopped, not a target: 1,000 events/s.
	limit := max(5*time.Minute, time.Duration(e.cfg.Events)*time.Millisecond)
	deadline := start.Add(limit)
	for {
		var n uint64
		if err := e.conn.QueryRow(ctx, "SELECT count() FROM "+db+".events").Scan(&n); err != nil {
			return throughput{}, err
		}
		if int(n) >= e.cfg.Events {
			break
		}
		if time.Now().After(deadline) {
			return throughput{}, fmt.Errorf("peer stored %d of %d events in %s", n, e.cfg.Events, limit)
		}
		select {
		case <-ctx.Done():
			return throughput{}, ctx.Err()
		// Each count() costs ClickHouse CPU, which counts against the
		// peer: poll every 100 ms, not faster.
		case <-time.After(100 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cpu1, err := e.cpuNow()
	if err != nil {
		return throughput{}, err
	}
	if e.cfg.CHProfile {
		e.chProfile(ctx, fmt.Sprintf("peer run %d", i+1), db, start)
	}
	if err := e.conn.Exec(ctx, "DROP TABLE "+db+".kafka_events SYNC"); err != nil {
		return throughput{}, err
	}
	merges, wait, err := e.settle(ctx, db)
	if err != nil {
		return throughput{}, err
	}
	return throughput{rate: float64(e.cfg.Events) / elapsed.Seconds(), cpu: cpu1.sub(cpu0).per(e.cfg.Events), elapsed: elapsed,
		merges: merges.per(e.cfg.Events), mergeWait: wait}, nil
}
