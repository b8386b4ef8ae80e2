"""The knowledge base: every format (files made here with the formats' own libraries), corrupt files,
versions replaced atomically, unchanged content not re-embedded, drafts, permissions, the admin API."""
from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from rag.ingest import Uploader
from rag.retrieve import Viewer

REP = Viewer("default", "rep", "华南区", "wangfang")
ADMIN = Uploader("cli", "admin", "default")


def make_files(d: Path) -> dict[str, Path]:
    import docx
    import openpyxl
    from fpdf import FPDF
    from pptx import Presentation
    from pptx.util import Inches

    files = {}
    files["md"] = d / "alpha.md"
    files["md"].write_text("---\nid: fmt-md\ntitle: 格式测试 Markdown\n---\n# 介绍\n\n青鸾模块支持冷链温控。它每五分钟记录一次温度。\n", encoding="utf-8")
    files["txt"] = d / "beta.txt"
    files["txt"].write_text("白泽平台的质保期是三年。\n\n第二段：白泽平台支持离线部署。", encoding="gb18030")
    files["html"] = d / "gamma.html"
    files["html"].write_text("<html><head><title>Gamma 指南</title><script>alert(1)</script></head><body><h1>Gamma</h1>"
                             "<p>朱雀接口每分钟限流 600 次。</p><ul><li>支持 OAuth</li><li>支持 Webhook</li></ul></body></html>", encoding="utf-8")
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Kestrel gateway retains audit logs for 400 days. It encrypts data at rest with AES-256.")
    files["pdf"] = d / "delta.pdf"
    pdf.output(str(files["pdf"]))
    doc = docx.Document()
    doc.add_heading("Epsilon 方案", level=1)
    doc.add_paragraph("玄武套件的实施需要两名顾问。")
    table = doc.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("版本", "年费"), ("基础版", "¥3万"), ("高级版", "¥9万")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    files["docx"] = d / "epsilon.docx"
    doc.save(files["docx"])
    files["csv"] = d / "zeta.csv"
    files["csv"].write_text("型号,颜色,库存\nQX-1,红,12\nQX-2,蓝,0\n", encoding="utf-8")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["区域", "负责人", "季度目标"])
    for i in range(60):
        ws.append([f"区域{i}", f"经理{i}", f"{i * 10}万"])
    files["xlsx"] = d / "eta.xlsx"
    wb.save(files["xlsx"])
    prs = Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[5])
    slide.shapes.title.text = "Theta 路线图"
    tb = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
    tb.text_frame.text = "麒麟版本将在明年三月发布。"
    files["pptx"] = d / "theta.pptx"
    prs.save(files["pptx"])
    return files


def test_every_format_is_ingested_and_searchable(copilot, tmp_path):
    make_files(tmp_path)
    results = {r.name: r for r in copilot.knowledge.ingestor.ingest_paths([tmp_path], ADMIN)}
    assert all(r.status == "added" for r in results.values()), {n: r.reason for n, r in results.items()}
    admin = Viewer("default", "admin")
    for query, doc in [("青鸾 冷链温控", "fmt-md"), ("白泽平台 质保期", "beta.txt"), ("朱雀接口 限流", "gamma.html"),
                       ("Kestrel audit logs retention", "delta.pdf"), ("玄武套件 实施 顾问", "epsilon.docx"),
                       ("QX-2 库存", "zeta.csv"), ("区域42 季度目标", "eta.xlsx"), ("麒麟版本 发布", "theta.pptx")]:
        hits = copilot.knowledge.retriever.search(query, admin, k=3)
        assert hits and hits[0].doc_id == doc, (query, [h.doc_id for h in hits])
    assert "alert(1)" not in str(copilot.knowledge.retriever.document_hits(admin, "gamma.html"))
    # a table split into several passages keeps its header in every one
    xlsx = copilot.knowledge.retriever.document_hits(admin, "eta.xlsx")
    assert len(xlsx) > 1 and all(h.text.startswith("| 区域 | 负责人 | 季度目标 |") for h in xlsx)
    docx_table = [h for h in copilot.knowledge.retriever.document_hits(admin, "epsilon.docx") if h.text.startswith("|")]
    assert docx_table and "| 高级版 | ¥9万 |" in docx_table[0].text


