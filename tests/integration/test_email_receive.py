"""The email connector's receiving side against a real Dovecot on loopback: charsets, quoted text,
exactly once across restarts and a UIDVALIDITY change, loop safety, IDLE and polling, bad mail."""
from __future__ import annotations

import asyncio
import json

import pytest

from connectors.email.connector import EmailConnector
from tests.fakes.dovecot import Dovecot
from tests.fakes.email_env import *  # noqa: F403 - fixtures
from tests.fakes.email_env import CNMAIL, FIXTURES, Collector, email_context


def mail(n: int | str, *, sender: str = "王总 <wang@customer.example.cn>", subject: str = "", body: str = "",
         extra: str = "", to: str = "sales@seller.example.cn") -> bytes:
    body = body or f"第 {n} 封：请问星图的价格？"
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject or f'询价 {n}'}\r\n"
            f"Date: Mon, 4 Mar 2024 10:00:00 +0800\r\nMessage-ID: <m{n}@customer.example.cn>\r\n{extra}"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    return head.encode() + body.replace("\n", "\r\n").encode("utf-8") + b"\r\n"


async def running(settings, *mailboxes, sink):
    conn = EmailConnector(list(mailboxes), email_context(settings))
    await conn.start(sink)
    return conn


async def synced(conn: EmailConnector, key: str = "default", timeout: float = 10.0) -> None:
    w = conn.watchers[key]
    w.synced.clear()
    await asyncio.wait_for(w.synced.wait(), timeout)


def _expected() -> list[dict]:
    path = CNMAIL / "expected.jsonl"
    if not path.is_file():
        pytest.skip(f"real-mail corpus not found at {CNMAIL} (it lives beside the project, never in it)")
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


async def test_charset_zoo_reaches_the_sink_with_the_right_text(make_settings, imap_user):
    cases = _expected()
    await imap_user.append(*[(CNMAIL / c["file"]).read_bytes() for c in cases])
    sink = Collector()
    conn = await running(make_settings(), imap_user.mailbox(), sink=sink)
    try:
        got = await sink.wait(len(cases))
    finally:
        await conn.aclose()
    assert len(got) == len(cases)
    for case, msg in zip(cases, got):  # handed over in UID order, which is append order
        assert msg.channel == "email" and msg.tenant == "default"
        assert msg.sender_name == case["from_name"], case["file"]
        assert msg.platform_msg_id == case["message_id"]
        assert msg.mail.subject == case["subject"]
        assert msg.auto_reply_forbidden == "List-Id header"  # all came through mailing lists
        for snippet in case["body_contains"]:
            assert snippet in msg.text, (case["file"], snippet)
        assert "发件人" not in msg.text and "原始邮件" not in msg.text and "wrote:" not in msg.text
        names = [a.name for a in msg.attachments]
        assert set(names) <= set(case["attachments"]), case["file"]
        assert msg.kind == ("file" if names else "text")
        assert msg.raw["mailbox"] == "default" and msg.raw["message_id"] == case["message_id"]
    files = [m for m in got if m.attachments]
    assert files, "the corpus has real attachments"
    data = await conn.fetch("default", files[0].attachments[0])
    assert len(data) == files[0].attachments[0].size


