"""Real services on loopback for the scale-out tests: a fresh PostgreSQL database per test (dropped after), a
Chroma server started by the test, Redis if one answers. Each helper skips the test, saying why, when its
service cannot be had."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

PG_ADMIN = os.environ.get("COPILOT_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COPILOT_TEST_REDIS", "redis://127.0.0.1:6379/0")
CHROMA = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "chroma"


@contextmanager
def pg_database() -> Iterator[str]:
    """CREATE DATABASE copilot_t_<random>; yields its URL; DROP DATABASE .. WITH (FORCE) after."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2)
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN} ({type(exc).__name__}); set COPILOT_TEST_PG_ADMIN")
    name = f"copilot_t_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def chroma_server(path: Path, port: int) -> Iterator[str]:
    """`chroma run --path PATH --port PORT` as a child process; yields http://127.0.0.1:PORT once it answers."""
    import httpx

    exe = str(CHROMA) if CHROMA.exists() else shutil.which("chroma")
    if not exe:
        pytest.skip("the chroma command is not installed (make setup installs chromadb, which provides it)")
    log = open(path.parent / f"chroma-{port}.log", "wb")
    proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.skip(f"chroma run exited with {proc.returncode}: {(path.parent / f'chroma-{port}.log').read_text()[-500:]}")
            try:
                if httpx.get(url + "/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.skip("chroma run did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def redis_url() -> str:
    """The loopback Redis (flushed of nothing: tests use their own key prefix); skips without redis-py or a server."""
    try:
        import redis
    except ImportError:
        pytest.skip("redis-py is not installed (the `redis` package; the copilot runs without it)")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL} ({type(exc).__name__}); set COPILOT_TEST_REDIS")
    return REDIS_URL


class RedisServer:
    """`redis-server --port PORT --save '' --appendonly no` as a child process (nothing kept on disk, as deploy/ runs
    it), killed and started again on the same port by `kill()` / `start()`."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if not exe:
            pytest.skip("redis-server is not installed (apt-get install redis-server); the copilot runs without Redis")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own on a free loopback port (skips without redis-server or redis-py)."""
    pytest.importorskip("redis", reason="redis-py is not installed (the `redis` package; the copilot runs without it)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = RedisServer(workdir, port)
    server.start()
    try:
        yield server
    finally:
        server.kill()


PG_BIN = Path(os.environ.get("COPILOT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PgCluster:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, a free loopback port), so that it can be
    stopped and started again without touching the machine's PostgreSQL, which other tests share. initdb refuses to
    run as root: as root, the cluster belongs to the `postgres` user (runuser)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="copilot-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        if not (PG_BIN / "initdb").exists():
            pytest.skip(f"no PostgreSQL server binaries in {PG_BIN} (set COPILOT_TEST_PG_BIN) to start a cluster of the test's own")
        if self.as_user:
            if not shutil.which("runuser"):
                pytest.skip("running as root without runuser: initdb refuses root, so no cluster of the test's own")
            try:
                shutil.chown(self.root, "postgres", "postgres")
            except (LookupError, PermissionError) as exc:
                pytest.skip(f"no `postgres` user to own a cluster of the test's own ({exc})")
        done = self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            pytest.skip(f"initdb failed: {done.stderr[-300:]}")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        done = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-300:]} {(self.root / 'log').read_text()[-500:]}")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: as if the server crashed (no checkpoint; crash recovery at the next start)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@contextmanager
def pg_cluster() -> Iterator[PgCluster]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = PgCluster(port)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)
