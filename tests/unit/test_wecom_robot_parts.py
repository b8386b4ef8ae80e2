"""The WeCom robot's parts on their own: settings, parsing a decrypted callback, and the stream table shared by processes."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from connectors.wecom.crypto import BadPayload, BadSignature
from connectors.wecom.render import task_id
from connectors.wecom.robot_config import RobotConfig, load_robots
from connectors.wecom.robot_parse import parse, stream_id
from connectors.wecom.robot_streams import StreamStore
from tests.polling import until

KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"


def test_settings_from_the_environment_and_copilot_toml_with_problems_named():
    env = {"COPILOT_WECOM_ROBOT_TOKEN": "Tok1", "COPILOT_WECOM_ROBOT_AES_KEY": KEY, "COPILOT_WECOM_ROBOT_ROBOT_ID": "aib-1"}
    robots, problems = load_robots("acme", {}, env)
    assert [(r.key, r.tenant, r.robot_id, r.path) for r in robots] == [("default", "acme", "aib-1", "/wecom/robot/default/callback")]
    section = {"robot": {"token": "Tok2", "aes_key": KEY},
               "robots": [{"key": "east", "tenant": "east", "token": "Tok3", "aes_key": KEY[:-1]}, {"key": "west", "token": "x y"}]}
    robots, problems = load_robots("acme", section, {})
    assert [(r.key, r.tenant) for r in robots] == [("default", "acme")]  # [wecom.robot] is the default robot
    named = {(p.account, p.setting) for p in problems}
    assert ("east", "[[wecom.robots]] key='east': aes_key") in named and "43" in next(p.detail for p in problems if p.account == "east")
    assert ("west", "[[wecom.robots]] key='west': token") in named and ("west", "[[wecom.robots]] key='west': aes_key") in named


ROBOT = RobotConfig(key="sales", tenant="acme", token="Tok1", aes_key=KEY, robot_id="aib-1", name="销售助手")


def body(**kw) -> dict:
    return {"msgid": "m1", "aibotid": "aib-1", "chatid": "", "chattype": "single", "from": {"userid": "ZhangWei"},
            "response_url": "https://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=RC", "msgtype": "text",
            "text": {"content": "你好"}, **kw}


def test_parse_messages_polls_mentions_clicks_and_what_is_refused():
    cb = parse(body(), ROBOT)
    assert cb.kind == "message" and cb.stream_id == stream_id("sales", "m1") and cb.response_url.endswith("=RC")
    m = cb.msg
    assert (m.channel, m.tenant, m.sender_id, m.text, m.is_group, m.platform_msg_id) == ("wecom", "acme", "ZhangWei", "你好", False, "m1")
    assert m.reply_context["stream"] == cb.stream_id and m.reply_context["robot"] == "sales"
    g = parse(body(chattype="group", chatid="wrG1", text={"content": "@销售助手\u2005星图多少钱"}), ROBOT).msg
    assert g.text == "星图多少钱" and g.is_group and g.mentions == ("销售助手",) and g.conversation_id == "robot:sales:g:wrG1"
    anon = parse(body(chattype="group", chatid="wrG1", text={"content": "@Bot 价格"}), ROBOT.model_copy(update={"name": ""})).msg
    assert anon.text == "价格"
    mixed = parse(body(msgtype="mixed", mixed={"msg_item": [{"msgtype": "text", "text": {"content": "看图"}},
                                                             {"msgtype": "image", "image": {"url": "https://wework.qpic.cn/x"}}]}), ROBOT).msg
    assert mixed.text == "看图" and mixed.attachments[0].ref == "robot:sales|https://wework.qpic.cn/x"
    assert parse(body(msgtype="image", image={"url": "https://wework.qpic.cn/y"}), ROBOT).msg.kind == "file"
    poll = parse({"msgtype": "stream", "stream": {"id": "s123"}, "aibotid": "aib-1"}, ROBOT)
    assert (poll.kind, poll.stream_id, poll.msg) == ("poll", "s123", None)
    click = {"msgtype": "event", "event": {"eventtype": "template_card_event",
                                           "template_card_event": {"event_key": "confirm", "task_id": task_id("pend_1", "in:1:0")}}}
    a = parse(body(**click, msgid="e1"), ROBOT)
    b = parse(body(**click, msgid="e2"), ROBOT)
    assert a.msg.kind == "action" and a.msg.action.ref == "pend_1" and a.msg.platform_msg_id == b.msg.platform_msg_id and not a.stream_id
    assert parse(body(msgtype="event", event={"eventtype": "enter_chat"}), ROBOT).kind == "ignore"
    with pytest.raises(BadSignature):
        parse(body(aibotid="aib-2"), ROBOT)
    for bad in (body(**{"from": {"userid": "a b"}}), body(msgid=""), body(msgtype="stream", stream={"id": "../x y"}),
                body(**click | {"event": {"eventtype": "template_card_event", "template_card_event": {"event_key": "k", "task_id": "t"}}})):
        with pytest.raises(BadPayload):
            parse(bad, ROBOT)


def test_two_processes_share_a_stream_and_a_reply_racing_a_poll_is_never_lost(tmp_path):
    url = f"sqlite:///{tmp_path / 'streams.db'}"
    a, b = StreamStore(create_engine(url)), StreamStore(create_engine(url))  # two gateway processes, one database
    a.open("s1", "sales", "acme", "https://example/response")
    a.open("s1", "sales", "acme", "https://example/other")  # the callback again: the same stream, the first url
    a.preview("s1", "星图")
    assert b.poll("s1").content == "星图" and not b.poll("s1").finish
    assert b.deliver("s1", "in:1:0", "星图 [1]", None, window=60)
    assert a.deliver("s1", "in:1:0", "星图 [1]", None, window=60)  # the outbox retried: not added twice
    assert a.deliver("s1", "in:1:1", "请确认", {"task_id": "t"}, window=60)
    shown = a.poll("s1")
    assert shown.finish and shown.content == "星图 [1]\n\n---\n\n请确认" and shown.card == {"task_id": "t"}
    assert not b.deliver("s1", "in:1:2", "late", None, window=60)  # shown and closed: this one needs the response_url
    assert b.claim_url("s1") == "https://example/response" and a.claim_url("s1") == ""  # one POST, whoever claims it
    b.settle_url("s1", used=False)
    assert a.claim_url("s1") == "https://example/response"  # a failed POST may be tried again
    assert a.poll("nope") is None and not a.deliver("nope", "k", "x", None, window=60)


def test_build_gives_the_app_with_its_robots_and_the_app_alone_without():
    from connectors.channel import ChannelContext, Previewer
    from connectors.wecom import WeComChannel, WeComConnector, build

    both = build(ChannelContext(section={"robot": {"token": "Tok1", "aes_key": KEY}}, public_url="https://copilot.example"))
    assert isinstance(both, WeComChannel) and isinstance(both, Previewer)
    assert "/wecom/robot/{robot}/callback" in {r.path for r in both.routes(None)}
    app = build(ChannelContext(section={"corps": [{"key": "east", "corp_id": "ww1", "token": "T", "aes_key": KEY, "agent_id": 1, "secret": "s"}]}))
    assert type(app) is WeComConnector and not isinstance(app, Previewer)
    assert build(ChannelContext()) is None


def test_an_answer_no_poll_showed_is_overdue_until_its_response_url_post_succeeds(tmp_path):
    now = [1000.0]
    store = StreamStore(create_engine(f"sqlite:///{tmp_path / 's.db'}"), clock=lambda: now[0])
    store.open("s2", "sales", "acme", "https://example/r2")
    store.open("s3", "other", "acme", "https://example/r3")
    assert store.deliver("s2", "in:2:0", "答案 [1]", None, window=30) and store.deliver("s3", "in:3:0", "x", None, window=30)
    assert store.overdue("sales", 30) == []  # WeCom may still poll
    now[0] += 31
    [due] = store.overdue("sales", 30)
    assert (due.stream_id, due.content, due.response_url) == ("s2", "答案 [1]", "https://example/r2")
    assert store.claim_url("s2") and store.overdue("sales", 30) == []
    assert not store.deliver("s2", "in:2:1", "more", None, window=3600)  # claimed: the stream takes no more replies
    store.settle_url("s2", used=False)  # the POST failed: the next sweep tries again
    assert [d.stream_id for d in store.overdue("sales", 30)] == ["s2"]
    assert store.claim_url("s2")
    store.settle_url("s2", used=True)
    assert store.overdue("sales", 30) == [] and store.claim_url("s2") == ""


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_replies_racing_polls_are_each_shown_once_or_refused_never_lost(tmp_path, db):
    """Eight deliveries and eight pollers at once, from threads with their own connections (as processes would): every
    reply the stream took is in what the closing poll showed, and every other one was refused (for the response_url)."""
    import contextlib
    import threading
    import time

    from connectors.wecom.robot_streams import Shown
    from tests.fakes.services import pg_database

    with (pg_database() if db == "postgresql" else contextlib.nullcontext(f"sqlite:///{tmp_path / 'race.db'}")) as url:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, pool_size=20, **({"connect_args": {"timeout": 30}} if db == "sqlite" else {}))
        store = StreamStore(engine)
        store.open("race", "sales", "acme", "https://example/r")
        took: dict[str, bool] = {}
        finished: list[Shown] = []
        go = threading.Barrier(16)

        def deliver(i: int) -> None:
            go.wait()
            took[f"in:1:{i}"] = store.deliver("race", f"in:1:{i}", f"reply-{i}", None, window=60)

        def poll() -> None:
            go.wait()
            until = time.monotonic() + 10
            while time.monotonic() < until:  # as WeCom does: until the stream is finished
                shown = store.poll("race")
                if shown is not None and shown.finish:
                    finished.append(shown)
                    return

        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)] + [threading.Thread(target=poll) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        engine.dispose()
    assert finished and len({s.content for s in finished}) == 1  # every poll that saw it finished saw the same answer
    shown = set(finished[0].content.split("\n\n---\n\n"))
    assert shown == {f"reply-{k.rsplit(':', 1)[1]}" for k, ok in took.items() if ok}
    assert len(took) == 8


def test_a_response_url_or_file_url_off_wecom_s_hosts_is_never_requested():
    """The decrypted body names the response_url the reply is POSTed to and the file urls fetched: only WeCom's hosts."""
    for bad in ("http://169.254.169.254/latest/meta-data", "https://qyapi.weixin.qq.com.evil.example/cgi-bin/aibot/response?x=1",
                "https://user@qyapi.weixin.qq.com/cgi-bin/aibot/response", "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpsecret=x",
                "http://qyapi.weixin.qq.com/cgi-bin/aibot/response?response_code=RC", "https://127.0.0.1:8080/cgi-bin/aibot/response"):
        cb = parse(body(response_url=bad), ROBOT)
        assert cb.response_url == "" and cb.msg.reply_context["response_url"] == "", bad
    assert parse(body(), ROBOT).response_url.startswith("https://qyapi.weixin.qq.com/cgi-bin/aibot/response?")
    local = ROBOT.model_copy(update={"api_base": "http://127.0.0.1:9000"})  # a fake WeCom in tests
    assert local.response_url_ok("http://127.0.0.1:9000/cgi-bin/aibot/response?response_code=1")
    assert not local.response_url_ok("http://127.0.0.1:9001/cgi-bin/aibot/response?response_code=1")
    assert ROBOT.file_url_ok("https://ww-aibot-img-1258476243.cos.ap-guangzhou.myqcloud.com/IMAGEID")
    assert ROBOT.file_url_ok("https://wework.qpic.cn/x")
    for bad in ("http://wework.qpic.cn/x", "https://169.254.169.254/x", "https://qpic.cn.evil.example/x", "https://10.0.0.1/x"):
        assert not ROBOT.file_url_ok(bad), bad
    assert RobotConfig(token="T1", aes_key=KEY, api_base="ftp://x").issues()[0][0] == "api_base"


