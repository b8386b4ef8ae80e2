"""Database engine: SQLite under the data dir by default, PostgreSQL through COPILOT_DATABASE_URL.

Owns connection set-up (WAL, busy timeout) and schema creation. Every table module registers
itself on SQLModel.metadata; `init_db` imports them so one call creates everything.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            # WAL + NORMAL: a committed transaction survives a process crash (SIGKILL); only power
            # loss can lose the last few. Readers never block the writer.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_size=16, max_overflow=16, pool_pre_ping=True)


def init_db(engine: Engine) -> None:
    import bot.tables  # noqa: F401  (registers tables)
    import crm.models  # noqa: F401
    import rag.store  # noqa: F401

    SQLModel.metadata.create_all(engine)


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


def insert_ignore(engine: Engine, table, values: dict | None = None):  # noqa: ANN001
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect (values, or executemany parameters)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    return (stmt.values(values) if values is not None else stmt).on_conflict_do_nothing()
