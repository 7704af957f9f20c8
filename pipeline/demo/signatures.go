package demo

import (
	"bytes"
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/anomaly"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/pipeline"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// plantForgeries sends events that must not pass as genuine, as an
// intruder or a broken producer would: one unsigned, one altered after it
// was signed, one signed with another agent's key, one signed with a key
// nobody registered, and one cut short after it was signed so that it no
// longer decodes. Each names a real agent of the fleet.
func (d *demo) plantForgeries(ctx context.Context, kc kafkacfg.Config, at time.Time) (int, error) {
	cl, err := pipeline.KafkaClient(kc)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	fleet := simulate.New(simulate.Config{Seed: 77})
	agents := fleet.Agents()
	victim, other := agents[0].Identity.ID, agents[len(agents)-1].Identity.ID
	enc := schemas.NewSingleObjectEncoder()
	event := func() schemas.Event {
		for {
			evs := fleet.NextTrace(at)
			for _, e := range evs {
				if e.Agent.ID == victim && e.Intent != nil {
					return e
				}
			}
		}
	}
	record := func(e *schemas.Event, s *signing.Signer) (*kgo.Record, error) {
		v, err := enc.AppendEncode(nil, e)
		if err != nil {
			return nil, err
		}
		r := &kgo.Record{Topic: kc.Topics.Events, Key: []byte(e.TraceID), Value: v}
		if s != nil {
			r.Headers = []kgo.RecordHeader{{Key: signing.HeaderKeyID, Value: s.KeyIDHeader()}, {Key: signing.HeaderSignature, Value: s.AppendSign(nil, v)}}
		}
		return r, nil
	}
	intruder, err := signing.NewSigner(victim, "intruder-key-1", signing.Ed25519, bytes.Repeat([]byte{0x66}, 32))
	if err != nil {
		return 0, err
	}
	var recs []*kgo.Record
	add := func(r *kgo.Record, err error) error {
		if err == nil {
			recs = append(recs, r)
		}
		return err
	}
	e1, e2, e3, e4 := event(), event(), event(), event()
	if err := add(record(&e1, nil)); err != nil { // unsigned
		return 0, err
	}
	signed, err := record(&e2, simulate.DemoSigner(victim)) // signed, then altered
	if err != nil {
		return 0, err
	}
	e2.Intent.Target += "-redirected"
	if err := add(record(&e2, nil)); err != nil {
		return 0, err
	}
	recs[len(recs)-1].Headers = signed.Headers
	if err := add(record(&e3, simulate.DemoSigner(other))); err != nil { // another agent's key
		return 0, err
	}
	if err := add(record(&e4, intruder)); err != nil { // a key nobody registered
		return 0, err
	}
	// Signed, then cut short: the bytes no longer decode, and the signature
	// is checked first, so it is quarantined as bad_signature with its alert,
	// not dead-lettered as undecodable.
	e5 := event()
	cut, err := record(&e5, simulate.DemoSigner(victim))
	if err != nil {
		return 0, err
	}
	cut.Value = cut.Value[:len(cut.Value)-len(cut.Value)/3]
	recs = append(recs, cut)
	return len(recs), cl.ProduceSync(ctx, recs...).FirstErr()
}

// signatureFindings prints what verification did: how many stored events
// were signed, what was quarantined and why, and the alerts it raised.
func (d *demo) signatureFindings(ctx context.Context, db string) error {
	sections := []struct{ title, sql string }{
		{"Signatures (every stored event verified against deployments/registry.yaml; v_events.signer_key_id names its key)",
			`SELECT count() AS events, countIf(signer_key_id != '') AS signed, uniqExact(signer_key_id) AS keys_used FROM {db}.v_events`},
		{"Quarantined events (v_quarantine: failed verification, never in v_events)",
			`SELECT reason, agent_id AS claimed_agent, key_id, key_agent_id AS key_owner, event_type, substring(detail, 1, 90) AS detail
			 FROM {db}.v_quarantine ORDER BY reason`},
		{"Alerts they raised (v_alerts, rule " + anomaly.QuarantineRule + "; also on agentrail.alerts)",
			`SELECT severity, agent_id, version AS events, summary FROM {db}.v_alerts WHERE rule = '` + anomaly.QuarantineRule + `' ORDER BY group_key`},
	}
	for _, s := range sections {
		if err := d.query(ctx, db, s.title, s.sql, false); err != nil {
			return err
		}
	}
	return nil
}
