"""`python -m bench wecom`: WeCom callbacks per second and callback p99 (signature check, decrypt, XML
parse, durable inbox, empty 200) at 50 concurrent senders, as a ratio of the console channel
measured against the same server in the same run; then proves every message was answered once.

The server under test is the real gateway in a child process, configured from COPILOT_WECOM_*
like a deployment; its replies go to a stub WeCom API served by this process. Callbacks are real
encrypted payloads built beforehand (so the load generator's own work stays out of the figures);
every 20th one repeats the previous MsgId, as WeCom's retries do. Rounds alternate which channel
goes first; the figures are the medians (a shared 2-core machine is noisy).
"""
from __future__ import annotations

import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import create_engine, insert

from bench.gateway import console_request, sign_in, unique_ids, wait_answered
from bench.load import ChildServer, free_port, run_load
from bot.people.tables import Identity
from connectors.wecom.crypto import WeComCrypto

CORP_ID, TOKEN, AGENT_ID, SECRET = "wwbench000000000001", "BenchToken1", 1000002, "bench-secret"
SENDERS = 200  # distinct WeCom users (and so conversations), as in the console run


def stub_api() -> web.Application:
    """Just enough of the WeCom API for the replies: gettoken, message/send, and /stats for the counts."""
    counter = {"gettoken": 0, "sent": 0}

    async def gettoken(_: web.Request) -> web.Response:
        counter["gettoken"] += 1
        return web.json_response({"errcode": 0, "errmsg": "ok", "access_token": "bench-token", "expires_in": 7200})

    async def send(request: web.Request) -> web.Response:
        await request.read()
        counter["sent"] += 1
        return web.json_response({"errcode": 0, "errmsg": "ok", "invaliduser": ""})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(counter)

    app = web.Application()
    app.add_routes([web.get("/cgi-bin/gettoken", gettoken), web.post("/cgi-bin/message/send", send), web.get("/stats", stats)])
    return app


def build_callbacks(crypto: WeComCrypto, total: int, prefix: str, dup_every: int = 20) -> list[tuple[dict, bytes]]:
    """(query, body) for each request: real encrypted callbacks; every `dup_every`-th repeats a MsgId."""
    out = []
    now = int(time.time())
    for n in range(total):
        mid = n - 1 if dup_every and n % dup_every == 0 and n else n
        user = f"bench{mid % SENDERS}"
        xml = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
               f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[/help]]></Content>"
               f"<MsgId>{prefix}{mid:012d}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>")
        nonce, ts = str(1_000_000_000 + n), str(now)
        body, sig = crypto.encrypt_callback(xml, nonce, ts, str(AGENT_ID))
        out.append(({"msg_signature": sig, "timestamp": ts, "nonce": nonce}, body))
    return out


def wecom_request(base: str, callbacks: list[tuple[dict, bytes]]):
    async def request(session: aiohttp.ClientSession, n: int) -> int:
        params, body = callbacks[n]
        async with session.post(base + "/wecom/callback", params=params, data=body, headers={"Content-Type": "text/xml"}) as r:
            await r.read()
            return r.status

    return request


def link_senders(db_url: str, tenant: str = "default") -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(Identity.__table__), [dict(channel="wecom", tenant=tenant, platform_user_id=f"bench{i}", rep_id="bench")
                                                      for i in range(SENDERS)])
    finally:
        engine.dispose()


