"""Database engine: SQLite under the data dir by default, PostgreSQL through COPILOT_DATABASE_URL.

Owns connection set-up (WAL, busy timeout) and the schema: `init_db` runs the Alembic migrations
in migrations/ (an initial revision covers every table of bot, rag and crm), so one call creates
or upgrades everything; a database made by the old create_all is adopted by the initial revision.
"""
from __future__ import annotations

import logging
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

import migrations

MIGRATIONS = Path(migrations.__file__).resolve().parent  # a package: in the checkout and in a wheel alike
log = logging.getLogger("copilot.storage")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
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


def register_tables() -> None:
    """Import every module that declares tables, so SQLModel.metadata holds the whole schema."""
    import bot.agent.tables
    import bot.auth.tables
    import bot.ops.tables
    import bot.people.tables
    import bot.pipeline.tables  # noqa: F401
    import crm.models  # noqa: F401
    import rag.store  # noqa: F401


def init_db(engine: Engine) -> None:
    """`alembic upgrade head`, programmatically. Idempotent: an up-to-date database costs one query.

    Two processes starting together on a new database migrate one after the other: PostgreSQL
    through an advisory lock, SQLite through a lock file beside the database."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its routine INFO lines are noise here; we say what changed
    register_tables()
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with _sqlite_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(b"copilot-migrate")})
        current = MigrationContext.configure(conn).get_current_revision()
        if current != _head():
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn  # env.py migrates on this connection, inside this transaction
            command.upgrade(cfg, "head")
            log.info("database schema upgraded from %s to %s", current or "nothing", _head())
        missing = sorted(set(SQLModel.metadata.tables) - set(inspect(conn).get_table_names()))
    if missing:  # a table module changed without a revision: say how to fix it instead of failing later
        log.warning("tables without a migration: %s; add one with `alembic -c migrations/alembic.ini revision "
                    "--autogenerate -m ...` (see migrations/README.md)", ", ".join(missing))


def _alembic_config():
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@lru_cache(maxsize=1)
def _head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


@contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s
