"""A real SMTP server for the tests (aiosmtpd, Debian's python3-aiosmtpd).

Every accepted message is stored in DIR as NNNN.eml (the raw message) with
NNNN.json beside it (envelope sender, recipients, login). Written under a
temporary name and renamed, so a reader never sees half a message.

    /usr/bin/python3 smtp_server.py --port P --dir DIR
        [--refuse-sender ADDR]        answer MAIL FROM:<ADDR> with 553
        [--starttls CERT KEY]         offer STARTTLS and require it
        [--implicit-tls CERT KEY]     TLS from the first byte (port 465 style)
        [--login USER:PASSWORD]       require AUTH (PLAIN/LOGIN) with these

Prints "ready" once it listens; stops on SIGTERM.
"""

import argparse
import json
import os
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Handler:
    def __init__(self, outdir, refuse):
        self.outdir = outdir
        self.refuse = refuse
        self.count = 0
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refuse and address.lower() == self.refuse.lower():
            return "553 5.7.1 <%s>: sender address rejected: not owned by user" % address
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.outdir, "%04d" % n)
        login = session.auth_data if session.authenticated else None
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos, "login": login}
        for ext, data in ((".json", json.dumps(meta).encode()), (".eml", envelope.original_content)):
            with open(base + ext + ".tmp", "wb") as f:
                f.write(data)
            os.rename(base + ext + ".tmp", base + ext)
        return "250 2.0.0 Ok: queued as %04d" % n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--refuse-sender")
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--login")
    a = p.parse_args()

    kwargs = {}
    if a.starttls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.starttls[0], a.starttls[1])
        kwargs.update(tls_context=ctx, require_starttls=True)
    controller_kwargs = {}
    if a.implicit_tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.implicit_tls[0], a.implicit_tls[1])
        controller_kwargs["ssl_context"] = ctx
    if a.login:
        user, password = a.login.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            if ok:
                return AuthResult(success=True, auth_data=user)
            return AuthResult(success=False, handled=False)  # answered with 535

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(a.starttls))

    kwargs.update(controller_kwargs)
    controller = Controller(Handler(a.dir, a.refuse_sender), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
