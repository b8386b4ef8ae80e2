"""Databases for the CRM tests: a SQLite file, and a fresh PostgreSQL schema per test on loopback
(skipped, with the reason, when no PostgreSQL answers). Import the fixtures into a test module."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "knowledge" / "crm"
PG_URL = os.environ.get("COPILOT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_pg_reason: list[str] = []


def pg_unavailable() -> str:
    """Why PostgreSQL cannot be used ("" when it can); asked once per session."""
    if not _pg_reason:
        try:
            import psycopg

            psycopg.connect(PG_URL, connect_timeout=2).close()
            _pg_reason.append("")
        except Exception as exc:
            _pg_reason.append(f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__}); set COPILOT_TEST_PG")
    return _pg_reason[0]


def pg_schema_url() -> tuple[str, callable]:
    """A new empty schema; returns its URL and a function that drops it."""
    from bot.storage import make_engine

    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG_URL}?options=-csearch_path%3D{schema}", drop


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A database URL on each backend, empty."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crm.db'}"
        return
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    url, drop = pg_schema_url()
    yield url
    drop()


@pytest.fixture
def engine(db_url):
    """A migrated database on each backend."""
    from bot.storage import init_db, make_engine

    eng = make_engine(db_url)
    init_db(eng)
    yield eng
    eng.dispose()


def load_sample(engine, tenant: str = "default") -> None:
    """The bundled sample CRM, reps included (what a first start loads)."""
    from crm.io import Importer, import_sample

    Importer(engine, tenant).import_file(SAMPLE / "reps.csv", "reps")
    import_sample(engine, SAMPLE, tenant)


@pytest.fixture
def sample(engine):
    load_sample(engine)
    return engine
