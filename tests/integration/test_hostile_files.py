"""Hostile files: each is refused with its reason within seconds and bounded memory, the good files beside
it are ingested, and a question asked meanwhile is answered. The attack files are made here."""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import resource
import time
import zipfile

import pytest
from sqlalchemy import select
from sqlmodel import Session

from connectors.message import Attachment, InboundMessage
from rag.ingest import Uploader
from rag.sandbox import Limits, Sandbox

ADMIN = Uploader("cli", "admin", "default")
GOOD = "---\nid: good-note\ntitle: 交付说明\n---\n# 交付说明\n\n星图标准实施周期为四到六个月，含两周上线支持。\n"


def _rezip(data: bytes, edit) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for info in src.infolist():
            z.writestr(info.filename, edit(info.filename, src.read(info.filename)))
    return out.getvalue()


def xlsx_claiming(dimension: str) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["产品", "价格"])
    ws.append(["星图", "100"])
    buf = io.BytesIO()
    wb.save(buf)
    return _rezip(buf.getvalue(), lambda n, d: re.sub(rb'<dimension ref="[^"]*"/>', f'<dimension ref="{dimension}"/>'.encode(), d)
                  if n.startswith("xl/worksheets/") else d)


def docx_bytes(text: str = "你好") -> bytes:
    import docx

    d = docx.Document()
    d.add_paragraph(text)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def docx_of_empty_paragraphs(n: int) -> bytes:
    return _rezip(docx_bytes(), lambda name, d: d.replace(b"<w:body>", b"<w:body>" + b"<w:p/>" * n) if name == "word/document.xml" else d)


def malformed_docx() -> bytes:
    return _rezip(docx_bytes(), lambda name, d: d.replace(b"</w:body>", b"<w:p><w:r>") if name == "word/document.xml" else d)


def zip_with_entries(n: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"p/{i}", b"")
    return out.getvalue()


def yaml_alias_bomb() -> bytes:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 8)]
    return ("---\n" + "\n".join(lines) + "\ntags: *a7\n---\n# 正文\n\n内容\n").encode()


ATTACKS = {
    "dimension.xlsx": (xlsx_claiming("A1:XFD1048576"), None),  # read as the 2 cells it has, not 17 billion
    "paragraphs.docx": (docx_of_empty_paragraphs(3_000_000), "zip_bomb"),
    "alias.md": (yaml_alias_bomb(), "yaml_alias"),
    "malformed.docx": (malformed_docx(), "damaged"),
    "entries.pptx": (zip_with_entries(12_000), "zip_bomb"),
}


def test_the_attack_files_are_small():
    assert len(ATTACKS["dimension.xlsx"][0]) < 10_000 and len(ATTACKS["paragraphs.docx"][0]) < 200_000
    assert len(ATTACKS["alias.md"][0]) < 600


def test_each_hostile_file_is_refused_with_its_reason_and_the_good_ones_are_ingested(copilot, tmp_path):
    for name, (data, _) in ATTACKS.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "good.md").write_text(GOOD, encoding="utf-8")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    results = {r.name: r for r in copilot.knowledge.ingestor.ingest_paths([tmp_path], ADMIN)}
    assert time.perf_counter() - t < 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 150 * 1024  # KB: nothing big came back to us
    assert results["good.md"].status == "added"
    assert results["dimension.xlsx"].status == "added" and results["dimension.xlsx"].chunks == 1
    for name, (_, code) in ATTACKS.items():
        if code:
            assert results[name].status == "error" and results[name].code == code and results[name].reason, (name, results[name])
    assert "anchors or aliases" in results["alias.md"].reason and "DOCX" in results["malformed.docx"].reason
    [again] = copilot.knowledge.ingestor.ingest_paths([tmp_path / "good.md"], ADMIN)
    assert again.status == "unchanged"


