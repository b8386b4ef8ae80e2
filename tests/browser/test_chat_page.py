"""The web chat (/chat) and the citation page in a real browser, against a real `copilot serve` (demo mode: the sample
people and knowledge; the scripted model of tests/fakes, streaming its answers slowly), as a new user tries them:
keyboard-only sign-in, a question answered while it is written, with its citation links, a CRM proposal confirmed
and still settled after a reload, the cited passage opened in view, a phone screen, and the English interface of an
English browser. One model, one server, one browser for the module."""
from __future__ import annotations

import asyncio
import dataclasses
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp import web

from tests.browser.conftest import serving
from tests.conftest import PASSWORD, free_port, serve_env, user_add

pytestmark = pytest.mark.slow

QUESTION = "星图软件的实施周期一般多长？"  # offline: answered from the battlecard, cited
LOG = "今天拜访了华东医疗集团王总，关注价格，下周二再约"  # a CRM proposal with confirm / edit / cancel
COMPARE = "我们和星图在实施周期上怎么比？"  # a comparison table
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def model():
    """The scripted model (tests/fakes: a careful model's answers, each streamed in pieces 40 ms apart) in a thread of its own."""
    from tests.fakes.openai_server import FakeOpenAI, policy

    slow = lambda step: dataclasses.replace(step, chunk_delay=0.04) if step.text and not step.tool_calls else step
    fake = FakeOpenAI(default=lambda body: slow(policy(body)))
    loop, port, up = asyncio.new_event_loop(), free_port(), threading.Event()
    runner = web.AppRunner(fake.app())

    def serve() -> None:  # its own loop in its own thread: Playwright's sync API holds this thread's
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        up.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert up.wait(30)
    yield f"http://127.0.0.1:{port}/v1"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, model):
    """`copilot serve` in demo mode on a free port; zhangwei (rep) and liuyang (enablement, English) have passwords."""
    tmp: Path = tmp_path_factory.mktemp("chat-page")
    env = serve_env(tmp, model, COPILOT_DEMO="true", COPILOT_LOGIN_ATTEMPTS_PER_MINUTE="100", COPILOT_LLM_TIMEOUT="60",
                    COPILOT_MAX_UPLOAD_BYTES=str(2 * 1024 * 1024))
    with serving(env, tmp / "serve.log", timeout=120) as base:
        with ThreadPoolExecutor() as pool:  # two CLI processes at once
            list(pool.map(lambda who: user_add(env, *who), [("zhangwei", "rep"), ("liuyang", "enablement")]))
        yield base


def open_chat(chromium, base: str, name: str, *, locale: str = "zh-CN", viewport: dict | None = None):
    """A new browser context signed in as `name` with the keyboard alone, on /chat once its welcome shows."""
    context = chromium.new_context(locale=locale, viewport=viewport or {"width": 1280, "height": 800})
    page = context.new_page()
    page.requested = []  # every URL the page asked for
    page.on("request", lambda r: page.requested.append(r.url))
    page.goto(base + "/chat")
    assert page.url.startswith(base + "/login")  # not signed in: to the sign-in form
    until(page, "document.activeElement && document.activeElement.name === 'username'")  # the form gives it the focus
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == base + "/chat", page.locator("body").inner_text()
    page.locator("#welcome h2").wait_for()
    until(page, "document.querySelector('#log').getAttribute('aria-busy') === 'false'")
    return context, page


CONTRAST = """selectors => {  // WCAG contrast of each element's text on the first opaque background behind it
  const lum = c => c.match(/[\\d.]+/g).slice(0, 3).map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
                   .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = e => { for (; e; e = e.parentElement) { const m = getComputedStyle(e).backgroundColor.match(/[\\d.]+/g);
                                                         if (m && (m.length < 4 || +m[3] > 0)) return getComputedStyle(e).backgroundColor; }
                        return "rgb(255, 255, 255)"; };
  return Object.fromEntries(selectors.map(s => { const e = document.querySelector(s); if (!e) return [s, 0];
    const [a, b] = [lum(getComputedStyle(e).color), lum(behind(e))]; return [s, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; }));
}"""


