"""`python -m bench streaming`: how soon a person sees the answer being written, on each streaming channel, as a
ratio of the web chat measured in the same run, and how many card updates an answer costs.

One gateway (this process, one event loop) serves the web chat and every platform channel of CHANNELS, each against
its fake platform from tests/fakes (run it from a source checkout), with a scripted model that streams the answer at
a fixed token rate (one token = one streamed piece of the fake's, 4 characters). Each round asks the same question
once per channel, in a new conversation, and times from sending the message to:
- first: the first text the person can see (web chat: the long poll returns a `partial`; DingTalk, Feishu: the card
  exists; WeCom robot: a poll of the stream shows text),
- done: the finished answer (web chat: the reply; DingTalk, Feishu: the card's final update; WeCom robot: the poll with
  finish),
- updates: what the person saw change on the way (web chat: partials; DingTalk: streaming updates of the card; Feishu:
  PATCHes of the card, the final one included; WeCom robot: polls that showed new text).

A channel is one row: an object with `name`, `prepare(bench)` (start its fake platform, return the COPILOT_* settings
that point the copilot at it), `ready(bench)` (after the gateway is up: link the asker, sign in) and `ask(bench, n)`
(one question, a Sample); `Row` gives it a session on the gateway and its `aclose`. Add a platform by appending its row
to CHANNELS.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web

QUESTION = "星图软件的实施周期一般多长？"
ANSWER = ("星图软件的标准实施周期是四到六个月，涉及财务一体化的项目常常更久 [1]。实施通常分为调研、配置、数据迁移、"
          "培训与上线几个阶段，每个阶段都需要客户的业务负责人参与确认。")
STAFF = "0251120101"  # zhangwei's DingTalk staff id (knowledge/crm/reps.csv)
PASSWORD = "bench-password-1"


@dataclass
class Sample:
    first: float  # seconds from sending to the first visible text
    done: float  # seconds from sending to the finished answer
    updates: int  # visible changes on the way (partials, card updates)


@dataclass
class Bench:
    """What every row gets: the temp dir, the loop's runners, the gateway's base URL and the built copilot."""

    root: Path
    base: str = ""
    cp: Any = None
    runners: list[web.AppRunner] = field(default_factory=list)

    async def serve(self, app: web.Application) -> str:
        from bench.load import free_port

        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{port}"


def copilot_env(platform: str, **values: str) -> dict[str, str]:
    """COPILOT_<PLATFORM>_* settings that point the copilot at a row's fake platform."""
    return {f"COPILOT_{platform}_{k}": v for k, v in values.items()}


class Progress:
    """One question's clock, from when it was sent: the first visible text, what changed on the way, the end."""

    def __init__(self) -> None:
        self.started, self.first, self.updates = time.monotonic(), None, 0

    def changed(self) -> None:
        self.first = time.monotonic() - self.started if self.first is None else self.first
        self.updates += 1

    def done(self) -> Sample:
        now = time.monotonic() - self.started
        return Sample(self.first if self.first is not None else now, now, self.updates)


class Row:
    """What the rows share: an HTTP session on the gateway, opened when the gateway is up and closed after the run."""

    session: aiohttp.ClientSession | None = None

    def open_session(self, bench: Bench, **options: Any) -> aiohttp.ClientSession:
        self.session = aiohttp.ClientSession(base_url=bench.base, **options)
        return self.session

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


class Channel(Protocol):
    name: str

    async def prepare(self, bench: Bench) -> dict[str, str]: ...

    async def ready(self, bench: Bench) -> None: ...

    async def ask(self, bench: Bench, n: int) -> Sample: ...


