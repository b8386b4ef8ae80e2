"""One mailbox's receive loop: sync new mail into the sink, then IDLE (or poll) and sync again;
reconnect with backoff on any failure. Exactly once across restarts and reconnects:

- Normal case: `UID SEARCH UID last+1:*` (a server answers with the newest message even when nothing
  is new, so only uid > last counts), fetch, hand each message to the sink in UID order, and move the
  cursor after the sink returned.
- First connect (no cursor): mail received in the last `backfill_days` is handed over, not the
  whole folder's history.
- UIDVALIDITY changed (the folder was recreated or migrated): UIDs mean nothing any more, so the
  messages received since the last sync are matched by Message-ID against what was already handed
  over; only the unseen ones go to the sink.

A message that cannot be parsed is kept raw, flagged `$CopilotUnparsed` in the mailbox, logged and
counted; the loop moves on. A message the sink refuses for now (Throttled) leaves the cursor before it: the
watcher waits on the same connection and hands it over again. Imports the channel core and this package only.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from connectors.channel import Sink, Throttled
from connectors.message import InboundMessage

from .config import Mailbox
from .files import Files
from .imap import IdleUnsupported, ImapError, ImapSession, imap_date
from .mime import parse_email
from .parse import parse, platform_id
from .state import EmailState

log = logging.getLogger("copilot.email")
FETCH_BATCH = 25  # messages per UID FETCH: bounds memory when a backlog holds large attachments
UNPARSED_FLAG = "$CopilotUnparsed"


@dataclass
class WatchStatus:
    connected: bool = False
    mode: str = ""  # idle | poll
    last_sync: float = 0.0
    last_error: str = ""
    counts: Counter = field(default_factory=Counter)


class MailboxWatcher:
    def __init__(self, mb: Mailbox, state: EmailState, files: Files, sink: Sink, *, own: frozenset[str],
                 max_backoff: float = 300.0) -> None:
        self.mb = mb
        self.state = state
        self.files = files
        self.sink = sink
        self.own = own  # every copilot address: mail from any of them is never processed
        self.max_backoff = max_backoff
        self.status = WatchStatus()
        self.synced = asyncio.Event()  # set after each complete sync (tests and the bench wait on it)
        self._session: ImapSession | None = None

    async def run(self) -> None:
        backoff = 1.0
        while True:
            session = self._session = ImapSession(self.mb)
            try:
                sel = await session.open()
                self.status.connected, self.status.last_error = True, ""
                backoff = 1.0
                await self.sync_patiently(session)
                await self._wait_loop(session, sel.uidvalidity)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.connected = False
                self.status.last_error = str(exc)
                self.status.counts["reconnects"] += 1
                level = logging.WARNING if isinstance(exc, ImapError) else logging.ERROR
                log.log(level, "mailbox %s: %s; reconnecting in %.0f s", self.mb.key, exc, backoff,
                        exc_info=not isinstance(exc, ImapError))
                await session.close()
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                await session.close()

    async def _wait_loop(self, session: ImapSession, uidvalidity: int) -> None:
        use_idle = self.mb.idle and session.idle_supported
        while True:
            self.status.mode = "idle" if use_idle else "poll"
            if use_idle:
                try:
                    self.status.counts["idles"] += 1
                    await session.idle(self.mb.idle_seconds)
                except IdleUnsupported as exc:
                    log.warning("mailbox %s: %s; polling every %.0f s instead", self.mb.key, exc, self.mb.poll_seconds)
                    use_idle = False
                    continue
            else:
                try:
                    await asyncio.wait_for(session.lost.wait(), self.mb.poll_seconds)
                    raise ImapError("IMAP connection lost", "lost")
                except asyncio.TimeoutError:
                    pass
                await session.noop()  # lets the server report new mail to a selected folder
            sel = await session.select(self.mb.folder)  # a fresh UIDVALIDITY if the folder was recreated
            if sel.uidvalidity != uidvalidity:
                log.warning("mailbox %s: UIDVALIDITY changed %d -> %d; resyncing by Message-ID", self.mb.key,
                            uidvalidity, sel.uidvalidity)
                uidvalidity = sel.uidvalidity
            await self.sync_patiently(session)

    # syncing --------------------------------------------------------------------------------------
    async def sync_patiently(self, session: ImapSession) -> int:
        """`sync`, waiting out the sink's rate limit: a throttled message was not stored and the cursor
        stays before it, so the next sync (after the wait, on the same connection) hands it over again."""
        while True:
            try:
                return await self.sync(session)
            except Throttled as exc:
                self.status.counts["throttled"] += 1
                wait = max(exc.retry_after, 1.0)
                log.info("mailbox %s: %s; the cursor stays, retrying in %.0f s", self.mb.key, exc, wait)
                await asyncio.sleep(wait * random.uniform(1.0, 1.2))

    async def sync(self, session: ImapSession) -> int:
        """Hand every new message to the sink; returns how many were handed over."""
        sel = session.selected
        cur = await asyncio.to_thread(self.state.cursor, self.mb.key, self.mb.folder)
        if cur is not None and cur.uidvalidity == sel.uidvalidity:
            uids = [u for u in await session.search("UID", f"{cur.last_uid + 1}:*") if u > cur.last_uid]
            handed = await self._deliver_all(session, sel.uidvalidity, uids)
        else:
            if cur is None:
                since = datetime.now(timezone.utc) - timedelta(days=self.mb.backfill_days)
            else:  # what may have arrived since the last sync under the old UIDVALIDITY, and the backfill
                self.status.counts["resyncs"] += 1
                since = min(datetime.fromtimestamp(cur.synced_at or time.time(), timezone.utc),
                            datetime.now(timezone.utc) - timedelta(days=self.mb.backfill_days))
            uids = await session.search("SINCE", imap_date((since - timedelta(days=1)).date()))
            fresh = await self._unseen(session, uids)
            # The cursor also steps over the messages skipped as seen, so a restart in the middle of
            # a resync never reconsiders them by UID alone.
            handed = await self._deliver_all(session, sel.uidvalidity, fresh, skipped=sorted(set(uids) - set(fresh)))
            uids = fresh
            # Older messages under the new UIDVALIDITY were deliberately not handed over: start after them.
            if sel.uidnext:
                top = max(uids[-1] if uids else 0, sel.uidnext - 1)
            else:
                top = max([0, *uids, *await session.search("ALL")])
            await asyncio.to_thread(self.state.advance, self.mb.key, self.mb.folder, sel.uidvalidity, top)
        await asyncio.to_thread(self.state.advance, self.mb.key, self.mb.folder, sel.uidvalidity, 0, synced=True)
        self.status.last_sync = time.time()
        self.synced.set()
        return handed

    async def _unseen(self, session: ImapSession, uids: list[int]) -> list[int]:
        """The UIDs whose Message-ID was never handed over (messages without one: by content hash)."""
        keep: list[int] = []
        for i in range(0, len(uids), 200):
            chunk = uids[i:i + 200]
            heads = await session.fetch(chunk, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
            ids = {u: _message_id(h) for u, h in heads.items()}
            missing = [u for u, m in ids.items() if not m]
            for u, raw in (await session.fetch(missing)).items():
                ids[u] = platform_id(None, raw)
            fresh = await asyncio.to_thread(self.state.unseen, self.mb.key, [m for m in ids.values() if m])
            keep += [u for u in chunk if ids.get(u) in fresh]
        return keep

    async def _deliver_all(self, session: ImapSession, uidvalidity: int, uids: list[int],
                           skipped: list[int] | None = None) -> int:
        handed, passed, skipped = 0, 0, skipped or []
        for i in range(0, len(uids), FETCH_BATCH):
            chunk = uids[i:i + FETCH_BATCH]
            got = await session.fetch(chunk)
            present = [(uid, got[uid]) for uid in chunk if uid in got]  # absent: expunged since SEARCH
            # One thread hop parses the whole batch (parsing is most of the cost per message); the
            # hand-over stays one message at a time, in UID order, each followed by its cursor move.
            ready = await asyncio.to_thread(lambda batch=present: [self._prepare(uid, uidvalidity, raw) for uid, raw in batch])
            for item in ready:
                below = bisect.bisect_left(skipped, item.uid)
                if below > passed:
                    passed = below
                    await asyncio.to_thread(self.state.advance, self.mb.key, self.mb.folder, uidvalidity, skipped[below - 1])
                handed += await self._deliver(session, uidvalidity, item)
        return handed

    def _prepare(self, uid: int, uidvalidity: int, raw: bytes) -> "_Prepared":
        """Parse one message and build what goes to the sink (in a worker thread)."""
        try:
            parsed = parse_email(raw)
        except Exception as exc:
            return _Prepared(uid, raw, platform_id(None, raw), error=f"{type(exc).__name__}: {exc}")
        pid = platform_id(parsed, raw)
        if parsed.from_addr.strip().lower() in self.own:
            return _Prepared(uid, raw, pid, own=True)  # our own mail (a Bcc copy, a loop): never processed
        try:
            msg = parse(parsed, raw, self.mb, self.files, uid=uid, uidvalidity=uidvalidity)
        except ValueError as exc:  # a field the message model refuses; disk errors (OSError) are retried
            return _Prepared(uid, raw, pid, error=f"{type(exc).__name__}: {exc}")
        return _Prepared(uid, raw, pid, msg=msg)

    async def _deliver(self, session: ImapSession, uidvalidity: int, item: "_Prepared") -> int:
        mb, uid = self.mb, item.uid
        if item.error:
            path = await asyncio.to_thread(self.files.keep_unparsed, f"{mb.key}-{uidvalidity}-{uid}", item.raw, item.error)
            self.status.counts["unparsed"] += 1
            log.error("mailbox %s: message UID %d cannot be parsed (%s); kept at %s and flagged %s",
                      mb.key, uid, item.error, path, UNPARSED_FLAG)
            try:
                await session.flag(uid, UNPARSED_FLAG)
            except ImapError as flag_exc:
                log.warning("mailbox %s: could not flag UID %d: %s", mb.key, uid, flag_exc)
        elif item.own:
            self.status.counts["own"] += 1
        else:
            await self.sink(item.msg)
            self.status.counts["no_reply" if item.msg.auto_reply_forbidden else "received"] += 1
        await asyncio.to_thread(self.state.advance, mb.key, mb.folder, uidvalidity, uid, item.key)
        return 1 if item.msg is not None else 0

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class _Prepared:
    uid: int
    raw: bytes
    key: str  # what the seen-table records: the Message-ID, or the hash of the bytes
    msg: InboundMessage | None = None
    own: bool = False
    error: str = ""


def _message_id(header_block: bytes) -> str:
    """The Message-ID from a fetched header block, read the same way the full parse reads it."""
    if not header_block.strip():
        return ""
    try:
        return parse_email(header_block.strip() + b"\r\n\r\n").message_id or ""
    except Exception:
        return ""
