"""The web console through the real gateway (aiohttp test client): every page renders for the roles it is for, in
Chinese or English, refuses the others with its 403 page, sends a signed-out browser to /login, and refuses a form
posted without its CSRF token. The browser tests (tests/browser/test_console.py) drive the same pages in chromium."""
from __future__ import annotations

import re

import pytest

PAGES = ("/console/knowledge", "/console/knowledge/probe?q=%E6%98%9F%E5%9B%BE&role=rep", "/console/knowledge/doc?id=bc-xingtu",
         "/console/audit", "/console/reps", "/console/dashboard", "/console/dashboard?team=%E5%8D%8E%E4%B8%9C%E5%8C%BA&days=30", "/console/conversations",
         "/console/conversations?kind=disliked&days=90")


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def test_admin_sees_every_page_in_both_languages(login):
    admin = await login("admin")
    for path in PAGES:
        for lang, word in (("zh", "退出登录"), ("en", "Sign out")):
            r = await admin.get(path, params=None, headers={"Accept-Language": lang}) if "?" in path else await admin.get(path, params={"lang": lang})
            page = await r.text()
            assert r.status == 200, (path, page[:2000])
            assert "render;dur=" in r.headers["Server-Timing"]
            if "?" not in path:
                assert word in page, (path, lang)
    r = await admin.get("/console", allow_redirects=False)
    assert r.status == 303


@pytest.mark.parametrize("who, allowed", [
    ("zhangwei", set()),
    ("lina", {"/console/dashboard", "/console/conversations"}),
    ("chenjing", {"/console/knowledge", "/console/conversations"}),
])
async def test_each_role_sees_only_its_pages(login, who, allowed):
    client = await login(who)
    for path in ("/console/knowledge", "/console/audit", "/console/reps", "/console/dashboard", "/console/conversations"):
        r = await client.get(path)
        assert r.status == (200 if path in allowed else 403), (who, path)
        if r.status == 403:
            assert "/chat" in await r.text()


