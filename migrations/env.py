"""Alembic environment: the metadata of every table module, one connection, SQLite-safe ALTERs.

`bot.storage.init_db` passes its own connection in `config.attributes["connection"]`; the alembic
command line builds one from COPILOT_DATABASE_URL or the default SQLite file.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import DateTime, String
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

from bot.storage import register_tables

register_tables()

target_metadata = SQLModel.metadata


def render_item(kind: str, obj, autogen_context):
    """Write plain SQLAlchemy types into revisions, so a revision never depends on application code."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def _configure(connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, render_item=render_item,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can only ALTER by copying a table
        compare_type=_compare_type,
    )


def _compare_type(ctx, inspected_col, metadata_col, inspected_type, metadata_type):
    # AutoString is a String and UTCDateTime a DateTime: only report real differences
    if isinstance(metadata_type, (AutoString, String)) and isinstance(inspected_type, String):
        return getattr(metadata_type, "length", None) != getattr(inspected_type, "length", None)
    if isinstance(metadata_type, (UTCDateTime, DateTime)) and isinstance(inspected_type, DateTime):
        return False
    return None


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from bot.settings import Settings
    from bot.storage import make_engine

    engine = make_engine(context.get_x_argument(as_dictionary=True).get("url") or Settings().db_url)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: run against a database")
run()