class WebChat(Row):
    """The baseline: the page's long poll of /api/replies, which carries the answer being written as `partial`."""

    name = "web chat"

    async def prepare(self, bench: Bench) -> dict[str, str]:
        return {}

    async def ready(self, bench: Bench) -> None:
        import re

        cp = bench.cp
        cp.auth.add_user("zhangwei", cp.directory.get(cp.settings.tenant, "zhangwei").role, cp.settings.tenant, PASSWORD)
        self.open_session(bench, cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await (await self.session.get("/login")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        async with self.session.post("/login", data={"csrf": csrf, "username": "zhangwei", "password": PASSWORD}, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        self.session.headers["X-CSRF-Token"] = (await (await self.session.get("/api/me")).json())["csrf"]

    async def ask(self, bench: Bench, n: int) -> Sample:
        conv = f"bench-stream-{n}"
        progress = Progress()
        async with self.session.post("/api/chat", json={"text": QUESTION, "conversation": conv, "id": f"bench-stream-{n}"}) as r:
            assert r.status in (200, 202), await r.text()
        seen = 0
        while True:
            async with self.session.get("/api/replies", params={"conversation": conv, "after": "0", "wait": "20", "plen": str(seen)}) as r:
                body = await r.json()
            if body.get("replies"):
                return progress.done()
            if body.get("partial"):
                progress.changed()
                seen = len(body["partial"])


class DingTalkCards(Row):
    """DingTalk with cards on (HTTP mode): the AI card the answer streams into, as the fake platform saw it."""

    name = "dingtalk card"
    app_key, secret = "benchcardapp", "bench-card-secret-0123456789abcdef"

    async def prepare(self, bench: Bench) -> dict[str, str]:
        from bench.dingtalk import _fakes

        fake_cls, _ = _fakes()
        self.fake = fake_cls()
        self.fake.bind(await bench.serve(self.fake.app()))
        self.fake.add_app(self.app_key, self.secret)
        return copilot_env("DINGTALK", APP_KEY=self.app_key, APP_SECRET=self.secret, MODE="http", API_BASE=self.fake.base, OAPI_BASE=self.fake.base,
                        CARDS="true", CORP_ID=self.fake.apps[self.app_key].corp_id)

    async def ready(self, bench: Bench) -> None:
        bench.cp.directory.link("zhangwei", "dingtalk", STAFF)
        self.open_session(bench)

    async def ask(self, bench: Bench, n: int) -> Sample:
        body = self.fake.message(self.app_key, sender=STAFF, text=QUESTION, msg_id=f"bench-dt-{n}", conversation=f"cidBench{n}==")
        before = set(self.fake.cards.instances)
        started = time.monotonic()
        async with self.session.post("/dingtalk/callback", data=json.dumps(body, ensure_ascii=False).encode(),
                                     headers=self.fake.signed_headers(self.secret)) as r:
            assert r.status == 200, await r.text()
        card = await self.fake.cards.wait(lambda: next((c for k, c in self.fake.cards.instances.items() if k not in before), None), 60)
        assert card is not None, self.fake.cards.refused or self.fake.sent
        finished = await self.fake.cards.wait(lambda: card.puts and time.monotonic(), 60)
        assert finished, "the card was never finished"
        return Sample(card.created_at - started, finished - started, len(card.updates))


class WeComRobot(Row):
    """The WeCom intelligent robot (API mode): its first answer is an empty stream, then WeCom polls the stream and
    each poll shows the answer so far. WeCom does not document how often it polls: this polls every POLL_EVERY
    seconds, so up to that much of `first` and `done` is the poll's own wait."""

    name = "wecom robot"
    POLL_EVERY = 0.25
    robot = dict(token="BenchRobTok1", aes_key="0123456789abcdefghijklmnopqrstuvwxyzABCDEFG", robot_id="aib-bench-1")

    async def prepare(self, bench: Bench) -> dict[str, str]:
        return copilot_env("WECOM_ROBOT", **{k.upper(): v for k, v in self.robot.items()})

    async def ready(self, bench: Bench) -> None:
        from tests.fakes.wecom_robot import FakeRobot

        bench.cp.directory.link("zhangwei", "wecom", "ZhangWei", tenant=bench.cp.settings.tenant)
        self.open_session(bench)
        self.fake = FakeRobot(self.session, self.robot, "/wecom/robot/default/callback")

    async def ask(self, bench: Bench, n: int) -> Sample:
        import asyncio

        progress = Progress()
        status, answer = await self.fake.send(self.fake.message("ZhangWei", QUESTION, f"bench-robot-{n}"))
        assert status == 200 and answer is not None, status
        sid, shown = answer["stream"]["id"], ""
        while True:
            stream = (await self.fake.poll("ZhangWei", sid))["stream"]
            if stream["content"] and stream["content"] != shown:
                progress.changed()
                shown = stream["content"]
            if stream["finish"]:
                return progress.done()
            await asyncio.sleep(self.POLL_EVERY)


class FeishuCard(Row):
    """Feishu (HTTP events): the one card the answer is written into, created by the first preview and updated
    (PATCH) at most every preview_interval (0.5 s), then finished by the answer, as the fake platform saw it."""

    name = "feishu card"
    app_id, secret = "cli_benchfeishu0001", "bench-feishu-secret-0123456789ab"
    open_id = "ou_benchzhangwei000000000000000001"

    async def prepare(self, bench: Bench) -> dict[str, str]:
        from tests.fakes.feishu_api import TENANT_KEY, FakeFeishu

        self.fake = FakeFeishu()
        self.fake.bind(await bench.serve(self.fake.app()))
        app = self.fake.add_app(self.app_id, self.secret)
        self.fake.add_user(self.open_id, "zhangwei", "张伟")
        return copilot_env("FEISHU", APP_ID=self.app_id, APP_SECRET=self.secret, ENCRYPT_KEY=app.encrypt_key, VERIFICATION_TOKEN=app.token,
                        MODE="http", API_BASE=self.fake.base, LOGIN_BASE=self.fake.base, TENANT_KEY=TENANT_KEY)

    async def ready(self, bench: Bench) -> None:
        bench.cp.directory.link("zhangwei", "feishu", self.open_id)
        self.open_session(bench)

    async def ask(self, bench: Bench, n: int) -> Sample:
        from tests.fakes.feishu_api import card_text

        mid = f"om_bench{n + 1}"
        event = self.fake.message_event(self.app_id, sender=self.open_id, text=QUESTION, message_id=mid, chat_id=f"oc_bench{n + 1}")
        body, headers = self.fake.request(self.app_id, event)
        started = time.monotonic()
        async with self.session.post("/feishu/events", data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        card = await self.fake.wait(lambda: next((s for s in self.fake.sent if s.to == mid), None), 60)
        assert card is not None, "no card was sent"
        def done() -> float | None:  # the finished answer carries no cursor (a card sent finished was never a preview)
            return None if "▍" in card_text(card.card) else (card.update_times[-1] if card.updates else card.created_at)

        finished = await self.fake.wait(done, 60)
        assert finished, "the card was never finished"
        assert [s.to for s in self.fake.sent].count(mid) == 1, "more than one card for one answer"
        return Sample(card.created_at - started, finished - started, len(card.updates))


CHANNELS: list[Any] = [WebChat(), DingTalkCards(), WeComRobot(), FeishuCard()]  # the first is the baseline


async def run(rounds: int = 5, rate: float = 20.0, data_root: Path | None = None) -> dict:
    from bench.dingtalk import _fakes
    from bot.app import build_app
    from bot.ops.logs import configure
    from bot.settings import REPO_ROOT, Settings
    from bot.web.gateway import create_web_app

    _fakes()  # puts the checkout on the path for tests.fakes
    from tests.fakes.scripted_model import FakeOpenAI, Step, policy, system_text

    configure("WARNING")
    bench = Bench(Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-streaming-")))
    model = FakeOpenAI(default=lambda body: Step(text=ANSWER, chunk_delay=1 / rate) if "numbered passages" in system_text(body) else policy(body))
    model_url = await bench.serve(model.app()) + "/v1"
    env = {k: v for ch in CHANNELS for k, v in (await ch.prepare(bench)).items()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = Settings(data_dir=bench.root / "data", embed_cache=REPO_ROOT / ".cache" / "bench-embeddings.db", llm_base_url=model_url,
                            llm_timeout=30.0, rate_limit_per_minute=6000, person_requests_per_minute=6000, address_requests_per_minute=6000)
        bench.cp = build_app(settings, platforms=True)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    bench.cp.load_samples()
    app = create_web_app(bench.cp, owns_app=True)
    bench.base = await bench.serve(app)
    samples: dict[str, list[Sample]] = {ch.name: [] for ch in CHANNELS}
    try:
        for ch in CHANNELS:
            await ch.ready(bench)
            await ch.ask(bench, -1)  # warm-up (the query embedder loads on the first question)
        for n in range(rounds):
            for ch in CHANNELS:
                samples[ch.name].append(await ch.ask(bench, n))
    finally:
        for ch in CHANNELS:
            await ch.aclose()
        for runner in reversed(bench.runners):
            await runner.cleanup()
    return report(samples, rate, rounds)


def report(samples: dict[str, list[Sample]], rate: float, rounds: int) -> dict:
    def median(xs: list[float]) -> float:
        return round(statistics.median(xs) * 1000, 1)

    base = samples[CHANNELS[0].name]
    base_first, base_done = statistics.median(s.first for s in base), statistics.median(s.done for s in base)
    rows = []
    for name, got in samples.items():
        first, done = statistics.median(s.first for s in got), statistics.median(s.done for s in got)
        rows.append({"channel": name, "first_visible_ms": median([s.first for s in got]), "done_ms": median([s.done for s in got]),
                     "first_vs_web_chat": round(first / base_first, 2), "done_vs_web_chat": round(done / base_done, 2),
                     "updates_per_answer": statistics.median(s.updates for s in got)})
    return {"question": QUESTION, "answer_chars": len(ANSWER), "tokens_per_second": rate,
            "model_stream_seconds": round(len(range(0, len(ANSWER), 4)) / rate, 2), "rounds": rounds, "channels": rows}
