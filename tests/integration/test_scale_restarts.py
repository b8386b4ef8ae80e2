"""The shared services restarted while traffic flows, under two real `copilot serve` processes: WeCom callbacks of two
reps spread over both processes (each callback delivered again until acknowledged, as WeCom does), the services
killed in the middle and started again. Once they are back, every message is answered exactly once, in order per rep.

- Redis (`copilot:` tokens, rate limits, replay memory): a redis-server of the test's own, killed -9 and started on the
  same port, empty. Meanwhile the processes use their own copies; nothing is refused or lost.
- PostgreSQL (the inbox, the outbox, everything durable): a cluster of the test's own (the machine's PostgreSQL is
  shared with other tests), stopped as if it crashed and started again. Meanwhile callbacks are refused (500) and
  WeCom's retries bring them back.
A Chroma server restart is in test_chroma_server.py."""
from __future__ import annotations

import asyncio
import json
import re
from contextlib import asynccontextmanager

import aiohttp
import pytest

from tests.conftest import free_port, serve_env, start_serve, stop_serve
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.services import pg_cluster, redis_server
from tests.fakes.wecom_api import USERS_A, A, FakeCorp, FakeWeCom, callback, text_xml

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPS = {"ZhangWei": "zhangwei", "LiJun": "lijun"}  # WeCom userid -> directory person
ROUNDS = 10


def answer(body: dict) -> Step:  # the answer names the question it answers (第N问), so the order shows
    asked = re.findall(r"第(\d+)问", json.dumps(body, ensure_ascii=False))
    return Step(text=f"星图标准实施周期 4–6 个月 [1]。（第{asked[-1] if asked else '?'}问）")


@asynccontextmanager
async def two_processes(tmp_path, aiohttp_server, db: str, **settings: str):
    """Two `copilot serve` on database `db` with WeCom (a fake API) and a scripted model; yields (api, ports)."""
    api = FakeWeCom()
    api.add_corp(FakeCorp(A["corp_id"], A["secret"], A["agent_id"], users=[dict(u) for u in USERS_A]))
    server = await aiohttp_server(api.app())
    model = await aiohttp_server(FakeOpenAI(default=answer).app())
    env = serve_env(tmp_path, str(model.make_url("/v1")), COPILOT_DATABASE_URL=db, COPILOT_RETRY_BASE_SECONDS="0.3",
                    COPILOT_LEASE_SECONDS="3", COPILOT_WECOM_CORP_ID=A["corp_id"], COPILOT_WECOM_TOKEN=A["token"],
                    COPILOT_WECOM_AES_KEY=A["aes_key"], COPILOT_WECOM_SECRET=A["secret"], COPILOT_WECOM_AGENT_ID=str(A["agent_id"]),
                    COPILOT_WECOM_API_BASE=str(server.make_url("")).rstrip("/"), **settings)
    ports = free_port(), free_port()
    logs: list[bytearray] = []
    drains: list[asyncio.Task] = []

    async def started(port: int):  # its log is read as it comes (an unread pipe would fill and stop the process)
        proc = await start_serve(env, port)
        logs.append(bytearray())
        drains.append(asyncio.create_task(drain(proc, logs[-1])))
        return proc

    procs = [await started(ports[0])]  # loads the sample people into the database
    from bot.people.directory import Directory
    from bot.storage import make_engine

    engine = make_engine(db)
    for userid, person in REPS.items():
        Directory(engine).link(person, "wecom", userid)  # what `copilot wecom sync-users` does
    engine.dispose()
    try:
        procs.append(await started(ports[1]))
        yield api, ports
    except BaseException:
        for n, log in enumerate(logs):
            print(f"--- copilot serve #{n} log (end) ---\n{log[-4000:].decode(errors='replace')}")
        print("sent:", api.sent, "\ndropped:", api.dropped, "\ngettoken:", dict(api.gettoken_calls))
        raise
    finally:
        for p in procs:
            await stop_serve(p)
        for d in drains:
            d.cancel()


async def drain(proc, into: bytearray) -> None:
    while chunk := await proc.stderr.read(1 << 16):  # not by line: a line longer than the reader's limit would stop it
        into += chunk
        del into[:-1_000_000]


