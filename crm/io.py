"""CSV and XLSX import and export, with a validation report per row.

Bad rows are refused with their reasons; good rows go in (insert or update by id) even when others
in the file are bad. Each imported row is a CRM write like any other: logged, and put in the sync
outbox, under a key made of the row's content, so importing the same file twice writes nothing.
"""
from __future__ import annotations

import csv
import hashlib
import io as _io
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from crm.models import CrmWrite, Rep, Team, _now
from crm.sync import outbox
from crm.validate import COLUMNS, KINDS, MODELS, PARSERS, Known, Row


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not the rows in it)."""


@dataclass
class RowError:
    row: int  # the line in a CSV, the row in a sheet (the header is row 1)
    id: str
    errors: list[str]


@dataclass
class ImportReport:
    file: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: list[RowError] = field(default_factory=list)
    dry_run: bool = False
    accepted: list[dict] = field(default_factory=list, repr=False)  # the good rows as read (for identity links)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("accepted")
        return d


def kind_of(path: Path) -> str:
    stem = path.stem.lower().replace("-", "_")
    for k in KINDS:
        if stem == k or stem.endswith("_" + k) or stem.startswith(k):
            return k
    raise ImportFileError(f"cannot tell what {path.name} holds: name it like accounts.csv or pass --kind ({', '.join(KINDS)})")


def read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:
            raise ImportFileError(f"cannot read {path.name} as a spreadsheet: {exc}") from None
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
        wb.close()
        if not rows:
            return []
        header = [str(h).strip() if h is not None else "" for h in rows[0]]
        return [dict(zip(header, r)) for r in rows[1:] if any(c not in (None, "") for c in r)]
    if suffix not in (".csv", ".txt"):
        raise ImportFileError(f"{path.name}: only .csv and .xlsx files can be imported")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_bytes().decode("gb18030")  # Excel in a Chinese locale saves CSV as GBK
    return [r for r in csv.DictReader(_io.StringIO(text))]


class Importer:
    """One import run over one or more files; ids accepted earlier in the run count as known."""

    def __init__(self, engine: Engine, tenant: str, *, tz: str = "Asia/Shanghai", dry_run: bool = False, actor: str = "import") -> None:
        self.engine, self.tenant, self.tz, self.dry_run, self.actor = engine, tenant, tz, dry_run, actor
        self.known = Known()
        with Session(engine) as s:
            self.known.ids["reps"] = set(s.execute(select(Rep.id).where(Rep.tenant == tenant)).scalars())
            for kind, model in MODELS.items():
                if kind != "reps":
                    self.known.ids[kind] = set(s.execute(select(model.id).where(model.tenant == tenant)).scalars())

    def run(self, files: Iterable[tuple[Path, str | None]]) -> list[ImportReport]:
        """Files in dependency order (accounts before contacts...), whatever order they were given in."""
        jobs = [(p, k or kind_of(p)) for p, k in files]
        return [self.import_file(p, k) for p, k in sorted(jobs, key=lambda j: KINDS.index(j[1]))]

    def import_file(self, path: Path, kind: str) -> ImportReport:
        if kind not in KINDS:
            raise ImportFileError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        return self.import_rows(kind, read_rows(path), str(path))

    def import_rows(self, kind: str, cells: list[dict[str, Any]], name: str = "") -> ImportReport:
        rep = ImportReport(name, kind, rows=len(cells), dry_run=self.dry_run)
        if kind == "reps":  # a manager may be listed after the people who report to them
            self.known.ids["reps"] |= {str(c.get("id") or "").strip() for c in cells} - {""}
        seen: dict[str, int] = {}
        good: list[tuple[dict, dict]] = []
        for n, c in enumerate(cells, start=2):
            row = Row(c, self.tz)
            values = PARSERS[kind](row, self.known, self.tenant)
            rid = values.get("id", "")
            if rid and rid in seen:
                row.errors.append(f"duplicate id {rid!r} (first on row {seen[rid]})")
            if row.errors:
                rep.refused.append(RowError(n, rid, row.errors))
                continue
            seen[rid] = n
            good.append((values, c))
        for values, c in good:
            status = self._apply(kind, values)
            setattr(rep, status, getattr(rep, status) + 1)
            self.known.ids[kind].add(values["id"])
            rep.accepted.append(c)
        return rep

    def _apply(self, kind: str, values: dict) -> str:
        """Upsert one good row; returns inserted | updated | unchanged."""
        model = MODELS[kind]
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()[:16]
        key = f"import:{kind}:{values['id']}:{digest}"
        with Session(self.engine, expire_on_commit=False) as s:
            if s.get(CrmWrite, (self.tenant, key)) is not None:
                return "unchanged"
            obj = s.get(model, values["id"] if kind == "reps" else (self.tenant, values["id"]))
            status = "updated" if obj is not None else "inserted"
            if self.dry_run:
                return status
            if obj is None:
                obj = model.model_validate(values)
            else:
                for k, v in values.items():
                    setattr(obj, k, v)
                if hasattr(obj, "updated_at"):
                    obj.updated_at = _now()
            s.add(obj)
            if kind == "reps":
                self._team(s, obj)
            else:
                s.flush()
                outbox.record(s, obj, "upsert", key, self.actor)
            s.add(CrmWrite(tenant=self.tenant, key=key, op="import", entity=kind, entity_id=values["id"], actor=self.actor,
                           source=f"import:{kind}", result="{}"))
            s.commit()
        return status

    def _team(self, s: Session, rep: Rep) -> None:
        """Teams come from the reps file: a team's manager is the manager who belongs to it."""
        if not rep.team:
            return
        team = s.get(Team, (self.tenant, rep.team)) or Team(tenant=self.tenant, id=rep.team)
        if rep.role == "manager":
            team.manager_id = rep.id
        s.add(team)