async def test_signed_out_browser_goes_to_login_and_forms_need_the_csrf_token(gateway, login):
    r = await gateway.get("/console/knowledge", headers={"Accept": "text/html"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login?next=/console/knowledge"  # back there after signing in
    admin = await login("admin")
    page = await (await admin.get("/console/knowledge")).text()
    token = csrf_of(page)
    del admin.session.headers["X-CSRF-Token"]
    r = await admin.post("/console/knowledge/nudge", data={"flag": ""}, allow_redirects=False)
    assert r.status == 403
    r = await admin.post("/console/knowledge/nudge", data={"flag": "", "csrf": token}, allow_redirects=False)
    assert r.status == 303


async def test_knowledge_upload_edit_diff_retire(login):
    import aiohttp

    admin = await login("chenjing")
    form = aiohttp.FormData()
    form.add_field("file", "---\nid: kb-console\ntitle: 控制台测试\n---\n# 报价\n控制台上传的报价说明：专业版每年十二万。\n".encode(), filename="console.md",
                   content_type="text/markdown")
    form.add_field("file", b"\x00\x01binary", filename="bad.exe", content_type="application/octet-stream")
    r = await admin.post("/console/knowledge/upload", data=form, headers={"X-Console-Fragment": "1"})
    page = await r.text()
    assert r.status == 207 and "console.md" in page and "bad.exe" in page and "tag-added" in page and "tag-error" in page, page
    r = await admin.get("/console/knowledge/probe", params={"q": "控制台上传的报价说明", "role": "rep"})
    assert "kb-console" in await r.text()
    r = await admin.post("/console/knowledge/doc/edit", data={"id": "kb-console", "audience": "managers", "team": "", "owner": "liuyang",
                                                              "expires": "2027-01-31", "tags": "报价"}, allow_redirects=False)
    assert r.status == 303
    page = await (await admin.get("/console/knowledge/doc", params={"id": "kb-console"})).text()
    assert "v2" in page and "liuyang" in page and "managers" in page, page
    r = await admin.get("/console/knowledge/probe", params={"q": "控制台上传的报价说明", "role": "rep"})
    assert "kb-console" not in await r.text()  # managers only now: a rep's search no longer finds it
    r = await admin.get("/console/knowledge/probe", params={"q": "控制台上传的报价说明", "role": "manager"})
    assert "kb-console" in await r.text()
    r = await admin.post("/console/knowledge/doc/retire", data={"id": "kb-console"}, allow_redirects=False)
    assert r.status == 303
    page = await (await admin.get("/console/knowledge/doc", params={"id": "kb-console"})).text()
    assert "tag-retired" in page


async def test_a_draft_is_approved_from_the_console(gateway, login):
    import asyncio

    cp = gateway.copilot
    rep = cp.directory.get(cp.settings.tenant, "zhangwei")
    res = await asyncio.to_thread(cp.publishing.upload, rep, "rep-note.md", "# 现场经验\n客户最关心实施周期，演示时先讲三个月上线案例。\n".encode())
    assert res.meta["ingest"]["status"] == "draft"
    enablement = await login("chenjing")
    page = await (await enablement.get("/console/knowledge")).text()
    m = re.search(r'action="/console/knowledge/drafts/(\d+)/approve"', page)
    assert m, page
    r = await enablement.post(f"/console/knowledge/drafts/{m.group(1)}/approve", allow_redirects=False)
    assert r.status == 303
    page = await (await enablement.get("/console/knowledge")).text()
    assert f"drafts/{m.group(1)}/approve" not in page and "flash ok" in page


async def test_audit_shows_sign_ins_and_permission_changes_and_exports_csv(gateway, login):
    import asyncio

    cp = gateway.copilot
    admin = await login("admin")
    r = await admin.post("/console/reps/person", data={"id": "lijun", "role": "manager", "team": "华东区"}, allow_redirects=False)
    assert r.status == 303
    assert (await asyncio.to_thread(cp.directory.get, cp.settings.tenant, "lijun")).role == "manager"
    r = await admin.post("/console/reps/person", data={"id": "admin", "role": "rep", "team": ""}, allow_redirects=False)
    assert (await asyncio.to_thread(cp.directory.get, cp.settings.tenant, "admin")).role == "admin"  # nobody demotes themselves
    await asyncio.to_thread(cp.directory.note_unknown, "wecom", cp.settings.tenant, "WangWu", "王五")
    page = await (await admin.get("/console/reps")).text()
    assert "WangWu" in page and "knowledge index" in page and "password" in page
    pending = re.search(r'name="pending" value="(\d+)"', page).group(1)
    r = await admin.post("/console/reps/approve", data={"pending": pending, "id": "wangwu", "name": "王五", "role": "rep", "team": "华东区"},
                         allow_redirects=False)
    assert r.status == 303
    assert (await asyncio.to_thread(cp.directory.resolve, "wecom", cp.settings.tenant, "WangWu")).id == "wangwu"
    page = await (await admin.get("/console/audit", params=[("kind", "signin"), ("kind", "admin")])).text()
    assert "permission_change" in page and "person_approved" in page and "password" in page
    r = await admin.get("/console/audit.csv", params={"kind": "admin", "actor": "admin"})
    body = (await r.text()).lstrip("\ufeff")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    lines = body.splitlines()
    assert lines[0] == "at,kind,actor,name,detail" and any("permission_change" in x and "lijun" in x for x in lines[1:])
    assert all(",signin," not in x for x in lines[1:])  # filtered to console changes


async def test_a_manager_sees_only_their_team(login):
    lina = await login("lina")  # manager of 华东区
    page = await (await lina.get("/console/dashboard", params={"team": "华南区"})).text()
    assert "华东区" in page and 'name="team"' not in page  # no team picker: the team is hers
    assert "王芳" not in page  # 华南区's rep
    admin = await login("admin")
    page = await (await admin.get("/console/dashboard", params={"team": "华南区"})).text()
    assert 'name="team"' in page and "<svg" in page


def say(cp, rep_id: str, text: str, n: int):
    from datetime import datetime, timezone

    from connectors.message import InboundMessage

    person = cp.directory.get(cp.settings.tenant, rep_id)
    msg = InboundMessage(channel="console", tenant=cp.settings.tenant, conversation_id=f"web-{rep_id}", sender_id=rep_id, text=text,
                         platform_msg_id=f"console-test-{n}", received_at=datetime.now(timezone.utc))
    return cp.agent.handle(person, msg)


async def test_declined_and_disliked_answers_become_knowledge_entries(gateway, login):
    import asyncio

    from rag.retrieve import Viewer

    cp = gateway.copilot
    await asyncio.to_thread(say, cp, "zhangwei", "火星基地的氧气供应商是谁？", 1)  # nothing in the knowledge base
    await asyncio.to_thread(say, cp, "zhangwei", "蓝海支持 UDI 吗？", 2)
    await asyncio.to_thread(say, cp, "zhangwei", "👎", 3)
    await asyncio.to_thread(say, cp, "wangfang", "月球工厂的电费怎么算？", 4)  # another team's rep
    enablement = await login("chenjing")
    page = await (await enablement.get("/console/conversations", params={"kind": "declined"})).text()
    assert "火星基地的氧气供应商是谁？" in page and "月球工厂的电费怎么算？" in page
    page = await (await enablement.get("/console/conversations", params={"kind": "disliked"})).text()
    assert "蓝海支持 UDI 吗？" in page and "passage" in page
    lina = await login("lina")  # 华东区's manager: her team's conversations only
    page = await (await lina.get("/console/conversations", params={"kind": "declined"})).text()
    assert "火星基地" in page and "月球工厂" not in page
    page = await (await enablement.get("/console/conversations", params={"kind": "declined"})).text()
    turn = re.search(r'<h3 id="q(\d+)">火星基地', page).group(1)
    r = await enablement.post("/console/conversations/entry", data={"turn": turn, "title": "火星基地的氧气供应商是谁？",
                                                                    "body": "火星基地的氧气由云帆合作伙伴红星气体供应，合同每年续签。", "audience": "all"},
                              allow_redirects=False)
    assert r.status == 303 and f"faq-turn-{turn}" in r.headers["Location"]
    page = await (await enablement.get(r.headers["Location"])).text()
    assert "tag-live" in page, page
    hits = await asyncio.to_thread(cp.knowledge.retriever.search, "火星基地的氧气供应商是谁？", Viewer("default", "rep"))
    assert hits and hits[0].doc_id == f"faq-turn-{turn}", hits
    page = await (await enablement.get("/console/conversations", params={"kind": "declined"})).text()
    assert f"faq-turn-{turn}" in page  # marked as done