async def deliver(session: aiohttp.ClientSession, port: int, userid: str, n: int, timeout: float = 40.0) -> int:
    """One callback, posted again (the same signed request) until the copilot acknowledges it; returns the retries."""
    params, body = callback(A, text_xml(A, userid, f"星图软件的实施周期一般多长？第{n}问", f"{list(REPS).index(userid) + 1}{n:03d}"))
    loop = asyncio.get_running_loop()
    end, retries = loop.time() + timeout, 0
    while True:
        try:
            async with session.post(f"http://127.0.0.1:{port}/wecom/callback", params=params, data=body) as r:
                if r.status == 200:
                    return retries
        except aiohttp.ClientError:
            pass
        assert loop.time() < end, f"{userid}'s message {n} was never acknowledged"
        retries += 1
        await asyncio.sleep(0.25)


async def traffic(ports: tuple[int, int], before: dict[int, object], beside: dict[int, object]) -> list[int]:
    """ROUNDS messages per rep, one rep's messages alternating between the processes. `before[n]` is awaited before
    round n; `beside[n]` is started then and runs beside the traffic. Returns the callbacks delivered again, per round."""
    retries, faults = [], []
    async with aiohttp.ClientSession() as s:
        for n in range(ROUNDS):
            if n in before:
                await before[n]()
            if n in beside:
                faults.append(asyncio.create_task(beside[n]()))
            got = await asyncio.gather(*(deliver(s, ports[(n + i) % 2], userid, n) for i, userid in enumerate(REPS)))
            retries.append(sum(got))
            await asyncio.sleep(0.2)
    await asyncio.gather(*faults)
    return retries


async def each_answered_once_in_order(api: FakeWeCom) -> None:
    for userid in REPS:
        await api.wait_sent(lambda m, u=userid: m["touser"] == u, ROUNDS, timeout=60)
    await asyncio.sleep(2)  # a doubled reply would arrive now
    for userid in REPS:
        said = [json.dumps(m, ensure_ascii=False) for m in api.sent if m["touser"] == userid]
        assert [int(re.findall(r"第(\d+)问", s)[-1]) for s in said] == list(range(ROUNDS)), said  # once each, in order


async def metric(port: int, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


async def test_redis_and_postgresql_restarted_while_traffic_flows(tmp_path, aiohttp_server):
    """Rounds 0-1 as usual; Redis killed before round 2 and started again (empty) before round 4; PostgreSQL crashes
    as round 6 starts and is back 5.5 s later; rounds 7-9 after it."""
    import redis as redis_py

    with redis_server(tmp_path) as redis, pg_cluster() as pg:
        async with two_processes(tmp_path, aiohttp_server, pg.url, COPILOT_REDIS_URL=redis.url) as (api, ports):
            async def redis_back() -> None:
                await asyncio.to_thread(redis.start)
                await asyncio.sleep(2.2)  # each process tries Redis again 2 s after its last failure

            async def pg_outage() -> None:
                await asyncio.to_thread(pg.stop, "immediate")  # as if the server crashed
                await asyncio.sleep(5.5)  # longer than the outbox waits when idle (5 s): it meets the outage too
                await asyncio.to_thread(pg.start)

            retries = await traffic(ports, before={2: lambda: asyncio.to_thread(redis.kill), 4: redis_back}, beside={6: pg_outage})
            await each_answered_once_in_order(api)
            assert sum(retries[:6]) == 0, retries  # nothing was refused for Redis being away,
            assert sum([await metric(p, "copilot_redis_fallbacks_total") for p in ports]) > 0  # but it was noticed
            assert sum(retries[6:8]) > 0, retries  # callbacks were refused while the database was down, and came back
            # one gettoken for both processes (plus at most one by a process that had not needed a token before Redis went
            # away): a token read from Redis is kept by the process, and Redis, back empty, is given that copy
            assert 1 <= api.gettoken_calls[A["corp_id"]] <= 2, api.gettoken_calls
            back = redis_py.Redis.from_url(redis.url)
            assert back.keys("copilot:token:*") and back.keys("copilot:limit:intake:*")  # shared again after the restart
            back.close()
