package schemas

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// decodeLatest decodes an Avro payload written with the latest schema
// (avro/event.v2.avsc) into e, which it resets first, field by field in
// schema order and without reflection: the reader side of writer.event.
// Decoder.Decode takes it when the record's writer schema is the latest
// one; any other writer schema goes through hamba/avro's schema resolution.
//
// It produces what hamba/avro produces for the same bytes, and accepts and
// rejects the same payloads (TestDecodeLatestMatchesHamba, FuzzDecode hold
// the two together; a schema revision must change both this file and
// writer.event):
//
//   - maps and arrays that are present are non-nil, empty or not; a
//     map key written twice keeps its last value;
//   - optional (["null", T]) fields are nil pointers when null;
//   - timestamps are time.Unix(sec, nsec).UTC() of the micros;
//   - strings longer than 1 MiB (avroAPI.MaxByteSliceSize) and arrays of
//     more than 1 Mi items (MaxSliceAllocSize) are rejected;
//   - an int is a zig-zag varint of at most 5 bytes, a long of at most 10,
//     and bits beyond 32 or 64 are dropped, as hamba drops them;
//   - a map block whose count is the most negative long is read as empty,
//     as hamba reads it.
//
// One difference, deliberate: an array whose block counts overflow an int
// (a count of -2^63, or counts summing past 2^63) is rejected; hamba
// accepts it with a slice of negative length, which no caller could use.
//
// Every error names the field and what was wrong, and wraps ErrMalformed.
// Lengths and counts are checked against the bytes left before anything is
// allocated, so a hostile length costs nothing.
//
// Strings do not alias the payload, whose buffer belongs to the caller (a
// Kafka client's fetch buffer, which the event may outlive): a payload of up
// to sharedStringsMax bytes is copied into one string, which the event's
// strings are slices of; a larger payload gets one allocation per string.
// A string kept past the event thus pins at most that copy, as hamba's
// strings pin its 1 KiB string slabs.
func decodeLatest(b []byte, e *Event) error {
	_, err := decodeLatestStrings(b, e)
	return err
}

// decodeLatestStrings is decodeLatest, and also says what it saw of the
// strings it read, for DecodeValid.
func decodeLatestStrings(b []byte, e *Event) (stringStats, error) {
	r := reader{buf: b}
	if len(b) <= sharedStringsMax {
		r.shared = string(b)
	}
	*e = Event{}
	r.event(e)
	if r.err != nil {
		return stringStats{}, fmt.Errorf("schemas: decode avro payload (%d bytes): %w: %w", len(b), ErrMalformed, r.err)
	}
	if r.pos != len(b) {
		return stringStats{}, fmt.Errorf("schemas: decode avro payload (%d bytes): %w: trailing bytes after the record (%d)", len(b), ErrMalformed, len(b)-r.pos)
	}
	return r.strings, nil
}

// stringStats describes every string a reader or writer has passed: the
// longest one's length, and the OR of all their bytes, whose high bit says
// whether any byte is outside ASCII (an all-ASCII string is valid UTF-8).
// When neither says anything might be wrong, the strings need no check of
// their own (checkStrings).
type stringStats struct {
	longest int
	high    byte
}

func (st *stringStats) note(s string) {
	st.longest = max(st.longest, len(s))
	st.high |= orBytes(s)
}

// check is checkStrings(e, max), made only if a string e's strings passed
// may be longer than max or not UTF-8.
func (st stringStats) check(e *Event, max int) error {
	if st.longest > max || st.high >= 0x80 {
		return checkStrings(e, max)
	}
	return nil
}

// decodeLatestVersion is the schema version decodeLatest reads. Should a
// newer version be published before decodeLatest is rewritten for it,
// Decode leaves every record to hamba/avro (and TestDecodeLatestVersion
// fails).
const decodeLatestVersion = 2

// sharedStringsMax is the largest payload whose strings share one copy.
const sharedStringsMax = 4 << 10

// The limits of a string and of an array, on both paths: hamba enforces
// them through avroAPI.
const (
	maxStringBytes = 1 << 20 // MaxByteSliceSize
	maxArrayItems  = 1 << 20 // MaxSliceAllocSize
)

// fieldError says which field of the record could not be decoded, and why.
type fieldError struct {
	field, reason string
}

func (e *fieldError) Error() string { return "field " + e.field + ": " + e.reason }

// reader reads the Avro binary encoding from buf. The first error sticks:
// after it every read returns a zero value and consumes nothing, so a
// decoding function checks r.err only where it would loop or allocate.
type reader struct {
	buf     []byte
	pos     int
	shared  string // buf as a string, when small enough; see decodeLatest
	err     error
	strings stringStats // of every string read
}

func (r *reader) fail(field, reason string) {
	if r.err == nil {
		r.err = &fieldError{field: field, reason: reason}
	}
}

func (r *reader) left() int { return len(r.buf) - r.pos }

