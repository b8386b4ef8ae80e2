"""One rig per connector for the contract suite (tests/integration/test_connector_contract.py): the
connector wired into a whole copilot against its fake platform, and the same few verbs on each.

  deliver(text, msg_id)  the platform hands the copilot a message from rep 张伟 (HTTP response, or None)
  refused(text, msg_id)  the same with bad credentials (a forged signature, a wrong password): why it was
                         refused, or None where the channel has none to check
  texts()                what the fake platform delivered to 张伟 so far, as text
  target()               where a reply to 张伟 goes; fallback_target(): one whose client shows no cards
  row_key(msg_id)        the inbox's platform_msg_id for a delivered message

Plus `parse_cases()`: every fixture under tests/fixtures/<platform>/ as (id, parse it, expected fields).
"""
from __future__ import annotations

import asyncio
import json
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any, Callable

from connectors.message import InboundMessage, Target

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# the app, organisation and bot the recorded Feishu events (tests/fixtures/feishu/) were sent to
FEISHU_FIXTURE_APP, FEISHU_FIXTURE_TENANT, FEISHU_FIXTURE_BOT = "cli_9f5343c580712544", "2ca1d211f64f6438", "ou_b0t5343c580712544aa403a838cf73ee"
REP = "zhangwei"
PLATFORMS = ("wecom", "dingtalk", "feishu", "email", "console")