async def test_send_and_fetch_refuse_urls_off_wecom_s_hosts_without_a_request():
    """A context or file ref stored before the check (or forged in the database) still never makes a request elsewhere."""
    from aiohttp import web

    from connectors.message import Attachment, Reply, Target
    from connectors.wecom.robot import WeComRobots

    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"errcode": 0})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    other = f"http://127.0.0.1:{runner.addresses[0][1]}"
    robots = WeComRobots([ROBOT])
    try:
        target = Target(channel="wecom", tenant="acme", conversation_id="robot:sales:ZhangWei", user_id="ZhangWei",
                        context={"robot": "sales", "response_url": f"{other}/cgi-bin/aibot/response?response_code=1"})
        assert await robots.send(target, Reply(text="答案"), "in:1:0") is False
        with pytest.raises(LookupError):
            await robots.fetch(Attachment(name="f", mime="image/jpeg", ref=f"robot:sales|{other}/file/x"))
        assert hits == []
    finally:
        await robots.aclose()
        await runner.cleanup()


async def test_the_answer_so_far_a_poll_shows_carries_no_tag_wecom_acts_on():
    """The preview is the model's raw Markdown, not rendered by connectors.markup: its <font> shows as words."""
    from connectors.message import Target
    from connectors.wecom.robot import WeComRobots

    robots = WeComRobots([ROBOT])
    await robots.start()
    try:
        robots.store.open("s-font", "sales", "acme", "")
        target = Target(channel="wecom", tenant="acme", conversation_id="robot:sales:ZhangWei", context={"robot": "sales", "stream": "s-font"})
        robots.preview(target, '价格 <font color="warning">已降</font>，3 < 5')
        await until(lambda: robots.store.poll("s-font").content, 5, 0.01)
        assert robots.store.poll("s-font").content == '价格 ＜font color="warning">已降＜/font>，3 < 5'
    finally:
        await robots.aclose()


