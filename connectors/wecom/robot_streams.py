"""The robot's streams, in a table every gateway process reads: WeCom's polls for one answer may reach any of them.

One row per answered message (its `stream_id`, made from the msgid): the answer so far while the model writes it
(`partial`, from the Previewer), the replies the outbox delivered (`final`: each with its outbox key, so a retried
delivery is not added twice), whether a poll already showed the finished answer (`closed`), and the message's
`response_url` with whether it was claimed or used (WeCom takes one POST on it, within an hour; once it is claimed
the stream takes no more replies). Writes that race (a delivery and a poll closing the stream, or the response_url
being claimed) go through a version number: the loser reads again, so no reply is lost between them.
Own MetaData, created on the engine the factory hands over. The calls touch the database: run them in a thread.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, delete, select, update
from sqlalchemy.engine import Engine

from connectors.sql import insert_ignore

metadata = MetaData()
streams = Table(
    "wecom_robot_stream", metadata,
    Column("stream_id", String(40), primary_key=True),
    Column("robot", String(40), nullable=False),
    Column("tenant", String(100), nullable=False),
    Column("response_url", String(2100), nullable=False, default=""),
    Column("url_state", String(10), nullable=False, default=""),  # "" unused, "claimed" being posted, "used"
    Column("created_at", Float, nullable=False, index=True),
    Column("partial", Text, nullable=False, default=""),
    Column("final", Text, nullable=False, default=""),  # JSON list of {"key", "md", "card"}; "" until the first reply
    Column("closed", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False, default=0),
)
KEEP = 7200.0  # seconds a row is kept: response_url lives an hour, WeCom polls for six minutes


@dataclass(frozen=True)
class Shown:
    """What a poll answers: the text so far, or the finished answer (with the card of its last reply that had one)."""

    content: str
    finish: bool
    card: dict | None = None


@dataclass(frozen=True)
class Overdue:
    stream_id: str
    robot: str
    response_url: str
    content: str
    card: dict | None


class StreamStore:
    def __init__(self, engine: Engine, clock=time.time, *, one_connection: bool = False) -> None:
        """`one_connection`: the engine has a single connection (SQLite in memory): its transactions take turns."""
        self.engine = engine
        self.clock = clock
        self._turns = threading.Lock() if one_connection else None
        metadata.create_all(engine)

    @contextmanager
    def _begin(self):
        with self._turns or nullcontext(), self.engine.begin() as conn:
            yield conn

    def _row(self, stream_id: str):
        # read outside the writing transaction: a write conditional on the version read needs no lock held between
        # them (SQLite in WAL refuses a read transaction that turns writer after another one committed)
        with self._turns or nullcontext(), self.engine.connect() as conn:
            return conn.execute(select(streams).where(streams.c.stream_id == stream_id)).first()

    def open(self, stream_id: str, robot: str, tenant: str, response_url: str) -> None:
        """The row of a stream (kept as it is when the callback came before: a resent callback is the same stream)."""
        with self._begin() as conn:
            conn.execute(insert_ignore(conn, streams, dict(stream_id=stream_id, robot=robot, tenant=tenant, response_url=response_url,
                                                           url_state="", created_at=self.clock(), partial="", final="", closed=False, version=0)))

    def preview(self, stream_id: str, text: str) -> None:
        with self._begin() as conn:
            conn.execute(update(streams).where(streams.c.stream_id == stream_id, streams.c.final == "", streams.c.closed.is_(False))
                         .values(partial=text))

    def deliver(self, stream_id: str, key: str, md: str, card: dict | None, window: float) -> bool:
        """Add a delivered reply to the stream's answer; False when no poll will show it any more (closed, older than
        `window` seconds, unknown)."""
        for _ in range(20):
            row = self._row(stream_id)
            if row is None or row.closed or row.url_state or self.clock() - row.created_at > window:
                return False
            replies = json.loads(row.final) if row.final else []
            if any(r["key"] == key for r in replies):
                return True  # the outbox retried a delivery that got in
            replies.append({"key": key, "md": md, "card": card})
            with self._begin() as conn:
                done = conn.execute(update(streams).where(streams.c.stream_id == stream_id, streams.c.version == row.version)
                                    .values(final=json.dumps(replies, ensure_ascii=False), version=row.version + 1)).rowcount
            if done:
                return True
        return False

    def poll(self, stream_id: str, robot: str = "") -> Shown | None:
        """What a poll of the stream shows; the first poll that shows the finished answer closes the stream. `robot`: the
        robot whose callback asks (another robot's stream, perhaps another tenant's answer, is not its to see)."""
        for _ in range(20):
            row = self._row(stream_id)
            if row is None or (robot and row.robot != robot):
                return None
            if row.url_state and not row.closed:  # the answer went (or goes) to the response_url: never shown twice
                return Shown(row.partial, True)
            if not row.final:
                return Shown(row.partial, False)
            if row.closed:
                return _shown(json.loads(row.final))
            with self._begin() as conn:
                done = conn.execute(update(streams).where(streams.c.stream_id == stream_id, streams.c.version == row.version)
                                    .values(closed=True, version=row.version + 1)).rowcount
            if done:
                return _shown(json.loads(row.final))
        return None

    def claim_url(self, stream_id: str, *, unshown: bool = False) -> str:
        """The stream's response_url, claimed for one POST ("" when there is none or it was used). `unshown`: only while
        no poll has shown the answer (the sweep's claim, racing a late poll: one of them wins, the answer goes out once)."""
        row = self._row(stream_id)
        if row is None or not row.response_url:
            return ""
        where = [streams.c.stream_id == stream_id, streams.c.url_state == ""] + ([streams.c.closed.is_(False)] if unshown else [])
        with self._begin() as conn:
            got = conn.execute(update(streams).where(*where).values(url_state="claimed", version=streams.c.version + 1)).rowcount
        return row.response_url if got else ""

    def settle_url(self, stream_id: str, used: bool) -> None:
        """After the POST: used, or back to unused so that a retry may claim it again."""
        with self._begin() as conn:
            conn.execute(update(streams).where(streams.c.stream_id == stream_id, streams.c.url_state == "claimed")
                         .values(url_state="used" if used else ""))

    def overdue(self, robot: str, window: float) -> list[Overdue]:
        """Answers delivered to a stream of `robot` that no poll showed within `window`: for their response_url."""
        now = self.clock()
        with self._begin() as conn:
            conn.execute(delete(streams).where(streams.c.created_at < now - KEEP))
        with self._turns or nullcontext(), self.engine.connect() as conn:
            rows = conn.execute(select(streams).where(streams.c.robot == robot, streams.c.final != "", streams.c.closed.is_(False), streams.c.url_state == "",
                                                      streams.c.response_url != "", streams.c.created_at < now - window)).all()
        out = []
        for r in rows:
            shown = _shown(json.loads(r.final))
            out.append(Overdue(r.stream_id, r.robot, r.response_url, shown.content, shown.card))
        return out


def _shown(replies: list[dict]) -> Shown:
    cards = [r["card"] for r in replies if r.get("card")]
    return Shown("\n\n---\n\n".join(r["md"] for r in replies if r["md"]), True, cards[-1] if cards else None)
