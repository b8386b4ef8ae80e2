"""`python -m bench dingtalk`: DingTalk messages/s and ack p99 in HTTP mode and Stream mode at 50
concurrent senders, as ratios of the console channel measured in the same run, on the same server.

One child-process gateway runs the console channel, a DingTalk app in HTTP mode (the default app)
and one in Stream mode (a [[dingtalk.apps]] entry), all built from settings. This process plays
DingTalk with the fakes from tests/fakes (so run it from a source checkout): it signs and posts
callbacks, pushes Stream frames and times each ack, and receives the replies on the session
webhook. Every 20th message is a platform retry / redelivery of the one before; the run ends by
checking that every message was answered exactly once.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import create_engine

from bench.gateway import console_request, sign_in, unique_ids, wait_answered
from bench.load import ChildServer, LoadResult, free_port, run_load

APP, SECRET = "benchhttpapp", "bench-http-secret-0123456789abcdef"
STREAM_APP, STREAM_SECRET = "benchstreamapp", "bench-stream-secret-0123456789abcd"
STAFF = "bench-staff"


def _fakes():
    import sys

    from bot.settings import REPO_ROOT

    if (REPO_ROOT / "tests" / "fakes").is_dir() and str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # the `copilot` script does not put the checkout on the path
    try:
        from tests.fakes.dingtalk_api import FakeDingTalk
        from tests.fakes.dingtalk_stream_server import FakeStreamServer
    except ImportError as exc:  # an installed package has no tests/
        raise RuntimeError("python -m bench dingtalk needs the repository's tests/fakes: run it from a source checkout") from exc
    return FakeDingTalk, FakeStreamServer


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def _mid(prefix: str, n: int, dup_every: int) -> str:
    return f"{prefix}-{n - 1 if dup_every and n % dup_every == 0 and n else n}"


def http_request(fake, base: str, prefix: str, dup_every: int = 20):
    async def request(session: aiohttp.ClientSession, n: int) -> int:
        mid = _mid(prefix, n, dup_every)
        body = fake.message(APP, sender=STAFF, text="/help", msg_id=mid, conversation=f"{prefix}-c{n % 200}")
        async with session.post(base + "/dingtalk/callback", data=json.dumps(body, ensure_ascii=False).encode(),
                                headers=fake.signed_headers(SECRET)) as r:
            await r.read()
            return r.status

    return request


async def stream_load(fake, stream, prefix: str, *, total: int, concurrency: int, dup_every: int = 20) -> LoadResult:
    counter = iter(range(total))
    res = LoadResult(total, 0.0)

    async def sender() -> None:
        for n in counter:
            data = fake.message(STREAM_APP, sender=STAFF, text="/help", msg_id=_mid(prefix, n, dup_every), conversation=f"{prefix}-c{n % 200}")
            res.latencies.append(await stream.deliver(STREAM_APP, data))
            res.statuses[200] = res.statuses.get(200, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    res.seconds = time.perf_counter() - started
    return res


def _link(db_url: str, tenants: list[str]) -> None:
    from bot.people.directory import Directory

    engine = create_engine(db_url)
    try:
        for t in tenants:
            Directory(engine).link("bench", "dingtalk", STAFF, tenant=t)
    finally:
        engine.dispose()


def _merge(a: LoadResult, b: LoadResult) -> LoadResult:
    statuses = {k: a.statuses.get(k, 0) + b.statuses.get(k, 0) for k in {*a.statuses, *b.statuses}}
    return LoadResult(a.n + b.n, a.seconds + b.seconds, a.latencies + b.latencies, statuses)


def _ratio(a: float, b: float, digits: int = 3) -> float | None:
    return round(a / b, digits) if b else None


async def bench_dingtalk(total: int = 2000, concurrency: int = 50, data_root: Path | None = None) -> dict:
    FakeDingTalk, FakeStreamServer = _fakes()
    root = Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-dingtalk-"))
    stream = FakeStreamServer(redeliver_after=30.0)
    fake = FakeDingTalk(stream)
    runners = []
    try:
        r, url = await _serve(stream.app())
        runners.append(r)
        stream.bind(url)
        r, url = await _serve(fake.app())
        runners.append(r)
        fake.bind(url)
        fake.add_app(APP, SECRET)
        fake.add_app(STREAM_APP, STREAM_SECRET)
        toml = root / "copilot.toml"
        toml.write_text(f'[dingtalk]\n[[dingtalk.apps]]\nkey = "streamapp"\napp_key = "{STREAM_APP}"\n'
                        f'app_secret = "{STREAM_SECRET}"\nmode = "stream"\n', encoding="utf-8")
        data = root / "server"
        port = free_port()
        env = {"COPILOT_DATA_DIR": str(data), "COPILOT_RATE_LIMIT_PER_MINUTE": "0", "COPILOT_CONFIG": str(toml),
               "COPILOT_DINGTALK_APP_KEY": APP, "COPILOT_DINGTALK_APP_SECRET": SECRET, "COPILOT_DINGTALK_MODE": "http",
               "COPILOT_DINGTALK_API_BASE": fake.base, "COPILOT_DINGTALK_OAPI_BASE": fake.base}
        base = f"http://127.0.0.1:{port}"
        async with ChildServer("bench.target", ["copilot", "--port", str(port)], base + "/healthz", env):
            db_url = f"sqlite:///{data / 'copilot.db'}"
            await asyncio.to_thread(_link, db_url, ["default", "streamapp"])
            await stream.wait_connected(STREAM_APP, timeout=30)
            warm = 200
            headers = await sign_in(base)  # the web chat's requests carry a signed-in session
            await run_load(console_request(base, conv_prefix="warm", headers=headers), total=warm, concurrency=concurrency)
            await run_load(http_request(fake, base, "warm-http"), total=warm, concurrency=concurrency)
            await stream_load(fake, stream, "warm-stream", total=warm, concurrency=concurrency)
            # console before and after the DingTalk runs: the baseline is both, so neither order nor drift favours a mode
            first = await run_load(console_request(base, conv_prefix="bench1", headers=headers), total=total // 2, concurrency=concurrency)
            http = await run_load(http_request(fake, base, "http"), total=total, concurrency=concurrency)
            streamed = await stream_load(fake, stream, "stream", total=total, concurrency=concurrency)
            second = await run_load(console_request(base, conv_prefix="bench2", headers=headers), total=total - total // 2, concurrency=concurrency)
            console = _merge(first, second)
            console_unique = unique_ids(total // 2) + unique_ids(total - total // 2) + unique_ids(warm)
            check = await wait_answered(db_url, console_unique + 2 * (unique_ids(total) + unique_ids(warm)))
            dingtalk_unique = 2 * (unique_ids(total) + unique_ids(warm))
            replies = await fake.wait_sent(dingtalk_unique, timeout=60)
    finally:
        for r in runners:
            await r.cleanup()
    doubled_replies = len(replies) - dingtalk_unique
    return {
        "console": console.summary(), "dingtalk_http": http.summary(), "dingtalk_stream": streamed.summary(),
        "http_vs_console": {"throughput_ratio": _ratio(http.rps, console.rps), "ack_p99_ratio": _ratio(http.pct(99), console.pct(99), 2)},
        "stream_vs_console": {"throughput_ratio": _ratio(streamed.rps, console.rps),
                              "ack_p99_ratio": _ratio(streamed.pct(99), console.pct(99), 2)},
        "exactly_once": {**check, "dingtalk_replies": len(replies), "dingtalk_replies_expected": dingtalk_unique},
        "stream": {"connections_opened": stream.opened.get(STREAM_APP, 0), "redeliveries": sum(v - 1 for v in stream.deliveries.values())},
        "targets": {"zero_lost_or_doubled": check["lost"] == 0 and check["doubled"] == 0 and doubled_replies == 0},
    }