async def bench_wecom(total: int = 3000, concurrency: int = 50, rounds: int = 3, data_root: Path | None = None) -> dict:
    root = Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-wecom-"))
    aes_key = base64.b64encode(os.urandom(32)).decode().rstrip("=")
    crypto = WeComCrypto(TOKEN, aes_key, CORP_ID)
    warm_n = 300
    warm_callbacks = build_callbacks(crypto, warm_n, "99")

    api_port, port = free_port(), free_port()
    data = root / "gateway"
    db_url = f"sqlite:///{data / 'copilot.db'}"
    env = {"COPILOT_DATA_DIR": str(data), "COPILOT_RATE_LIMIT_PER_MINUTE": "0", "COPILOT_CONFIG": str(root / "absent.toml"),
           "COPILOT_WECOM_CORP_ID": CORP_ID, "COPILOT_WECOM_TOKEN": TOKEN, "COPILOT_WECOM_AES_KEY": aes_key,
           "COPILOT_WECOM_AGENT_ID": str(AGENT_ID), "COPILOT_WECOM_SECRET": SECRET,
           "COPILOT_WECOM_API_BASE": f"http://127.0.0.1:{api_port}",
           "COPILOT_WECOM_USER_RATE_PER_MINUTE": "0", "COPILOT_WECOM_RATE_PER_MINUTE": "0"}  # pacing would only delay replies
    base, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}"
    # the stub runs in its own process too: the load generator's timing stays its own
    async with ChildServer("bench.wecom", ["--port", str(api_port)], f"{api}/stats"):
        async with ChildServer("bench.target", ["copilot", "--port", str(port)], f"{base}/healthz", env):
            link_senders(db_url)
            expected = 0
            # warm both paths, then measure each with the other's work drained
            headers = await sign_in(base)  # the web chat's requests carry a signed-in session
            await run_load(console_request(base, conv_prefix="warm", headers=headers), total=warm_n, concurrency=concurrency)
            await run_load(wecom_request(base, warm_callbacks), total=warm_n, concurrency=concurrency)
            expected += 2 * unique_ids(warm_n)
            await wait_answered(db_url, expected)
            runs: dict[str, list] = {"console": [], "wecom": []}
            for r in range(rounds):  # alternate which channel goes first: the machine's noise hits both alike
                for channel in (("console", "wecom") if r % 2 == 0 else ("wecom", "console")):
                    req = console_request(base, conv_prefix=f"r{r}", headers=headers) if channel == "console" else \
                        wecom_request(base, build_callbacks(crypto, total, str(r + 10)))
                    runs[channel].append(await run_load(req, total=total, concurrency=concurrency))
                    expected += unique_ids(total)
                    check = await wait_answered(db_url, expected)
        async with aiohttp.ClientSession() as session, session.get(f"{api}/stats") as r:
            counter = await r.json()
    console = _median(runs["console"], lambda x: x.rps)
    wecom = _median(runs["wecom"], lambda x: x.rps)
    rps_ratio = statistics.median(w.rps / c.rps for w, c in zip(runs["wecom"], runs["console"]))
    p99_ratio = statistics.median(w.pct(99) / c.pct(99) for w, c in zip(runs["wecom"], runs["console"]))
    return {
        "decrypt_parse_us_per_callback": _decrypt_cost(crypto, warm_callbacks),
        "rounds": rounds, "console": console.summary(), "wecom": wecom.summary(),
        "per_round": [{"console_rps": round(c.rps), "console_p99_ms": round(c.pct(99), 1), "wecom_rps": round(w.rps),
                       "wecom_p99_ms": round(w.pct(99), 1)} for c, w in zip(runs["console"], runs["wecom"])],
        "throughput_ratio": round(rps_ratio, 3), "p99_ratio": round(p99_ratio, 2),
        "exactly_once": check, "replies_sent_to_wecom_api": counter.get("sent", 0), "gettoken_calls": counter.get("gettoken", 0),
        "targets": {"all_callbacks_200": all(w.statuses.get(200, 0) == total for w in runs["wecom"]),
                    "callback_p99_ms<50": wecom.pct(99) < 50, "zero_lost_or_doubled": check["lost"] == 0 and check["doubled"] == 0},
    }


def _decrypt_cost(crypto: WeComCrypto, callbacks: list[tuple[dict, bytes]]) -> float:
    """The connector's own share of a callback, in-process: signature, AES, both XML parses, the model."""
    from connectors.wecom.parse import parse

    start = time.perf_counter()
    for q, body in callbacks:
        parse(crypto.decrypt(body, q["msg_signature"], q["timestamp"], q["nonce"]), tenant="default", corp="default")
    return round((time.perf_counter() - start) / len(callbacks) * 1e6, 1)


def _median(results: list, key):
    return sorted(results, key=key)[len(results) // 2]


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="the stub WeCom API of `python -m bench wecom`")
    ap.add_argument("--port", type=int, required=True)
    web.run_app(stub_api(), host="127.0.0.1", port=ap.parse_args().port, print=None, access_log=None)


if __name__ == "__main__":
    main()
