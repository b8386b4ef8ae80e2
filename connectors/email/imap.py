"""One IMAP connection to one mailbox folder, on aioimaplib: connect (TLS, STARTTLS or plain), log in,
select, search and fetch by UID, IDLE, flag. Failures become `ImapError` with a cause a person can act on.

aioimaplib gaps filled here: STARTTLS (it lists the command but never upgrades the transport), a
connection-lost signal for IMAP4_SSL (it drops `conn_lost_cb`), and FETCH responses parsed into
(uid, bytes) pairs. Imports only the connector's own config.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import date

import aioimaplib
from aioimaplib.aioimaplib import STOP_WAIT_SERVER_PUSH, Command

from .config import Mailbox

log = logging.getLogger("copilot.email.imap")
_FETCH = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_CHANGE = re.compile(rb"\b(?:EXISTS|EXPUNGE|RECENT|FETCH|VANISHED)\b")
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


class ImapError(Exception):
    """`kind`: connect | tls | auth | folder | protocol | lost. `fix` says what to change."""

    def __init__(self, message: str, kind: str, fix: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.fix = fix


class IdleUnsupported(ImapError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "protocol", "the copilot polls instead (poll_seconds)")


@dataclass(frozen=True)
class Selected:
    uidvalidity: int
    uidnext: int  # 0 when the server did not say
    exists: int


def imap_date(d: date) -> str:
    return f"{d.day}-{_MONTHS[d.month - 1]}-{d.year}"


def connect_error(exc: BaseException, host: str, port: int, security: str, what: str, timeout: float) -> ImapError:
    """A failed connect or handshake as a cause and a fix (shared with SMTP: the causes are the same)."""
    proto = what.split()[0].lower()
    if isinstance(exc, socket.gaierror):
        return ImapError(f"{what} {host}: unknown host ({exc.strerror})", "connect", f"check {proto}_host (a typo, or DNS)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ImapError(f"{what} {host}:{port}: certificate not trusted ({exc.verify_message})", "tls",
                         "use the host name on the server's certificate, or set ca_file to its CA (tls_verify = false only for testing)")
    if isinstance(exc, ssl.SSLError):
        fix = (f"the port does not speak TLS at once: set {proto}_security = \"starttls\" (or the TLS port: "
               f"{993 if proto == 'imap' else 465})" if security == "ssl" else f"TLS handshake failed: check {proto}_security and {proto}_port")
        return ImapError(f"{what} {host}:{port}: TLS handshake failed ({exc.reason or exc})", "tls", fix)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        fix = (f"if port {port} expects TLS at once (993 for IMAP, 465 for SMTP) set {proto}_security = \"ssl\"; "
               "otherwise a firewall drops the connection" if security != "ssl" else "a firewall drops the connection, or the host is down")
        return ImapError(f"{what} {host}:{port}: no answer within {timeout:.0f} s", "tls" if security != "ssl" else "connect", fix)
    if isinstance(exc, ConnectionRefusedError):
        return ImapError(f"{what} {host}:{port}: connection refused", "connect",
                         f"nothing listens there: check {proto}_host and {proto}_port")
    if isinstance(exc, OSError):
        return ImapError(f"{what} {host}:{port}: unreachable ({exc.strerror or exc})", "connect",
                         f"check the network and {proto}_host / {proto}_port")
    return ImapError(f"{what} {host}:{port}: {type(exc).__name__}: {exc}", "connect", "")


class ImapSession:
    def __init__(self, mb: Mailbox) -> None:
        self.mb = mb
        self.client: aioimaplib.IMAP4 | None = None
        self.lost = asyncio.Event()
        self.selected: Selected | None = None

    # set-up ----------------------------------------------------------------------------------------
    async def open(self, folder: str | None = None) -> Selected:
        mb = self.mb
        ctx = mb.tls_context() if mb.imap_security != "none" else None
        try:
            self.client = aioimaplib.IMAP4(host=mb.imap_host, port=mb.imap_port_, timeout=mb.timeout,
                                           conn_lost_cb=lambda _exc: self.lost.set(),
                                           ssl_context=ctx if mb.imap_security == "ssl" else None)
            await self.client.wait_hello_from_server()
            if mb.imap_security == "starttls":
                await asyncio.wait_for(self._starttls(ctx), mb.timeout)
        except ImapError:
            raise
        except (OSError, asyncio.TimeoutError, aioimaplib.AioImapException) as exc:
            await self.close()
            if isinstance(exc, aioimaplib.AioImapException):
                raise ImapError(f"IMAP {mb.imap_host}:{mb.imap_port_}: {exc}", "protocol") from exc
            raise connect_error(exc, mb.imap_host, mb.imap_port_, mb.imap_security, "IMAP", mb.timeout) from exc
        res = await self._call(self.client.login(mb.username, mb.password.get_secret_value()))
        if res.result != "OK":
            await self.close()
            reason = _text(res.lines[-1:]) if res.lines else res.result
            raise ImapError(f"IMAP login as {mb.username} refused: {reason}", "auth",
                            "check username and password; Gmail, Outlook, QQ, 163 and Tencent Exmail need an app "
                            "password or authorization code (授权码) with IMAP enabled in the web mail settings")
        if self.client.has_capability("ID"):
            # NetEase (163/126/yeah.net) refuses SELECT as an "Unsafe Login" from clients that send no ID.
            try:
                await self._call(self.client.id(name="sales-copilot", version="1", vendor="sales-copilot"))
            except ImapError:
                pass  # an ID the server dislikes is no reason to stop
        return await self.select(folder or mb.folder)

    async def _starttls(self, ctx: ssl.SSLContext) -> None:
        proto = self.client.protocol
        if "STARTTLS" not in proto.capabilities:
            raise ImapError(f"IMAP {self.mb.imap_host}:{self.mb.imap_port_} does not offer STARTTLS", "tls",
                            "set imap_security = \"ssl\" with port 993, or \"none\" on a trusted network only")
        res = await proto.execute(Command("STARTTLS", proto.new_tag(), loop=proto.loop))
        if res.result != "OK":
            raise ImapError(f"STARTTLS refused: {_text(res.lines)}", "tls", "set imap_security = \"ssl\" with port 993")
        loop = asyncio.get_running_loop()
        proto.transport = await loop.start_tls(proto.transport, proto, ctx, server_hostname=self.mb.imap_host)
        await proto.capability()  # RFC 3501: capabilities learnt before TLS must be forgotten

    async def select(self, folder: str) -> Selected:
        res = await self._call(self.client.select(_quote(folder)))
        if res.result != "OK":
            raise ImapError(f"IMAP folder {folder!r} cannot be selected: {_text(res.lines)}", "folder",
                            f"set folder to one of: {', '.join(await self.folders()) or '(none listed)'}")
        text = b"\n".join(bytes(x) for x in res.lines)
        validity = re.search(rb"UIDVALIDITY (\d+)", text)
        if validity is None:
            raise ImapError(f"IMAP server gave no UIDVALIDITY for {folder!r}", "protocol", "")
        nxt, exists = re.search(rb"UIDNEXT (\d+)", text), re.search(rb"(\d+) EXISTS", text)
        self.selected = Selected(int(validity.group(1)), int(nxt.group(1)) if nxt else 0, int(exists.group(1)) if exists else 0)
        return self.selected

    async def folders(self) -> list[str]:
        try:
            res = await self.client.list('""', "*")
        except Exception:
            return []
        names = [re.search(rb'(?:"((?:[^"\\]|\\.)*)"|(\S+))$', bytes(x)) for x in res.lines[:-1]]
        return [(m.group(1) or m.group(2)).decode("utf-8", "replace") for m in names if m][:20]

    @property
    def idle_supported(self) -> bool:
        return self.client is not None and self.client.has_capability("IDLE")

    # reading ---------------------------------------------------------------------------------------
    async def search(self, *criteria: str) -> list[int]:
        res = await self._call(self.client.uid_search(*criteria, charset=None))
        if res.result != "OK":
            raise ImapError(f"UID SEARCH {' '.join(criteria)}: {_text(res.lines)}", "protocol")
        return sorted({int(n) for line in res.lines[:-1] for n in bytes(line).split() if n.isdigit()})

    async def fetch(self, uids: list[int], parts: str = "BODY.PEEK[]") -> dict[int, bytes]:
        """uid -> the literal of `parts` (one item), for the UIDs the server still has."""
        if not uids:
            return {}
        res = await self._call(self.client.uid("fetch", _uid_set(uids), f"(UID {parts})"))
        if res.result != "OK":
            raise ImapError(f"UID FETCH: {_text(res.lines)}", "protocol")
        out: dict[int, bytes] = {}
        uid, literal, open_item = None, None, False
        for line in res.lines:
            if isinstance(line, (bytearray, memoryview)):
                literal = bytes(line)
                continue
            if _FETCH.match(line):
                if open_item and uid is not None and literal is not None:
                    out[uid] = literal
                m = _UID.search(line)
                uid, literal, open_item = (int(m.group(1)) if m else None), None, True
                continue
            if open_item:  # the rest of an item after its literal: ")" or " UID 7)"
                m = _UID.search(line)
                if m and uid is None:
                    uid = int(m.group(1))
        if open_item and uid is not None and literal is not None:
            out[uid] = literal
        return {u: d for u, d in out.items() if u in set(uids)}

    async def flag(self, uid: int, keyword: str) -> None:
        await self._call(self.client.uid("store", str(uid), "+FLAGS", f"({keyword})"))

    async def noop(self) -> None:
        await self._call(self.client.noop())

    async def idle(self, seconds: float) -> bool:
        """Wait in IDLE up to `seconds`; True when the folder changed. Keep-alive notes from the server
        ("* OK Still here") do not end the wait."""
        if not self.idle_supported:
            raise IdleUnsupported(f"IMAP {self.mb.imap_host} does not offer IDLE")
        c = self.client
        while not c.protocol.idle_queue.empty():  # pushes left over from the previous IDLE
            c.protocol.idle_queue.get_nowait()
        try:
            idle_task = await self._call(asyncio.wait_for(c.idle_start(timeout=seconds), self.mb.timeout))
        except ImapError as exc:
            if isinstance(exc.__cause__, aioimaplib.Abort) and "IDLE" in str(exc.__cause__):
                raise IdleUnsupported(f"IDLE refused: {exc.__cause__}") from exc
            raise
        changed = False
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            while not changed:
                push = asyncio.ensure_future(c.wait_server_push(timeout=seconds + self.mb.timeout))
                done, _ = await asyncio.wait({push, lost}, return_when=asyncio.FIRST_COMPLETED)
                if lost in done:
                    push.cancel()
                    raise ImapError("IMAP connection lost during IDLE", "lost")
                lines = push.result()
                if lines == STOP_WAIT_SERVER_PUSH:
                    break
                changed = any(_CHANGE.search(bytes(x)) for x in lines)
        finally:
            lost.cancel()
        c.idle_done()
        await self._call(asyncio.wait_for(idle_task, self.mb.timeout))
        return changed

    async def _call(self, coro):
        """Await an aioimaplib call, but give up as soon as the connection is gone: aioimaplib writes
        into a closed transport without complaint and would wait for the full timeout."""
        task = asyncio.ensure_future(coro)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if task not in done:
            task.cancel()
            raise ImapError(f"IMAP connection to {self.mb.imap_host} lost", "lost")
        try:
            return task.result()
        except asyncio.TimeoutError as exc:
            raise ImapError(f"IMAP {self.mb.imap_host}: no answer within {self.mb.timeout:.0f} s", "lost") from exc
        except (aioimaplib.AioImapException, OSError) as exc:
            raise ImapError(f"IMAP {self.mb.imap_host}: {type(exc).__name__}: {exc}", "lost") from exc

    async def close(self) -> None:
        c, self.client = self.client, None
        if c is None:
            return
        try:
            if c.protocol.transport is not None and not self.lost.is_set() and c.get_state() in ("AUTH", "SELECTED"):
                if c.has_pending_idle():
                    c.idle_done()  # LOGOUT would wait behind the IDLE command otherwise
                await asyncio.wait_for(c.logout(), 2)
        except Exception:
            pass
        finally:
            if c.protocol.transport is not None:
                c.protocol.transport.close()
            for task in list(c.tasks) + list(c.protocol.tasks):
                task.cancel()


def _uid_set(uids: list[int]) -> str:
    """1,2,3,7 -> "1:3,7" (short commands for long runs)."""
    out, run = [], [uids[0], uids[0]]
    for u in uids[1:]:
        if u == run[1] + 1:
            run[1] = u
        else:
            out.append(run)
            run = [u, u]
    out.append(run)
    return ",".join(f"{a}:{b}" if a != b else str(a) for a, b in out)


def utf7(folder: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3): 已发送 -> &XfJT0ZAB-."""
    out, run = [], []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode().rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            run.clear()

    for ch in folder:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _quote(folder: str) -> str:
    folder = utf7(folder)
    return folder if re.fullmatch(r"[\w.\-/]+", folder) else '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(lines: list) -> str:
    return " ".join(bytes(x).decode("utf-8", "replace") for x in lines).strip()[:300]
