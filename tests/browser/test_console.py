"""The web console in a real browser: one `copilot serve` (demo data, offline) for the module, driven by Playwright's
sync API with Debian's chromium (the `chromium` fixture): keyboard-only sign-in, a PDF uploaded and found by the
retrieval test box, a rep's draft approved, a rep kept out of the Knowledge, Audit and Reps pages, a console form
posted without its CSRF token refused, and a 390 px phone screen with no sideways scroll. Every page is
screenshotted (test-output/screenshots/console-*.png), and the server-side render time of each console page
(its Server-Timing header) is written to test-output/console-render-times.json with the p95 per page."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.conftest import serving
from tests.conftest import PASSWORD, serve_env, user_add

pytestmark = pytest.mark.slow
OUT = Path(__file__).resolve().parents[2] / "test-output"
TIMES: dict[str, list[float]] = {}  # console page -> server-side render times (ms) seen by the browser
PAGES = {"knowledge": "/console/knowledge", "probe": "/console/knowledge/probe?q=%E6%98%9F%E5%9B%BE%20%E5%AE%9E%E6%96%BD%E5%91%A8%E6%9C%9F&role=rep",
         "document": "/console/knowledge/doc?id=bc-xingtu", "dashboard": "/console/dashboard", "conversations": "/console/conversations",
         "audit": "/console/audit", "reps": "/console/reps"}
SCORE_HEALTH = """
import sys
from datetime import date, timedelta
from bot.settings import Settings
from bot.storage import make_engine
from crm.health import HealthConfig, run_day
s = Settings()
engine = make_engine(s.db_url)
for back in range(20, 0, -1):
    run_day(engine, s.tenant, date.today() - timedelta(days=back), HealthConfig())
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`copilot serve` with the demo data on a free port; admin, chenjing (enablement) and zhangwei (rep) have passwords."""
    tmp = tmp_path_factory.mktemp("console")
    env = serve_env(tmp, "", COPILOT_DEMO="true")
    try:
        with serving(env, tmp / "serve.log") as base:
            for name, role in (("admin", "admin"), ("chenjing", "enablement"), ("zhangwei", "rep")):
                user_add(env, name, role)
            subprocess.run([sys.executable, "-c", SCORE_HEALTH], env=env, check=True, timeout=120)  # four weeks of health for the dashboard
            yield base
    finally:
        if TIMES:
            OUT.mkdir(exist_ok=True)
            (OUT / "console-render-times.json").write_text(json.dumps(render_summary(), indent=2))


def render_summary() -> dict:
    out = {}
    for name, values in sorted(TIMES.items()):
        v = sorted(values)
        out[name] = {"n": len(v), "p50_ms": v[len(v) // 2], "p95_ms": v[min(len(v) - 1, round(0.95 * (len(v) - 1)))], "max_ms": v[-1]}
    return out


def timed(page) -> None:
    """Record the server-side render time of every console page this tab loads."""
    def seen(response):
        timing = response.headers.get("server-timing", "")
        path = response.url.split("//", 1)[-1].split("/", 1)[-1].split("?")[0]
        m = re.search(r"render;dur=([\d.]+)", timing)
        if m and path.startswith("console") and response.request.method == "GET" and response.status == 200:
            TIMES.setdefault("/" + path, []).append(float(m.group(1)))
    page.on("response", seen)


def signed_in(chromium, base: str, name: str, **context):
    ctx = chromium.new_context(base_url=base, **{"locale": "zh-CN", **context})
    page = ctx.new_page()
    timed(page)
    page.goto("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button")
    page.wait_for_url(lambda url: "/login" not in url)
    return ctx, page


def test_keyboard_only_sign_in(chromium, server, shot):
    ctx = chromium.new_context(base_url=server, locale="en-US")
    page = ctx.new_page()
    page.goto("/login")
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    page.keyboard.type("admin")  # the user name field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
    page.goto("/console/")
    assert page.url.endswith("/console/knowledge")
    page.keyboard.press("Tab")  # the first stop is the skip link, then the navigation
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#main"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Knowledge"
    ctx.close()


def test_every_page_renders_and_is_screenshotted(chromium, server, shot):
    ctx, page = signed_in(chromium, server, "admin")
    for name, path in PAGES.items():
        for _ in range(10 if name != "reps" else 4):  # several loads of each page: the render times' p95
            r = page.goto(path)
            assert r.status == 200, (path, r.status)
        assert page.locator("h1").count() == 1 and page.locator("main").count() == 1
        assert not page.locator("img:not([alt]), input:not([type=hidden]):not([aria-label]):not([id])").evaluate_all(
            "els => els.filter(e => !e.closest('label')).map(e => e.outerHTML)")  # every field has a label
        shot(page, f"console-{name}")
    page.goto(PAGES["dashboard"] + "?lang=en")
    assert page.locator("h1").inner_text() == "Dashboard" and page.locator("svg.chart").count() >= 2
    shot(page, "console-dashboard-en")
    page.goto("/console/knowledge")  # the language stays chosen (a cookie)
    assert page.locator("h1").inner_text() == "Knowledge"
    ctx.close()


def test_upload_a_pdf_and_find_it(chromium, server, shot, tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Orbital Service Plan\n\nThe Orbital service plan includes a dedicated success manager, quarterly business "
                         "reviews and a four hour response time for priority one incidents, across all regions.")
    path = tmp_path / "orbital-service-plan.pdf"
    pdf.output(str(path))
    bad = tmp_path / "notes.exe"
    bad.write_bytes(b"MZ\x00\x01 not a document")
    ctx, page = signed_in(chromium, server, "chenjing", locale="en-US")
    page.goto("/console/knowledge")
    page.set_input_files("#files", [str(path), str(bad)])
    page.click("#upload button")
    rows = page.locator("#upload-results tr.result-added, #upload-results tr.result-error")
    rows.nth(1).wait_for(timeout=60_000)
    assert page.locator("#upload-results tr.result-added").inner_text().startswith("orbital-service-plan.pdf")
    assert "not supported" in page.locator("#upload-results tr.result-error").inner_text()  # the refusal says why
    shot(page, "console-upload")
    page.goto("/console/knowledge/probe")
    page.fill("input[name=q]", "response time for priority one incidents")
    page.select_option("select[name=role]", "rep")
    page.click("form[role=search] button")
    first = page.locator("#probe-results tbody tr").first
    assert "orbital-service-plan.pdf" in first.inner_text() or "Orbital" in first.inner_text()
    shot(page, "console-probe-pdf")
    ctx.close()


def test_approve_a_reps_draft(chromium, server, shot):
    rep_ctx, rep = signed_in(chromium, server, "zhangwei")
    csrf = rep.evaluate("fetch('/api/me').then(r => r.json()).then(j => j.csrf)")
    r = rep_ctx.request.post(server + "/api/chat", headers={"X-CSRF-Token": csrf}, multipart={
        "file": {"name": "field-notes.md", "mimeType": "text/markdown",
                 "buffer": "# 现场笔记\n华东客户最关心实施周期：演示时先讲三个月上线的苏州精工案例。\n".encode()}})
    assert r.status in (200, 202), r.text()
    rep_ctx.close()
    ctx, page = signed_in(chromium, server, "chenjing")
    approve = page.locator("form[action$='/approve'] button")
    for _ in range(60):  # the chat upload is ingested by a worker
        page.goto("/console/knowledge")
        if approve.count():
            break
        time.sleep(0.5)
    assert approve.count() == 1
    shot(page, "console-draft")
    approve.click()
    page.wait_for_load_state()
    assert page.locator(".flash.ok").count() == 1 and approve.count() == 0
    ctx.close()


def test_a_rep_is_kept_out_and_a_form_without_csrf_is_refused(chromium, server, shot):
    ctx, page = signed_in(chromium, server, "zhangwei")
    for path in ("/console/knowledge", "/console/audit", "/console/reps"):
        r = page.goto(path)
        assert r.status == 403, path
        assert page.locator("a[href='/chat']").count() >= 1
    shot(page, "console-forbidden")
    ctx.close()
    ctx, page = signed_in(chromium, server, "admin")
    page.goto("/console/reps")
    form = page.locator("form[action='/console/reps/person']").first
    form.locator("input[name=csrf]").evaluate("e => e.remove()")
    with page.expect_response(lambda r: r.url.endswith("/console/reps/person")) as refused:
        form.locator("button").click()
    assert refused.value.status == 403
    assert "CSRF" in page.content()
    ctx.close()


def test_phone_screen_has_no_sideways_scroll(chromium, server, shot):
    ctx, page = signed_in(chromium, server, "admin", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    for name, path in PAGES.items():
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert wide <= 0, (path, wide)
        if name in ("knowledge", "dashboard"):
            shot(page, f"console-phone-{name}")
    ctx.close()