async def test_quoted_history_is_stripped_and_the_thread_is_kept(make_settings, imap_user):
    zh = ("好的，我们下周二可以安排演示。\n\n王强\n\n-----原始邮件-----\n发件人: 张伟 <zhangwei@seller.example.cn>\n"
          "发送时间: 2024年3月1日 9:00\n主题: 星图演示\n\n王总您好，想约个时间演示星图。")
    en = ("Tuesday works for us.\n\nOn Fri, Mar 1, 2024 at 9:00 AM Zhang Wei <zhangwei@seller.example.cn> wrote:\n"
          "> Could we schedule a demo?\n> Thanks")
    refs = "References: <root@seller.example.cn> <mid@customer.example.cn>\r\nIn-Reply-To: <mid@customer.example.cn>\r\n"
    await imap_user.append(mail("zh", body=zh, subject="回复: RE: 星图演示", extra=refs), mail("en", body=en, subject="Re: demo"))
    sink = Collector()
    conn = await running(make_settings(), imap_user.mailbox(), sink=sink)
    try:
        zh_msg, en_msg = await sink.wait(2)
    finally:
        await conn.aclose()
    assert zh_msg.text.startswith("好的，我们下周二可以安排演示。")
    assert "原始邮件" not in zh_msg.text and "想约个时间" not in zh_msg.text
    assert zh_msg.conversation_id == "<root@seller.example.cn>"  # the thread's first message
    assert zh_msg.mail.references == ("<root@seller.example.cn>", "<mid@customer.example.cn>")
    assert zh_msg.sender_id == "wang@customer.example.cn" and zh_msg.sender_name == "王总"
    assert zh_msg.auto_reply_forbidden == "" and zh_msg.from_outside
    assert en_msg.text == "Tuesday works for us."
    assert en_msg.conversation_id == "<men@customer.example.cn>"  # no References: it starts a thread


async def test_restart_mid_mailbox_hands_every_message_over_once(make_settings, imap_user):
    settings = make_settings()
    await imap_user.append(*[mail(i) for i in range(1, 7)])
    first = Collector(block_after=3)  # the 4th hand-over never returns: the process stops there
    conn = await running(settings, imap_user.mailbox(), sink=first)
    await first.wait(3)
    await asyncio.sleep(0.3)
    await conn.aclose()
    await imap_user.append(mail(7), mail(8))  # mail keeps arriving while the copilot is down
    second = Collector()
    conn = await running(settings, imap_user.mailbox(), sink=second)
    try:
        await second.wait(5)
        await asyncio.sleep(0.5)  # nothing else may follow
    finally:
        await conn.aclose()
    ids = first.ids() + second.ids()
    assert ids == [f"<m{i}@customer.example.cn>" for i in range(1, 9)]


async def test_reconnect_after_the_server_drops_the_connection(make_settings, imap_user):
    settings = make_settings()
    sink = Collector()
    conn = await running(settings, imap_user.mailbox(), sink=sink)
    try:
        await synced(conn)
        watcher = conn.watchers["default"]
        watcher._session.client.protocol.transport.close()  # the network drops us mid-IDLE
        await imap_user.append(mail("after-drop"))
        await sink.wait(1, timeout=15)
        assert watcher.status.counts["reconnects"] >= 1
    finally:
        await conn.aclose()
    assert sink.ids() == ["<mafter-drop@customer.example.cn>"]


async def test_uidvalidity_change_resyncs_by_message_id_without_duplicates(make_settings, imap_user):
    settings = make_settings()
    await imap_user.create("Sales")
    old = [mail(i) for i in range(1, 4)]
    await imap_user.append(*old, folder="Sales")
    sink = Collector()
    conn = await running(settings, imap_user.mailbox(folder="Sales", idle=False, poll_seconds=0.3), sink=sink)
    try:
        await sink.wait(3)
        await imap_user.recreate("Sales")  # new UIDVALIDITY; UIDs start again at 1
        await imap_user.append(*old, mail(4), folder="Sales")  # the same three (a migration) and one new
        await sink.wait(4, timeout=15)
        await synced(conn)
        await synced(conn)
    finally:
        await conn.aclose()
    assert sink.ids() == [f"<m{i}@customer.example.cn>" for i in range(1, 5)]
    assert conn.watchers["default"].status.counts["resyncs"] == 1