def _cell(v: Any, tz: ZoneInfo) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(tz).isoformat(timespec="seconds")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return int(v) if v.is_integer() else v
    return "" if v is None else v


def export_rows(engine: Engine, kind: str, tenant: str, tz: str = "Asia/Shanghai") -> tuple[list[str], list[list[Any]]]:
    if kind not in KINDS:
        raise ImportFileError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    model, cols, zone = MODELS[kind], COLUMNS[kind], ZoneInfo(tz)
    with Session(engine) as s:
        objs = list(s.execute(select(model).where(model.tenant == tenant).order_by(model.id)).scalars())
    return cols, [[_cell(getattr(o, c, ""), zone) for c in cols] for o in objs]


def export(engine: Engine, kind: str, tenant: str, out: Path | None, fmt: str = "csv", tz: str = "Asia/Shanghai") -> bytes | int:
    """Write to `out` (returns the row count), or return the file's bytes when `out` is None."""
    cols, rows = export_rows(engine, kind, tenant, tz)
    if fmt == "xlsx":
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.title = kind
        ws.append(cols)
        for r in rows:
            ws.append(r)
        buf = _io.BytesIO()
        wb.save(buf)
        data = buf.getvalue()
    elif fmt == "csv":
        buf_s = _io.StringIO()
        w = csv.writer(buf_s, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        data = buf_s.getvalue().encode("utf-8")
    else:
        raise ImportFileError(f"unknown format {fmt!r}: csv or xlsx")
    if out is None:
        return data
    out.write_bytes(data)
    return len(rows)


def import_sample(engine: Engine, folder: Path, tenant: str, tz: str = "Asia/Shanghai") -> dict[str, int]:
    """The bundled sample CRM (knowledge/crm/*.csv) except reps, which the directory loads with their identities."""
    files = [(p, kind_of(p)) for p in sorted(folder.glob("*.csv")) if p.stem in KINDS and p.stem != "reps"]
    reports = Importer(engine, tenant, tz=tz, actor="bootstrap").run(files)
    return {r.kind: r.inserted + r.updated + r.unchanged for r in reports}