// long reads a zig-zag varint of at most 10 bytes, like hamba's ReadLong.
func (r *reader) long(field string) int64 {
	if r.err != nil {
		return 0
	}
	if r.pos < len(r.buf) && r.buf[r.pos] < 0x80 { // most lengths and counts
		v := int64(r.buf[r.pos])
		r.pos++
		return v>>1 ^ -(v & 1)
	}
	var v uint64
	var s uint
	for i := 0; i < 10; i++ {
		if r.pos >= len(r.buf) {
			r.fail(field, "truncated varint")
			return 0
		}
		c := r.buf[r.pos]
		r.pos++
		v |= uint64(c&0x7f) << s
		if c&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1)
		}
		s += 7
	}
	r.fail(field, "varint longer than 10 bytes")
	return 0
}

// int reads a zig-zag varint of at most 5 bytes, like hamba's ReadInt.
func (r *reader) int(field string) int32 {
	if r.err != nil {
		return 0
	}
	var v uint32
	var s uint
	for i := 0; i < 5; i++ {
		if r.pos >= len(r.buf) {
			r.fail(field, "truncated varint")
			return 0
		}
		c := r.buf[r.pos]
		r.pos++
		v |= uint32(c&0x7f) << s
		if c&0x80 == 0 {
			return int32(v>>1) ^ -int32(v&1)
		}
		s += 7
	}
	r.fail(field, "int varint longer than 5 bytes")
	return 0
}

// str reads a string.
func (r *reader) str(field string) string { return r.strPart(field, "") }

// strPart reads a string; part says which string of field it is (a map's
// key or value, an array's item), for the error.
func (r *reader) strPart(field, part string) string {
	var n int64
	if r.err == nil && r.pos < len(r.buf) && r.buf[r.pos] < 0x80 {
		// A length under 64 takes one byte: read it here, not in long.
		c := int64(r.buf[r.pos])
		r.pos++
		n = c>>1 ^ -(c & 1)
	} else if n = r.long(field); r.err != nil {
		return ""
	}
	switch {
	case n == 0:
		return ""
	case n < 0:
		r.fail(field, part+"negative string length")
		return ""
	case n > maxStringBytes:
		r.fail(field, fmt.Sprintf("%sstring length %d over the limit of %d bytes", part, n, maxStringBytes))
		return ""
	case n > int64(r.left()):
		r.fail(field, fmt.Sprintf("%sstring length %d beyond the %d bytes left", part, n, r.left()))
		return ""
	}
	i, j := r.pos, r.pos+int(n)
	r.pos = j
	var str string
	if r.shared != "" {
		str = r.shared[i:j]
	} else {
		str = string(r.buf[i:j])
	}
	r.strings.note(str)
	return str
}

// enum reads an enum's index and returns its symbol.
func (r *reader) enum(field string, symbols []string) string {
	i := r.int(field)
	if r.err != nil {
		return ""
	}
	if i < 0 || int(i) >= len(symbols) {
		r.fail(field, fmt.Sprintf("enum index %d out of range 0..%d", i, len(symbols)-1))
		return ""
	}
	return symbols[i]
}

// some reads the branch of a ["null", T] union: false for null, true for T.
func (r *reader) some(field string) bool {
	i := r.int(field)
	if r.err != nil {
		return false
	}
	if i != 0 && i != 1 {
		r.fail(field, fmt.Sprintf("union index %d out of range 0..1", i))
		return false
	}
	return i == 1
}

// timestamp reads a timestamp-micros as hamba converts it.
func (r *reader) timestamp(field string) time.Time {
	us := r.long(field)
	sec := us / 1e6
	return time.Unix(sec, (us-sec*1e6)*1e3).UTC()
}

func (r *reader) double(field string) float64 {
	if r.err != nil {
		return 0
	}
	if r.left() < 8 {
		r.fail(field, "truncated double")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.buf[r.pos:]))
	r.pos += 8
	return v
}

// blockCount reads the header of a map's or an array's block: the count of
// items, then, when the count was written negated, the block's byte size,
// which is not needed.
func (r *reader) blockCount(field string) int64 {
	n := r.long(field)
	if n < 0 {
		n = -n // -(-2^63) stays negative; the callers say what that means
		r.long(field)
	}
	return n
}

// strMap reads a map of strings. It is non-nil even when empty.
func (r *reader) strMap(field string) map[string]string {
	var m map[string]string
	for {
		n := r.blockCount(field)
		if r.err != nil {
			return m
		}
		if m == nil {
			// The first block's count, bounded by the bytes left, sizes
			// the map: hamba's encoder writes it in blocks of 100.
			m = make(map[string]string, min(max(n, 0), int64(r.left()/2)))
		}
		if n == 0 {
			return m
		}
		if n < 0 {
			continue // a count of -2^63: hamba reads no entries
		}
		if n > int64(r.left()/2) { // an entry takes 2 bytes at least
			r.fail(field, fmt.Sprintf("map block of %d entries beyond the %d bytes left", n, r.left()))
			return m
		}
		for range n {
			k := r.strPart(field, "map key: ")
			v := r.strPart(field, "map value: ")
			if r.err != nil {
				return m
			}
			m[k] = v
		}
	}
}

