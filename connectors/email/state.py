"""What the email connector must remember across restarts, in the copilot's database.

- `email_cursor`: per (mailbox, folder) the UIDVALIDITY and the last UID handed to the sink. It only
  moves after the sink returned, so a crash re-reads at most the message in flight (and the inbox
  dedupes that on its Message-ID).
- `email_seen`: every Message-ID handed over (or skipped on purpose) per mailbox. After a
  UIDVALIDITY change UIDs mean nothing; this is what keeps a resync from handing the folder over again.
- `email_sent`: one row per outbound key with the phase the SMTP transaction reached, so a retry
  knows whether the message can have left already (see connectors/email/send.py).

Own MetaData (not the bot's), created here with create_all on the engine the app factory hands over.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, and_, delete, func, insert, select, update
from sqlalchemy.engine import Engine

from connectors.sql import insert_ignore

metadata = MetaData()

cursor_table = Table(
    "email_cursor", metadata,
    Column("mailbox", String(64), primary_key=True),
    Column("folder", String(200), primary_key=True),
    Column("uidvalidity", Integer, nullable=False),
    Column("last_uid", Integer, nullable=False),
    Column("synced_at", Float, nullable=False),  # unix time of the last complete sync
)

seen_table = Table(
    "email_seen", metadata,
    Column("mailbox", String(64), primary_key=True),
    Column("msg_key", String(200), primary_key=True),  # Message-ID, or sha256:… of the raw bytes
    Column("seen_at", Float, nullable=False),
)

sent_table = Table(
    "email_sent", metadata,
    Column("key", String(200), primary_key=True),  # the outbox row's idempotency key
    Column("mailbox", String(64), nullable=False),
    Column("thread", String(300), nullable=False, index=True),
    Column("message_id", String(300), nullable=False),
    Column("auto", Boolean, nullable=False),
    Column("phase", String(16), nullable=False),  # connecting | data | sent
    Column("updated_at", Float, nullable=False),
)


@dataclass(frozen=True)
class Cursor:
    uidvalidity: int
    last_uid: int
    synced_at: float


@dataclass(frozen=True)
class SentRow:
    phase: str
    message_id: str
    updated_at: float


def msg_key(message_id: str) -> str:
    """A Message-ID as a key that fits the columns (a rare few are longer than 200 characters)."""
    if len(message_id) <= 200:
        return message_id
    import hashlib

    return "sha256:" + hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()


class EmailState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    # receiving ------------------------------------------------------------------------------------
    def cursor(self, mailbox: str, folder: str) -> Cursor | None:
        t = cursor_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.uidvalidity, t.c.last_uid, t.c.synced_at).where(
                t.c.mailbox == mailbox, t.c.folder == folder)).first()
        return Cursor(*row) if row else None

    def advance(self, mailbox: str, folder: str, uidvalidity: int, uid: int, seen: str | None = None,
                *, synced: bool = False) -> None:
        """Move the cursor to `uid` (never backwards within a UIDVALIDITY) and record `seen`, in one
        transaction: either both happened or neither did."""
        t = cursor_table
        now = time.time()
        with self.engine.begin() as conn:
            if seen:
                conn.execute(insert_ignore(conn, seen_table, dict(mailbox=mailbox, msg_key=msg_key(seen), seen_at=now)))
            row = conn.execute(select(t.c.uidvalidity, t.c.last_uid, t.c.synced_at).where(
                t.c.mailbox == mailbox, t.c.folder == folder)).first()
            if row is None:
                conn.execute(insert(t).values(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, last_uid=uid,
                                              synced_at=now if synced else 0.0))
                return
            last = row.last_uid if row.uidvalidity == uidvalidity else 0
            values = dict(uidvalidity=uidvalidity, last_uid=max(last, uid))
            if synced:
                values["synced_at"] = now
            elif row.uidvalidity != uidvalidity:
                values["synced_at"] = row.synced_at  # keep: the resync window still counts from it
            conn.execute(update(t).where(t.c.mailbox == mailbox, t.c.folder == folder).values(**values))

    def unseen(self, mailbox: str, keys: list[str]) -> set[str]:
        """Those of `keys` never handed over from this mailbox."""
        want = {msg_key(k): k for k in keys}
        found: set[str] = set()
        t = seen_table
        items = list(want)
        with self.engine.connect() as conn:
            for i in range(0, len(items), 500):
                found |= set(conn.execute(select(t.c.msg_key).where(
                    t.c.mailbox == mailbox, t.c.msg_key.in_(items[i:i + 500]))).scalars())
        return {orig for k, orig in want.items() if k not in found}

    # sending ----------------------------------------------------------------------------------------
    def sent_row(self, key: str) -> SentRow | None:
        t = sent_table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.phase, t.c.message_id, t.c.updated_at).where(t.c.key == key)).first()
        return SentRow(*row) if row else None

    def begin_send(self, key: str, mailbox: str, thread: str, message_id: str, auto: bool) -> None:
        t = sent_table
        values = dict(mailbox=mailbox, thread=thread[:300], message_id=message_id, auto=auto, phase="connecting",
                      updated_at=time.time())
        with self.engine.begin() as conn:
            if conn.execute(update(t).where(t.c.key == key).values(**values)).rowcount == 0:
                conn.execute(insert(t).values(key=key, **values))

    def set_phase(self, key: str, phase: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(sent_table).where(sent_table.c.key == key).values(phase=phase, updated_at=time.time()))

    def forget_send(self, key: str) -> None:
        """The transaction failed before the server took the message: it was certainly not sent."""
        with self.engine.begin() as conn:
            conn.execute(delete(sent_table).where(sent_table.c.key == key, sent_table.c.phase != "sent"))

    def auto_replies(self, mailbox: str, thread: str, since: float, exclude_key: str) -> int:
        t = sent_table
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(t).where(and_(
                t.c.mailbox == mailbox, t.c.thread == thread[:300], t.c.auto.is_(True), t.c.phase == "sent",
                t.c.updated_at >= since, t.c.key != exclude_key))).scalar() or 0
