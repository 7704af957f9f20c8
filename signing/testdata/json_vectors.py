#!/usr/bin/python3
"""Independent signatures of the JSON framing's test vector (signing/doc.go).

Reads the event's exact bytes (signing/testdata/vector_event.json), signs
them with Ed25519 (the `cryptography` package) and HMAC-SHA256 (the
standard library), and prints one JSON object: the public key, both
signatures in hex, and the NDJSON line of the gateway's POST /v1/events for
the Ed25519 key, built by concatenation around the exact event bytes.
"""
import base64
import hashlib
import hmac
import json
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

event = open(sys.argv[1], "rb").read()
priv = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
pub = priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
ed = priv.sign(event)
mac = hmac.new(b"k" * 32, event, hashlib.sha256).digest()
line = b'{"kid":"billing-bot-1","sig":"' + base64.b64encode(ed) + b'","event":' + event + b"}"
json.dump({
    "public_key": base64.b64encode(pub).decode(),
    "sha256": hashlib.sha256(event).hexdigest(),
    "ed25519": ed.hex(),
    "hmac_sha256": mac.hex(),
    "line": line.decode(),
}, sys.stdout)