// strs reads an array of strings. It is non-nil even when empty.
func (r *reader) strs(field string) []string {
	out := []string{}
	for {
		n := r.blockCount(field)
		if r.err != nil || n == 0 {
			return out
		}
		switch {
		case n < 0:
			r.fail(field, "array block count overflows")
			return out
		case n > int64(maxArrayItems-len(out)):
			r.fail(field, fmt.Sprintf("array of more than %d items", maxArrayItems))
			return out
		case n > int64(r.left()): // an item takes 1 byte at least
			r.fail(field, fmt.Sprintf("array block of %d items beyond the %d bytes left", n, r.left()))
			return out
		}
		if len(out) == 0 {
			out = make([]string, 0, n)
		}
		for range n {
			s := r.strPart(field, "array item: ")
			if r.err != nil {
				return out
			}
			out = append(out, s)
		}
	}
}

// event reads the Event record, in the order of avro/event.v2.avsc.
func (r *reader) event(e *Event) {
	e.EventID = r.str("event_id")
	e.TraceID = r.str("trace_id")
	e.SpanID = r.str("span_id")
	e.Type = EventType(r.enum("event_type", eventTypeSymbols))
	e.Time = r.timestamp("event_time")
	e.Agent.ID = r.str("agent.agent_id")
	e.Agent.Version = r.str("agent.agent_version")
	e.Agent.Team = r.str("agent.team")
	e.Agent.Environment = r.str("agent.environment")
	e.Agent.Tenant = r.str("agent.tenant")
	e.RequestedBy = r.str("requested_by")
	e.Tier = r.int("tier")
	e.Producer.Name = r.str("producer.name")
	e.Producer.Version = r.str("producer.version")
	e.Producer.Host = r.str("producer.host")
	e.SessionID = r.str("session_id")
	e.Labels = r.strMap("labels")
	if r.some("intent") {
		e.Intent = r.intent()
	}
	if r.some("policy_decision") {
		e.Decision = r.decision()
	}
	if r.some("approval") {
		e.Approval = r.approval()
	}
	if r.some("result") {
		e.Result = r.result()
	}
}

// The bodies are allocated together with their optional scalar, which
// their pointer field points into: one allocation instead of two.
type (
	intentAlloc struct {
		Intent
		confidence float64
	}
	decisionAlloc struct {
		Decision
		quota int64
	}
	approvalAlloc struct {
		Approval
		expires time.Time
	}
)

func (r *reader) intent() *Intent {
	a := &intentAlloc{}
	in := &a.Intent
	in.Tool = r.str("intent.tool")
	in.Action = r.str("intent.action")
	in.Target = r.str("intent.target")
	in.ActionClass = r.str("intent.action_class")
	in.Tier = r.int("intent.tier")
	in.Parameters = r.strMap("intent.parameters")
	in.ActionDigest = r.str("intent.action_digest")
	in.Rationale = r.str("intent.rationale")
	in.Context = r.strMap("intent.context")
	in.ModelID = r.str("intent.model_id")
	in.PromptVersion = r.str("intent.prompt_version")
	in.EvidenceIDs = r.strs("intent.evidence_ids")
	if r.some("intent.confidence") {
		a.confidence = r.double("intent.confidence")
		in.Confidence = &a.confidence
	}
	return in
}

func (r *reader) decision() *Decision {
	a := &decisionAlloc{}
	d := &a.Decision
	d.Outcome = r.enum("policy_decision.outcome", outcomeSymbols)
	d.PolicyID = r.str("policy_decision.policy_id")
	d.PolicyVersion = r.long("policy_decision.policy_version")
	d.MatchedRule = r.str("policy_decision.matched_rule")
	d.Reason = r.str("policy_decision.reason")
	d.Tier = r.int("policy_decision.tier")
	if r.some("policy_decision.remaining_quota") {
		a.quota = r.long("policy_decision.remaining_quota")
		d.RemainingQuota = &a.quota
	}
	return d
}

func (r *reader) approval() *Approval {
	a := &approvalAlloc{}
	ap := &a.Approval
	ap.ApprovalID = r.str("approval.approval_id")
	ap.Status = r.enum("approval.status", approvalStatusSymbols)
	ap.Approver = r.str("approval.approver")
	ap.ApproverRole = r.str("approval.approver_role")
	ap.ApproverKind = r.enum("approval.approver_kind", principalKindSymbols)
	ap.ActionDigest = r.str("approval.action_digest")
	ap.Scope = r.enum("approval.scope", scopeSymbols)
	if r.some("approval.expires_at") {
		a.expires = r.timestamp("approval.expires_at")
		ap.ExpiresAt = &a.expires
	}
	ap.Channel = r.str("approval.channel")
	ap.Comment = r.str("approval.comment")
	return ap
}

func (r *reader) result() *Result {
	res := &Result{}
	res.Status = r.enum("result.status", resultStatusSymbols)
	res.ActionDigest = r.str("result.action_digest")
	res.Executor = r.str("result.executor")
	res.ChangedResource = r.str("result.changed_resource")
	res.SideEffects = r.strs("result.side_effects")
	res.ErrorClass = r.str("result.error_class")
	res.ErrorMessage = r.str("result.error_message")
	res.DurationUS = r.long("result.duration_us")
	return res
}
