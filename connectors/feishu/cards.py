"""One card per answer: which card a message's answer is being written into, kept across processes and restarts.

The card of an inbound message is named by the message (its app and `message_id`, or a click's event id),
so whatever process shows the answer being written (previews) and whatever process delivers the finished
answer (the outbox) find the same card; a retry of the same reply updates it, never creates a second one.
A row also says which reply took the card over (`reply_key`): the answer's retries update it again, a
later reply to the same message (a confirmation after the answer) is a message of its own.

Kept in the `feishu_cards` table when the factory hands over the database (as connectors/replay.py keeps
its state), else in memory. The calls touch the database: the connector runs them in a thread.
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
    Column("message_id", String(200), nullable=False),  # the card's own message id (om_...)
    Column("reply_key", String(200), nullable=False, default=""),  # the reply that took the card over; "" while it is a preview
    Column("updated_at", Float, nullable=False, index=True),
)
KEEP = 14 * 86400  # Feishu lets a card be updated for 14 days
PRUNE_EVERY = 500


@dataclass(frozen=True)
class Card:
    message_id: str
    reply_key: str  # "" while the answer is still being written


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

    def created(self, key: str, message_id: str) -> Card:
        """Record the card just created for `key`; if another process recorded one first, theirs is the card."""
        if self.engine is None:
            return self._mem.setdefault(key, Card(message_id, ""))
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(conn, cards_table, {"key": key, "message_id": message_id, "reply_key": "", "updated_at": now}))
            self._writes += 1
            if self._writes % PRUNE_EVERY == 0:
                conn.execute(delete(cards_table).where(cards_table.c.updated_at < now - KEEP))
        return self.get(key) or Card(message_id, "")

    def take(self, key: str, reply_key: str) -> Card | None:
        """Let the reply `reply_key` take the card over (it must be the first to, or the same one again): the card,
        or None when there is no card or another reply has it."""
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
