"""Several processes on one PostgreSQL inbox: one conversation's messages in order wherever they land, a
message accepted at one process taken at once by an idle other (LISTEN/NOTIFY), a lapsed lease taken over.

Two copilot "processes" here are two inbox + dispatcher pairs on their own engines, with lease names of two
other hosts (so nothing can lean on pids of this one); the real-process fault tests are in test_scale_faults.py."""
from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from bot.ops.metrics import Metrics
from bot.pipeline.dispatch import Dispatcher
from bot.pipeline.inbox import Inbox
from bot.pipeline.tables import InboxRow, OutboundRow
from bot.storage import init_db, make_engine
from connectors.message import InboundMessage, Reply
from tests.fakes.services import pg_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url():
    with pg_database() as url:
        engine = make_engine(url)
        init_db(engine)
        engine.dispose()
        yield url


def message(conv: str, n: int) -> InboundMessage:
    return InboundMessage(channel="console", conversation_id=conv, sender_id="rep", text=f"{conv}#{n}", platform_msg_id=f"{conv}-{n}")


class Node:
    """One copilot process's pipeline: its own engine, inbox and dispatcher, named as a process of another host."""

    def __init__(self, url: str, name: str, handler, *, wakeup: bool = False, lease: float = 5.0) -> None:
        self.engine = make_engine(url)
        self.wakeup = None
        owner = f"host-{name}:1:{name}"
        if wakeup:
            from bot.pipeline.wakeup import PgWakeup

            self.wakeup = PgWakeup(url, owner, lambda kind, items: self.dispatcher.wake(kind, items))
        self.inbox = Inbox(self.engine, owner=owner, signal=self.wakeup.say if self.wakeup else None)
        self.dispatcher = Dispatcher(self.inbox, handler, Metrics(), apology="sorry", workers=4, lease=lease, retry_base=0.05,
                                     told=wakeup)

    async def start(self) -> None:
        if self.wakeup:
            await self.wakeup.start()
        await self.dispatcher.start()

    async def aclose(self) -> None:
        await self.dispatcher.aclose()
        if self.wakeup:
            await self.wakeup.aclose()
        await self.inbox.aclose()
        self.engine.dispose()


async def wait_done(url: str, n: int, timeout: float = 30.0) -> None:
    engine = make_engine(url)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with engine.connect() as c:
                if c.execute(select(func.count()).where(InboxRow.status == "done")).scalar() >= n:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"not every message was answered within {timeout} s")
    finally:
        engine.dispose()


