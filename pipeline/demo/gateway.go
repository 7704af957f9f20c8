package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentrail/agentrail/gateway"
	"github.com/agentrail/agentrail/internal/kafkacfg"
	"github.com/agentrail/agentrail/producers/simulate"
	"github.com/agentrail/agentrail/schemas"
)

//go:embed agents/node_agent.mjs
var nodeAgent []byte

// gatewayAgentTraces is how many traces the Node.js agent posts.
const gatewayAgentTraces = 5

// postThroughGateway runs the gateway in front of the broker and a Node.js
// agent (node:crypto and fetch, no agentrail code) that signs one trace's
// events in their JSON form and posts them to POST /v1/events. It returns
// the traces the gateway accepted, or none and a note when node is not
// installed (make demo needs npm, which brings it).
func (d *demo) postThroughGateway(ctx context.Context, kc kafkacfg.Config, at time.Time) ([]string, string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "node is not installed: the gateway step was skipped", nil
	}
	gc := gateway.Config{Listen: "127.0.0.1:0", RegistryFile: filepath.Join("deployments", "registry.yaml"), Kafka: kc}
	gc.Defaults()
	gw, err := gateway.New(ctx, gc, prometheus.NewRegistry(), d.log)
	if err != nil {
		return nil, "", err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
		_ = gw.Close(context.Background())
	}()

	// One trace of an agent the registry lists, as templates in the JSON
	// form; the agent gives each copy its own ids and times.
	fleet := simulate.New(simulate.Config{Seed: 21})
	agent := fleet.Agents()[1].Identity.ID
	var evs []schemas.Event
	for len(evs) < 3 {
		evs = evs[:0]
		for _, e := range fleet.NextTrace(at) {
			if e.Agent.ID == agent {
				evs = append(evs, e)
			}
		}
	}
	var templates []json.RawMessage
	for i := range evs {
		b, err := schemas.AppendJSON(nil, &evs[i])
		if err != nil {
			return nil, "", err
		}
		templates = append(templates, b)
	}
	script := filepath.Join(d.dir, "node_agent.mjs")
	if err := os.WriteFile(script, nodeAgent, 0o644); err != nil {
		return nil, "", err
	}
	req, _ := json.Marshal(map[string]any{"url": "http://" + gw.Addr().String(), "kid": simulate.DemoKeyID(agent),
		"seed_hex": hex.EncodeToString(simulate.DemoSeed(agent)), "templates": templates, "traces": gatewayAgentTraces})
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("demo: the Node.js agent: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var answer struct {
		Code     int      `json:"code"`
		Accepted int      `json:"accepted"`
		Rejected int      `json:"rejected"`
		TraceIDs []string `json:"trace_ids"`
	}
	if err := json.Unmarshal(out, &answer); err != nil {
		return nil, "", fmt.Errorf("demo: the Node.js agent printed %q: %w", out, err)
	}
	if answer.Code != 200 || answer.Rejected != 0 {
		return nil, "", errors.New("demo: the gateway answered the Node.js agent " + strings.TrimSpace(string(out)))
	}
	note := fmt.Sprintf("a Node.js agent (%s: node:crypto and fetch, no agentrail code) signed %d events of %d traces as %s and posted them to the gateway's POST /v1/events: HTTP %d, %d accepted after Kafka's acknowledgement",
		filepath.Base(script), answer.Accepted, len(answer.TraceIDs), agent, answer.Code, answer.Accepted)
	return answer.TraceIDs, note, nil
}

// gatewayFindings says how many of the gateway agent's events analysts
// see, and which key signed them.
func (d *demo) gatewayFindings(ctx context.Context, db string, traces []string) error {
	if len(traces) == 0 {
		return nil
	}
	var got string
	q := fmt.Sprintf("SELECT concat(toString(count()), ' events of ', toString(uniqExact(trace_id)), ' traces, signed by ', arrayStringConcat(groupUniqArray(signer_key_id), ','), ', producer ', any(producer_name)) FROM %s.v_events WHERE trace_id IN ('%s')",
		db, strings.Join(traces, "','"))
	if err := d.scalar(ctx, q, &got); err != nil {
		return err
	}
	d.printf("the Node.js agent's events in v_events: %s\n", got)
	return nil
}
