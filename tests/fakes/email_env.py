"""Fixtures for the email tests: a real Dovecot (installed from Debian's packages when missing and
possible, else the tests skip saying why), one fresh mailbox user per test, and a recording sink.

Import the fixtures into a test module: `from tests.fakes.email_env import *  # noqa: F403`.
"""
from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from connectors.channel import Accepted
from connectors.email.config import Mailbox
from connectors.message import InboundMessage
from tests.fakes.dovecot import Dovecot, ensure_dovecot
from tests.fakes.mail_server import self_signed_cert

CNMAIL = Path(__file__).resolve().parents[2].parent / "shared" / "cnmail"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "email"
_users = itertools.count(1)

__all__ = ["AUTHSERV", "CNMAIL", "FIXTURES", "Collector", "Imap", "dovecot", "imap_user", "mailbox", "tls_files", "verdict"]

# The receiving server's authserv-id in the tests (every test mailbox trusts it): the Dovecot here delivers
# what a test appends as is, so a test plays the receiving MTA and prepends its verdict with `verdict()`.
AUTHSERV = "mx.seller.example.cn"


def verdict(domain: str, *, dmarc: str = "pass", dkim: str = "", authserv: str = AUTHSERV) -> bytes:
    """The Authentication-Results line a receiving server writes (RFC 8601), to prepend to a raw mail:
    dmarc=pass for `domain` by default; `dkim="pass:d.example"` adds a DKIM result with header.d."""
    parts = [authserv]
    if dkim:
        result, _, signer = dkim.partition(":")
        parts.append(f"dkim={result} header.d={signer or domain} header.s=s1")
    if dmarc:
        parts.append(f"dmarc={dmarc} (p=reject) header.from={domain}")
    return ("Authentication-Results: " + ";\r\n ".join(parts) + "\r\n").encode()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def dovecot(tls_files):
    binary, why = ensure_dovecot(install=True)
    if binary is None:
        pytest.skip(f"no IMAP server for the email tests: {why}")
    cert, key = tls_files
    server = Dovecot({}, cert=cert, key=key, binary=binary).start()
    yield server
    server.stop()


class Imap:
    """One test's mailbox user on the shared Dovecot."""

    def __init__(self, server: Dovecot, address: str, password: str) -> None:
        self.server, self.address, self.password = server, address, password

    async def append(self, *messages: bytes, folder: str = "INBOX") -> list[int]:
        return await asyncio.to_thread(self.server.append, self.address, *messages, folder=folder)

    async def recreate(self, folder: str) -> int:
        return await asyncio.to_thread(self.server.recreate, self.address, folder)

    async def create(self, folder: str) -> None:
        await asyncio.to_thread(self.server.create, self.address, folder)

    def mailbox(self, **kw) -> Mailbox:
        base = dict(imap_host="127.0.0.1", imap_port=self.server.port, imap_security="none", username=self.address,
                    password=self.password, address=self.address, timeout=5.0, idle_seconds=30.0, poll_seconds=30.0,
                    backfill_days=1, confirm_wait=0.0, authserv_id=AUTHSERV)
        base.update(kw)
        return Mailbox(**base)

    def flags(self, uid: int, folder: str = "INBOX") -> str:
        m = self.server.imap(self.address)
        try:
            m.select(folder)
            typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
            return data[0].decode() if data and data[0] else ""
        finally:
            m.logout()


@pytest.fixture
def imap_user(dovecot) -> Imap:
    address = f"copilot{next(_users)}@seller.example.cn"
    dovecot.add_user(address, "s3cret-app-password")
    return Imap(dovecot, address, "s3cret-app-password")


@pytest.fixture
def mailbox(imap_user) -> Mailbox:
    return imap_user.mailbox()


class Collector:
    """A sink that records every hand-over (duplicates included). With `block_after=n` the call after
    the n-th never returns: a process stopped while handing a message over."""

    def __init__(self, block_after: int | None = None) -> None:
        self.messages: list[InboundMessage] = []
        self.block_after = block_after
        self._changed = asyncio.Event()

    async def __call__(self, msg: InboundMessage) -> Accepted:
        if self.block_after is not None and len(self.messages) >= self.block_after:
            self._changed.set()
            await asyncio.Event().wait()
        self.messages.append(msg)
        self._changed.set()
        return Accepted(len(self.messages), False)

    async def wait(self, n: int, timeout: float = 10.0) -> list[InboundMessage]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.messages) < n:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{len(self.messages)} of {n} messages arrived: "
                                     f"{[m.mail.subject if m.mail else '' for m in self.messages]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.messages

    def ids(self) -> list[str]:
        return [m.platform_msg_id for m in self.messages]


def email_context(settings, engine=None):
    """What the app factory hands the email connector, over the settings' database."""
    from bot.app import channel_context, open_database

    return channel_context(settings, "email", engine or open_database(settings))
