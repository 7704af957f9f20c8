"""Reads single-object records the way schemas/README.md tells an outside
reader to: check C3 01, take the 8-byte fingerprint, decode the rest with
Apache Avro's Python library (avro.io.DatumReader) and the schema.

usage: decode.py SCHEMA.avsc < hex lines
Prints, per record, the fingerprint (hex), a tab, and the datum as JSON in
the canonical JSON form of schemas/README.md (RFC 3339 times, the decision
body under policy_decision).
"""
import datetime
import io
import json
import sys

import avro.io
import avro.schema


def jsonable(v):
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def main():
    with open(sys.argv[1]) as f:
        schema = avro.schema.parse(f.read())
    reader = avro.io.DatumReader(schema)
    for line in sys.stdin:
        b = bytes.fromhex(line.strip())
        if b[:2] != b"\xc3\x01":
            sys.exit("not a single-object record: %s" % b[:2].hex())
        datum = reader.read(avro.io.BinaryDecoder(io.BytesIO(b[10:])))
        datum["policy_decision"] = datum.pop("decision")
        print(b[2:10].hex() + "\t" + json.dumps(jsonable(datum), ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    main()
