// Package signing makes agent events authentic: every agent identity in the
// registry holds one or more keys, producers sign each Kafka record value
// with one of them, and ingest verifies the signature against the registry
// before it stores the event as genuine.
//
// It is part of the wire contract (like schemas/): SDKs in other languages
// implement the same three rules.
//
//  1. What is signed: the exact bytes of the Kafka record value, as framed
//     (the single-object or Confluent header, then the Avro datum; or, in
//     the JSON framing, the event's JSON object itself, first byte '{').
//     Nothing is re-encoded or canonicalised: a verifier checks the bytes
//     it received, so a JSON event may have any member order or white
//     space its agent chose, and whoever relays it must pass on those
//     bytes unchanged. The record key, topic and headers are not signed; the
//     event's own agent_id, event_id, trace_id and event_time are inside
//     the value.
//  2. Where the signature travels: two record headers,
//     "agentrail.sig.kid" (the key id, UTF-8, 1-128 characters of
//     [A-Za-z0-9._:-]) and "agentrail.sig" (the raw signature bytes: 64 for
//     ed25519, 32 for hmac-sha256). Each appears at most once. There is no
//     algorithm header: the algorithm is the registered key's, so a record
//     cannot choose a weaker one.
//  3. Algorithms: "ed25519" (RFC 8032, pure Ed25519 over the value; the
//     registry holds the 32-byte public key, base64) and "hmac-sha256"
//     (RFC 2104 over the value with a shared secret of at least 32 bytes,
//     which the registry names by file or environment variable, never
//     inline).
//
// Over HTTP (the gateway's POST /v1/events, docs/GATEWAY.md), a JSON
// event travels as one NDJSON line, an envelope built by concatenation
// around the event's exact bytes:
//
//	{"kid":"<key id>","sig":"<signature, standard base64>","event":<the exact signed bytes>}
//
// The envelope has exactly these three members, in any order, each once;
// the event member is the signed object verbatim (it holds no raw newline:
// JSON escapes them in strings, and the agent writes no white space with
// one). A client never re-serialises the event after signing. The gateway
// cuts the event member's bytes out of the line as they are, checks them
// like ingest would, and produces them as the record value with kid and
// sig as the two headers above: ingest verifies the agent's own signature,
// so the gateway cannot alter an event unnoticed.
//
// Test vector (TestJSONSignatureVectors; testdata/json_vectors.py computes
// it independently with Python's `cryptography` and hmac): the event is
// signing/testdata/vector_event.json, the first line of
// schemas/testdata/events.jsonl without its newline (762 bytes, SHA-256
// e75db40534c04a5bbb771bf2d1874595ae67374e5b816c994c1b09a825759006):
//
//	ed25519      seed 32 × 0x01, public key iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=
//	             de586185b0c668bc5cdfa52519101cabe71d982ab13802dd1ca0f8cea2c2d5b6
//	             cac7795796c0c861601c19c4054eab6d75061b66d63dd2e4b5a043ec49203308
//	hmac-sha256  secret 32 × "k"
//	             356f0882455544b0c92aa04808f157408d5db2759cce655ec3e4c36f5893ca51
//
// and its NDJSON line for key billing-bot-1 (ed25519), wrapped here:
//
//	{"kid":"billing-bot-1","sig":"3lhhhbDGaLxc36UlGRAcq+cdmCqxOALdHKD4zqLC1bbKx3lXlsDIYWAcGcQFTqttdQYbZtY90uS1oEPsSSAzCA==",
//	 "event":{"event_id":"ev-1",…,"confidence":0.82}}}
//
// Verification checks, in order, first over the record's exact bytes and
// before anything of the value is decoded (Verifier.VerifySignature): the
// headers are present and well formed (else unsigned or bad_signature), the
// key id is registered (unknown_key), and the signature matches the value
// (bad_signature). The key id names the key and so its agent. Only then is
// the value decoded and validated, and the event's claims checked
// (Verifier.VerifyClaims): the key belongs to the agent the event claims to
// be (identity_mismatch), and the key was valid at the event's event_time,
// allowing a small clock skew (key_expired, key_not_yet_valid).
// Verifier.Verify is the two in order. Keys rotate by overlapping
// validity: an agent may hold several keys at once, and an event signed
// with the old key is accepted as long as its event_time falls within that
// key's validity, however late it arrives.
//
// What lands where, in ingest: a record whose signature does not verify is
// quarantined with its reason, whatever its bytes are, even bytes that do
// not decode or an event that fails validation (its value is then withheld:
// only its size and SHA-256 are kept). A record whose signature verifies but
// whose value does not decode or validate is the signing agent's own bad
// event: it is dead-lettered (decode, validation), like any bad record, not
// quarantined. An event that decodes and validates but fails a claim check
// is quarantined.
//
// A key id names one key across the whole registry. Use a key only for
// signing agentrail events.
//
// It deliberately does not: decide what happens to an event that fails
// (ingest quarantines it), keep keys anywhere but in memory, or talk to
// Kafka or ClickHouse.
package signing
