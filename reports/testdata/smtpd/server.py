"""An independent SMTP server for reports/smtpd_test.go: aiosmtpd with
STARTTLS required, on 127.0.0.1. Each message received is parsed with
Python's email package and its structure printed as one JSON line:

    server.py CERT KEY PORT

prints "READY" once it listens, then one JSON object per message.
"""
import asyncio
import email
import email.policy
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller


def structure(part):
    node = {
        "content_type": part.get_content_type(),
        "params": {k: v for k, v in part.get_params()[1:]} if part.get_params() else {},
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "content_id": part.get("Content-ID"),
    }
    if part.is_multipart():
        node["parts"] = [structure(p) for p in part.iter_parts()]
    else:
        payload = part.get_payload(decode=True) or b""
        node["size"] = len(payload)
        if part.get_content_maintype() == "text" or part.get_content_type() == "application/json":
            node["text"] = payload.decode(part.get_content_charset() or "utf-8")
        elif part.get_content_type() == "image/png":
            node["png_signature"] = payload[:8] == b"\x89PNG\r\n\x1a\n"
    return node


class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        out = {
            "tls": session.ssl is not None,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "defects": [type(d).__name__ for d in msg.defects],
            "headers": {k: str(msg[k]) for k in ("Subject", "From", "To", "Message-ID", "Date",
                                                 "Auto-Submitted", "Precedence", "MIME-Version",
                                                 "X-Agentrail-Team", "X-Agentrail-Week", "X-Agentrail-Coverage")},
            "structure": structure(msg),
        }
        print(json.dumps(out), flush=True)
        return "250 OK"


def main():
    cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    c = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
    c.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()  # until the test closes our stdin
    finally:
        c.stop()


if __name__ == "__main__":
    main()
