"""SQL the core and the connectors share: an insert that leaves an existing row alone."""
from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Engine


def insert_ignore(bind: Engine | Connection, table: Table, values: dict | None = None):
    """INSERT ... ON CONFLICT DO NOTHING for the bind's dialect (values, or executemany parameters).
    The surrounding transaction stays usable when the row is already there."""
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    return (stmt.values(values) if values is not None else stmt).on_conflict_do_nothing()