def outbound_per_message(url: str) -> dict[int, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return dict(c.execute(select(OutboundRow.inbox_id, func.count()).group_by(OutboundRow.inbox_id)).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("wakeup", [False, True], ids=["polling", "notify"])
async def test_one_conversation_in_order_across_two_processes(wakeup):
    """Messages of 6 conversations put alternately at two processes: each conversation's messages are handled one
    at a time in the order the inbox accepted them, each exactly once, and both processes work."""
    with pg_database() as url:
        engine = make_engine(url)
        init_db(engine)
        engine.dispose()
        log: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
        who: dict[str, str] = {}

        def handler_for(name: str):
            async def handle(msg: InboundMessage) -> list[Reply]:
                start = time.monotonic()
                await asyncio.sleep(random.uniform(0.02, 0.06))
                log[msg.conversation_id].append((msg.text, start, time.monotonic()))
                who[msg.text] = name
                return [Reply(text=f"re {msg.text}")]
            return handle

        a, b = Node(url, "a", handler_for("a"), wakeup=wakeup), Node(url, "b", handler_for("b"), wakeup=wakeup)
        await a.start()
        await b.start()
        try:
            convs, per = [f"c{i}" for i in range(6)], 8
            for n in range(per):
                for i, conv in enumerate(convs):
                    node = (a, b)[(n + i) % 2]  # one conversation alternates between the processes
                    acc = await node.inbox.put(message(conv, n))
                    node.dispatcher.notify(acc.inbox_id, message(conv, n).conversation_key)
            await wait_done(url, len(convs) * per)
        finally:
            await a.aclose()
            await b.aclose()
        for conv in convs:
            seen = log[conv]
            assert [t for t, _, _ in seen] == [f"{conv}#{n}" for n in range(per)], seen  # in order, each once
            assert all(prev[2] <= nxt[1] for prev, nxt in zip(seen, seen[1:])), "two messages of one conversation overlapped"
        assert set(who.values()) == {"a", "b"}
        assert set(outbound_per_message(url).values()) == {1} and len(outbound_per_message(url)) == len(convs) * per


async def test_a_new_message_wakes_an_idle_process_at_once(pg_url):
    """PostgreSQL LISTEN/NOTIFY: a message accepted at a process that does not take it (here: one without
    workers) starts at another within a fraction of a second, not at the next sweep (every lease/2 = 15 s);
    a message waiting for its conversation's earlier one at another process starts as soon as that one is done."""
    started: dict[str, float] = {}

    async def handle(msg: InboundMessage) -> list[Reply]:
        started[msg.text] = time.monotonic()
        if msg.text.endswith("#slow"):
            await asyncio.sleep(1.0)
            started["slow-done"] = time.monotonic()
        return [Reply(text="ok")]

    a, b = Node(pg_url, "a", handle, wakeup=True, lease=30.0), Node(pg_url, "b", handle, wakeup=True, lease=30.0)
    await b.start()
    await asyncio.wait_for(b.wakeup.listening.wait(), 10)
    try:
        latencies = []
        for n in range(5):
            while b.dispatcher.pending():  # b is idle again (a busy process leaves other processes' messages to them)
                await asyncio.sleep(0.01)
            put_at = time.monotonic()
            await a.inbox.put(message(f"idle{n}", 0))  # a's dispatcher is not running: only a notice can bring it to b
            while f"idle{n}#0" not in started:
                assert time.monotonic() - put_at < 5, "the idle process was not woken"
                await asyncio.sleep(0.005)
            latencies.append(started[f"idle{n}#0"] - put_at)
        assert max(latencies) < 1.0, latencies  # the sweep would take up to 15 s
        print(f"wake-up latency: median {sorted(latencies)[2] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms (sweep every 15 s)")

        await a.start()
        slow = await a.inbox.put(InboundMessage(channel="console", conversation_id="w", sender_id="rep", text="w#slow", platform_msg_id="w-1"))
        a.dispatcher.notify(slow.inbox_id, message("w", 0).conversation_key)
        await asyncio.sleep(0.2)
        nxt = await b.inbox.put(message("w", 2))
        b.dispatcher.notify(nxt.inbox_id, message("w", 2).conversation_key)  # b must wait for a's slow one
        await wait_done(pg_url, 7, timeout=10)
        gap = started["w#2"] - started["slow-done"]
        assert 0 <= gap < 0.6, gap  # polling alone looks again only every 2 s
        print(f"waiting conversation resumed {gap * 1000:.0f} ms after its earlier message finished at the other process")
    finally:
        await a.aclose()
        await b.aclose()


def test_one_scheduler_leader_across_processes_and_a_dead_one_is_replaced(pg_url):
    """The scheduler's LeaderLease on PostgreSQL: of eight processes racing for it one wins; while it renews nobody
    else gets it; once it stops (killed: it never releases) another takes over after the lease lapses."""
    from concurrent.futures import ThreadPoolExecutor

    from bot.proactive.scheduler import LeaderLease

    engines = [make_engine(pg_url) for _ in range(8)]
    try:
        leases = [LeaderLease(e, "scheduler:default", f"host{i}:1:s{i}", 1.0) for i, e in enumerate(engines)]
        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(lambda lease: lease.acquire(), leases))
        assert sum(won) == 1
        leader = won.index(True)
        others = [lease for i, lease in enumerate(leases) if i != leader]
        for _ in range(3):  # the leader renews every pass; the others keep asking
            time.sleep(0.4)
            assert leases[leader].acquire() and not any(lease.acquire() for lease in others)
        time.sleep(1.2)  # the leader died without releasing: its lease lapses
        with ThreadPoolExecutor(7) as pool:
            won = list(pool.map(lambda lease: lease.acquire(), others))
        assert sum(won) == 1 and not leases[leader].acquire()
    finally:
        for e in engines:
            e.dispose()


async def test_wakeups_come_back_after_the_database_drops_every_connection(pg_url):
    """Every connection to the database is cut (as when PostgreSQL restarts): the listener reconnects, sweeps what
    it may have missed, and a message accepted at another process is again taken at once."""
    import psycopg

    from tests.fakes.services import PG_ADMIN

    started: dict[str, float] = {}

    async def handle(msg: InboundMessage) -> list[Reply]:
        started[msg.text] = time.monotonic()
        return [Reply(text="ok")]

    a, b = Node(pg_url, "a", handle, wakeup=True, lease=30.0), Node(pg_url, "b", handle, wakeup=True, lease=30.0)
    await b.start()
    await asyncio.wait_for(b.wakeup.listening.wait(), 10)
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                                (pg_url.rsplit("/", 1)[1],)).fetchone()[0]
        assert cut >= 1
        await asyncio.sleep(2.5)  # the listener notices and reconnects (after 1 s)
        await asyncio.wait_for(b.wakeup.listening.wait(), 10)
        put_at = time.monotonic()
        await a.inbox.put(message("after-cut", 0))  # a's pooled connections were cut too: the pool reconnects
        while "after-cut#0" not in started:
            assert time.monotonic() - put_at < 5, "no wake-up after the connections were cut (the sweep is every 15 s)"
            await asyncio.sleep(0.01)
    finally:
        await a.aclose()
        await b.aclose()
