"""CSV and XLSX import/export: validation reports (bad date, unknown owner, duplicate id...), good rows
in and bad rows refused, exact round trips, re-imports that write nothing; and the `copilot crm`,
`report team` and `health run` commands end to end."""
from __future__ import annotations

import asyncio
import json
import threading

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlmodel import Session

from bot.cli import main
from bot.storage import init_db, make_engine
from crm.io import Importer, export
from crm.models import Opportunity, SyncEvent
from crm.sync.outbox import register_sinks
from crm.validate import KINDS
from tests.conftest import EMBED_CACHE
from tests.fakes.crm_db import SAMPLE, db_url, engine, load_sample  # noqa: F401  (fixtures)
from tests.fakes.webhook_receiver import WebhookReceiver

BAD_OPPS = """id,account_id,name,stage,amount,currency,close_date,owner_id
opp-a,acc-001,好的一行,proposal,"120,000",CNY,2026-12-31,zhangwei
opp-b,acc-001,坏日期,proposal,100,CNY,2026-13-01,zhangwei
opp-c,acc-001,未知负责人,proposal,100,CNY,2026-12-01,bob
opp-d,acc-404,未知客户,lead,1,CNY,,zhangwei
opp-e,acc-001,错阶段,closing,abc,RMB1,,zhangwei
opp-a,acc-001,重复,lead,1,CNY,,zhangwei
"""


def n(engine, model) -> int:  # noqa: F811
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(model)).scalar()


def test_bad_rows_are_refused_with_reasons_and_good_rows_go_in(engine, tmp_path):  # noqa: F811
    load_sample(engine)
    path = tmp_path / "opportunities.csv"
    path.write_text(BAD_OPPS, encoding="utf-8")
    [rep] = Importer(engine, "default").run([(path, None)])
    assert (rep.kind, rep.rows, rep.inserted, rep.updated) == ("opportunities", 6, 1, 0)
    errors = {e.row: (e.id, e.errors) for e in rep.refused}
    assert errors[3] == ("opp-b", ["bad date '2026-13-01' in close_date (use YYYY-MM-DD)"])
    assert errors[4] == ("opp-c", ["unknown owner 'bob' in owner_id"])
    assert errors[5] == ("opp-d", ["unknown account 'acc-404' in account_id"])
    assert errors[6][1] == ["stage must be one of lead, qualified, proposal, negotiation, won, lost, not 'closing'",
                            "amount must be a number, not 'abc'", "currency must be a 3-letter code such as CNY, not 'RMB1'"]
    assert errors[7] == ("opp-a", ["duplicate id 'opp-a' (first on row 2)"])
    with Session(engine) as s:
        assert s.get(Opportunity, ("default", "opp-a")).amount == 120000.0
        assert s.get(Opportunity, ("default", "opp-b")) is None


def test_csv_and_xlsx_round_trip_exactly(engine, tmp_path):  # noqa: F811
    load_sample(engine)
    for fmt in ("csv", "xlsx"):
        copy = make_engine(f"sqlite:///{tmp_path / f'copy-{fmt}.db'}")
        init_db(copy)
        files = []
        for kind in KINDS:
            out = tmp_path / fmt / f"{kind}.{fmt}"
            out.parent.mkdir(exist_ok=True)
            export(engine, kind, "default", out, fmt)
            files.append((out, None))
        reports = Importer(copy, "default").run(list(reversed(files)))  # any order: references are resolved in kind order
        assert all(not r.refused for r in reports), [r.refused for r in reports]
        for kind in KINDS:
            assert export(copy, kind, "default", None, "csv") == export(engine, kind, "default", None, "csv"), (fmt, kind)
        copy.dispose()
    assert export(engine, "accounts", "default", None).decode().splitlines()[1] == \
        (SAMPLE / "accounts.csv").read_text(encoding="utf-8").splitlines()[1]


