package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/agentrail/agentrail/gateway/ndjson"
	"github.com/agentrail/agentrail/schemas"
	"github.com/agentrail/agentrail/signing"
)

// Line statuses in a response.
const (
	StatusAccepted = "accepted" // Kafka acknowledged it
	StatusRejected = "rejected" // the line is wrong: do not retry it as it is
	StatusFailed   = "failed"   // Kafka did not acknowledge it: retry after Retry-After
)

// Response is the body of every answer of POST /v1/events that got as far
// as reading the lines; Error alone answers one that did not.
type Response struct {
	Accepted int          `json:"accepted"`
	Rejected int          `json:"rejected"`
	Failed   int          `json:"failed,omitempty"`
	Results  []LineResult `json:"results"`
	Error    string       `json:"error,omitempty"`
}

// LineResult is one line's outcome. Field names what was wrong (an
// envelope member, or the event's field as schemas names it); Reason never
// echoes a value.
type LineResult struct {
	Line   int    `json:"line"` // 1-based
	Status string `json:"status"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason,omitempty"`

	sigFailure bool // the signature did not verify (for the 401 rule)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) int {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return code
}

func (g *Gateway) unavailable(w http.ResponseWriter, v any) int {
	w.Header().Set("Retry-After", strconv.Itoa(int(g.cfg.RetryAfter/time.Second)))
	return writeJSON(w, http.StatusServiceUnavailable, v)
}

func (g *Gateway) handleEvents(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method: use POST"})
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || (mt != "application/x-ndjson" && mt != "application/ndjson") {
		return writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "Content-Type: must be application/x-ndjson"})
	}
	if !g.ready.Load() {
		return g.unavailable(w, errorBody{Error: "not ready: Kafka has not answered yet, or the gateway is draining"})
	}
	limit := g.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body: %d bytes is over the limit of %d bytes (max_body_bytes)", r.ContentLength, limit)})
	}
	// Reserve the body's room before reading it: its length if known,
	// else the limit; the unused part is given back once it is read.
	held := limit
	if r.ContentLength >= 0 {
		held = r.ContentLength
	}
	if held > 0 && !g.sem.TryAcquire(held) {
		return g.unavailable(w, errorBody{Error: "busy: the gateway's in-flight buffer is full (max_in_flight_bytes)"})
	}
	g.m.inFlightBytes.Add(float64(held))
	defer func() {
		if held > 0 {
			g.sem.Release(held)
		}
		g.m.inFlightBytes.Sub(float64(held))
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body: over the limit of %d bytes (max_body_bytes)", limit)})
	case err != nil:
		return writeJSON(w, http.StatusBadRequest, errorBody{Error: "body: could not be read"})
	}
	if n := int64(len(body)); n < held {
		g.sem.Release(held - n)
		g.m.inFlightBytes.Sub(float64(held - n))
		held = n
	}

	lines := splitLines(body)
	switch {
	case len(lines) == 0:
		return writeJSON(w, http.StatusBadRequest, errorBody{Error: "body: no lines (want one signed JSON event a line)"})
	case len(lines) > g.cfg.MaxLines:
		return writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body: %d lines is over the limit of %d lines (max_lines)", len(lines), g.cfg.MaxLines)})
	}

	resp := Response{Results: make([]LineResult, len(lines))}
	recs := make([]*kgo.Record, 0, len(lines))
	idx := make([]int, 0, len(lines)) // the line of each record
	now := time.Now()
	var e schemas.Event
	for i, line := range lines {
		res := &resp.Results[i]
		res.Line = i + 1
		rec, fail := g.check(line, &e, now)
		if fail != nil {
			*res = *fail
			res.Line, res.Status = i+1, StatusRejected
			continue
		}
		recs = append(recs, rec)
		idx = append(idx, i)
	}

	if len(recs) > 0 {
		// The request's end does not cut the wait: a line's outcome is
		// known before the answer (or the client is gone, and gets none).
		pctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), g.cfg.ProduceTimeout)
		results := g.cl.ProduceSync(pctx, recs...)
		cancel()
		for j, pr := range results {
			res := &resp.Results[idx[j]]
			if pr.Err != nil {
				res.Status, res.Reason = StatusFailed, "kafka did not acknowledge the event in time: retry"
				continue
			}
			res.Status = StatusAccepted
		}
	}
	allSig := true
	for i := range resp.Results {
		switch res := &resp.Results[i]; res.Status {
		case StatusAccepted:
			resp.Accepted++
		case StatusRejected:
			resp.Rejected++
			allSig = allSig && res.sigFailure
		case StatusFailed:
			resp.Failed++
		}
	}
	g.m.events.WithLabelValues(StatusAccepted).Add(float64(resp.Accepted))
	g.m.events.WithLabelValues(StatusRejected).Add(float64(resp.Rejected))
	g.m.events.WithLabelValues(StatusFailed).Add(float64(resp.Failed))
	switch {
	case resp.Failed > 0:
		g.log.Warn("gateway: kafka did not acknowledge events", "failed", resp.Failed, "accepted", resp.Accepted)
		resp.Error = "kafka did not acknowledge every accepted line: retry the failed ones after Retry-After"
		return g.unavailable(w, resp)
	case resp.Accepted > 0:
		return writeJSON(w, http.StatusOK, resp)
	case allSig:
		resp.Error = "no line has a valid signature by a registered key"
		return writeJSON(w, http.StatusUnauthorized, resp)
	default:
		resp.Error = "every line was rejected"
		return writeJSON(w, http.StatusUnprocessableEntity, resp)
	}
}

