"""Alembic migrations: an empty database and one made by the old create_all both end at head, on SQLite
and PostgreSQL; re-running is a no-op; and the migrations build exactly what the models declare."""
from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from bot.storage import _head, init_db, make_engine, register_tables
from tests.fakes.crm_db import db_url  # noqa: F401  (fixture)


def revision(engine) -> str | None:
    with engine.connect() as c:
        return MigrationContext.configure(c).get_current_revision()


def differences(engine) -> list:
    with engine.connect() as c:
        return compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata)


def test_an_empty_database_is_migrated_to_head_and_matches_the_models(db_url):  # noqa: F811
    engine = make_engine(db_url)
    init_db(engine)
    assert revision(engine) == _head()
    assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())
    diff = differences(engine)
    assert not diff, ("the models and the migrations differ; add a revision (see migrations/README.md): "
                      f"{diff[:5]}")
    init_db(engine)  # again: nothing to do
    assert revision(engine) == _head()
    engine.dispose()


def test_a_create_all_database_is_adopted(db_url):  # noqa: F811
    engine = make_engine(db_url)
    register_tables()

    # how databases were made before migrations: create_all over the tables of that time
    SQLModel.metadata.create_all(engine, tables=[SQLModel.metadata.tables[n] for n in _initial_tables()])
    from sqlmodel import Session

    from crm.models import Team

    with Session(engine) as s:
        s.add(Team(tenant="default", id="华东区", manager_id="lina"))
        s.commit()
    init_db(engine)
    assert revision(engine) == _head()
    assert not differences(engine)
    with Session(engine) as s:
        assert s.get(Team, ("default", "华东区")).manager_id == "lina"  # data kept
    engine.dispose()


def _initial_tables() -> tuple[str, ...]:
    import importlib.util

    from bot.storage import MIGRATIONS

    spec = importlib.util.spec_from_file_location("rev0001", MIGRATIONS / "versions" / "0001_initial.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.TABLES


def test_two_processes_starting_together_migrate_once(db_url):  # noqa: F811
    errors: list[Exception] = []

    def start() -> None:
        engine = make_engine(db_url)
        try:
            init_db(engine)
        except Exception as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    engine = make_engine(db_url)
    assert revision(engine) == _head()
    engine.dispose()
