"""`python -m bench load`: one bounded load (web-chat messages over many conversations, every 20th a platform
retry) against `copilot serve --workers N` on a fresh PostgreSQL database, for N = 1, 2 and 4. Per run:
acknowledged messages/s and ack p99 (client side), answered messages/s and end-to-end p95 (accepted in the
inbox -> reply sent, from the rows), lost and doubled replies (must be 0), replies out of order within a
conversation (must be 0), and where the CPU went (copilot workers, PostgreSQL, the load generator itself).

`redis=True` adds, for each N, a run with the rate limits on (high enough to refuse nothing) kept per process and
one with them in Redis (`COPILOT_REDIS_URL`, a redis-server started for the run): what sharing the limits costs."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import numpy as np
from sqlalchemy import create_engine, text

from bench.gateway import sign_in, unique_ids, wait_answered
from bench.load import free_port, run_load

PG_ADMIN = os.environ.get("COPILOT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def processes(match) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
                if match(int(p.name), stat[stat.index("(") + 1 : stat.rindex(")")], int(stat.rsplit(")", 1)[1].split()[1])):
                    out.append(int(p.name))
            except (OSError, ValueError):
                pass
    return out


def chat_request(base: str, conversations: int, prefix: str, headers: dict[str, str]):
    """POST /api/chat: message n goes to conversation n % `conversations`; every 20th repeats the one before (a retry)."""
    async def request(session: aiohttp.ClientSession, n: int) -> int:
        mid = n - 1 if n and n % 20 == 0 else n
        body = {"text": "/help", "conversation": f"{prefix}-{mid % conversations}", "id": f"{prefix}-{mid}"}
        async with session.post(base + "/api/chat", json=body, headers=headers) as r:
            await r.read()
            return r.status

    return request


async def settled(pids: list[int], quiet: float = 0.15, timeout: float = 180.0) -> None:
    """Wait until `pids` use less than `quiet` CPU-seconds per second (started and idle)."""
    end = time.monotonic() + timeout
    last = cpu_seconds(pids)
    while time.monotonic() < end:
        await asyncio.sleep(1.0)
        now = cpu_seconds(pids)
        if now - last < quiet:
            return
        last = now


def order_violations(engine) -> int:
    """Replies of one conversation sent in another order than their messages were accepted."""
    with engine.connect() as c:
        rows = c.execute(text("SELECT o.conversation_key, o.inbox_id, o.sent_at FROM outbound o WHERE o.status = 'sent' "
                              "ORDER BY o.conversation_key, o.sent_at, o.id")).all()
    bad, last = 0, {}
    for key, inbox_id, _ in rows:
        if inbox_id is not None:
            bad += last.get(key, 0) > inbox_id
            last[key] = max(last.get(key, 0), inbox_id)
    return bad


async def one_run(workers: int, total: int, concurrency: int, conversations: int, root: Path, *, limits: str = "off",
                  redis_url: str = "") -> dict:
    """`limits`: "off" (none checked), "process" (each process's own buckets) or "redis" (the buckets in Redis at `redis_url`)."""
    import psycopg

    name = f"copilot_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    port = free_port()
    data = root / f"w{workers}-{limits}"
    env = {**os.environ, "COPILOT_DATA_DIR": str(data), "COPILOT_DATABASE_URL": db, "COPILOT_CONFIG": str(root / "absent.toml"),
           "COPILOT_RATE_LIMIT_PER_MINUTE": "0", "COPILOT_ADDRESS_REQUESTS_PER_MINUTE": "0", "COPILOT_PERSON_REQUESTS_PER_MINUTE": "0",
           "COPILOT_LOG_LEVEL": "WARNING", "COPILOT_EMBED_CACHE": str(Path(__file__).resolve().parents[1] / ".cache" / "test-embeddings.db")}
    if limits != "off":  # every message checked against three limits (sender, address, person), none ever refusing
        env.update(COPILOT_RATE_LIMIT_PER_MINUTE="6000000", COPILOT_ADDRESS_REQUESTS_PER_MINUTE="6000000",
                   COPILOT_PERSON_REQUESTS_PER_MINUTE="6000000")
    if limits == "redis":
        env["COPILOT_REDIS_URL"] = redis_url
    from bench.target import BENCH_PASSWORD, BENCH_USER

    subprocess.run([sys.executable, "-m", "bot.cli", "user", "add", BENCH_USER, "--role", "rep", "--password-stdin"], env=env,
                   input=BENCH_PASSWORD + "\n", capture_output=True, text=True, check=True)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(900):
                kids = processes(lambda pid, comm, ppid: ppid == proc.pid)
                try:
                    async with s.get(base + "/readyz") as r:
                        if r.status == 200 and (workers == 1 or len(kids) == workers):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        kids = processes(lambda pid, comm, ppid: ppid == proc.pid) + ([proc.pid] if workers == 1 else [])
        await settled(kids)  # the later workers have finished starting (a start costs seconds of CPU)
        headers = await sign_in(base)
        await run_load(chat_request(base, 200, "warm", headers), total=200, concurrency=concurrency)
        await wait_answered(db, unique_ids(200))
        pg = processes(lambda pid, comm, ppid: comm.startswith("postgres"))
        rd = processes(lambda pid, comm, ppid: comm.startswith("redis-server")) if limits == "redis" else []
        before = (cpu_seconds(kids), cpu_seconds(pg), time.process_time(), cpu_seconds(rd))
        start = time.perf_counter()
        res = await run_load(chat_request(base, conversations, f"load{workers}", headers), total=total, concurrency=concurrency)
        check = await wait_answered(db, unique_ids(200) + unique_ids(total))
        with engine.connect() as c:
            last = c.execute(text("SELECT EXTRACT(EPOCH FROM MAX(o.sent_at) - MIN(i.created_at)) FROM inbox i JOIN outbound o ON o.inbox_id = i.id "
                                  "WHERE i.conversation_key LIKE :p"), {"p": f"%load{workers}-%"}).scalar()
            e2e = [float(x) for (x,) in c.execute(text("SELECT EXTRACT(EPOCH FROM o.sent_at - i.created_at) FROM inbox i JOIN outbound o "
                                                        "ON o.inbox_id = i.id WHERE i.conversation_key LIKE :p"), {"p": f"%load{workers}-%"})]
        wall = time.perf_counter() - start
        cpu = {"copilot_workers_s": round(cpu_seconds(kids) - before[0], 1), "postgresql_s": round(cpu_seconds(pg) - before[1], 1),
               "load_generator_s": round(time.process_time() - before[2], 1), "wall_s": round(wall, 1)}
        if rd:
            cpu["redis_s"] = round(cpu_seconds(rd) - before[3], 1)
        processed = unique_ids(total)
        return {"workers": workers, "limits": limits, "messages": total, "conversations": conversations, "acked_per_s": round(res.rps, 1), "ack_p99_ms": round(res.pct(99), 1),
                "answered_per_s": round(processed / float(last), 1) if last else None,
                "e2e_p50_ms": round(float(np.percentile(e2e, 50)) * 1000, 1) if e2e else None,
                "e2e_p95_ms": round(float(np.percentile(e2e, 95)) * 1000, 1) if e2e else None,
                "statuses": res.statuses, "lost": check["lost"], "doubled": check["doubled"], "out_of_order": order_violations(engine),
                "cpu": cpu}
    finally:
        engine.dispose()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


async def run(total: int, concurrency: int, workers: list[int], conversations: int, redis: bool = False) -> dict:
    root = Path(tempfile.mkdtemp(prefix="copilot-load-"))
    if not redis:
        runs = [await one_run(n, total, concurrency, conversations, root) for n in workers]
    else:
        server, url = redis_server(root)
        try:
            runs = [await one_run(n, total, concurrency, conversations, root, limits=mode, redis_url=url)
                    for n in workers for mode in ("process", "redis")]
        finally:
            server.kill()
            server.wait()
        pairs = {(r["workers"], r["limits"]): r for r in runs}
        out = {"cores": os.cpu_count(), "runs": runs, "redis_vs_process": {
            n: {k: round(pairs[n, "redis"][k] / pairs[n, "process"][k], 2) for k in ("acked_per_s", "answered_per_s")
                if pairs[n, "process"][k] and pairs[n, "redis"][k]} for n in workers}}
        out["zero_lost_doubled_disordered"] = all(r["lost"] == 0 and r["doubled"] == 0 and r["out_of_order"] == 0 for r in runs)
        return out
    by = {r["workers"]: r for r in runs}
    out: dict = {"cores": os.cpu_count(), "runs": runs}
    if 1 in by and max(by) > 1:
        top = max(by)
        out[f"scaling_{top}_vs_1"] = {k: round(by[top][k] / by[1][k], 2) for k in ("acked_per_s", "answered_per_s") if by[1][k] and by[top][k]}
    out["zero_lost_doubled_disordered"] = all(r["lost"] == 0 and r["doubled"] == 0 and r["out_of_order"] == 0 for r in runs)
    return out
