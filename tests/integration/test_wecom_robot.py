"""The WeCom intelligent robot (智能机器人, API mode) through the real gateway, against WeCom's side played by
tests/fakes/wecom_robot.py: callbacks signed and encrypted as WeCom sends them, stream polls, response_url.

Two robots of one tenant: "default" (the usual six-minute stream window) and "late" (a one-second window,
to see answers go to the response_url when no poll can show them). The model is a scripted local server.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import create_engine

from connectors.wecom import RobotConfig, WeComChannel, WeComRobots
from connectors.wecom.robot_parse import stream_id
from tests.fakes.scripted_model import FakeOpenAI, Step, policy
from tests.fakes.wecom_robot import LATE, ROBOT, FakeRobot, RobotServer

QUESTION = "星图软件的实施周期一般多长？"
ANSWER = "星图软件的标准实施周期是四到六个月，涉及财务一体化的项目常常更久 [1]。"


@pytest.fixture
async def robot(make_app, make_settings, aiohttp_server, aiohttp_client, tmp_path):
    from bot.web.gateway import create_web_app

    model = FakeOpenAI(default=policy)
    model_server = await aiohttp_server(model.app())
    urls = RobotServer()
    urls.base = str((await aiohttp_server(urls.app())).make_url("")).rstrip("/")
    settings = make_settings(llm_base_url=str(model_server.make_url("/v1")), llm_timeout=20.0)
    robots = [RobotConfig(key="default", tenant=settings.tenant, api_base=urls.base, **ROBOT),  # the fake is WeCom's host
              RobotConfig(key="late", tenant=settings.tenant, stream_seconds=1.0, sweep_seconds=0.2, api_base=urls.base, **LATE)]
    streams = create_engine(f"sqlite:///{tmp_path / 'streams.db'}")  # as the copilot's database would hold them
    conn = WeComChannel([], WeComRobots(robots, engine=streams))
    copilot = make_app(settings, channels=[conn])
    for rep, uid in (("zhangwei", "ZhangWei"), ("lijun", "LiJun")):
        copilot.directory.link(rep, "wecom", uid, tenant=settings.tenant)
    client = await aiohttp_client(create_web_app(copilot))
    client.copilot, client.model, client.urls, client.conn = copilot, model, urls, conn
    client.another = lambda: WeComChannel([], WeComRobots(robots, engine=streams))  # another process's, on the same database
    client.bot = FakeRobot(client, ROBOT, "/wecom/robot/default/callback")
    client.late = FakeRobot(client, LATE, "/wecom/robot/late/callback")
    yield client
    streams.dispose()


def inbox(copilot) -> list:
    from sqlalchemy import select

    from bot.pipeline.tables import InboxRow

    with copilot.engine.connect() as c:
        return c.execute(select(InboxRow.__table__).where(InboxRow.channel == "wecom")).all()


async def test_url_verification_and_forged_signatures_are_refused(robot):
    r = await robot.bot.verify("8211743296425863214")
    assert r.status == 200 and await r.text() == "8211743296425863214"
    assert (await robot.bot.verify("1", token="WrongToken1")).status == 403
    r = await robot.late.verify("42")  # each robot on its own URL with its own Token and key
    assert r.status == 200 and await r.text() == "42"
    assert (await FakeRobot(robot, LATE, "/wecom/robot/default/callback").verify("42")).status == 403
    # a message signed with another robot's token, on this robot's URL: refused before anything is stored
    forged = FakeRobot(robot, {**ROBOT, "token": LATE["token"]}, "/wecom/robot/default/callback")
    status, _ = await forged.send(robot.bot.message("ZhangWei", "你好", "m-forged"))
    assert status == 403
    params, body = robot.bot.encrypt(robot.bot.message("ZhangWei", "你好", "m-tampered"))
    r = await robot.post("/wecom/robot/default/callback", params={**params, "msg_signature": "0" * 40}, data=body)
    assert r.status == 403
    status, _ = await robot.bot.send({**robot.bot.message("ZhangWei", "你好", "m-other"), "aibotid": "aib-someone-else"})
    assert status == 403  # a signed callback for another robot
    assert (await robot.post("/wecom/robot/nowhere/callback", params=params, data=body)).status == 404
    assert (await robot.post("/wecom/robot/default/callback", data=body)).status == 400  # no signature at all
    r = await robot.post("/wecom/robot/default/callback", params=params, data=b'{"encrypt": "' + b"A" * 70_000 + b'"}')
    assert r.status == 413  # a callback is a few KB
    assert (await robot.post("/wecom/robot/default/callback", params=params, data=b"<xml>not json</xml>")).status == 400
    assert inbox(robot.copilot) == []
    checks = {c.name: c for c in await robot.conn.doctor()}
    assert checks["WeCom robot default: settings"].ok and "/wecom/robot/default/callback" in checks["WeCom robot default: settings"].detail
    assert not checks["WeCom robot default: nudges"].ok  # no self-built app: the robot cannot start a conversation
    assert "self-built app" in checks["WeCom robot default: nudges"].fix


async def test_an_image_a_user_sent_is_downloaded_and_decrypted(robot):
    from connectors.message import Attachment

    url = robot.urls.add_file(b"\x89PNG fake image bytes", ROBOT["aes_key"])
    _, first = await robot.bot.send({**robot.bot.message("ZhangWei", "", "m-img"), "msgtype": "image", "image": {"url": url}})
    [row] = inbox(robot.copilot)
    [att] = json.loads(row.payload)["attachments"]
    assert att["ref"] == f"robot:default|{url}"
    assert await robot.conn.fetch(robot.copilot.settings.tenant, Attachment(**att)) == b"\x89PNG fake image bytes"
    await robot.bot.poll_until_finished("ZhangWei", first["stream"]["id"])  # and it is answered, in the stream


async def test_a_question_streams_as_it_is_written_and_a_resent_callback_is_the_same_answer(robot):
    robot.model.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": QUESTION}}]),
                    Step(text=ANSWER, chunk_delay=0.12))
    status, first = await robot.bot.send(robot.bot.message("ZhangWei", QUESTION, "m-q1", response_url=robot.urls.url()))
    sid = stream_id("default", "m-q1")
    assert status == 200 and first["msgtype"] == "stream"
    assert first["stream"] == {"id": sid, "finish": False, "content": ""}
    [row] = inbox(robot.copilot)  # stored before the answer was given
    assert row.platform_msg_id == "m-q1"
    polls = await robot.bot.poll_until_finished("ZhangWei", sid)
    shown = [p["stream"]["content"] for p in polls if p["stream"]["content"] and not p["stream"]["finish"]]
    assert len(set(shown)) >= 2 and all(a == b or b.startswith(a) for a, b in zip(shown, shown[1:]))  # it grew
    assert all("[" not in s for s in shown)  # no citation numbers before they are final
    final = polls[-1]["stream"]
    assert final["finish"] and final["id"] == sid and "[1]" in final["content"] and "来源" in final["content"]
    assert final["content"].startswith(shown[0][:10])
    asked = len(robot.model.requests)
    # WeCom resends the message (it missed our answer): the same stream, the same answer, nothing asked again
    status, again = await robot.bot.send(robot.bot.message("ZhangWei", QUESTION, "m-q1", response_url=robot.urls.url()))
    assert status == 200 and again["stream"]["id"] == sid and again["stream"]["finish"] and again["stream"]["content"] == final["content"]
    await asyncio.sleep(0.5)
    assert len(inbox(robot.copilot)) == 1 and len(robot.model.requests) == asked
    assert robot.urls.posts == []  # the stream showed it: the response_url stays unused
    other = await robot.late.poll("ZhangWei", sid)  # another robot (perhaps another tenant's) asking for this stream
    assert other["stream"]["finish"] and other["stream"]["content"] == ""


async def test_in_a_group_the_mention_is_stripped_and_the_answer_streams_in_the_group(robot):
    msg = robot.bot.message("LiJun", "@销售助手 /help", "m-g1", chat="wrGroupChat01")
    status, first = await robot.bot.send(msg)
    assert status == 200 and not first["stream"]["finish"]
    [row] = inbox(robot.copilot)
    stored = json.loads(row.payload)
    assert stored["text"] == "/help" and stored["is_group"] and stored["mentions"] == ["销售助手"] and stored["sender_id"] == "LiJun"
    polls = await robot.bot.poll_until_finished("LiJun", first["stream"]["id"], chat="wrGroupChat01")
    assert "/ask" in polls[-1]["stream"]["content"]


async def test_an_approval_card_click_confirms_the_pending_item_once(robot):
    from sqlalchemy import func, select

    from crm.models import Activity

    def visits() -> int:
        with robot.copilot.engine.connect() as c:
            return c.execute(select(func.count()).select_from(Activity).where(Activity.account_id == "acc-001")).scalar()

    before = visits()
    _, first = await robot.bot.send(robot.bot.message("ZhangWei", "/log 今天拜访了华东医疗集团王总，关注价格，下周二再约", "m-log1"))
    polls = await robot.bot.poll_until_finished("ZhangWei", first["stream"]["id"])
    last = polls[-1]
    assert last["msgtype"] == "stream_with_template_card" and "回复 1 确认" in last["stream"]["content"]
    card = last["template_card"]
    assert card["card_type"] == "button_interaction" and [b["key"] for b in card["button_list"]] == ["confirm", "edit", "reject"]
    assert visits() == before
    url = robot.urls.url()
    for _ in range(2):  # tapped twice: two callbacks, one action
        status, answer = await robot.bot.send(robot.bot.click("ZhangWei", card["task_id"], "confirm", response_url=url))
        assert status == 200 and answer["response_type"] == "update_template_card" and answer["userids"] == ["ZhangWei"]
        assert answer["template_card"]["task_id"] == card["task_id"] and "button_list" not in answer["template_card"]  # settled
    [post] = await robot.urls.wait(1)
    assert post["body"]["msgtype"] == "markdown" and "✓" in post["body"]["markdown"]["content"]
    assert visits() == before + 1
    await asyncio.sleep(0.5)
    assert len(robot.urls.posts) == 1 and robot.urls.refused == []
    assert len([r for r in inbox(robot.copilot) if r.platform_msg_id.startswith("card:")]) == 1


async def test_when_no_poll_can_show_the_answer_it_goes_to_the_response_url(robot):
    # 1. the answer is ready in time, but WeCom stopped polling: pushed to the response_url once the window passed
    url1 = robot.urls.url()
    status, first = await robot.late.send(robot.late.message("ZhangWei", "/help", "m-late1", response_url=url1))
    assert status == 200 and not first["stream"]["finish"]
    [post] = await robot.urls.wait(1)
    assert post["code"] in url1 and "/ask" in post["body"]["markdown"]["content"]
    # 2. the answer comes after the window (the model is slow): straight to the response_url, through the outbox
    robot.model.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": QUESTION}}], delay=1.5), Step(text=ANSWER))
    robot.urls.fail_next = 1  # and the first POST fails: the outbox retries it
    url2 = robot.urls.url()
    await robot.late.send(robot.late.message("ZhangWei", QUESTION, "m-late2", response_url=url2))
    posts = await robot.urls.wait(2)
    assert len(posts) == 2 and posts[1]["code"] in url2
    assert "[1]" in posts[1]["body"]["markdown"]["content"] and "来源" in posts[1]["body"]["markdown"]["content"]
    await asyncio.sleep(0.6)  # nothing is posted twice
    assert len(robot.urls.posts) == 2 and robot.urls.refused == []


async def test_polls_taken_by_another_gateway_process_show_the_same_stream(robot, make_app, aiohttp_client):
    """The message reaches one `copilot serve`, WeCom's polls another: the stream lives in the shared database."""
    from bot.web.gateway import create_web_app

    other = await aiohttp_client(create_web_app(make_app(robot.copilot.settings, channels=[robot.another()])))
    there = FakeRobot(other, ROBOT, "/wecom/robot/default/callback")
    robot.model.add(Step(tool_calls=[{"name": "answer_question", "arguments": {"question": QUESTION}}]),
                    Step(text=ANSWER, chunk_delay=0.1))
    _, first = await robot.bot.send(robot.bot.message("ZhangWei", QUESTION, "m-two"))
    polls = await there.poll_until_finished("ZhangWei", first["stream"]["id"])
    assert any(p["stream"]["content"] and not p["stream"]["finish"] for p in polls)  # the answer so far, seen from there
    assert polls[-1]["stream"]["finish"] and "[1]" in polls[-1]["stream"]["content"]
    again = await robot.bot.poll("ZhangWei", first["stream"]["id"])  # and from here: the same finished answer
    assert again["stream"] == polls[-1]["stream"]