def test_the_sandbox_kills_a_parse_past_its_wall_clock_and_a_memory_hog():
    # about 3 s of parsing on this 2-core machine, against a wall clock of 0.5 s: the margin holds on either side
    # under a loaded test run (0.01 s had let the small file after it time out too)
    big = ("行,值\n" + "".join(f"{i},{'x' * 40}\n" for i in range(240_000))).encode()
    slow = Sandbox(Limits(wall_seconds=0.5))
    try:
        t = time.perf_counter()
        with pytest.raises(Exception) as err:
            slow.parse(big, "big.csv")
        assert err.value.code == "timeout" and time.perf_counter() - t < 5
        assert slow.parse(b"a,b\n1,2\n", "ok.csv").blocks  # a fresh worker takes over
    finally:
        slow.close()
    small = Sandbox(Limits(memory_bytes=400 * 1024 * 1024))
    try:
        with pytest.raises(Exception) as err:
            small.parse(("# 大\n\n" + "字" * 60_000_000).encode(), "huge.md")
        assert err.value.code == "too_large"
    finally:
        small.close()


def test_a_small_file_costs_little_in_the_sandbox():
    box = Sandbox()
    try:
        box.parse(b"# warm\n\nup", "w.md")
        [worker] = box._idle
        t = time.perf_counter()
        for i in range(100):
            box.parse(f"# 笔记 {i}\n\n要点 {i}".encode(), "n.md")
        assert box._idle == [worker] and worker.alive()  # one process read them all: no start per file
        assert (time.perf_counter() - t) / 100 < 0.1  # a start imports the parsers (well over 0.1 s); a round trip is ms
    finally:
        box.close()


async def test_a_question_asked_while_hostile_files_are_uploaded_is_answered(copilot):
    from bot.pipeline.tables import OutboundRow

    console = copilot.channels.get("console")
    console.uploads.mkdir(parents=True, exist_ok=True)
    msgs = []
    for i, (name, (data, _)) in enumerate([*ATTACKS.items(), ("good.md", (GOOD.encode(), None))]):
        digest = hashlib.sha256(data).hexdigest()
        (console.uploads / digest).write_bytes(data)
        msgs.append(InboundMessage(channel="console", conversation_id=f"upload-{i}", sender_id="chenjing", sender_name="chenjing",
                                   kind="file", platform_msg_id=f"up-{i}", text="",
                                   attachments=(Attachment(name=name, mime="", size=len(data), ref=digest),)))
    question = InboundMessage(channel="console", conversation_id="ask", sender_id="zhangwei", sender_name="zhangwei",
                              text="星图软件的实施周期一般多长？", platform_msg_id="q-1")
    await copilot.start()
    try:
        uploads = [await copilot.intake.sink(m) for m in msgs]
        asked = await copilot.intake.sink(question)
        t = time.perf_counter()
        want = {a.inbox_id for a in uploads} | {asked.inbox_id}
        got: dict[int, dict] = {}
        while len(got) < len(want) and time.perf_counter() - t < 60:
            await asyncio.sleep(0.1)
            with Session(copilot.engine) as s:
                for row in s.execute(select(OutboundRow).where(OutboundRow.inbox_id.in_(want))).scalars():
                    got[row.inbox_id] = json.loads(row.reply)
        assert set(got) == want
        assert got[asked.inbox_id]["text"]
        notes = {m.attachments[0].name: got[a.inbox_id] for m, a in zip(msgs, uploads)}
        assert notes["good.md"]["meta"]["ingest"]["status"] in ("added", "draft")
        for name, (_, code) in ATTACKS.items():
            if code:
                assert notes[name]["meta"]["ingest"]["status"] == "error" and name in notes[name]["text"], notes[name]
                # the uploader reads the catalogue's sentence for the refusal, not the parser's words
                assert copilot.agent.prompts.msg(f"kb_refused_{code}", "zh") in notes[name]["text"], notes[name]
    finally:
        await copilot.aclose()