def test_a_late_poll_and_the_sweep_never_both_show_an_answer(tmp_path):
    """An answer delivered just inside the window and not yet polled: the sweep (for the response_url) and WeCom's last
    poll race for it. Whichever wins, the other does not show it again."""
    now = [1000.0]
    store = StreamStore(create_engine(f"sqlite:///{tmp_path / 's.db'}"), clock=lambda: now[0])
    for sid in ("p", "q"):
        store.open(sid, "sales", "acme", f"https://example/{sid}")
        assert store.deliver(sid, f"in:{sid}:0", "答案 [1]", None, window=30)
    now[0] += 31
    assert {d.stream_id for d in store.overdue("sales", 30)} == {"p", "q"}  # the sweep read both
    assert store.poll("p").content == "答案 [1]"  # the poll showed p first ...
    assert store.claim_url("p", unshown=True) == ""  # ... so the sweep does not post it too
    assert store.claim_url("q", unshown=True) == "https://example/q"  # the sweep claimed q first ...
    shown = store.poll("q")
    assert shown.finish and "答案" not in shown.content  # ... so the poll ends the stream without it


async def test_the_answer_so_far_is_written_at_most_every_preview_interval_per_stream(monkeypatch):
    """The model streams many pieces a second: one database write per PREVIEW_EVERY per stream, of the newest text
    (the pieces between two writes are coalesced, not dropped); another stream has its own interval."""
    import time

    from connectors.message import Target
    from connectors.wecom import robot as robot_mod

    monkeypatch.setattr(robot_mod, "PREVIEW_EVERY", 1.0)
    robots = robot_mod.WeComRobots([ROBOT])
    writes = []
    robots.store.preview = lambda sid, text: writes.append((sid, text, time.monotonic()))  # count the writes, not their SQL
    one, two = (Target(channel="wecom", tenant="acme", conversation_id="robot:sales:ZhangWei",
                       context={"robot": "sales", "stream": sid}) for sid in ("s-1", "s-2"))
    await robots.start()
    try:
        robots.preview(one, "价")
        await until(lambda: len(writes) == 1, 5, 0.01)
        for text in ("价格", "价格是"):
            robots.preview(one, text)
        robots.preview(two, "另一个")
        await until(lambda: len(writes) == 2, 5, 0.01)
        await until(lambda: len(writes) == 3, 5, 0.01)
        assert [w[:2] for w in writes] == [("s-1", "价"), ("s-2", "另一个"), ("s-1", "价格是")]  # the newest, once
        assert writes[2][2] - writes[0][2] >= 0.8  # not within the interval (1 s, less the threads' latency)
    finally:
        await robots.aclose()
