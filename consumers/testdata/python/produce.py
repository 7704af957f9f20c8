"""An agent that knows agentrail only from schemas/README.md.

Writes complete traces (intent, policy decision, approval, result) as Avro
single-object records: the body by Apache Avro's Python library, the header
C3 01 plus the fingerprint given on the command line (python-avro 1.11's own
fingerprint is not the spec's, see schemas/README.md), sent through
librdkafka (confluent_kafka). Prints the number of records delivered.

usage: produce.py BROKER TOPIC SCHEMA.avsc FINGERPRINT_HEX TRACES
"""
import datetime
import hashlib
import io
import json
import sys

import avro.io
import avro.schema
from confluent_kafka import Producer


def digest(agent_id, tool, action, target, params):
    # The action digest as schemas/README.md defines it (JCS over strings).
    canon = json.dumps({"action": action, "agent_id": agent_id, "parameters": params,
                        "target": target, "tool": tool},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def traces(n, now):
    agent = {"agent_id": "py-agent", "agent_version": "0.1", "team": "finance",
             "environment": "prod", "tenant": "acme"}
    producer = {"name": "python-avro", "version": avro.__version__, "host": "py-1"}
    for i in range(n):
        trace = "%032x" % (0xABC000 + i)
        params = {"amount": "%d.00" % (10 + i), "currency": "EUR"}
        target = "order:%d" % i
        d = digest(agent["agent_id"], "payments", "refund", target, params)

        def env(k, typ):
            return {"event_id": "py-%d-%d" % (i, k), "trace_id": trace, "span_id": "00f067aa0ba902b7",
                    "event_type": typ, "event_time": now + datetime.timedelta(seconds=k),
                    "agent": agent, "requested_by": "alice@acme.test", "tier": 3,
                    "producer": producer, "session_id": "py-run", "labels": {"lang": "python"},
                    "intent": None, "decision": None, "approval": None, "result": None}

        e = env(1, "intent")
        e["intent"] = {"tool": "payments", "action": "refund", "target": target, "action_class": "refund",
                       "tier": 3, "parameters": params, "action_digest": d, "rationale": "charged twice",
                       "context": {}, "model_id": "m", "prompt_version": "p1", "evidence_ids": [],
                       "confidence": 0.9}
        yield trace, e
        e = env(2, "policy_decision")
        e["decision"] = {"outcome": "require_approval", "policy_id": "refunds", "policy_version": 3,
                         "matched_rule": "", "reason": "", "tier": 3, "remaining_quota": None}
        yield trace, e
        e = env(3, "approval")
        e["approval"] = {"approval_id": "py-apr-%d" % i, "status": "granted", "approver": "bob@acme.test",
                         "approver_role": "lead", "approver_kind": "human", "action_digest": d,
                         "scope": "single", "expires_at": None, "channel": "cli", "comment": "ok"}
        yield trace, e
        e = env(4, "result")
        e["result"] = {"status": "success", "action_digest": d, "executor": "py-agent",
                       "changed_resource": target, "side_effects": [], "error_class": "",
                       "error_message": "", "duration_us": 1200}
        yield trace, e


def main():
    broker, topic, schema_path, fp_hex, n = sys.argv[1:6]
    with open(schema_path) as f:
        schema = avro.schema.parse(f.read())
    header = b"\xc3\x01" + bytes.fromhex(fp_hex)
    writer = avro.io.DatumWriter(schema)
    p = Producer({"bootstrap.servers": broker, "acks": "all"})
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            sys.exit("delivery failed: %s" % err)
        delivered.append(msg)

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    for trace, e in traces(int(n), now):
        buf = io.BytesIO()
        writer.write(e, avro.io.BinaryEncoder(buf))
        p.produce(topic, key=trace.encode(), value=header + buf.getvalue(), on_delivery=on_delivery)
    if p.flush(30) != 0:
        sys.exit("records still in flight after 30s")
    print(len(delivered))


if __name__ == "__main__":
    main()
