// A Node.js agent for `agentrail demo`: it uses node:crypto and fetch, and
// no agentrail code. It reads on stdin {"url", "kid", "seed_hex",
// "templates": [events of one trace, in order], "traces": N}, makes N
// traces from the templates (a fresh trace id, event ids and times), signs
// each event's exact JSON bytes with Ed25519, wraps it in the NDJSON
// envelope {"kid","sig","event"} (signing/doc.go) and POSTs all lines to
// /v1/events. It prints the gateway's answer: {"code", "accepted",
// "rejected", "trace_ids"}.
import crypto from "node:crypto";

const input = JSON.parse(await new Promise((resolve) => {
  let s = "";
  process.stdin.on("data", (d) => (s += d));
  process.stdin.on("end", () => resolve(s));
}));

// An Ed25519 private key from its 32-byte seed: the PKCS#8 DER prefix.
const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(input.seed_hex, "hex")]);
const key = crypto.createPrivateKey({ key: der, format: "der", type: "pkcs8" });

const t0 = Date.parse(input.templates[0].event_time);
const lines = [];
const traceIDs = [];
for (let n = 0; n < input.traces; n++) {
  const traceID = crypto.randomBytes(16).toString("hex");
  traceIDs.push(traceID);
  const start = Date.now() - 60_000;
  for (const tmpl of input.templates) {
    const ev = structuredClone(tmpl);
    ev.event_id = crypto.randomUUID();
    ev.trace_id = traceID;
    ev.event_time = new Date(start + (Date.parse(tmpl.event_time) - t0)).toISOString();
    ev.producer = { name: "node-demo-agent", version: process.version };
    const event = JSON.stringify(ev); // the exact bytes signed and sent
    const sig = crypto.sign(null, Buffer.from(event), key).toString("base64");
    lines.push(`{"kid":${JSON.stringify(input.kid)},"sig":"${sig}","event":${event}}`);
  }
}
const res = await fetch(input.url + "/v1/events", {
  method: "POST",
  headers: { "Content-Type": "application/x-ndjson" },
  body: lines.join("\n") + "\n",
});
const answer = await res.json();
console.log(JSON.stringify({ code: res.status, accepted: answer.accepted ?? 0, rejected: answer.rejected ?? 0, trace_ids: traceIDs }));
