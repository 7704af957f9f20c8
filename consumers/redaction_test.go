package consumers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/consumers/redact"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/internal/testenv"
	"github.com/agentrail/agentrail/schemas"
)

// The raw values the events of TestRedactionEndToEnd carry. None may be
// found anywhere in ClickHouse, on the dead-letter topic or in the logs.
const (
	rawEmail = "jane.doe@mail.example"
	rawCard  = "4242 4242 4242 4242"
	rawKey   = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
	rawPhone = "+1 415 555 0134"
	rawToken = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	rawIBAN  = "GB29 NWBK 6016 1331 9268 19"
	rawSSN   = "078-05-1121"
	// An AWS-style secret access key beginning with '/', the kind an
	// outside corpus found leaking from an approval comment.
	rawAWSSecret = "/K7MDENGbPxRfiCYEXAMPLEKEYwJalrXUtnFEMI2a"
)

var rawValues = []string{rawEmail, "4242424242424242", rawCard, rawKey, rawPhone, rawToken, "hunter2-hunter2",
	rawIBAN, "GB29NWBK60161331926819", rawSSN, "078051121", rawAWSSecret}

// syncBuffer is a log sink the test can read while ingest writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRedactionEndToEnd sends events that carry an e-mail address, a card
// number, an API key, a phone number and a password in parameters, context,
// rationale, comments and error messages, plus poison records carrying the
// same, through a real broker and ingest into a real ClickHouse, and checks
// that no raw value is stored, dead-lettered or logged; that each event
// records its redactions; that a pseudonymised address joins two events; and
// that action_digest is the producer's, over the raw payload.
func TestRedactionEndToEnd(t *testing.T) {
	var kc kafkacfg.Config
	kc.Defaults()
	addr := testenv.Broker(t, kc.Topics.Events, kc.Topics.DeadLetter)
	chCfg, conn := testenv.ClickHouse(t)
	now := time.Now().UTC()
	t.Setenv("AGENTRAIL_TEST_REDACTION_SECRET", "test-secret-of-at-least-16-bytes")

	// Trace 1: the payload and free text carry everything.
	t1 := traceEvents(1, now)
	in1 := t1[0].Intent
	in1.Parameters = map[string]string{"to": rawEmail, "amount": "42.00", "password": "hunter2-hunter2"}
	in1.Context = map[string]string{"ticket": "SUP-123456", "debug": "GET /v1/charges?api_key=" + rawToken, "kyc": "SSN " + rawSSN}
	in1.Rationale = "customer " + rawEmail + " paid twice with card " + rawCard + "; callback " + rawPhone + "; repo key " + rawKey
	in1.ActionDigest = schemas.ActionDigest(t1[0].Agent.ID, in1.Tool, in1.Action, in1.Target, in1.Parameters)
	for _, e := range t1[1:] {
		switch {
		case e.Approval != nil:
			e.Approval.ActionDigest = in1.ActionDigest
			e.Approval.Comment = "ok, confirmed with " + rawEmail + " by phone " + rawPhone + "; aws key " + rawAWSSecret
		case e.Result != nil:
			e.Result.ActionDigest = in1.ActionDigest
			e.Result.ErrorMessage = "psp said: invalid key " + rawToken
			e.Result.SideEffects = []string{"refund:re_123", "receipt mailed to " + rawEmail, "paid to " + rawIBAN}
		}
	}
	// Trace 2: the same address under another key, to join on.
	t2 := traceEvents(2, now)
	in2 := t2[0].Intent
	in2.Parameters = map[string]string{"contact": strings.ToUpper(rawEmail)}
	in2.ActionDigest = schemas.ActionDigest(t2[0].Agent.ID, in2.Tool, in2.Action, in2.Target, in2.Parameters)
	good := append(t1, t2[0])
	recs := encodeAll(t, kc.Topics.Events, good)

	// Poison: an event that decodes but fails validation, carrying the
	// secrets; and bytes that do not decode, carrying them too.
	bad := traceEvents(3, now)[0]
	bad.TraceID = "not-a-trace"
	bad.Intent.Parameters = map[string]string{"to": rawEmail, "card": rawCard}
	bad.Intent.Rationale = "key " + rawKey + " iban " + rawIBAN + " ssn " + rawSSN + " secret " + rawAWSSecret
	poison := encodeAll(t, kc.Topics.Events, []*schemas.Event{bad})[0]
	garbage := &kgo.Record{Topic: kc.Topics.Events, Key: []byte(rawEmail),
		Value: []byte("not avro: " + rawEmail + " " + rawCard + " " + rawKey + " " + rawIBAN + " " + rawSSN + " " + rawAWSSecret)}
	recs = append(recs, poison, garbage)
	produce(t, addr, recs)

	cfg := Config{Kafka: kafkacfg.Config{Brokers: []string{addr}}, ClickHouse: chCfg, Signatures: SignatureConfig{Mode: SignaturesOff}}
	cfg.Redaction.SecretEnv = "AGENTRAIL_TEST_REDACTION_SECRET"
	cfg.Redaction.Rules = []redact.Rule{{Name: "ticket", Tools: []string{"payments"}, Paths: []string{"context.ticket"}, Action: redact.ActionMask}}
	cfg.Defaults()
	cfg.Ingest.BatchInterval = 50 * time.Millisecond
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ing, err := New(ctx, cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest: %v", err)
		}
		_ = ing.Close(context.Background())
	}()

	db := chCfg.Database
	testenv.Eventually(t, 60*time.Second, "every record accounted for", func() (bool, error) {
		n := count(t, conn, "SELECT count() FROM "+db+".v_events")
		d := count(t, conn, "SELECT count() FROM "+db+".dead_letters FINAL")
		return n == uint64(len(good)) && d == 2, fmt.Errorf("events %d/%d, dead letters %d/2", n, len(good), d)
	})
	bg := context.Background()

	// No raw value in any column of any table.
	rows, err := conn.Query(bg, "SELECT name FROM system.tables WHERE database = ? AND engine NOT LIKE '%View%'", db)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if !slices.Contains(tables, "events") || !slices.Contains(tables, "dead_letters") {
		t.Fatalf("tables = %v", tables)
	}
	for _, tbl := range tables {
		for _, raw := range rawValues {
			q := fmt.Sprintf("SELECT count() FROM %s.%s WHERE positionCaseInsensitive(formatRow('TSVRaw', *), '%s') > 0", db, tbl, raw)
			if n := count(t, conn, q); n != 0 {
				t.Errorf("%s: %d rows hold %q", tbl, n, raw)
			}
		}
	}

	// What was stored instead, and the record of it.
	type stored struct {
		params, ctx         map[string]string
		rationale, digest   string
		paths, acts, rules  []string
		comment, errMessage string
		sideEffects         []string
	}
	read := func(eventID string) stored {
		var s stored
		err := conn.QueryRow(bg, "SELECT parameters, context, rationale, action_digest, redactions.path, redactions.action, redactions.rule, comment, error_message, side_effects FROM "+db+".v_events WHERE event_id = ?", eventID).
			Scan(&s.params, &s.ctx, &s.rationale, &s.digest, &s.paths, &s.acts, &s.rules, &s.comment, &s.errMessage, &s.sideEffects)
		if err != nil {
			t.Fatalf("read %s: %v", eventID, err)
		}
		return s
	}
	i1 := read(t1[0].EventID)
	ps, err := ing.red.r.Pseudonym(rawEmail)
	if err != nil {
		t.Fatal(err)
	}
	if i1.params["to"] != ps || i1.params["amount"] != "42.00" || i1.params["password"] != "[secret]" {
		t.Errorf("parameters = %v (pseudonym %s)", i1.params, ps)
	}
	if i1.ctx["ticket"] != "***" || i1.ctx["debug"] != "GET /v1/charges?api_key=[secret]" || i1.ctx["kyc"] != "SSN [ssn]" {
		t.Errorf("context = %v", i1.ctx)
	}
	wantRationale := "customer [email:" + ps + "] paid twice with card [card:****4242]; callback [phone:ps:"
	if !strings.HasPrefix(i1.rationale, wantRationale) || !strings.HasSuffix(i1.rationale, "; repo key [secret]") {
		t.Errorf("rationale = %q, want it to start %q", i1.rationale, wantRationale)
	}
	if i1.digest != in1.ActionDigest {
		t.Errorf("action_digest = %s, want the producer's %s", i1.digest, in1.ActionDigest)
	}
	var got []string
	for k := range i1.paths {
		got = append(got, i1.paths[k]+" "+i1.acts[k]+" "+i1.rules[k])
	}
	slices.Sort(got)
	want := []string{
		"context.debug mask secret", "context.kyc mask ssn", "context.ticket mask ticket",
		"parameters.password mask secret", "parameters.to pseudonym email",
		"rationale mask card", "rationale mask secret", "rationale pseudonym email", "rationale pseudonym phone",
	}
	if !slices.Equal(got, want) {
		t.Errorf("redactions =\n %q\nwant\n %q", got, want)
	}
	ap, res := read(t1[2].EventID), read(t1[3].EventID)
	if !strings.Contains(ap.comment, "[email:"+ps+"]") || !strings.HasSuffix(ap.comment, "; aws key [high_entropy]") || len(ap.paths) != 3 {
		t.Errorf("approval: comment %q, redactions %v", ap.comment, ap.paths)
	}
	if res.errMessage != "psp said: invalid key [secret]" || res.sideEffects[1] != "receipt mailed to [email:"+ps+"]" ||
		res.sideEffects[2] != "paid to [iban]" || res.digest != in1.ActionDigest {
		t.Errorf("result: %q %v %s", res.errMessage, res.sideEffects, res.digest)
	}

	// The pseudonym joins the two events, whatever the case of the address.
	if n := count(t, conn, "SELECT count() FROM "+db+".v_events a JOIN "+db+".v_events b ON a.parameters['to'] = b.parameters['contact'] WHERE a.event_id = '"+t1[0].EventID+"'"); n != 1 {
		t.Errorf("join on the pseudonym found %d rows, want 1", n)
	}

	// The queries docs/ANALYSTS.md suggests run, and say what happened.
	q := func(sql string) *strings.Builder {
		rows, err := conn.Query(bg, strings.ReplaceAll(strings.ReplaceAll(sql, "agentrail.", db+"."), "toMonday(now())", "now() - INTERVAL 1 DAY"))
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer rows.Close()
		var b strings.Builder
		cols := rows.ColumnTypes()
		for rows.Next() {
			vals := make([]any, len(cols))
			for i, c := range cols {
				vals[i] = reflectNew(c.ScanType())
			}
			if err := rows.Scan(vals...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				fmt.Fprintf(&b, "%v ", reflectDeref(v))
			}
			b.WriteString("\n")
		}
		return &b
	}
	if out := q(docRedactedThisWeek).String(); !strings.Contains(out, "email pseudonym parameters.to 1 1") || !strings.Contains(out, "card mask rationale 1 1") {
		t.Errorf("redacted-this-week query:\n%s", out)
	}
	if out := q(docLeakingAgents).String(); !strings.Contains(out, "payments") {
		t.Errorf("leaking-agents query:\n%s", out)
	}
	if out := q(strings.ReplaceAll(docJoinOnPseudonym, "EVENT_ID", t1[0].EventID)).String(); strings.Count(out, "\n") != 2 ||
		!strings.Contains(out, t1[0].TraceID) || !strings.Contains(out, t2[0].TraceID) {
		t.Errorf("join-on-pseudonym query:\n%s", out)
	}

	// The dead-letter topic: no raw value in keys, values or headers; the
	// decodable poison is there redacted, the garbage withheld.
	dl := consumeAll(t, addr, kc.Topics.DeadLetter, 2)
	for _, r := range dl {
		all := string(r.Key) + string(r.Value)
		for _, h := range r.Headers {
			all += h.Key + "=" + string(h.Value)
		}
		for _, raw := range rawValues {
			if strings.Contains(strings.ToLower(all), strings.ToLower(raw)) {
				t.Errorf("dead letter %s carries %q", header(r, HeaderSource), raw)
			}
		}
		switch header(r, HeaderReasonClass) {
		case "validation":
			if header(r, HeaderRedacted) != "event" || !strings.Contains(header(r, HeaderRedactions), `"path":"parameters.to"`) {
				t.Errorf("validation dead letter headers %v", r.Headers)
			}
			var e schemas.Event
			if err := ing.dec.Decode(bg, r.Value, &e); err != nil {
				t.Fatalf("redacted dead letter does not decode: %v", err)
			}
			if e.Intent.Parameters["to"] != ps || e.Intent.Parameters["card"] != "[card:****4242]" || e.Intent.Rationale != "key [secret] iban [iban] ssn [ssn] secret [high_entropy]" || e.TraceID != "not-a-trace" {
				t.Errorf("redacted dead letter = %+v", e.Intent)
			}
			sum := sha256.Sum256(poison.Value)
			if header(r, HeaderOriginalSHA256) != hex.EncodeToString(sum[:]) {
				t.Errorf("original_sha256 = %s", header(r, HeaderOriginalSHA256))
			}
		case "decode":
			if header(r, HeaderRedacted) != "withheld" || len(r.Value) != 0 || header(r, HeaderOriginalBytes) != fmt.Sprint(len(garbage.Value)) {
				t.Errorf("undecodable dead letter: value %q headers %v", r.Value, r.Headers)
			}
		default:
			t.Errorf("unexpected dead letter class %q", header(r, HeaderReasonClass))
		}
	}
	if l := logs.String(); l != "" {
		for _, raw := range rawValues {
			if strings.Contains(l, raw) {
				t.Errorf("logs carry %q", raw)
			}
		}
	}
}

