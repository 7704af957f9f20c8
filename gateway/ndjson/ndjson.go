// Package ndjson is the gateway's signed-JSON protocol: the body of
// POST /v1/events is NDJSON, one envelope per line,
//
//	{"kid":"<key id>","sig":"<signature, standard base64>","event":<the event's exact signed bytes>}
//
// (signing/doc.go is the contract; docs/GATEWAY.md the endpoint). Parse
// cuts the event member out of the line byte for byte, so the gateway can
// produce exactly what the agent signed.
//
// It deliberately does not verify, decode or validate the event (package
// gateway does, with signing and schemas), nor read a request: it works on
// one line already split from the body.
package ndjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/agentrail/agentrail/signing"
)

// Envelope members.
const (
	MemberKeyID     = "kid"
	MemberSignature = "sig"
	MemberEvent     = "event"
)

// Line is one parsed envelope. Event aliases the line it was parsed from.
type Line struct {
	KeyID string
	Sig   []byte
	Event []byte // the exact signed bytes: a JSON object, first byte '{'
}

// Error is why a line is not an envelope: the member it names ("" for the
// line as a whole) and a reason that never echoes a value.
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "ndjson: " + e.Reason
	}
	return "ndjson: member " + e.Field + ": " + e.Reason
}

// Parse reads one envelope: a JSON object with exactly the members kid, sig
// and event, in any order, each once.
func Parse(line []byte) (Line, error) {
	var out Line
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return out, &Error{Reason: "line is not a JSON object"}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out, &Error{Reason: "line is not valid JSON"}
		}
		key, _ := tok.(string)
		switch key {
		case MemberKeyID, MemberSignature, MemberEvent:
		default:
			return out, &Error{Reason: fmt.Sprintf("unknown member (want only %s, %s and %s)", MemberKeyID, MemberSignature, MemberEvent)}
		}
		if seen[key] {
			return out, &Error{Field: key, Reason: "appears more than once"}
		}
		seen[key] = true
		var raw json.RawMessage // encoding/json hands it the value's bytes as they are
		if err := dec.Decode(&raw); err != nil {
			return out, &Error{Field: key, Reason: "not valid JSON"}
		}
		switch key {
		case MemberKeyID:
			var s string
			if json.Unmarshal(raw, &s) != nil || !signing.KeyIDRE.MatchString(s) {
				return out, &Error{Field: key, Reason: "must be a key id: a string matching " + signing.KeyIDRE.String()}
			}
			out.KeyID = s
		case MemberSignature:
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return out, &Error{Field: key, Reason: "must be a string: the signature in standard base64"}
			}
			sig, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(sig) == 0 || len(sig) > signing.MaxSignatureSize {
				return out, &Error{Field: key, Reason: fmt.Sprintf("must be a signature of 1-%d bytes in standard base64", signing.MaxSignatureSize)}
			}
			out.Sig = sig
		case MemberEvent:
			if len(raw) == 0 || raw[0] != '{' {
				return out, &Error{Field: key, Reason: "must be the event's JSON object"}
			}
			out.Event = raw
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return out, &Error{Reason: "line is not valid JSON"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return out, &Error{Reason: "trailing data after the envelope"}
	}
	for _, m := range []string{MemberKeyID, MemberSignature, MemberEvent} {
		if !seen[m] {
			return out, &Error{Field: m, Reason: "is missing"}
		}
	}
	return out, nil
}

// Append appends the envelope of an event's exact signed bytes to dst,
// without a newline: what a client sends (Go clients and tests).
func Append(dst []byte, kid string, sig, event []byte) []byte {
	dst = append(dst, `{"kid":`...)
	dst = appendString(dst, kid)
	dst = append(dst, `,"sig":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, sig)
	dst = append(dst, `","event":`...)
	dst = append(dst, event...)
	return append(dst, '}')
}

func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
