"""One card per answer: which card a message's answer is written into, kept across processes and restarts.

The card of an inbound message is named by the message (its app and `message_id`, or a click's event id). Its row
is written *before* the card is created: the first preview writes it with no reply (`reply_key` ""), a finished
answer that comes first writes it with its own reply key, and whoever comes second sees it. So a preview never
starts a card the answer already owns, and an answer that meets a card still being created creates it with the
same Feishu `uuid` (Feishu sends one message per uuid) and then updates it. `reply_key` says which reply took the
card over: its retries update the card again; a later reply to the same message is a message of its own.

Kept in the `feishu_cards` table when the factory hands over the database (as connectors/replay.py keeps its
state), else in memory. The calls touch the database: the connector runs them in a thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, MetaData, String, Table, delete, select, update
from sqlalchemy.engine import Engine

from connectors.sql import insert_ignore

metadata = MetaData()
cards_table = Table(
    "feishu_cards", metadata,
    Column("key", String(300), primary_key=True),  # app key | inbound message id
    Column("message_id", String(200), nullable=False, default=""),  # the card's own message id (om_...); "" while being created
    Column("reply_key", String(200), nullable=False, default=""),  # the reply that owns the card; "" while it is a preview
    Column("updated_at", Float, nullable=False, index=True),
)
KEEP = 14 * 86400  # Feishu lets a card be updated for 14 days
PRUNE_EVERY = 500
KEEP_IN_MEMORY = 20_000  # cards remembered without a database


@dataclass(frozen=True)
class Card:
    message_id: str  # "" while it is being created
    reply_key: str  # "" while the answer is still being written
    fresh: bool = False  # this call wrote the row: nobody else started the card


class CardStore:
    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self._mem: dict[str, Card] = {}
        self._writes = 0
        if engine is not None:
            metadata.create_all(engine)

    def get(self, key: str) -> Card | None:
        if self.engine is None:
            return self._mem.get(key)
        with self.engine.connect() as conn:
            row = conn.execute(select(cards_table.c.message_id, cards_table.c.reply_key).where(cards_table.c.key == key)).first()
        return Card(row.message_id, row.reply_key) if row else None

    def begin(self, key: str, reply_key: str = "") -> Card:
        """The row of `key`, written now (with `reply_key`) if there was none; `fresh` when this call wrote it."""
        if self.engine is None:
            if key in self._mem:
                return self._mem[key]
            self._mem[key] = Card("", reply_key)
            while len(self._mem) > KEEP_IN_MEMORY:  # the oldest cards go first (no database: one process, bounded)
                del self._mem[next(iter(self._mem))]
            return Card("", reply_key, fresh=True)
        now = time.time()
        with self.engine.begin() as conn:
            wrote = conn.execute(insert_ignore(conn, cards_table, {"key": key, "message_id": "", "reply_key": reply_key,
                                                                   "updated_at": now})).rowcount
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                conn.execute(delete(cards_table).where(cards_table.c.updated_at < now - KEEP))
            row = conn.execute(select(cards_table.c.message_id, cards_table.c.reply_key).where(cards_table.c.key == key)).first()
        return Card(row.message_id, row.reply_key, fresh=bool(wrote))

    def created(self, key: str, message_id: str) -> Card:
        """Record the card's message id (unless one is recorded already: then that one is the card)."""
        if self.engine is None:
            card = self._mem.get(key) or Card("", "")
            if not card.message_id:
                self._mem[key] = card = Card(message_id, card.reply_key)
            return card
        with self.engine.begin() as conn:
            conn.execute(update(cards_table).where(cards_table.c.key == key, cards_table.c.message_id == "")
                         .values(message_id=message_id, updated_at=time.time()))
            row = conn.execute(select(cards_table.c.message_id, cards_table.c.reply_key).where(cards_table.c.key == key)).first()
        return Card(row.message_id, row.reply_key) if row else Card(message_id, "")

    def take(self, key: str, reply_key: str) -> Card | None:
        """Let the reply `reply_key` own the card (if nobody does yet, or it already does): the card, else None."""
        if self.engine is None:
            card = self._mem.get(key)
            if card is None or card.reply_key not in ("", reply_key):
                return None
            self._mem[key] = Card(card.message_id, reply_key)
            return self._mem[key]
        with self.engine.begin() as conn:
            conn.execute(update(cards_table).where(cards_table.c.key == key, cards_table.c.reply_key == "")
                         .values(reply_key=reply_key, updated_at=time.time()))
            row = conn.execute(select(cards_table.c.message_id, cards_table.c.reply_key).where(cards_table.c.key == key)).first()
        return Card(row.message_id, row.reply_key) if row is not None and row.reply_key == reply_key else None
