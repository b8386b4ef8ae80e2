"""Untrusted files are parsed in a child process with CPU-time, address-space and wall-clock limits.

`Sandbox.parse(data, name)` hands the bytes to a worker (`python -m rag.sandbox`, started with
`setrlimit(RLIMIT_AS)` and given a fresh `RLIMIT_CPU` budget per file) and reads back the parsed
blocks as JSON (never pickle: the child reads hostile input). A worker is reused while it behaves, so
a small file costs a pipe round trip, not a process start; one that runs past the wall clock is
killed, one that dies (out of memory, a crash in a C parser) is replaced, and either way the file is
refused with a reason. The child gets no environment of ours (no secrets) and writes nothing to our
stdout.
"""
from __future__ import annotations

import json
import os
import selectors
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.limits import IngestError


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 30  # CPU time per file
    wall_seconds: float = 60.0  # wall clock per file
    memory_bytes: int = 1536 * 1024 * 1024  # address space of the parsing process
    max_file_bytes: int = 64 * 1024 * 1024
    idle_seconds: float = 20.0  # a worker unused this long is not reused (and ends itself a little later)
    start_seconds: float = 30.0  # for a new worker to import the parsers (not counted in a file's wall clock)


_ROOT = str(Path(__file__).resolve().parents[1])
_BOOT = f"import sys; sys.path.insert(0, {_ROOT!r}); from rag.sandbox import main; main()"


class _Worker:
    def __init__(self, limits: Limits) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "MALLOC_ARENA_MAX": "2"}  # OCR (onnxruntime) threads would each reserve a malloc arena under RLIMIT_AS
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", _BOOT, json.dumps(asdict(limits))], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, close_fds=True)
        self.used = time.monotonic()
        self.ready = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def ask(self, data: bytes, name: str, limits: Limits) -> dict | None:
        """The child's answer, or None when it died or ran past the wall clock (then it is killed)."""
        if not self.ready:
            if self._read(1, time.monotonic() + limits.start_seconds) != b"R":
                return None
            self.ready = True
        deadline = time.monotonic() + limits.wall_seconds
        try:
            self.proc.stdin.write(json.dumps({"name": name, "size": len(data)}).encode() + b"\n")
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        head = self._read(4, deadline)
        if head is None:
            return None
        body = self._read(struct.unpack(">I", head)[0], deadline)
        if body is None:
            return None
        return json.loads(body)

    def _read(self, n: int, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while len(buf) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, min(n - len(buf), 1 << 20))
                if not chunk:
                    return None
                buf += chunk
        return bytes(buf)


class Sandbox:
    """Parse untrusted files out of process. Thread-safe: concurrent calls use separate workers."""

    def __init__(self, limits: Limits | None = None, keep: int = 2) -> None:
        self.limits = limits or Limits()
        self.keep = keep  # idle workers kept warm
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        weakref.finalize(self, _stop, self._idle)  # a sandbox nobody closed still stops (and reaps) its workers

    def parse(self, data: bytes, name: str):
        from rag.formats import Block, ParsedDoc

        lim = self.limits
        if len(data) > lim.max_file_bytes:
            raise IngestError(f"the file is {len(data) >> 20} MB (at most {lim.max_file_bytes >> 20} MB)", "too_large")
        worker = self._take()
        answer = worker.ask(data, name, lim)
        if answer is None:
            timed_out = worker.alive()
            worker.kill()
            if timed_out:
                raise IngestError(f"reading the file took longer than {lim.wall_seconds:g} s", "timeout")
            raise IngestError("reading the file needed more time or memory than a file may use", "too_large")
        self._give(worker)
        if not answer.get("ok"):
            raise IngestError(str(answer.get("reason") or "the file cannot be read"), str(answer.get("code") or "unreadable"))
        try:
            return ParsedDoc(dict(answer["meta"]), [Block(**b) for b in answer["blocks"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise IngestError("the file cannot be read", "unreadable") from exc

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                w = self._idle.pop()
                if w.alive() and time.monotonic() - w.used < self.limits.idle_seconds:
                    return w
                w.kill()
        return _Worker(self.limits)

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.keep and worker.alive():
                worker.used = time.monotonic()
                self._idle.append(worker)
                return
        worker.kill()

    def close(self) -> None:
        """Stop the idle workers (they also end on their own after `idle_seconds`)."""
        with self._lock:
            self._closed = True
            idle = self._idle[:]
            self._idle.clear()
        _stop(idle)


def _stop(workers: list[_Worker]) -> None:
    for w in workers:
        w.kill()


# the child ----------------------------------------------------------------------------------------
def main() -> None:
    import resource

    limits = Limits(**json.loads(sys.argv[1]))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # a library that prints cannot corrupt the answers
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    from rag.formats import parse_document

    out.write(b"R")  # ready: the parsers are imported
    out.flush()
    inp = sys.stdin.buffer
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    waiting = selectors.DefaultSelector()
    waiting.register(inp, selectors.EVENT_READ)
    # an idle worker ends itself (its parent stops reusing it earlier), so none outlives a closed app
    while waiting.select(limits.idle_seconds * 1.5 + 5) and (header := inp.readline()):
        req = json.loads(header)
        data = inp.read(req["size"])
        used = resource.getrusage(resource.RUSAGE_SELF)
        budget = int(used.ru_utime + used.ru_stime) + limits.cpu_seconds + 1
        if cpu_hard != resource.RLIM_INFINITY:
            budget = min(budget, cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (budget, cpu_hard))  # SIGXCPU ends the process past it
        try:
            doc = parse_document(data, req["name"])
            answer = {"ok": True, "meta": doc.meta, "blocks": [asdict(b) for b in doc.blocks]}
        except IngestError as exc:
            answer = {"ok": False, "reason": str(exc), "code": exc.code}
        except MemoryError:
            answer = {"ok": False, "reason": "reading the file needed more memory than a file may use", "code": "too_large"}
        del data
        try:
            body = json.dumps(answer, ensure_ascii=False, default=str).encode()
        except (ValueError, TypeError, MemoryError):
            body = json.dumps({"ok": False, "reason": "the file's metadata cannot be read", "code": "front_matter"}).encode()
        out.write(struct.pack(">I", len(body)) + body)
        out.flush()


if __name__ == "__main__":
    main()
