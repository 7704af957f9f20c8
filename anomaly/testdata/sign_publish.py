#!/usr/bin/python3
"""Sign and publish agentrail records as an agent written from the contract.

An independent producer: the signature and its Kafka headers are made here,
from signing/doc.go alone, with the `cryptography` package (Ed25519, RFC
8032) and the standard library's hmac (HMAC-SHA256, RFC 2104), and the
records go to Kafka through librdkafka (confluent_kafka). Nothing of
agentrail's Go code is used.

Reads one JSON object on stdin:

    {"brokers": "127.0.0.1:9092", "topic": "agentrail.events",
     "records": [{"key_id": "billing-bot-1", "alg": "ed25519",
                  "key_hex": "<32-byte seed or the HMAC secret>",
                  "sign_hex": "<the bytes to sign>",
                  "send_hex": "<the value to send; sign_hex unless altered>",
                  "key": "<record key>"}]}

Each record's signature is computed over sign_hex and sent, in the headers
"agentrail.sig.kid" (UTF-8) and "agentrail.sig" (raw bytes), with the value
send_hex: a value altered after signing when the two differ. Prints one
JSON line per record: {"partition": p, "offset": o}, in input order.
"""
import hashlib
import hmac
import json
import sys

from confluent_kafka import Producer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def sign(alg, key, value):
    if alg == "ed25519":
        return Ed25519PrivateKey.from_private_bytes(key).sign(value)
    if alg == "hmac-sha256":
        return hmac.new(key, value, hashlib.sha256).digest()
    raise SystemExit("unknown alg %r" % alg)


def main():
    req = json.load(sys.stdin)
    p = Producer({"bootstrap.servers": req["brokers"], "acks": "all",
                  "enable.idempotence": False, "api.version.request": True})
    delivered = [None] * len(req["records"])

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                raise SystemExit("record %d not delivered: %s" % (i, err))
            delivered[i] = {"partition": msg.partition(), "offset": msg.offset()}
        return cb

    for i, r in enumerate(req["records"]):
        sig = sign(r["alg"], bytes.fromhex(r["key_hex"]), bytes.fromhex(r["sign_hex"]))
        headers = [("agentrail.sig.kid", r["key_id"].encode("utf-8")), ("agentrail.sig", sig)]
        p.produce(req["topic"], value=bytes.fromhex(r["send_hex"]), key=r.get("key", "").encode("utf-8"),
                  headers=headers, on_delivery=on_delivery(i))
        p.poll(0)
    left = p.flush(30)
    if left or any(d is None for d in delivered):
        raise SystemExit("%d records not delivered" % (left or sum(d is None for d in delivered)))
    for d in delivered:
        print(json.dumps(d))


if __name__ == "__main__":
    main()