def test_reimport_writes_nothing_and_a_changed_row_is_one_update(engine, tmp_path):  # noqa: F811
    load_sample(engine)
    register_sinks(engine, ["webhook"])
    before = n(engine, SyncEvent)
    [again] = Importer(engine, "default").run([(SAMPLE / "opportunities.csv", None)])
    assert (again.unchanged, again.inserted, again.updated) == (16, 0, 0) and n(engine, SyncEvent) == before
    text = (SAMPLE / "opportunities.csv").read_text(encoding="utf-8").replace("420000,CNY,2026-12-20", "450000,CNY,2026-12-25")
    (tmp_path / "opportunities.csv").write_text(text, encoding="utf-8")
    [changed] = Importer(engine, "default").run([(tmp_path / "opportunities.csv", None)])
    assert (changed.updated, changed.unchanged) == (1, 15) and n(engine, SyncEvent) == before + 1
    dry = Importer(engine, "default", dry_run=True).import_rows("accounts", [{"id": "acc-z", "name": "试运行"}])
    assert dry.inserted == 1 and n(engine, SyncEvent) == before + 1  # a dry run reports what it would do, and does nothing


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("COPILOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COPILOT_CONFIG", str(tmp_path / "copilot.toml"))
    monkeypatch.setenv("COPILOT_EMBED_CACHE", str(EMBED_CACHE))
    return tmp_path


def test_crm_commands_end_to_end(capsys, cli_env):
    tmp = cli_env
    files = [str(SAMPLE / f"{k}.csv") for k in KINDS]
    code, out, _ = run(capsys, "crm", "import", *files, "--json")
    assert code == 0 and [json.loads(line)["kind"] for line in out.splitlines()] == list(KINDS)
    (tmp / "opportunities.csv").write_text(BAD_OPPS, encoding="utf-8")
    code, out, _ = run(capsys, "crm", "import", str(tmp / "opportunities.csv"))
    assert code == 1 and "5 refused" in out and "row 4 (opp-c): unknown owner 'bob' in owner_id" in out
    code, out, _ = run(capsys, "crm", "export", "contacts")
    assert code == 0 and out.splitlines()[0] == "id,account_id,name,title,email,phone,language" and len(out.splitlines()) == 19
    code, out, _ = run(capsys, "crm", "score", "--rep", "zhangwei", "--date", "2026-11-25", "--json")
    scores = json.loads(out)
    assert scores[0]["opportunity_id"] == "opp-001" and "no contact for 19 days" in scores[2]["reasons"]
    code, out, _ = run(capsys, "crm", "score-report", "--json")
    assert json.loads(out)["deals"] == 6
    code, out, _ = run(capsys, "health", "run", "--date", "2026-11-25", "--json")
    health = json.loads(out)
    assert health["workday"] and {r["rep_id"] for r in health["scores"]} == {"zhangwei", "lijun", "wangfang", "tom"}
    code, out, _ = run(capsys, "report", "team", "--team", "华东区", "--date", "2026-11-26", "--json")
    team = json.loads(out)
    assert {r["stage"]: r["count"] for r in team["pipeline"]}["negotiation"] == 1
    assert [h["rep_id"] for h in team["health"]] == ["lijun", "zhangwei"] and team["alerts"] == []
    code, out, _ = run(capsys, "report", "team", "--date", "2026-11-26")
    assert code == 0 and "Pipeline" in out and "Copilot usage" in out
    code, _, err = run(capsys, "crm", "sync", "--once")
    assert code == 1 and "no external CRM is configured" in err


def test_crm_sync_command_delivers_to_the_configured_webhook(capsys, cli_env, monkeypatch):
    rx = WebhookReceiver("cli-secret")
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(rx.app())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        (cli_env / "copilot.toml").write_text(f'[crm_sync.webhook]\nurl = "http://127.0.0.1:{port}/hook"\nsecret = "env:HOOK_SECRET"\n')
        monkeypatch.setenv("HOOK_SECRET", "cli-secret")  # secrets may come from the environment
        run(capsys, "crm", "import", str(SAMPLE / "reps.csv"), str(SAMPLE / "accounts.csv"))
        code, out, _ = run(capsys, "crm", "sync", "--once", "--backfill", "webhook", "--json")
        state = json.loads(out)
        assert code == 0 and state["this_run"]["webhook"]["delivered"] == 12 and len(rx.events) == 12
        assert rx.bad_signatures == 0 and state["dead_letters"] == []
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()