// keep_raw_undecodable: the undecodable record's bytes go to the
// dead-letter topic with the detected values overwritten, length kept.
func TestDeadLetterKeepRawMasked(t *testing.T) {
	r, err := redact.New(redact.Config{KeepRawUndecodable: true})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := schemas.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &Ingest{red: redaction{r: r}, dec: dec}
	raw := []byte("\xc3\x01garbage " + rawEmail + " " + rawCard + " " + rawKey + " " + rawIBAN + " " + rawSSN + " " + rawAWSSecret + " end")
	v, hdrs := in.deadLetterValue(deadLetter{rec: &kgo.Record{Value: raw}, class: "decode", err: fmt.Errorf("x")})
	if len(v) != len(raw) || !bytes.HasSuffix(v, []byte(" end")) || !bytes.HasPrefix(v, []byte("\xc3\x01garbage ")) {
		t.Fatalf("masked value = %q", v)
	}
	for _, s := range rawValues {
		if bytes.Contains(v, []byte(s)) {
			t.Errorf("masked value carries %q: %q", s, v)
		}
	}
	var mode string
	for _, h := range hdrs {
		if h.Key == HeaderRedacted {
			mode = string(h.Value)
		}
	}
	if mode != "masked" {
		t.Errorf("agentrail.redacted = %q", mode)
	}
}

