"""`python -m bench email`: messages parsed per second on real-world-shaped mail, against the standard
library's own parser in the same run, and IMAP fetch-to-inbox throughput from a real Dovecot.

The corpus is the real mails in ../shared/cnmail (when present) plus generated variants of the shapes
that matter: multipart/alternative, attachments with RFC 2231 names, GBK / Big5 / ISO-2022-JP bodies,
HTML-only replies with quoted history, quoted-printable. The baseline is what a connector written
from the docs would do: `email.message_from_bytes(raw, policy=default)` and `get_body().get_content()`.
"""
from __future__ import annotations

import asyncio
import email
import json
import tempfile
import time
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from bot.settings import REPO_ROOT

CNMAIL = REPO_ROOT.parent / "shared" / "cnmail"


def _variants() -> list[bytes]:
    out: list[bytes] = []
    quote = "\n\n-----原始邮件-----\n发件人: 张伟 <zhangwei@seller.example.cn>\n主题: 报价\n\n请确认附件中的报价。"
    bodies = [("gb18030", "王总您好：\n星图的价格可以再谈，附件是新的报价单。" + quote),
              ("big5", "您好，請問貴公司的實施週期大約多久？我們下週開會討論。"),
              ("iso-2022-jp", "お世話になっております。見積書を添付いたします。"),
              ("utf-8", "Hi Zhang Wei,\n\nTuesday works for us.\n\nOn Fri, Mar 1, 2024 at 9:00 AM Zhang Wei wrote:\n> Could we meet?")]
    for i, (charset, text) in enumerate(bodies):
        m = EmailMessage()
        m["From"] = "王总 <wang@customer.example.cn>"
        m["To"] = "sales@seller.example.cn"
        m["Subject"] = f"回复: 报价 {i}"
        m["Message-ID"] = f"<variant-{i}@customer.example.cn>"
        m["Date"] = "Mon, 04 Mar 2024 10:00:00 +0800"
        m.set_content(text, charset=charset if charset != "iso-2022-jp" else "utf-8")
        if charset != "iso-2022-jp":
            html = "<html><body><p>" + text.replace("\n", "<br>") + "</p><blockquote>旧邮件</blockquote></body></html>"
            m.add_alternative(html, subtype="html", charset="utf-8")
        raw = m.as_bytes()
        if charset in ("gb18030", "big5", "iso-2022-jp"):  # the body in the legacy charset, labelled as such
            single = (f"From: =?gb2312?B?zfXX3A==?= <wang@customer.example.cn>\r\nTo: sales@seller.example.cn\r\n"
                      f"Subject: =?utf-8?B?5Zue5aSNOiDmiqXku7c=?=\r\nMessage-ID: <legacy-{i}@customer.example.cn>\r\n"
                      f"Date: Mon, 04 Mar 2024 10:00:00 +0800\r\nMIME-Version: 1.0\r\n"
                      f"Content-Type: text/plain; charset={'gb2312' if charset == 'gb18030' else charset}\r\n"
                      f"Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + text.encode(charset, "replace")
            out.append(single)
        out.append(raw)
    att = EmailMessage()
    att["From"] = "Li Na <lina@seller.example.cn>"
    att["To"] = "copilot@seller.example.cn"
    att["Subject"] = "新版竞品对比卡"
    att["Message-ID"] = "<attach@seller.example.cn>"
    att.set_content("新版竞品对比卡见附件，请导入知识库。")
    att.add_attachment(b"%PDF-1.4 " + bytes(range(256)) * 200, maintype="application", subtype="pdf", filename="星图对比卡 v3.pdf")
    att.add_attachment("a,b\n1,2\n".encode(), maintype="text", subtype="csv", filename="价格表.csv")
    out.append(att.as_bytes())
    html_only = ("From: Wang <wang@customer.example.cn>\r\nTo: sales@seller.example.cn\r\nSubject: RE: demo\r\n"
                 "Message-ID: <html-only@customer.example.cn>\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: text/html; charset=gbk\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n").encode()
    body = "<html><body><div>下周二可以演示。</div><div id=divRplyFwdMsg><b>发件人:</b> 张伟<br>以前的内容</div></body></html>"
    import quopri

    out.append(html_only + quopri.encodestring(body.encode("gbk")))
    return out


def corpus() -> tuple[list[bytes], int]:
    """(messages, how many of them are real cnmail files)."""
    real = [p.read_bytes() for p in sorted(CNMAIL.glob("*.eml"))] if CNMAIL.is_dir() else []
    return real + _variants(), len(real)


def _stdlib(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=default_policy)
    body = msg.get_body(("plain", "html"))
    return body.get_content() if body is not None else ""


def _rate(fn, items: list[bytes], seconds: float) -> tuple[float, int]:
    """Messages per second over whole passes for at least `seconds`; failures in one pass."""
    n, failures, started = 0, 0, time.perf_counter()
    while True:
        for raw in items:
            try:
                fn(raw)
            except Exception:
                failures += 1
        n += len(items)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return n / elapsed, failures // max(n // len(items), 1)


def _stdlib_view(raw: bytes) -> tuple[str, str, str]:
    msg = email.message_from_bytes(raw, policy=default_policy)
    sender = msg["From"].addresses[0].display_name if msg["From"] and msg["From"].addresses else ""
    return sender, str(msg["Subject"] or ""), _stdlib(raw)


def _copilot_view(raw: bytes) -> tuple[str, str, str]:
    from connectors.email import parse_email

    p = parse_email(raw)
    return p.from_name, p.subject, p.new_text


def cnmail_correct(view) -> int | None:
    """How many cnmail messages come out with the right sender name, subject and every expected
    snippet of the sender's text (values read by eye, in expected.jsonl)."""
    expected = CNMAIL / "expected.jsonl"
    if not expected.is_file():
        return None
    ok = 0
    for line in expected.read_text("utf-8").splitlines():
        case = json.loads(line)
        try:
            name, subject, text = view((CNMAIL / case["file"]).read_bytes())
        except Exception:
            continue
        ok += name == case["from_name"] and subject == case["subject"] and all(s in text for s in case["body_contains"])
    return ok


def bench_parse(seconds: float = 3.0) -> dict:
    from connectors.email import parse_email

    items, real = corpus()
    ours, our_fail = _rate(parse_email, items, seconds)
    base, base_fail = _rate(_stdlib, items, seconds)
    return {"corpus": {"messages": len(items), "real_cnmail": real, "bytes": sum(map(len, items))},
            "copilot_msgs_per_s": round(ours, 1), "stdlib_msgs_per_s": round(base, 1), "ratio": round(ours / base, 2),
            "failures_per_pass": {"copilot": our_fail, "stdlib": base_fail},
            "cnmail_correct": {"copilot": cnmail_correct(_copilot_view), "stdlib": cnmail_correct(_stdlib_view),
                               "of": len(list(CNMAIL.glob("*.eml"))) if CNMAIL.is_dir() else 0}}


async def bench_imap(messages: int = 500) -> dict:
    """Dovecot -> EmailConnector -> the durable inbox, vs. a bare UID FETCH of the same mailbox."""
    from tests.fakes.dovecot import Dovecot, ensure_dovecot

    binary, why = ensure_dovecot(install=False)
    if binary is None:
        return {"skipped": why}
    from bot.app import channel_context
    from bot.pipeline.inbox import Inbox
    from bot.settings import Settings
    from bot.storage import init_db, make_engine
    from connectors.channel import Accepted
    from connectors.email.config import Mailbox
    from connectors.email.connector import EmailConnector
    from connectors.email.imap import ImapSession

    items, _ = corpus()
    user = "bench@seller.example.cn"
    with Dovecot({user: "pw"}, binary=binary) as dv, tempfile.TemporaryDirectory(prefix="copilot-bench-email-") as tmp:
        batch = []
        for i in range(messages):  # unique Message-IDs, so the inbox keeps every one
            raw = items[i % len(items)]
            batch.append(b"Message-ID: <bench-%d@seller.example.cn>\r\n" % i + _without_message_id(raw))
        started = time.perf_counter()
        await asyncio.to_thread(dv.append, user, *batch)
        append_s = time.perf_counter() - started
        mb = Mailbox(imap_host="127.0.0.1", imap_port=dv.port, imap_security="none", username=user, password="pw",
                     address="copilot@seller.example.cn", timeout=30)
        session = ImapSession(mb)
        await session.open()
        started = time.perf_counter()
        uids = await session.search("ALL")
        for i in range(0, len(uids), 25):
            await session.fetch(uids[i:i + 25])
        bare_s = time.perf_counter() - started
        await session.close()

        settings = Settings(data_dir=Path(tmp))
        settings.ensure_dirs()
        engine = make_engine(settings.db_url)
        init_db(engine)
        inbox = Inbox(engine)
        done = asyncio.Event()
        count = 0

        async def sink(msg) -> Accepted:
            nonlocal count
            acc = await inbox.put(msg)
            count += 1
            if count >= messages:
                done.set()
            return acc

        conn = EmailConnector([mb], channel_context(settings, "email", engine))
        started = time.perf_counter()
        await conn.start(sink)
        try:
            await asyncio.wait_for(done.wait(), 600)
            pipeline_s = time.perf_counter() - started
            stored = await asyncio.to_thread(_inbox_rows, engine)
        finally:
            await conn.aclose()
            await inbox.aclose()
            engine.dispose()
    return {"messages": messages, "append_msgs_per_s": round(messages / append_s, 1),
            "bare_fetch_msgs_per_s": round(messages / bare_s, 1),
            "fetch_to_inbox_msgs_per_s": round(messages / pipeline_s, 1),
            "ratio_vs_bare_fetch": round(bare_s / pipeline_s, 2), "inbox_rows": stored}


def _inbox_rows(engine) -> int:
    from sqlalchemy import func, select

    from bot.pipeline.tables import InboxRow

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(InboxRow).where(InboxRow.channel == "email")).scalar()


def _without_message_id(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    lines = head.splitlines(keepends=True)
    keep, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(b"message-id:")
        if not skipping:
            keep.append(line)
    return b"".join(keep) + sep + body


async def run(seconds: float = 3.0, messages: int = 500) -> dict:
    return {"parse": await asyncio.to_thread(bench_parse, seconds), "imap": await bench_imap(messages)}
