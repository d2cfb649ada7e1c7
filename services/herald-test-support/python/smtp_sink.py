"""A real SMTP server for tests (aiosmtpd): stores each message it accepts in OUT_DIR as
NNNN.eml (the raw bytes) and NNNN.json (envelope, headers and MIME parts decoded by Python's
email package), and prints `PORT <n>` once it listens on 127.0.0.1.

    smtp_sink.py OUT_DIR [--auth USER:PASSWORD] [--starttls CERT KEY | --implicit-tls CERT KEY]
"""

import argparse
import asyncio
import email
import json
import os
import ssl
import sys
from email import policy

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Store:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = os.path.join(self.out_dir, "%04d" % self.count)
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=policy.default)
        parts = []
        for part in message.walk():
            if part.is_multipart():
                continue
            parts.append(
                {
                    "content_type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    "transfer_encoding": part.get("Content-Transfer-Encoding"),
                    # SMTP lines end in CRLF; the text as written has \n
                    "content": part.get_content().replace("\r\n", "\n"),
                }
            )
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": session.auth_data.decode() if isinstance(session.auth_data, bytes) else None,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "content_type": message.get_content_type(),
            "headers": {k: str(v) for k, v in message.items()},
            "raw_headers": {k: v for k, v in message.raw_items()},
            "parts": parts,
        }
        with open(name + ".eml", "wb") as f:
            f.write(raw)
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name + ".json")
        return "250 2.0.0 Ok: queued as HERALD%d" % self.count


def authenticator(expected):
    def check(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            given = (auth_data.login.decode(), auth_data.password.decode())
            if given == expected:
                return AuthResult(success=True, auth_data=auth_data.login)
        return AuthResult(success=False, handled=False)

    return check


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--auth")
    parser.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    store = Store(args.out_dir)

    def context(pair):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*pair)
        return ctx

    kwargs = {"auth_require_tls": False}
    if args.auth:
        user, password = args.auth.split(":", 1)
        kwargs["authenticator"] = authenticator((user, password))
        kwargs["auth_required"] = True
    if args.starttls:
        kwargs["tls_context"] = context(args.starttls)
        kwargs["require_starttls"] = True
    server_ssl = context(args.implicit_tls) if args.implicit_tls else None

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(store, hostname="sink.test", **kwargs),
        host="127.0.0.1",
        port=0,
        ssl=server_ssl,
    )
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
