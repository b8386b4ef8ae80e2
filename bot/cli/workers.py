"""`copilot serve --workers N`: N copilot processes on one port (SO_REUSEPORT: the kernel spreads connections).

Each worker is a whole `copilot serve` (gateway, dispatcher, outbox, scheduler candidate); they share the
database, so every message is answered once and in order per conversation wherever it lands (bot/pipeline),
one of them leads the scheduler (a lease row), and on PostgreSQL they wake each other (LISTEN/NOTIFY). The
first worker starts alone (migrations, the first start's samples), the others once it is ready. A worker that
dies is started again; Ctrl-C or SIGTERM stops them all gracefully. One host only: on several hosts run one
`copilot serve` per core behind a load balancer (deploy/).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

import typer

RESTART_PAUSE = 1.0


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def run_workers(n: int, host: str, port: int) -> int:
    cmd = [sys.executable, "-m", "bot.cli", "serve", "--host", host, "--port", str(port), "--reuse-port"]
    ready_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}/readyz"
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    procs: list[subprocess.Popen] = [subprocess.Popen(cmd)]
    while not stopping and not _ready(ready_url):
        if procs[0].poll() is not None:
            typer.echo(f"the first worker exited with {procs[0].returncode}", err=True)
            return procs[0].returncode or 1
        time.sleep(0.2)
    procs += [subprocess.Popen(cmd) for _ in range(n - 1) if not stopping]
    if not stopping:
        typer.echo(f"{n} workers serving port {port} (pids {', '.join(str(p.pid) for p in procs)})", err=True)
    while not stopping:
        time.sleep(0.2)
        for i, p in enumerate(procs):
            if p.poll() is not None and not stopping:
                typer.echo(f"worker {p.pid} exited with {p.returncode}; starting another", err=True)
                time.sleep(RESTART_PAUSE)
                procs[i] = subprocess.Popen(cmd)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # each drains its messages in flight (COPILOT_SHUTDOWN_GRACE)
    return max((p.wait() for p in procs), default=0)