async def test_out_of_office_is_handed_over_marked_no_reply_and_own_mail_is_skipped(make_settings, imap_user):
    own = mail("own", sender=f"Sales Copilot <{imap_user.address.upper()}>", subject="Re: 询价")
    await imap_user.append(own, (FIXTURES / "out_of_office_zh.eml").read_bytes(), mail("after"))
    sink = Collector()
    conn = await running(make_settings(), imap_user.mailbox(), sink=sink)
    try:
        await sink.wait(2)
        await synced(conn)
    finally:
        await conn.aclose()
    ooo, after = sink.messages
    assert ooo.platform_msg_id == "<oof-20240304@customer.example.cn>"
    assert ooo.auto_reply_forbidden == "Auto-Submitted: auto-generated"
    assert after.auto_reply_forbidden == ""
    assert conn.watchers["default"].status.counts["own"] == 1  # the copilot's own mail: never processed


async def test_idle_wakes_on_new_mail_and_is_reissued_before_the_server_timeout(make_settings, imap_user):
    sink = Collector()
    conn = await running(make_settings(), imap_user.mailbox(idle_seconds=0.4, poll_seconds=600), sink=sink)
    try:
        await synced(conn)
        await asyncio.sleep(1.5)  # several IDLE periods pass with nothing new
        watcher = conn.watchers["default"]
        assert watcher.status.mode == "idle" and watcher.status.counts["idles"] >= 3
        started = asyncio.get_running_loop().time()
        await imap_user.append(mail("idle"))
        await sink.wait(1, timeout=5)  # polling is 10 minutes away: only IDLE can have woken it
        assert asyncio.get_running_loop().time() - started < 4
    finally:
        await conn.aclose()


async def test_polling_when_the_server_has_no_idle(make_settings, tmp_path, dovecot):
    server = Dovecot({"poll@seller.example.cn": "pw"}, binary=dovecot.binary,
                     extra_config="imap_capability = IMAP4rev1 LITERAL+ UIDPLUS").start()
    try:
        from tests.fakes.email_env import Imap

        user = Imap(server, "poll@seller.example.cn", "pw")
        sink = Collector()
        conn = await running(make_settings(), user.mailbox(idle=True, poll_seconds=0.3), sink=sink)
        try:
            await synced(conn)
            await user.append(mail("polled"))
            await sink.wait(1, timeout=5)
            assert conn.watchers["default"].status.mode == "poll"
        finally:
            await conn.aclose()
    finally:
        server.stop()


async def test_unparseable_mail_is_kept_flagged_reported_and_the_loop_goes_on(make_settings, imap_user):
    settings = make_settings()
    junk = b"this is not a mail header\r\njust some bytes \xff\xfe\r\n"
    uids = await imap_user.append(junk, mail("fine"))
    sink = Collector()
    conn = await running(settings, imap_user.mailbox(), sink=sink)
    try:
        await sink.wait(1)
        checks = {c.name: c for c in await conn.doctor()}
    finally:
        await conn.aclose()
    assert sink.ids() == ["<mfine@customer.example.cn>"]
    kept = list((settings.data_dir / "email" / "unparsed").glob("*.eml"))
    assert [p.read_bytes() for p in kept] == [junk]
    assert "$CopilotUnparsed" in await asyncio.to_thread(imap_user.flags, uids[0])
    assert conn.watchers["default"].status.counts["unparsed"] == 1
    assert checks["email unparsed messages"].ok is False and "copilot email parse" in checks["email unparsed messages"].fix
    assert checks["email default IMAP"].ok is True


async def test_several_mailboxes_each_with_its_tenant(make_settings, dovecot):
    from tests.fakes.email_env import Imap

    users = []
    for name in ("east", "west"):
        dovecot.add_user(f"{name}@seller.example.cn", "pw")
        users.append(Imap(dovecot, f"{name}@seller.example.cn", "pw"))
    await users[0].append(mail("east"))
    await users[1].append(mail("west"))
    sink = Collector()
    boxes = [users[0].mailbox(key="east", tenant="east-corp"), users[1].mailbox(key="west")]
    conn = await running(make_settings(), *boxes, sink=sink)
    try:
        got = await sink.wait(2)
    finally:
        await conn.aclose()
    by_box = {m.reply_context["mailbox"]: m for m in got}
    assert by_box["east"].tenant == "east-corp" and by_box["west"].tenant == "default"
