"""Worker pool over the inbox: one conversation in order, different conversations in parallel.

The database is the source of truth; in-memory queues only say what to look at next. At start
every unfinished row is rescheduled (this is how a killed process resumes), and a sweeper picks up
rows whose lease expired elsewhere. A failing message is retried with exponential backoff while
its conversation waits (order is kept); after `max_attempts` it goes to the dead-letter state and
the sender gets an apology, so every message is answered exactly once. A handler that runs past
`handler_timeout` is a failed attempt (its lease is renewed only until then, and the work it left running in a
thread stops at its next check: bot/ops/deadline.py); attempts are counted when
a row is claimed, so a message that kills the process every time is dead-lettered too.

Several processes share one inbox: a conversation whose earlier message is unfinished elsewhere waits (the
inbox's claim says `Waiting`) and is looked at again every `WAIT_POLL` s, or at once when the process that
finished the earlier one says so (`wake`, fed by bot/pipeline/wakeup.py); a new message accepted by another
process is taken here within `TAKE_REMOTE_AFTER` s when this one is idle (a busy one leaves it to its own process).
An earlier message whose lease lapsed is taken over by the first process that finds it: here at the next look,
or at the next sweep (every `lease`/2 s).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable

from bot.ops import deadline
from bot.ops.metrics import Metrics
from bot.pipeline.inbox import Inbox, Waiting
from connectors.message import InboundMessage, Reply

log = logging.getLogger("copilot.dispatch")

ACK_PRIORITY_WAIT = 0.05  # under an ack burst each worker yields up to this long per message
WAIT_POLL = 0.25  # a conversation waiting for its earlier message at another process looks again this often…
WAIT_POLL_TOLD = 2.0  # …or this often when processes tell each other (a finished message wakes its waiters at once)
TAKE_REMOTE_AFTER = 0.1  # an idle process takes another's new message after this (that process first: its web chat waits there)
Handler = Callable[[InboundMessage], Awaitable[list[Reply]]]


class Dispatcher:
    def __init__(self, inbox: Inbox, handler: Handler, metrics: Metrics, *, apology: str, workers: int = 4, lease: float = 60.0,
                 max_attempts: int = 4, retry_base: float = 2.0, on_replies: Callable[[list[int]], None] | None = None,
                 handler_timeout: float = 120.0, housekeeping: Callable[[], object] | None = None, told: bool = False) -> None:
        """`apology`: what the sender of a message that failed for good is told (the message `apology`);
        `housekeeping`: run (in a thread) on every sweep, e.g. returning stale confirmations to pending;
        `told`: other processes announce new and finished messages (`wake`), so waiting conversations poll less."""
        self.wait_poll = WAIT_POLL_TOLD if told else WAIT_POLL
        self.housekeeping = housekeeping
        self.apology = Reply(text=apology, kind="error")
        self.inbox = inbox
        self.handler = handler
        self.metrics = metrics
        self.n_workers = workers
        self.lease = lease
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.handler_timeout = handler_timeout
        self.on_replies = on_replies or (lambda ids: None)
        self._convs: dict[str, deque[int]] = {}
        self._busy: set[str] = set()
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._waiting: dict[str, tuple[asyncio.TimerHandle, int]] = {}  # conversation -> (its next look, the row it waits for)
        self._sweep_now = asyncio.Event()
        self._draining = False
        self.idle = asyncio.Event()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        for w in await asyncio.to_thread(self.inbox.unfinished):
            self.notify(w.id, w.conversation_key)
        self._tasks = [asyncio.create_task(self._worker(i), name=f"worker-{i}") for i in range(self.n_workers)]
        self._tasks.append(asyncio.create_task(self._sweeper(), name="inbox-sweeper"))

    def in_flight(self) -> int:
        """Messages being handled right now."""
        return len(self._busy)

    async def drain(self, timeout: float) -> bool:
        """Stop starting messages and wait, at most `timeout` s, for the ones being handled to finish. True when
        none is left. What is not finished stays in the inbox and resumes at the next start. Then call aclose."""
        self._draining = True
        for h in self._timers:
            h.cancel()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._busy and loop.time() < end:
            await asyncio.sleep(0.05)
        return not self._busy

    async def aclose(self) -> None:
        for h in self._timers:
            h.cancel()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def notify(self, inbox_id: int, conversation_key: str) -> None:
        q = self._convs.setdefault(conversation_key, deque())
        if inbox_id in q:
            return
        q.append(inbox_id)
        if len(q) > 1 and q[-2] > inbox_id:  # keep arrival (id) order even when recovered out of order
            self._convs[conversation_key] = deque(sorted(q))
        self.idle.clear()
        if conversation_key not in self._busy and len(self._convs[conversation_key]) == 1:
            self._ready.put_nowait(conversation_key)

    def wake(self, kind: str, items: list[tuple[int, str]]) -> None:
        """What another process said: "new" rows (taken here when this process is idle), "done" rows (their
        conversation's next row may go now), "resync" (notices may have been missed: sweep now)."""
        if kind == "resync":
            self._sweep_now.set()
            return
        for inbox_id, key in items:
            if kind == "new" and not self._convs and not self._draining:  # idle here; a busy process leaves it to its own
                h = asyncio.get_running_loop().call_later(TAKE_REMOTE_AFTER, self._take_remote, inbox_id, key)
                self._timers.add(h)
            elif kind == "done" and self._waiting.get(key, (None, 0))[1] == inbox_id:
                self._waiting.pop(key)[0].cancel()
                self._ready.put_nowait(key)

    def _take_remote(self, inbox_id: int, key: str) -> None:
        if not self._convs and not self._draining:  # still idle (if its own process took it, the claim says so at once)
            self.notify(inbox_id, key)

    def pending(self) -> int:
        return sum(len(q) for q in self._convs.values())

    async def _worker(self, n: int) -> None:
        while True:
            key = await self._ready.get()
            q = self._convs.get(key)
            if not q or key in self._busy or self._draining:
                continue
            self._busy.add(key)
            if (w := self._waiting.pop(key, None)) is not None:
                w[0].cancel()
            delay = None
            waiting = 0  # the earlier row this conversation waits for
            head = q[0]
            try:
                delay = await self._run_one(head)
                q = self._convs.setdefault(key, q)  # `notify` may have replaced it meanwhile (a row recovered out of order)
                if isinstance(delay, Waiting):
                    waiting, delay = delay.earlier, self._wait_for(key, q, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch failure")
                delay = self.retry_base
            finally:
                self._busy.discard(key)
            if delay is None:
                q = self._convs.get(key, q)
                if head in q:
                    q.remove(head)  # not popleft: an earlier row may have been put in front of it meanwhile
                if q:
                    self._ready.put_nowait(key)
                else:
                    self._convs.pop(key, None)
                    if not self._convs:
                        self.idle.set()
            else:
                h = asyncio.get_running_loop().call_later(delay, self._ready.put_nowait, key)
                self._timers.add(h)
                if waiting:
                    self._waiting[key] = (h, waiting)

    def _wait_for(self, key: str, q: deque[int], w: Waiting) -> float:
        """The head of `key` waits for an earlier row: one nobody works on is taken here, first (at once); else
        look again after `wait_poll` s (or when its process says it finished). Returns the delay."""
        if w.earlier == q[0]:
            return 0.05  # the earlier one finished meanwhile
        if w.takeable and w.earlier not in q:
            self.notify(w.earlier, key)
            return 0.0
        return self.wait_poll

    async def _run_one(self, inbox_id: int) -> float | Waiting | None:
        """Process one row. Returns None when the row is finished (or not ours), `Waiting` when an earlier row of its
        conversation is unfinished, else a retry delay."""
        await self.inbox.quiet(ACK_PRIORITY_WAIT)
        claimed = await asyncio.to_thread(self.inbox.claim, inbox_id, self.lease)
        if claimed is None or isinstance(claimed, Waiting):
            return claimed
        msg, attempt = claimed
        if attempt > self.max_attempts:  # every earlier attempt ended the process (or its lease) mid-message
            log.error("message %s dead: %d attempts never finished", inbox_id, attempt - 1)
            return await self._dead(inbox_id, msg, f"{attempt - 1} attempts never finished (the process died or lost the lease)")
        started = time.perf_counter()
        renew = asyncio.create_task(self._renew(inbox_id))
        attempt_event, token = deadline.begin()  # the handler's task (and its threads) see this attempt's event
        try:
            replies = await asyncio.wait_for(self.handler(msg), self.handler_timeout)
        except asyncio.CancelledError:
            attempt_event.set()
            raise
        except Exception as exc:
            attempt_event.set()  # what still runs in a thread for this attempt stops at its next check
            if isinstance(exc, asyncio.TimeoutError):
                exc = TimeoutError(f"the handler took longer than {self.handler_timeout:g} s")
            self.metrics.failed.labels(msg.channel).inc()
            if attempt >= self.max_attempts:
                log.error("message %s dead after %d attempts: %s", inbox_id, attempt, exc)
                return await self._dead(inbox_id, msg, repr(exc))
            delay = self.retry_base * (2 ** (attempt - 1))
            log.warning("message %s failed (attempt %d), retry in %.1fs: %r", inbox_id, attempt, delay, exc)
            await asyncio.to_thread(self.inbox.retry_later, inbox_id, repr(exc), delay)
            return delay
        finally:
            renew.cancel()
            deadline.end(token)
        ids = await asyncio.to_thread(self.inbox.complete, inbox_id, msg, replies)
        self.metrics.processed.labels(msg.channel).inc()
        self.metrics.process_latency.labels(msg.channel).observe(time.perf_counter() - started)
        self.on_replies(ids)
        return None

    async def _dead(self, inbox_id: int, msg: InboundMessage, error: str) -> None:
        """Dead letter: the sender is told (the apology), in the same transaction that closes the row."""
        ids = await asyncio.to_thread(self.inbox.complete, inbox_id, msg, [self.apology], status="dead", error=error)
        self.metrics.dead.labels(msg.channel).inc()
        self.on_replies(ids)
        return None

    async def _renew(self, inbox_id: int) -> None:
        """Keep the lease while the handler is within its timeout, never longer."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.handler_timeout
        while loop.time() + self.lease / 3 < end:
            await asyncio.sleep(self.lease / 3)
            await asyncio.to_thread(self.inbox.renew, inbox_id, self.lease)

    async def _sweeper(self) -> None:
        """Pick up rows another (dead) instance leased, or retries scheduled before a restart."""
        while True:
            try:
                await asyncio.wait_for(self._sweep_now.wait(), max(self.lease / 2, 1.0))
            except asyncio.TimeoutError:
                pass
            self._sweep_now.clear()
            try:
                now = time.time()
                for w in await asyncio.to_thread(self.inbox.unfinished):
                    if w.not_before <= now:
                        self.notify(w.id, w.conversation_key)
                if self.housekeeping is not None:
                    await asyncio.to_thread(self.housekeeping)
                counts = await asyncio.to_thread(self.inbox.counts)
                self.metrics.inbox_depth.set(counts.get("queued", 0) + counts.get("processing", 0))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeper failure")