def until(page, script: str, timeout: float = 30.0) -> None:
    """Wait until `script` is true in the page (wait_for_function evaluates strings, which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {script}"
        time.sleep(0.1)


def ask(page, text: str):
    """Type `text` into the focused message box, send it with Enter, and return the reply that answers it."""
    before = page.locator(".msg.bot:not(.thinking):not(.cursor)").count()
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    reply = page.locator(".msg.bot:not(.thinking):not(.cursor)").nth(before)
    reply.wait_for(timeout=30_000)
    return reply


def test_keyboard_sign_in_then_an_answer_with_its_citation_links(chromium, server, shot):
    context, page = open_chat(chromium, server, "zhangwei")
    try:
        assert "张伟" in page.locator("#welcome h2").inner_text()
        assert page.locator("#welcome").get_by_role("button").count() >= 2  # example questions to try
        assert page.evaluate("document.activeElement.id") == "text"  # ready to type
        # accessible: the replies are announced, the message box and the file picker have names
        assert page.locator("#log").get_attribute("aria-live") == "polite" and page.locator("#log").get_attribute("role") == "log"
        assert page.get_by_label("输入消息").evaluate("e => e.id") == "text"
        assert page.get_by_label("上传文件").evaluate("e => e.type") == "file"
        page.evaluate("""window.seen = {thinking: false, partial: []};
            new MutationObserver(() => {
              if (document.querySelector('.thinking')) window.seen.thinking = true;
              const p = document.querySelector('.cursor');
              if (p && p.innerText !== window.seen.partial[window.seen.partial.length - 1]) window.seen.partial.push(p.innerText);
            }).observe(document.querySelector('#log'), {childList: true, subtree: true, characterData: true})""")
        reply = ask(page, QUESTION)
        assert page.locator(".msg.me").last.inner_text().endswith(QUESTION)
        seen = page.evaluate("window.seen")
        assert seen["thinking"]  # "thinking…" showed until the answer began
        partial = [p for p in seen["partial"] if p.strip()]
        assert len(partial) >= 2 and all(len(a) <= len(b) for a, b in zip(partial, partial[1:])), partial  # it grew as it was written
        assert page.locator(".cursor, .thinking").count() == 0 and page.locator("#log").get_attribute("aria-busy") == "false"
        links = reply.locator(".cites a")
        assert links.count() >= 1 and "/kb/" in links.first.get_attribute("href")
        assert reply.locator("a.ref").count() >= 1  # the [1] in the text links to its passage too
        assert "[1]" in reply.locator("a.ref").first.inner_text()
        assert not re.search(r"\*\*|</?\w", reply.inner_text())  # rendered, not Markdown or markup as text
        # keyboard only, in reading order: the message box, then Send; back from it the file picker, then the reply's links
        assert page.evaluate("document.activeElement.id") == "text"
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "send"
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("document.activeElement.id") == "file"
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("document.activeElement.closest('.cites') !== null")  # the last source link
        assert page.requested and all(u.startswith(server + "/") for u in page.requested)  # every asset from this server
        assert any(u.endswith("/chat/assets/marked.min.js") for u in page.requested)
        shot(page, "chat-answer")
    finally:
        context.close()


def test_a_reload_keeps_the_history_and_a_settled_proposal_stays_settled(chromium, server, shot):
    context, page = open_chat(chromium, server, "zhangwei")
    try:
        proposal = ask(page, LOG)
        buttons = proposal.locator(".buttons button")
        assert buttons.count() == 3
        confirm = buttons.first
        box, bar = confirm.bounding_box(), page.locator("#f").bounding_box()
        assert box["y"] + box["height"] <= bar["y"]  # not hidden under the input bar
        confirm.focus()
        page.keyboard.press("Enter")
        done = page.locator(".msg.bot:not(.thinking)").last
        until(page, "/✓/.test([...document.querySelectorAll('.msg.bot:not(.thinking)')].pop().innerText)")
        assert "✓" in done.inner_text()
        mine = page.locator(".msg.me").all_inner_texts()
        replies = page.locator(".msg.bot:not(.thinking)").count()

        page.reload()
        until(page, "document.querySelector('#log').getAttribute('aria-busy') === 'false'")
        assert page.locator(".msg.me").all_inner_texts() == mine  # the person's own messages survive, in order
        assert page.locator(".msg.bot:not(.thinking)").count() == replies
        assert any(LOG in m for m in mine)
        settled = page.locator(".msg.bot", has_text="华东医疗集团").locator(".buttons").last
        assert settled.locator("button:disabled").count() == 3  # answered: not clickable again
        assert settled.locator("button[aria-pressed=true]").inner_text() == confirm.inner_text()
        # a proposal settled otherwise (a newer one supersedes it) closes while the page is open, without a reload
        first = ask(page, LOG.replace("下周二", "下周三"))
        assert first.locator(".buttons button:enabled").count() == 3
        second = ask(page, LOG.replace("下周二", "下周四"))
        assert second.locator(".buttons button:enabled").count() == 3
        until(page, f"document.querySelectorAll('[data-id=\"{first.get_attribute('data-id')}\"] .buttons button:disabled').length === 3")
        shot(page, "chat-history")
    finally:
        context.close()


def test_the_citation_link_opens_scrolled_to_the_rendered_passage(chromium, server, shot):
    context, page = open_chat(chromium, server, "zhangwei", viewport=PHONE)
    try:
        reply = ask(page, QUESTION)
        href = reply.locator(".cites a").first.get_attribute("href").split("#")[0]  # some in-app browsers drop the fragment
        title = reply.locator(".cites a").first.inner_text().split("] ", 1)[1].split(" › ")[0]
        doc = context.new_page()
        doc.goto(href)
        cited = doc.locator(".cited")
        assert cited.count() == 1
        until(doc, "(() => { const r = document.querySelector('.cited').getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight / 2; })()")
        assert doc.evaluate("scrollY") > 0  # opened scrolled down to it, not at the top
        assert doc.evaluate("getComputedStyle(document.querySelector('.cited')).backgroundColor") != "rgba(0, 0, 0, 0)"
        assert doc.locator(".passage li, .passage td").count() >= 2  # the passages' Markdown lists and tables rendered
        text = "\n".join(doc.locator(".passage").all_inner_texts())
        assert not re.search(r"^\s*([-*] |#+ |\|)", text, re.M)  # no raw list markers, headings or table rows
        headings = doc.locator("h2").all_inner_texts()
        assert headings and all(" › " not in h or not h.startswith(headings[0].split(" › ")[0]) for h in headings[1:])  # no repeated path
        assert doc.locator("h1").inner_text() == title
        assert doc.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        shot(doc, "citation-page")
    finally:
        context.close()


def test_a_phone_screen(chromium, server, shot):
    context, page = open_chat(chromium, server, "zhangwei", viewport=PHONE)
    try:
        title = page.locator("#title")
        assert title.bounding_box()["height"] < 30  # one line
        reply = ask(page, COMPARE)
        assert reply.locator("table").count() == 1  # a rendered table, scrolled inside its message
        width, height = page.evaluate("[document.scrollingElement.scrollWidth, document.scrollingElement.scrollHeight]")
        assert width <= PHONE["width"] and height <= PHONE["height"], (width, height)  # only the conversation scrolls
        for part in ("#text", "#attach", "#send"):
            box = page.locator(part).bounding_box()
            assert page.locator(part).is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], part
            assert box["y"] + box["height"] <= PHONE["height"], part
        ratios = page.evaluate(CONTRAST, ["#me", "#lang", "#send", "#welcome p", ".examples button", ".msg.me", ".msg.bot td", ".msg.bot th",
                                          ".cites a", ".cites li", "#text"])
        assert all(r >= 4.5 for r in ratios.values()), ratios  # WCAG AA for text
        shot(page, "chat-phone")
    finally:
        context.close()


def test_english_for_an_english_browser_and_the_switch(chromium, server, shot):
    context, page = open_chat(chromium, server, "liuyang", locale="en-US")
    try:
        assert page.evaluate("document.documentElement.lang") == "en"
        assert page.locator("#send").inner_text() == "Send"
        assert re.search(r"upload", page.locator("#welcome").inner_text(), re.I)  # enablement: how to upload
        assert page.get_by_label("Upload a file").evaluate("e => e.type") == "file"
        assert page.get_by_role("link", name="Console").get_attribute("href") == "/console"
        page.locator("#file").set_input_files({"name": "demo-note.md", "mimeType": "text/markdown",
                                               "buffer": "# Demo note\n\nThe demo widget ships in blue.\n".encode()})
        result = page.locator(".msg.bot:not(.thinking)").last
        until(page, "[...document.querySelectorAll('.msg.bot:not(.thinking)')].some(e => /demo-note/.test(e.innerText))", 60)
        assert not re.search(r"[\u4e00-\u9fff]", result.inner_text())  # an English person gets English
        page.locator("#file").set_input_files({"name": "big.pdf", "mimeType": "application/pdf", "buffer": b"%PDF" + b"0" * 2_200_000})
        refused = page.locator(".msg.bot.error[role=alert]").last
        assert refused.inner_text() == "The file is too large: at most 2 MB."  # in the page's language, not the server's
        shot(page, "chat-english")
        switch = page.locator("#lang")
        assert switch.inner_text() == "中文"
        switch.focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")  # the choice is kept (a cookie) and the page reloads in it
        until(page, "document.querySelector('#log').getAttribute('aria-busy') === 'false'")  # the page has started
        assert page.evaluate("document.documentElement.lang") == "zh-CN" and page.locator("#send").inner_text() == "发送"
        page.goto(server + "/login")  # the choice holds on the server's other pages too, over the English browser
        assert page.locator("h1").inner_text() == "登录"
    finally:
        context.close()
