package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// AppendJSON appends the canonical JSON form of e (Event's struct tags
// define it; schemas/README.md documents it) (one line, no trailing
// newline) to dst.
func AppendJSON(dst []byte, e *Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("schemas: encode json: %w", err)
	}
	return append(dst, b...), nil
}

// ParseJSON decodes one canonical-JSON event. Unknown fields, trailing data
// and type mismatches are errors that name the field; the result is not
// validated (call Validate).
func ParseJSON(line []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("schemas: parse json: %w", describeJSONError(line, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("schemas: parse json: trailing data after the event object")
	}
	return &e, nil
}

// describeJSONError rewrites encoding/json's errors so they name the field
// and never echo the offending value.
func describeJSONError(line []byte, err error) error {
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("field %s: must be an RFC 3339 timestamp, e.g. 2026-11-16T09:30:00.123456Z", badTimeField(line))
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %s: expected %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("syntax error at byte %d: %s", se.Offset, se.Error())
	}
	return err
}

// badTimeField finds which of the event's timestamps failed to parse.
func badTimeField(line []byte) string {
	var probe struct {
		EventTime json.RawMessage `json:"event_time"`
		Approval  struct {
			ExpiresAt json.RawMessage `json:"expires_at"`
		} `json:"approval"`
	}
	_ = json.Unmarshal(line, &probe)
	var t time.Time
	if len(probe.EventTime) > 0 && json.Unmarshal(probe.EventTime, &t) != nil {
		return "event_time"
	}
	return "approval.expires_at"
}