// The queries of docs/ANALYSTS.md, "Redacted fields and pseudonyms".
const (
	docRedactedThisWeek = `SELECT redactions.rule AS rule, redactions.action AS action, redactions.path AS path,
       count() AS fields, uniq(trace_id) AS traces
FROM agentrail.v_events
ARRAY JOIN redactions
WHERE event_time >= toMonday(now())
GROUP BY rule, action, path
ORDER BY fields DESC`
	docLeakingAgents = `SELECT team, agent_id, tool, count() AS events, groupUniqArray(redactions.path) AS where
FROM agentrail.v_events
ARRAY JOIN redactions
WHERE redactions.rule IN ('secret', 'high_entropy')
GROUP BY team, agent_id, tool
ORDER BY events DESC`
	docJoinOnPseudonym = `WITH (SELECT parameters['to'] FROM agentrail.v_events WHERE event_id = 'EVENT_ID') AS who
SELECT event_time, agent_id, tool, action, event_type, trace_id
FROM agentrail.v_events
WHERE has(mapValues(parameters), who) OR position(rationale, who) > 0
ORDER BY event_time`
)

func reflectNew(t reflect.Type) any { return reflect.New(t).Interface() }

func reflectDeref(v any) any { return reflect.ValueOf(v).Elem().Interface() }
