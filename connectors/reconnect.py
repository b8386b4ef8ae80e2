"""A connection a channel keeps open to its platform (DingTalk's Stream mode, Feishu's long connection): the loop
that opens it again after it drops, and the frames still being handled when it closes.

The platform package writes `_session()` (open the connection, read frames until it ends) and says which of its
errors mean the platform refused to open one. Failures back off exponentially with jitter; a connection that
stayed up `stable_after` seconds starts the count again. `aclose()` closes the connection and lets the frames
already being stored be answered (up to 2 s) before anything is cancelled. Imports nothing above the channel core.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Coroutine

import websockets.exceptions


class ReconnectingReceiver:
    task_name = "receiver"  # the task's name is this and the app's key
    what = "connection"  # in the log: "cannot open the <what>", "<what> lost"
    open_errors: tuple[type[Exception], ...] = ()  # the platform refused to open a connection (its API's errors)
    log = logging.getLogger("copilot.reconnect")

    def __init__(self, key: str, label: str, *, backoff_base: float, backoff_max: float, stable_after: float) -> None:
        self.key, self.label = key, label
        self.backoff_base, self.backoff_max, self.stable_after = backoff_base, backoff_max, stable_after
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error = ""
        self._ws: Any = None
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._closing = False

    async def _session(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"{self.task_name}-{self.key}")

    def _handle(self, work: Coroutine[Any, Any, None]) -> None:
        """Handle one frame beside the reading loop; `aclose` waits for it."""
        task = asyncio.create_task(work)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def aclose(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._inflight:  # let the answers for frames already being stored go out
            await asyncio.wait(self._inflight, timeout=2.0)
        tasks = [*self._inflight, *([self._task] if self._task else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        failures = 0
        while not self._closing:
            started = time.monotonic()
            try:
                await self._session()
                self.last_error = ""
            except asyncio.CancelledError:
                raise
            except self.open_errors as exc:
                self.last_error = str(exc)
                self.log.warning("%s: cannot open the %s: %s", self.label, self.what, exc)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log.warning("%s: %s lost: %s", self.label, self.what, self.last_error)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.log.exception("%s: %s failed", self.label, self.what)
            self.connected.clear()
            self._ws = None
            if self._closing:
                break
            failures = 0 if time.monotonic() - started >= self.stable_after else failures + 1
            await asyncio.sleep(min(self.backoff_max, self.backoff_base * 2 ** failures) * random.uniform(0.5, 1.0))


def loopback(url: str) -> bool:
    """A URL on this machine: connect to it directly, never through the environment's proxy."""
    return "//127.0.0.1" in url or "//localhost" in url or "//[::1]" in url
