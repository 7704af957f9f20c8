package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// AppendJSON appends the canonical JSON form of e (Event's struct tags
// define it; schemas/README.md documents it) (one line, no trailing
// newline) to dst. The result is also a record value of the JSON framing:
// its first byte is '{'.
func AppendJSON(dst []byte, e *Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("schemas: encode json: %w", err)
	}
	return append(dst, b...), nil
}

// JSONError is why a JSON event could not be decoded: the field it names
// ("" when the input is not a JSON object at all) and a reason that never
// echoes a value.
type JSONError struct {
	Field  string
	Reason string
}

func (e *JSONError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return "field " + e.Field + ": " + e.Reason
}

// ParseJSON decodes one canonical-JSON event. Unknown fields, trailing data
// and type mismatches are errors that name the field (a *JSONError); the
// result is not validated (call Validate).
func ParseJSON(line []byte) (*Event, error) {
	var e Event
	if err := parseJSON(line, &e); err != nil {
		return nil, fmt.Errorf("schemas: parse json: %w", err)
	}
	return &e, nil
}

// decodeJSON decodes a record of the JSON framing into e, which it resets
// first; every error wraps ErrMalformed and a *JSONError.
func decodeJSON(b []byte, e *Event) error {
	*e = Event{}
	if err := parseJSON(b, e); err != nil {
		*e = Event{}
		return fmt.Errorf("schemas: decode json record (%d bytes): %w: %w", len(b), ErrMalformed, err)
	}
	return nil
}

func parseJSON(line []byte, e *Event) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(e); err != nil {
		return describeJSONError(line, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &JSONError{Reason: "trailing data after the event object"}
	}
	return nil
}

// describeJSONError rewrites encoding/json's errors so they name the field
// and never echo the offending value (nor a character of it).
func describeJSONError(line []byte, err error) error {
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return &JSONError{Field: badTimeField(line), Reason: "must be an RFC 3339 timestamp, e.g. 2026-11-16T09:30:00.123456Z"}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &JSONError{Field: te.Field, Reason: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value)}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &JSONError{Reason: fmt.Sprintf("not valid JSON: syntax error at byte %d", se.Offset)}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &JSONError{Reason: "not valid JSON: the event object is truncated"}
	}
	// An unknown member's name is named only if it looks like a field
	// name: it is the sender's text.
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		if name = strings.TrimSuffix(name, `"`); fieldName.MatchString(name) {
			return &JSONError{Field: name, Reason: "unknown field: not in the event contract"}
		}
		return &JSONError{Reason: "unknown field: not in the event contract"}
	}
	return &JSONError{Reason: "not a JSON event object"}
}

var fieldName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

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