// splitLines splits an NDJSON body at '\n' (a '\r' before it is dropped);
// a final newline ends the last line rather than starting an empty one.
func splitLines(body []byte) [][]byte {
	body = bytes.TrimSuffix(body, []byte("\n"))
	if len(body) == 0 {
		return nil
	}
	lines := bytes.Split(body, []byte("\n"))
	for i, l := range lines {
		lines[i] = bytes.TrimSuffix(l, []byte("\r"))
	}
	return lines
}

// check is what ingest will check, in its order: the envelope, the key,
// the signature over the exact bytes, then the event's decoding and
// validation, then its claims. It returns the record to produce, or why
// the line is rejected.
func (g *Gateway) check(line []byte, e *schemas.Event, now time.Time) (*kgo.Record, *LineResult) {
	if len(line) > g.cfg.MaxLineBytes {
		return nil, &LineResult{Reason: fmt.Sprintf("line is %d bytes, over the limit of %d (max_line_bytes)", len(line), g.cfg.MaxLineBytes)}
	}
	if len(line) == 0 {
		return nil, &LineResult{Reason: "empty line"}
	}
	env, err := ndjson.Parse(line)
	if err != nil {
		var pe *ndjson.Error
		errors.As(err, &pe)
		return nil, &LineResult{Field: pe.Field, Reason: pe.Reason, sigFailure: pe.Field == ndjson.MemberKeyID || pe.Field == ndjson.MemberSignature}
	}
	hs := []kgo.RecordHeader{
		{Key: signing.HeaderKeyID, Value: []byte(env.KeyID)},
		{Key: signing.HeaderSignature, Value: env.Sig},
	}
	vd := g.ver.VerifySignature(hs, env.Event)
	switch vd.Reason {
	case "":
	case signing.UnknownKey:
		return nil, &LineResult{Field: ndjson.MemberKeyID, Reason: "unknown_key: the key id is not in the registry", sigFailure: true}
	default:
		return nil, &LineResult{Field: ndjson.MemberSignature, Reason: string(vd.Reason) + ": the signature does not match the event's exact bytes under the key's algorithm", sigFailure: true}
	}
	if err := g.dec.DecodeValid(context.Background(), env.Event, e, now, g.lim); err != nil {
		var ve *schemas.ValidationError
		var je *schemas.JSONError
		switch {
		case errors.As(err, &ve):
			return nil, &LineResult{Field: ve.Field, Reason: ve.Reason}
		case errors.As(err, &je) && je.Field != "":
			return nil, &LineResult{Field: je.Field, Reason: je.Reason}
		case errors.As(err, &je):
			return nil, &LineResult{Field: ndjson.MemberEvent, Reason: je.Reason}
		}
		return nil, &LineResult{Field: ndjson.MemberEvent, Reason: "does not decode"}
	}
	switch vd = g.ver.VerifyClaims(vd, e.Agent.ID, e.Time); vd.Reason {
	case "":
	case signing.IdentityMismatch:
		return nil, &LineResult{Field: "agent.agent_id", Reason: "identity_mismatch: the key belongs to another agent"}
	default:
		return nil, &LineResult{Field: "event_time", Reason: string(vd.Reason) + ": the key was not valid at event_time"}
	}
	return &kgo.Record{Key: []byte(e.TraceID), Value: env.Event, Headers: hs}, nil
}
