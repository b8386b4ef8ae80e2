"""A real SMTP server on loopback (aiosmtpd) for the email tests, and a self-signed certificate.

`MailServer` speaks SMTP with AUTH, STARTTLS or implicit TLS; it keeps every message it accepts and can
hand a copy to a callback (the tests deliver into Dovecot, like a real provider's MTA). `drop_next`
makes it take the message and then close the connection before answering: the one moment a sender
cannot know whether its mail went out.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Callable

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def self_signed_cert(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for `host` (and localhost), valid for a day: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o644)  # Dovecot reads it as root, but its config check runs as its own user too
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=default_policy)


class _Handler:
    def __init__(self, server: "MailServer") -> None:
        self.server = server

    async def handle_DATA(self, smtp, session, envelope) -> str:
        s = self.server
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content))
        s.received.append(got)
        if s.deliver is not None:
            for rcpt in got.rcpt_tos:
                s.deliver(rcpt, got.data)
        if s.drop_next > 0:
            s.drop_next -= 1
            smtp.transport.close()  # the message is taken, the reply never arrives
        return "250 2.0.0 queued"


class MailServer:
    def __init__(self, port: int, *, user: str = "", password: str = "", starttls: ssl.SSLContext | None = None,
                 implicit_tls: ssl.SSLContext | None = None, deliver: Callable[[str, bytes], None] | None = None) -> None:
        self.port = port
        self.user, self.password = user, password
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.deliver = deliver
        self.received: list[Received] = []
        self.drop_next = 0
        self.controller: Controller | None = None

    def _auth(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user \
            and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535 itself

    def start(self) -> "MailServer":
        kwargs: dict = dict(hostname="127.0.0.1", port=self.port, ready_timeout=10, server_hostname="127.0.0.1")
        if self.user:
            kwargs.update(authenticator=self._auth, auth_required=True, auth_require_tls=self.starttls is not None)
        if self.starttls is not None:
            kwargs.update(tls_context=self.starttls, require_starttls=True)
        if self.implicit_tls is not None:
            kwargs.update(ssl_context=self.implicit_tls)
        self.controller = Controller(_Handler(self), **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]