def test_corrupt_encrypted_and_empty_files_are_refused_per_file(copilot, tmp_path):
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter
    from sqlmodel import Session, select

    from rag.store import Document

    good = make_files(tmp_path)
    (tmp_path / "broken.docx").write_bytes(good["docx"].read_bytes()[:500])
    (tmp_path / "garbage.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    (tmp_path / "badyaml.md").write_text("---\nid: [unclosed\n---\n# x\n\ntext\n", encoding="utf-8")
    writer = PdfWriter()
    writer.append(PdfReader(str(good["pdf"])))
    writer.encrypt("secret")
    with open(tmp_path / "locked.pdf", "wb") as fh:
        writer.write(fh)
    scan = FPDF()
    scan.add_page()
    scan.rect(10, 10, 50, 50)
    scan.output(str(tmp_path / "scan.pdf"))
    results = {r.name: r for r in copilot.knowledge.ingestor.ingest_paths([tmp_path], ADMIN)}
    reasons = {n: r.reason for n, r in results.items() if r.status == "error"}
    assert set(reasons) == {"broken.docx", "garbage.pdf", "empty.md", "badyaml.md", "locked.pdf", "scan.pdf"}
    assert "damaged" in reasons["broken.docx"] and "damaged" in reasons["garbage.pdf"]
    assert "empty" in reasons["empty.md"] and "YAML" in reasons["badyaml.md"]
    assert "encrypted" in reasons["locked.pdf"] and "no extractable text" in reasons["scan.pdf"]
    assert sum(r.status == "added" for r in results.values()) == len(good)  # the rest of the batch went in
    with Session(copilot.engine) as s:
        names = {d.doc_id for d in s.exec(select(Document)).all()}
    assert not names & set(reasons)  # nothing half-ingested


def test_changed_section_is_the_only_one_reembedded_and_versions_swap_atomically(copilot, tmp_path):
    import uuid

    run = uuid.uuid4().hex[:8]  # fresh text: the shared test embedding cache must not already hold it
    path = tmp_path / "card.md"
    sections = [f"## 部分{i}\n\n凤凰产品第{i}部分的说明，编号 PX{i}（{run}）。这一段专门讲第{i}个主题。\n" for i in range(5)]
    path.write_text("---\nid: phoenix\ntitle: 凤凰卡片\nversion: 1\n---\n" + "\n".join(sections), encoding="utf-8")
    first = copilot.knowledge.ingestor.ingest_paths([path], ADMIN)[0]
    assert first.status == "added" and first.chunks == 5 and first.embedded == 5
    sections[2] = f"## 部分2\n\n凤凰产品第2部分已更新：交付周期缩短到三周，编号 PX2NEW（{run}）。\n"
    path.write_text("---\nid: phoenix\ntitle: 凤凰卡片\nversion: 2\n---\n" + "\n".join(sections), encoding="utf-8")
    second = copilot.knowledge.ingestor.ingest_paths([path], ADMIN)[0]
    assert second.status == "updated" and second.version == "2" and second.embedded == 1
    assert copilot.knowledge.ingestor.ingest_paths([path], ADMIN)[0].status == "unchanged"
    admin = Viewer("default", "admin")
    texts = " ".join(h.text for h in copilot.knowledge.retriever.document_hits(admin, "phoenix"))
    assert "PX2NEW" in texts and "第2部分的说明" not in texts
    from sqlmodel import Session, select

    from rag.store import DocVersion

    with Session(copilot.engine) as s:
        statuses = [v.status for v in s.exec(select(DocVersion).where(DocVersion.title == "凤凰卡片").order_by(DocVersion.id)).all()]
    assert statuses == ["superseded", "live"]

    # readers during repeated re-ingests see exactly one version, never none and never two
    seen_bad = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            hits = copilot.knowledge.retriever.search("凤凰产品 编号", admin, k=10, per_doc=10)
            versions = {h.version for h in hits if h.doc_id == "phoenix"}
            if len(versions) != 1:
                seen_bad.append(versions)

    t = threading.Thread(target=reader)
    t.start()
    for v in range(3, 8):
        sections[4] = f"## 部分4\n\n凤凰产品第4部分，第{v}版的说明，编号 PX4V{v}。\n"
        path.write_text(f"---\nid: phoenix\ntitle: 凤凰卡片\nversion: {v}\n---\n" + "\n".join(sections), encoding="utf-8")
        assert copilot.knowledge.ingestor.ingest_paths([path], ADMIN)[0].status == "updated"
    stop.set()
    t.join()
    assert not seen_bad


async def test_rep_upload_is_a_draft_until_approved_once(copilot):
    from sqlmodel import Session, select

    from bot.pipeline.tables import OutboundRow
    from connectors.message import Action

    rep = copilot.directory.get("default", "zhangwei")
    reply = copilot.publishing.upload(rep, "east.md", "---\nid: east-card\ntitle: 华东竞品速记\n---\n# 速记\n\n白虎竞品的报价比我们低百分之三十。\n".encode())
    assert reply.meta["ingest"]["status"] == "draft" and "草稿" in reply.text
    everyone = [Viewer("default", r, "华东区") for r in ("rep", "manager", "enablement", "admin")]
    assert all(not any(h.doc_id == "east-card" for h in copilot.knowledge.retriever.search("白虎竞品 报价", v)) for v in everyone)
    with Session(copilot.engine) as s:
        asks = s.exec(select(OutboundRow).where(OutboundRow.dedupe_key.like("kb-approval:%"))).all()
    assert asks and all('"kb_approve"' in a.reply for a in asks)  # enablement was asked, with buttons
    ref = '"ref":"' + asks[0].reply.split('"ref":"')[1].split('"')[0]
    version_ref = ref.split('"ref":"')[1]
    chenjing = copilot.directory.get("default", "chenjing")
    [denied] = copilot.agent.act(rep, Action(key="kb_approve", ref=version_ref))
    assert "只有" in denied.text
    [ok] = copilot.agent.act(chenjing, Action(key="kb_approve", ref=version_ref))
    [twice] = copilot.agent.act(chenjing, Action(key="kb_approve", ref=version_ref))
    assert "已发布" in ok.text and "已经处理" in twice.text
    assert copilot.knowledge.retriever.search("白虎竞品 报价", Viewer("default", "rep", "华东区"))[0].doc_id == "east-card"


def form(name: str, content: bytes, **fields: str):
    import aiohttp

    f = aiohttp.FormData()
    for k, v in fields.items():
        f.add_field(k, v)
    f.add_field("file", io.BytesIO(content), filename=name)
    return f


async def test_admin_upload_api(gateway):
    cp = gateway.copilot
    cp.settings.admin_token = "s3cret"
    card = "# 玄鸟\n\n玄鸟方案的保修期为五年。\n".encode()
    r = await gateway.post("/admin/kb/upload", data=form("xuanniao.md", card, **{"as": "chenjing"}))
    assert r.status == 401
    r = await gateway.post("/admin/kb/upload", data=form("xuanniao.md", card, **{"as": "zhangwei"}), headers={"Authorization": "Bearer s3cret"})
    body = await r.json()
    assert r.status == 200 and body["results"][0]["status"] == "draft"
    drafts = (await (await gateway.get("/admin/kb/drafts", headers={"Authorization": "Bearer s3cret"})).json())["drafts"]
    vid = drafts[0]["version_id"]
    r = await gateway.post(f"/admin/kb/drafts/{vid}/approve?as=chenjing", headers={"Authorization": "Bearer s3cret"})
    assert r.status == 200 and (await r.json())["ok"]
    r = await gateway.post(f"/admin/kb/drafts/{vid}/approve?as=chenjing", headers={"Authorization": "Bearer s3cret"})
    assert r.status == 409
    bad = await gateway.post("/admin/kb/upload", data=form("x.exe", b"MZ\x00\x00"), headers={"Authorization": "Bearer s3cret"})
    assert bad.status == 207 and "unsupported" in (await bad.json())["results"][0]["reason"]
    cp.settings.admin_token = ""
    assert (await gateway.get("/admin/kb/drafts", headers={"Authorization": "Bearer s3cret"})).status == 403  # the token API is off
    assert (await gateway.get("/admin/kb/drafts")).status == 401  # and without a session nobody is let in


def test_managers_only_document_never_reaches_a_rep_by_search_or_link(kb):
    from bot.web.documents import passage_html

    for q in ("折扣审批", "七折以下需要谁审批", "discount approval VP floor price"):
        for mode in ("hybrid", "dense", "bm25"):
            assert "pricing-discount-approval" not in [h.doc_id for h in kb.knowledge.retriever.search(q, REP, k=20, per_doc=5, mode=mode)]
    assert kb.knowledge.retriever.document_hits(REP, "pricing-discount-approval") == []
    manager = Viewer("default", "manager", "华南区")
    cited = kb.knowledge.retriever.document_hits(manager, "pricing-discount-approval")[0].chunk_id
    assert passage_html(kb.knowledge.retriever, "pricing-discount-approval", REP, cited, kb.agent.prompts) is None
    assert passage_html(kb.knowledge.retriever, "pricing-discount-approval", manager, cited, kb.agent.prompts) is not None
    assert "pricing-discount-approval" in [h.doc_id for h in kb.knowledge.retriever.search("折扣审批", manager, k=5)]


def test_tenants_are_isolated(copilot, tmp_path):
    path = tmp_path / "other.md"
    path.write_text("# 另一家公司\n\n青龙计划只属于第二个租户。\n", encoding="utf-8")
    assert copilot.knowledge.ingestor.ingest_paths([path], Uploader("x", "admin", "corp2"))[0].status == "added"
    assert not copilot.knowledge.retriever.search("青龙计划", Viewer("default", "admin"), k=5) or \
        all(h.doc_id != "other.md" for h in copilot.knowledge.retriever.search("青龙计划", Viewer("default", "admin"), k=5))
    assert copilot.knowledge.retriever.search("青龙计划", Viewer("corp2", "rep"), k=5)[0].doc_id == "other.md"


@pytest.mark.parametrize("query", ["ＡＢＣ　實施週期", "abc 实施周期"])
def test_query_normalisation(kb, query):
    hits = kb.knowledge.retriever.search(query, Viewer("default", "manager", "华东区"), k=5)
    assert hits and any("实施" in h.text or "周期" in h.text for h in hits)


def test_owners_hear_about_flagged_content_once_a_week(copilot):
    from datetime import datetime, timezone

    from sqlmodel import Session, select

    from bot.pipeline.tables import OutboundRow

    sched = copilot.scheduler
    morning = datetime(2026, 11, 25, 2, 30, tzinfo=timezone.utc)  # 10:30 in Shanghai
    sched.tick(morning)
    sched._daily_day = None  # a second pass the same week (another instance, a restart) sends nothing new
    sched.tick(morning)
    with Session(copilot.engine) as s:
        flags = s.exec(select(OutboundRow).where(OutboundRow.dedupe_key.like("kb-flag:%"))).all()
    keys = [f.dedupe_key for f in flags]
    assert any(":pricing-q3-promo:" in k and "expired" in k for k in keys) and len(keys) == len(set(keys))
    assert all(f.conversation_key.endswith("web-chenjing") or f.conversation_key.endswith("web-liuyang") for f in flags)
