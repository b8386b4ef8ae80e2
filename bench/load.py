"""A small HTTP load generator and a way to run a server under test in its own process.

The server runs in a child process (one core for it, one for the load), so the client's own
work does not inflate the server's latency; baseline and subject are measured the same way.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import aiohttp
import numpy as np

Request = Callable[[aiohttp.ClientSession, int], Awaitable[int]]  # (session, n) -> HTTP status


@dataclass
class LoadResult:
    n: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        return float(np.percentile(self.latencies, p) * 1000) if self.latencies else 0.0

    def summary(self) -> dict:
        return {"requests": self.n, "rps": round(self.rps, 1), "p50_ms": round(self.pct(50), 2),
                "p99_ms": round(self.pct(99), 2), "statuses": self.statuses}


async def run_load(request: Request, *, total: int, concurrency: int = 50) -> LoadResult:
    counter = iter(range(total))
    res = LoadResult(total, 0.0)

    async def client(session: aiohttp.ClientSession) -> None:
        for n in counter:
            t = time.perf_counter()
            status = await request(session, n)
            res.latencies.append(time.perf_counter() - t)
            res.statuses[status] = res.statuses.get(status, 0) + 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        res.seconds = time.perf_counter() - start
    return res


class ChildServer:
    """`python -m MODULE ARGS...` in a child process; waits until `url` answers."""

    def __init__(self, module: str, args: list[str], health_url: str, env: dict | None = None) -> None:
        self.cmd = [sys.executable, "-m", module, *args]
        self.health_url = health_url
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    async def __aenter__(self) -> "ChildServer":
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{' '.join(self.cmd)} exited: {self.proc.stderr.read().decode()[-2000:]}")
                try:
                    async with s.get(self.health_url) as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.health_url} did not come up")

    async def __aexit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
