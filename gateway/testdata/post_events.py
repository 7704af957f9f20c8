#!/usr/bin/python3
"""An agent written from the contract alone, posting to the gateway.

Builds events from a template with the standard library, signs each one's
exact bytes with Ed25519 (`cryptography`), wraps it in the NDJSON envelope
by concatenation (signing/doc.go) and POSTs batches to /v1/events with
urllib. Nothing of agentrail's Go code is used.

Reads one JSON object on stdin:

    {"url": "http://127.0.0.1:8088", "kid": "billing-bot-1",
     "seed_hex": "<32-byte ed25519 seed>", "template": {<an event>},
     "prefix": "py-", "batch": 5, "bad_per_batch": 1,
     "requests": 3, "loop": false}

Each batch holds `batch` good events and `bad_per_batch` lines signed
correctly but whose action_digest is not a digest (rejected by the
gateway's validation). With "loop" it posts until 3 consecutive requests
fail to connect (the gateway closed) or `requests` is reached. Prints one
JSON line per request:

    {"code": 200, "sent": [ids], "accepted": [ids], "rejected": [ids]}

(code 0: no HTTP answer).
"""
import base64
import datetime
import json
import sys
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def main():
    req = json.load(sys.stdin)
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(req["seed_hex"]))
    kid = req["kid"].encode()
    n = 0
    failures = 0
    for r in range(req["requests"]):
        lines, ids = [], []
        for i in range(req["batch"] + req["bad_per_batch"]):
            n += 1
            ev = json.loads(json.dumps(req["template"]))
            ev["event_id"] = "%s%d" % (req["prefix"], n)
            ev["trace_id"] = "%032x" % (0xabc000000 + n)
            t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
            ev["event_time"] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            if i >= req["batch"]:
                ev["intent"]["action_digest"] = "not-a-digest"
            # The exact bytes this agent signs: never re-serialised after.
            event = json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode()
            sig = base64.b64encode(key.sign(event))
            lines.append(b'{"kid":"' + kid + b'","sig":"' + sig + b'","event":' + event + b"}")
            ids.append(ev["event_id"])
        body = b"\n".join(lines) + b"\n"
        http_req = urllib.request.Request(req["url"] + "/v1/events", data=body,
                                          headers={"Content-Type": "application/x-ndjson"})
        out = {"code": 0, "sent": ids, "accepted": [], "rejected": []}
        try:
            with urllib.request.urlopen(http_req, timeout=30) as resp:
                out["code"] = resp.status
                answer = json.load(resp)
        except urllib.error.HTTPError as e:
            out["code"] = e.code
            answer = json.load(e)
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            answer = None
            out["error"] = type(e).__name__
        if answer is not None:
            failures = 0
            for res in answer.get("results", []):
                st = res["status"]
                if st in ("accepted", "rejected"):
                    out[st].append(ids[res["line"] - 1])
        else:
            failures += 1
        print(json.dumps(out), flush=True)
        if req["loop"] and failures >= 3:
            break


main()