class Rig:
    channel = ""
    text_limit: int | None = None  # None: the platform has no length limit
    text_unit = "chars"
    shows_cards = True  # False: the client draws buttons itself (no text fallback needed)

    def __init__(self, copilot, client, connector) -> None:
        self.copilot, self.client, self.connector = copilot, client, connector

    @property
    def tenant(self) -> str:
        return self.copilot.settings.tenant

    def row_key(self, msg_id: str) -> str:
        return msg_id

    def fallback_target(self) -> Target:
        return self.target()

    async def refused(self, text: str, msg_id: str) -> str | None:
        r = await self.forged(text, msg_id)
        assert r.status == 403, r.status
        return (await r.json())["error"]

    async def forged(self, text: str, msg_id: str):  # the HTTP response to a request with a bad signature
        raise NotImplementedError

    async def wait(self, n: int, timeout: float = 20.0, until: Callable[[list[str]], bool] | None = None) -> list[str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            got = await self.texts()
            if (until(got) if until else len(got) >= n) or asyncio.get_running_loop().time() > deadline:
                return got
            await asyncio.sleep(0.1)


# WeCom: corp A (markdown) of tests/fakes/wecom_api.py ---------------------------------------------------
class WeComRig(Rig):
    channel, text_limit, text_unit = "wecom", 2048, "bytes"

    @classmethod
    async def open(cls, make_app, aiohttp_client, aiohttp_server, **_):
        from bot.web.gateway import create_web_app
        from connectors.wecom import WeComConnector
        from connectors.wecom.config import CorpConfig
        from tests.fakes.wecom_api import corp_settings, start_fake

        fake = await start_fake(aiohttp_server)
        conn = WeComConnector([CorpConfig(**c) for c in corp_settings(fake)])
        copilot = make_app(channels=[conn])
        copilot.directory.link(REP, "wecom", "ZhangWei", tenant=copilot.settings.tenant)
        rig = cls(copilot, await aiohttp_client(create_web_app(copilot)), conn)
        rig.fake = fake
        return rig

    async def _post(self, text: str, msg_id: str, signature: str = ""):
        from tests.fakes.wecom_api import A, callback, text_xml

        params, body = callback(A, text_xml(A, "ZhangWei", text, msg_id))
        if signature:
            params["msg_signature"] = signature
        return await self.client.post("/wecom/callback", params=params, data=body, headers={"Content-Type": "text/xml"})

    async def deliver(self, text: str, msg_id: str):
        return await self._post(text, msg_id)

    async def forged(self, text: str, msg_id: str):
        return await self._post(text, msg_id, signature="f" * 40)

    async def texts(self) -> list[str]:
        from tests.fakes.wecom_api import A

        mine = [m for m in self.fake.sent if m["corp_id"] == A["corp_id"] and m["touser"] == "ZhangWei"]
        assert not any(m.get("truncated") for m in mine), "WeCom cut a message"
        return [m[m["msgtype"]]["content"] for m in mine if m["msgtype"] in ("text", "markdown")]

    def target(self) -> Target:
        return Target(channel="wecom", tenant=self.tenant, conversation_id="ZhangWei", user_id="ZhangWei", context={"corp": "default"})


# DingTalk: one app over HTTP callbacks (tests/fakes/dingtalk_api.py) -------------------------------------
APP, SECRET, STAFF = "dingappkey0001", "app-secret-0001-abcdefghijklmnopqrstuvwxyz", "0251120101"


class DingTalkRig(Rig):
    channel, text_limit = "dingtalk", 3800

    @classmethod
    async def open(cls, make_app, aiohttp_client, aiohttp_server, settings, **_):
        from bot.web.gateway import create_web_app
        from connectors.dingtalk import DingTalkConnector
        from connectors.dingtalk.config import DingTalkApp
        from tests.fakes.dingtalk_api import FakeDingTalk

        fake = FakeDingTalk()
        fake.bind(str((await aiohttp_server(fake.app())).make_url("")))
        fake.add_app(APP, SECRET)
        conn = DingTalkConnector([DingTalkApp(tenant=settings.tenant, app_key=APP, app_secret=SECRET, api_base=fake.base,
                                              oapi_base=fake.base)])
        copilot = make_app(channels=[conn])
        copilot.directory.link(REP, "dingtalk", STAFF, tenant=copilot.settings.tenant)
        rig = cls(copilot, await aiohttp_client(create_web_app(copilot)), conn)
        rig.fake = fake
        return rig

    async def _post(self, text: str, msg_id: str, secret: str):
        body = self.fake.message(APP, sender=STAFF, text=text, msg_id=msg_id)
        return await self.client.post("/dingtalk/callback", data=json.dumps(body, ensure_ascii=False).encode(),
                                      headers=self.fake.signed_headers(secret))

    async def deliver(self, text: str, msg_id: str):
        return await self._post(text, msg_id, SECRET)

    async def forged(self, text: str, msg_id: str):
        return await self._post(text, msg_id, "not-the-secret")

    async def texts(self) -> list[str]:
        return [s.text for s in self.fake.sent]

    def target(self) -> Target:  # no session webhook: the robot API
        return Target(channel="dingtalk", tenant=self.tenant, conversation_id=f"cidP2P{APP}{STAFF}==", user_id=STAFF)

    def fallback_target(self) -> Target:  # in a group a card's click would not reach the robot: text only
        return Target(channel="dingtalk", tenant=self.tenant, conversation_id=f"cidGroup{APP}==", user_id=STAFF, is_group=True,
                      context={"openConversationId": f"cidGroup{APP}==", "senderStaffId": STAFF, "senderNick": "张伟"})


# Feishu: one app over HTTP events, encrypted and signed (tests/fakes/feishu_api.py) --------------------------
FEISHU_APP, FEISHU_SECRET, FEISHU_USER = "cli_contract000001", "feishu-secret-contract-0123456789", "ou_zhangwei0000000000000000000000c"


class FeishuRig(Rig):
    channel = "feishu"
    text_limit = None  # a reply is one card up to ~30 KB (longer ones: more cards, tests/unit/test_feishu_parse_render.py)
    shows_cards = False  # the card's buttons come back as card.action.trigger callbacks: no typed line needed

    @classmethod
    async def open(cls, make_app, aiohttp_client, aiohttp_server, settings, **_):
        from bot.web.gateway import create_web_app
        from connectors.feishu.config import FeishuApp
        from connectors.feishu.connector import FeishuConnector
        from tests.fakes.feishu_api import TENANT_KEY, FakeFeishu

        fake = FakeFeishu()
        fake.bind(str((await aiohttp_server(fake.app())).make_url("")))
        app = fake.add_app(FEISHU_APP, FEISHU_SECRET)
        fake.add_user(FEISHU_USER, "zhangwei", "张伟")
        conn = FeishuConnector([FeishuApp(tenant=settings.tenant, app_id=FEISHU_APP, app_secret=FEISHU_SECRET, encrypt_key=app.encrypt_key,
                                          verification_token=app.token, tenant_key=TENANT_KEY, api_base=fake.base, login_base=fake.base)])
        copilot = make_app(channels=[conn])
        copilot.directory.link(REP, "feishu", FEISHU_USER, tenant=copilot.settings.tenant)
        rig = cls(copilot, await aiohttp_client(create_web_app(copilot)), conn)
        rig.fake = fake
        return rig

    async def _post(self, text: str, msg_id: str, key: str | None = None):
        event = self.fake.message_event(FEISHU_APP, sender=FEISHU_USER, text=text, message_id=f"om_{msg_id}")
        app = self.fake.apps[FEISHU_APP]
        body = self.fake.encrypt(event, app.encrypt_key)
        return await self.client.post("/feishu/events", data=body, headers=self.fake.signed_headers(body, key or app.encrypt_key))

    def row_key(self, msg_id: str) -> str:
        return f"om_{msg_id}"

    async def deliver(self, text: str, msg_id: str):
        return await self._post(text, msg_id)

    async def forged(self, text: str, msg_id: str):
        return await self._post(text, msg_id, key="not-the-encrypt-key")

    async def texts(self) -> list[str]:
        return [s.text() for s in self.fake.sent]

    def target(self) -> Target:  # not an answer to a message: sent to the person
        return Target(channel="feishu", tenant=self.tenant, conversation_id=FEISHU_USER, user_id=FEISHU_USER)


# Email: a real Dovecot (IMAP in) and aiosmtpd (SMTP out) ----------------------------------------------
REP_MAIL = "zhangwei@yunfan.example.com"


class EmailRig(Rig):
    channel = "email"

    @classmethod
    async def open(cls, make_app, aiohttp_client, settings, request, **_):
        from bench.load import free_port
        from bot.web.gateway import create_web_app
        from connectors.email.connector import EmailConnector
        from tests.fakes.email_env import email_context
        from tests.fakes.mail_server import MailServer

        imap = request.getfixturevalue("imap_user")
        server = MailServer(free_port()).start()
        request.addfinalizer(server.stop)
        mb = imap.mailbox(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none", bcc_self=False)
        conn = EmailConnector([mb], email_context(settings))
        copilot = make_app(channels=[conn])
        rig = cls(copilot, await aiohttp_client(create_web_app(copilot)), conn)
        rig.imap, rig.smtp, rig.settings = imap, server, settings
        return rig

    def row_key(self, msg_id: str) -> str:
        return f"<{msg_id}@yunfan.example.com>"

    async def deliver(self, text: str, msg_id: str) -> None:
        from tests.fakes.email_env import verdict

        raw = verdict("yunfan.example.com") + (f"From: =?utf-8?B?5byg5Lyf?= <{REP_MAIL}>\r\nTo: {self.imap.address}\r\nSubject: =?utf-8?B?6Zeu6aKY?=\r\n"
               f"Message-ID: {self.row_key(msg_id)}\r\nDate: Mon, 4 Mar 2024 10:00:00 +0800\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()
        await self.imap.append(raw)

    async def refused(self, text: str, msg_id: str) -> str | None:
        """Mail carries no signature the copilot could check; the mailbox's login is what is refused: a watcher
        with a wrong password hands nothing over and says why (the mail stays for the right one)."""
        from connectors.email.connector import EmailConnector
        from tests.fakes.email_env import Collector, Imap, email_context, verdict

        locked = Imap(self.imap.server, f"locked-{self.imap.address}", "the-right-password")
        self.imap.server.add_user(locked.address, locked.password)
        await locked.append(verdict("yunfan.example.com") + f"From: {REP_MAIL}\r\nSubject: hi\r\nMessage-ID: <{msg_id}@yunfan.example.com>\r\n\r\n{text}\r\n".encode())
        sink = Collector()
        conn = EmailConnector([locked.mailbox(key="wrong", password="not-the-password")], email_context(self.settings))
        await conn.start(sink)
        try:
            for _ in range(100):
                if conn.watchers["wrong"].status.last_error:
                    break
                await asyncio.sleep(0.05)
            assert sink.messages == []
            return conn.watchers["wrong"].status.last_error
        finally:
            await conn.aclose()

    async def texts(self) -> list[str]:
        return [r.message.get_body(("plain",)).get_content().strip() for r in self.smtp.received if REP_MAIL in r.rcpt_tos]

    def target(self) -> Target:
        return Target(channel="email", tenant=self.tenant, conversation_id="<t1@yunfan.example.com>", user_id=REP_MAIL,
                      context={"mailbox": "default", "from": REP_MAIL, "subject": "问题", "message_id": "<t1@yunfan.example.com>"})


# The web chat (connectors/local) ------------------------------------------------------------------------
class ConsoleRig(Rig):
    channel, shows_cards = "console", False
    CONV = "contract"

    def __init__(self, copilot, client, connector, anonymous) -> None:
        super().__init__(copilot, client, connector)
        self.anonymous = anonymous  # a client of the same server without a session

    @classmethod
    async def open(cls, make_app, aiohttp_client, **_):
        from bot.web.gateway import create_web_app
        from tests.conftest import PASSWORD, sign_in

        copilot = make_app()
        anonymous = await aiohttp_client(create_web_app(copilot))
        copilot.auth.add_user(REP, "rep", copilot.settings.tenant, PASSWORD)
        client = await aiohttp_client(anonymous.server)
        await sign_in(client, REP)  # the web chat's credentials: a signed-in session
        return cls(copilot, client, copilot.channels.get("console"), anonymous)

    def row_key(self, msg_id: str) -> str:
        return f"{REP}/{msg_id}"  # message ids are the sender's own

    async def deliver(self, text: str, msg_id: str):
        return await self.client.post("/api/chat", json={"text": text, "conversation": self.CONV, "id": msg_id})

    async def refused(self, text: str, msg_id: str) -> str:
        r = await self.anonymous.post("/api/chat", json={"as": REP, "text": text, "conversation": self.CONV, "id": msg_id})
        assert r.status == 401, r.status
        return (await r.json())["error"]

    async def texts(self) -> list[str]:
        r = await self.client.get("/api/replies", params={"conversation": self.CONV, "after": "0", "wait": "0"})
        return [row["reply"]["text"] for row in (await r.json())["replies"]]

    def target(self) -> Target:
        from connectors.local.parse import own

        return Target(channel="console", tenant=self.tenant, conversation_id=own(REP, self.CONV), user_id=REP)


RIGS: dict[str, type[Rig]] = {"wecom": WeComRig, "dingtalk": DingTalkRig, "feishu": FeishuRig, "email": EmailRig, "console": ConsoleRig}


# fixtures as parse cases ----------------------------------------------------------------------------------
def parse_cases() -> list[tuple[str, Callable[[], InboundMessage | None], dict[str, Any] | None]]:
    """(id, parse the fixture, the fields it must have; None: acknowledged and ignored; {"error": s}: refused)."""
    from connectors.dingtalk.parse import parse as dingtalk_parse
    from connectors.email.config import Mailbox
    from connectors.email.files import Files
    from connectors.email.parse import parse_bytes
    from connectors.feishu.parse import parse as feishu_parse
    from connectors.local.parse import parse as console_parse
    from connectors.wecom.crypto import parse_xml
    from connectors.wecom.parse import parse as wecom_parse

    cases: list = []
    for c in tomllib.loads((FIXTURES / "wecom" / "messages.toml").read_text("utf-8"))["case"]:
        e = c["expect"]
        want = None if e.get("ignored") else {k: e[k] for k in ("kind", "text", "event") if k in e}
        if want is not None:
            if e.get("msg_id"):
                want["platform_msg_id"] = e["msg_id"]
            if "action_key" in e:
                want["action"] = {"key": e["action_key"], "ref": e["action_ref"]}
            if "attachment_ref" in e:
                want["attachment"] = {"ref": e["attachment_ref"], "name": e["attachment_name"]}
            want.update(channel="wecom", tenant="t1", sender_id=re.search(r"<FromUserName><!\[CDATA\[(.*?)]]>", c["xml"])[1])
        cases.append((f"wecom-{c['name']}", lambda c=c: wecom_parse(parse_xml(c["xml"].encode()), tenant="t1", corp="c1"), want))
    for path in sorted((FIXTURES / "dingtalk").glob("*.json")):
        c = json.loads(path.read_text("utf-8"))
        want = None if c["expect"] is None else {**c["expect"], "channel": "dingtalk", "platform_msg_id": c["payload"]["msgId"]}
        cases.append((f"dingtalk-{path.stem}", lambda c=c: dingtalk_parse(c["payload"], tenant="default", robot_code=APP), want))
    from connectors.wecom.robot_config import RobotConfig
    from connectors.wecom.robot_parse import parse as robot_parse

    robot = RobotConfig(key="default", tenant="t1", name="销售助手")
    for c in json.loads((FIXTURES / "wecom_robot" / "messages.json").read_text("utf-8"))["case"]:
        want = None if c["expect"] is None else {**c["expect"], "channel": "wecom", "tenant": "t1"}
        cases.append((f"wecom-robot-{c['name']}", lambda c=c: robot_parse(c["payload"], robot).msg, want))
    for path in sorted((FIXTURES / "feishu").glob("*.json")):
        c = json.loads(path.read_text("utf-8"))
        cases.append((f"feishu-{path.stem}", lambda c=c: feishu_parse(c["payload"], tenant="default", app_key="default", app_id=FEISHU_FIXTURE_APP,
                                                                    tenant_key=FEISHU_FIXTURE_TENANT, bot_open_id=FEISHU_FIXTURE_BOT), c["expect"]))
    mb = Mailbox(imap_host="h", username="copilot@seller.example.cn", tenant="default", authserv_id="mx.seller.example.cn")
    for c in tomllib.loads((FIXTURES / "email" / "expected.toml").read_text("utf-8"))["case"]:
        raw = (FIXTURES / "email" / c["file"]).read_bytes()
        cases.append((f"email-{c['file']}", lambda raw=raw: parse_bytes(raw, mb, Files(Path(tempfile.mkdtemp()))),
                      {**c["expect"], "channel": "email"}))
    for c in tomllib.loads((FIXTURES / "console" / "messages.toml").read_text("utf-8"))["case"]:
        body = {**c["body"], **({"text": "x" * c["long_text"]} if "long_text" in c else {})}
        want = {"error": c["error"]} if "error" in c else {**c["expect"], "channel": "console"}
        cases.append((f"console-{c['name']}", lambda body=body, c=c: console_parse(body, tenant="default", sender=c["sender"]), want))
    return cases


def check_fields(msg: InboundMessage, want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "attachment":
            [att] = msg.attachments
            assert {k: getattr(att, k) for k in value} == value
        elif key == "action":
            assert msg.action is not None and msg.action.model_dump() == value
        elif key == "text_starts":
            assert msg.text.startswith(value), msg.text[:80]
        elif key.startswith("mail."):
            got = getattr(msg.mail, key[5:])
            assert (list(got) if isinstance(got, tuple) else got) == value, key
        else:
            got = getattr(msg, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
