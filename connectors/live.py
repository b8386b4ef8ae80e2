"""The answer so far, shown while the model writes: per message the newest text only, one pump, at most one update
every `interval` seconds. The channel core of the DingTalk and Feishu cards; a channel brings its own `show`.

`offer(key, text, interval, make)` comes from the model's worker thread, many times a second. It keeps the newest
text and, when no pump runs for that message, starts one on the event loop (`make()` builds the channel's state for a
message it has not seen). Texts that arrive between two updates are coalesced: a fast model costs a few updates, not
one per token. `show(preview, text)` puts a text on the card and returns False when the card is no longer the
preview's to write (the reply has taken it); an error stops that message's previews, never the answer.
`closing(key)` stops a message's previews and holds its lock while the reply finishes the card, so the last thing a
card shows is the finished answer; a preview that comes later is dropped. The newest `keep` messages are remembered.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable


@dataclass(eq=False)
class Preview:
    """One message's card while its answer is written."""

    key: str
    state: Any = None  # the channel's own (which app and target, the card's id, whether it exists yet)
    interval: float = 0.5
    latest: str = ""
    shown: str = ""
    sent_at: float | None = None  # when the last update started (loop time)
    shows: int = 0  # updates the card took while the answer was written
    pumping: bool = False  # a pump is scheduled or running (guarded by Previews._lock, like latest and stopped)
    stopped: bool = False  # the reply has it, or it was forgotten
    failed: bool = False  # the platform refused an update
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held by an update in flight and by the reply
    task: asyncio.Task | None = None


class Previews:
    def __init__(self, show: Callable[[Preview, str], Awaitable[bool]], *, log: logging.Logger,
                 expected: tuple[type[BaseException], ...] = (), keep: int = 2000) -> None:
        self._show = show
        self.log = log
        self.expected = expected  # the platform's own errors: logged in a line, without a traceback
        self.keep = keep
        self.loop: asyncio.AbstractEventLoop | None = None
        self._entries: OrderedDict[str, Preview] = OrderedDict()
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def get(self, key: str) -> Preview | None:
        return self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)

    def offer(self, key: str, text: str, interval: float, make: Callable[[], Any] | None = None) -> None:
        """Thread-safe: have `key`'s card show `text` soon (a preview never fails or slows the answer being written)."""
        loop = self.loop
        if loop is None or loop.is_closed() or not text.strip():
            return
        with self._lock:
            entry = self._entry(key, make)
            if entry.stopped or entry.failed:
                return
            entry.latest, entry.interval = text, interval
            if entry.pumping:
                return
            entry.pumping = True
        try:
            loop.call_soon_threadsafe(self._start, entry)
        except RuntimeError:  # the loop closed since (shutting down)
            with self._lock:
                entry.pumping = False

    def _entry(self, key: str, make: Callable[[], Any] | None = None) -> Preview:
        """`key`'s entry, made if new (under self._lock); the oldest past `keep` stop (a card's identity is the
        channel's table, not this)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Preview(key, make() if make else None)
            while len(self._entries) > self.keep:
                self._entries.popitem(last=False)[1].stopped = True
        return entry

    def _start(self, entry: Preview) -> None:
        entry.task = asyncio.ensure_future(self._pump(entry))

    async def _pump(self, entry: Preview) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if entry.sent_at is not None and (wait := entry.sent_at + entry.interval - loop.time()) > 0:
                await asyncio.sleep(wait)
            async with entry.lock:
                with self._lock:
                    text = entry.latest
                    if entry.stopped or entry.failed or text == entry.shown:
                        entry.pumping = False
                        return
                started = loop.time()
                try:
                    more = await self._show(entry, text)
                except Exception as exc:  # the platform, the table, or a bug: never the answer's fault
                    if isinstance(exc, self.expected):
                        self.log.warning("card %s: %s; the finished answer still goes out", entry.key, exc)
                    else:
                        self.log.exception("card %s stopped; the finished answer still goes out", entry.key)
                    more, entry.failed = False, True
                if not more:
                    with self._lock:
                        entry.stopped, entry.pumping = True, False
                    return
                entry.shown, entry.sent_at = text, started
                entry.shows += 1

    @asynccontextmanager
    async def closing(self, key: str) -> AsyncIterator[Preview]:
        """Stop `key`'s previews and wait out an update in flight; the reply finishes the card inside (the entry's
        `state` is None when nothing was previewed)."""
        with self._lock:
            entry = self._entry(key)
            entry.stopped = True
        async with entry.lock:
            yield entry

    async def aclose(self) -> None:
        """Stop every pump (before the clients they use are closed)."""
        with self._lock:
            entries = list(self._entries.values())
            for entry in entries:
                entry.stopped = True
        tasks = [e.task for e in entries if e.task is not None and not e.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
