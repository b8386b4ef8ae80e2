"""`python -m bench gateway`: ack latency and throughput of the console channel at 50 concurrent
clients, as a ratio of a bare aiohttp handler measured in the same run; then proves every message
was answered exactly once (duplicates included)."""
from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path

import aiohttp
from sqlalchemy import create_engine, func, select, text

from bench.load import ChildServer, free_port, run_load
from bench.target import BENCH_PASSWORD, BENCH_USER
from bot.pipeline.tables import InboxRow, OutboundRow


async def sign_in(base: str) -> dict[str, str]:
    """Sign in once through the /login form; the headers every request then carries (session cookie, CSRF token)."""
    from yarl import URL

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        page = await (await s.get(base + "/login")).text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        async with s.post(base + "/login", data={"csrf": csrf, "username": BENCH_USER, "password": BENCH_PASSWORD}, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        me = await (await s.get(base + "/api/me")).json()
        cookie = s.cookie_jar.filter_cookies(URL(base))["copilot_session"].value
    return {"Cookie": f"copilot_session={cookie}", "X-CSRF-Token": me["csrf"]}


def console_request(base: str, dup_every: int = 20, conv_prefix: str = "bench", headers: dict[str, str] | None = None):
    """POST /api/chat (with a signed-in session's `headers`); every `dup_every`-th request repeats an earlier
    message id (a platform retry)."""

    async def request(session: aiohttp.ClientSession, n: int) -> int:
        mid = n - 1 if dup_every and n % dup_every == 0 and n else n
        body = {"text": "/help", "conversation": f"{conv_prefix}-{mid % 200}", "id": f"{conv_prefix}-{mid}"}
        async with session.post(base + "/api/chat", json=body, headers=headers) as r:
            await r.read()
            return r.status

    return request


def unique_ids(total: int, dup_every: int = 20) -> int:
    return len({(n - 1 if dup_every and n % dup_every == 0 and n else n) for n in range(total)})


async def wait_answered(db_url: str, expected: int, timeout: float = 300) -> dict:
    """Wait until every inbox row is done; report lost and doubled answers."""
    engine = create_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as c:
                done = c.execute(select(func.count()).select_from(InboxRow).where(InboxRow.status == "done")).scalar()
                rows = c.execute(select(func.count()).select_from(InboxRow)).scalar()
                sent = c.execute(select(func.count()).select_from(OutboundRow).where(OutboundRow.status == "sent")).scalar()
                doubled = c.execute(text("SELECT COUNT(*) FROM (SELECT inbox_id FROM outbound GROUP BY inbox_id HAVING COUNT(*) > 1) x")).scalar()
            if done >= expected and sent >= expected or time.monotonic() > deadline:
                return {"inbox_rows": rows, "answered": done, "replies_sent": sent, "lost": max(expected - done, 0),
                        "doubled": doubled, "extra_rows": max(rows - expected, 0)}
            await asyncio.sleep(0.5)
    finally:
        engine.dispose()


async def bench_console(total: int = 3000, concurrency: int = 50, data_root: Path | None = None) -> dict:
    root = Path(data_root or tempfile.mkdtemp(prefix="copilot-bench-"))
    port_b, port_c = free_port(), free_port()
    async with ChildServer("bench.target", ["bare", "--port", str(port_b)], f"http://127.0.0.1:{port_b}/healthz"):
        same = {"Cookie": "copilot_session=" + "x" * 160, "X-CSRF-Token": "x" * 32}  # the bare handler reads the same bytes
        await run_load(console_request(f"http://127.0.0.1:{port_b}", conv_prefix="warm", headers=same), total=300, concurrency=concurrency)
        bare = await run_load(console_request(f"http://127.0.0.1:{port_b}", headers=same), total=total, concurrency=concurrency)
    data = root / "console"
    env = {"COPILOT_DATA_DIR": str(data), "COPILOT_RATE_LIMIT_PER_MINUTE": "0", "COPILOT_ADDRESS_REQUESTS_PER_MINUTE": "0",
           "COPILOT_PERSON_REQUESTS_PER_MINUTE": "0", "COPILOT_CONFIG": str(root / "absent.toml")}
    async with ChildServer("bench.target", ["copilot", "--port", str(port_c)], f"http://127.0.0.1:{port_c}/healthz", env):
        headers = await sign_in(f"http://127.0.0.1:{port_c}")
        warm = console_request(f"http://127.0.0.1:{port_c}", conv_prefix="warm", headers=headers)
        await run_load(warm, total=300, concurrency=concurrency)
        real = await run_load(console_request(f"http://127.0.0.1:{port_c}", headers=headers), total=total, concurrency=concurrency)
        check = await wait_answered(f"sqlite:///{data / 'copilot.db'}", unique_ids(total) + unique_ids(300))
    return {
        "bare": bare.summary(), "console": real.summary(),
        "throughput_ratio": round(real.rps / bare.rps, 3) if bare.rps else None,
        "p99_ratio": round(real.pct(99) / bare.pct(99), 2) if bare.pct(99) else None,
        "exactly_once": check,
        "targets": {"ack_p99_ms<50": real.pct(99) < 50, "throughput>=1/3_bare": real.rps >= bare.rps / 3,
                    "zero_lost_or_doubled": check["lost"] == 0 and check["doubled"] == 0},
    }
