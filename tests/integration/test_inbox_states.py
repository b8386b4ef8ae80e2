"""The inbox and outbox under every interleaving hypothesis finds: puts (with platform retries), claims by
several processes, crashes (a process forgets what it held), leases that lapse, retries, dead letters and
sends. Whatever happens, every message is answered exactly once, one conversation's messages are finished in
the order the inbox accepted them, and a reply is never sent before the replies ahead of it in its conversation."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import delete, func, select, update

from bot.pipeline.inbox import Inbox, Waiting
from bot.pipeline.outbox import Outbox
from bot.pipeline.tables import InboxRow, OutboundRow
from bot.storage import init_db, make_engine
from connectors.message import InboundMessage, Reply

PROCS = 3
CONVS = ("c0", "c1")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = make_engine(f"sqlite:///{tmp_path_factory.mktemp('states') / 'copilot.db'}")
    init_db(e)
    yield e
    e.dispose()


def test_exactly_once_in_order_under_crashes_and_lapsed_leases(engine):
    class Pipeline(RuleBasedStateMachine):
        @initialize()
        def fresh(self):
            with engine.begin() as c:
                c.execute(delete(InboxRow.__table__))
                c.execute(delete(OutboundRow.__table__))
            # processes of other hosts: a lease is released only by lapsing, never by a pid check
            self.inboxes = [Inbox(engine, owner=f"host{i}:1:p{i}") for i in range(PROCS)]
            self.outboxes = [Outbox(engine, channels=None, metrics=None) for _ in range(PROCS)]
            self.held: list[dict[int, InboundMessage]] = [{} for _ in range(PROCS)]  # what each process works on
            self.sending: list[list[OutboundRow]] = [[] for _ in range(PROCS)]
            self.finished: dict[str, list[int]] = {c: [] for c in CONVS}  # successful completions, in time order
            self.sent: dict[str, list[int]] = {}  # conversation key -> rows sent, in time order
            self.n = 0

        @rule(conv=st.sampled_from(CONVS), retry=st.booleans(), proc=st.integers(0, PROCS - 1))
        def put(self, conv, retry, proc):
            if not retry or not self.n:
                self.n += 1
            msg = InboundMessage(channel="console", conversation_id=conv, sender_id="rep", text=f"{conv}", platform_msg_id=f"m{self.n}")
            self.inboxes[proc]._insert([msg])  # a platform retry of the last message is acknowledged and dropped

        @rule(proc=st.integers(0, PROCS - 1), pick=st.integers(0, 50))
        def claim(self, proc, pick):
            with engine.connect() as c:
                ids = c.execute(select(InboxRow.id).where(InboxRow.status.in_(("queued", "processing"))).order_by(InboxRow.id)).scalars().all()
            if ids:
                inbox_id = ids[pick % len(ids)]
                got = self.inboxes[proc].claim(inbox_id, 60.0)
                if got is not None and not isinstance(got, Waiting):
                    with engine.connect() as c:
                        first = c.execute(select(func.min(InboxRow.id)).where(InboxRow.conversation_key == got[0].conversation_key,
                                                                              InboxRow.status.in_(("queued", "processing")))).scalar()
                    assert first == inbox_id, f"message {inbox_id} claimed while {first} of its conversation is unfinished"
                    self.held[proc][inbox_id] = got[0]

        @precondition(lambda self: any(self.held))
        @rule(proc=st.integers(0, PROCS - 1), how=st.sampled_from(["done", "dead", "retry"]))
        def finish(self, proc, how):
            if not self.held[proc]:
                return
            inbox_id, msg = self.held[proc].popitem()
            if how == "retry":
                self.inboxes[proc].retry_later(inbox_id, "failed", 0.0)
                return
            if self.inboxes[proc].complete(inbox_id, msg, [Reply(text=f"re {inbox_id}")], status=how):
                self.finished[msg.conversation_id].append(inbox_id)

        @rule(proc=st.integers(0, PROCS - 1))
        def crash(self, proc):
            self.held[proc].clear()  # its rows stay "processing" under its lease
            self.sending[proc].clear()  # its outbound rows stay "sending" under their claim

        @rule()
        def time_passes(self):  # every lease and every send claim lapses
            with engine.begin() as c:
                c.execute(update(InboxRow.__table__).where(InboxRow.status == "processing").values(lease_until=time.time() - 1))
                c.execute(update(OutboundRow.__table__).where(OutboundRow.status == "sending").values(not_before=time.time() - 1))

        @rule(proc=st.integers(0, PROCS - 1))
        def claim_sends(self, proc):
            self.sending[proc] += self.outboxes[proc]._claim_batch(limit=2)

        @precondition(lambda self: any(self.sending))
        @rule(proc=st.integers(0, PROCS - 1))
        def send(self, proc):
            if not self.sending[proc]:
                return
            row = self.sending[proc].pop(0)  # a batch is sent in order
            with engine.connect() as c:
                ahead = c.execute(select(func.count()).where(OutboundRow.conversation_key == row.conversation_key, OutboundRow.id < row.id,
                                                             OutboundRow.status.in_(("pending", "sending")))).scalar()
            assert ahead == 0, f"reply {row.id} sent while {ahead} replies ahead of it in its conversation were not"
            self.sent.setdefault(row.conversation_key, []).append(row.id)
            self.outboxes[proc]._mark_sent([row.id])

        @invariant()
        def answered_once_and_in_order(self):
            with engine.connect() as c:
                per = dict(c.execute(select(OutboundRow.inbox_id, func.count()).group_by(OutboundRow.inbox_id)).all())
                closed = set(c.execute(select(InboxRow.id).where(InboxRow.status.in_(("done", "dead")))).scalars())
            assert set(per) == closed and set(per.values()) <= {1}, per
            for conv in CONVS:
                assert self.finished[conv] == sorted(self.finished[conv]), self.finished

        def teardown(self):
            # recovery: every lease lapses, a fresh process finishes what is left; then everything is answered once
            if not hasattr(self, "inboxes"):
                return
            self.time_passes()
            last = Inbox(engine, owner="host9:1:last")
            with engine.connect() as c:
                left = c.execute(select(InboxRow.id).where(InboxRow.status.in_(("queued", "processing"))).order_by(InboxRow.id)).scalars().all()
            for inbox_id in left:
                got = last.claim(inbox_id, 60.0)
                assert got is not None and not isinstance(got, Waiting), (inbox_id, got)
                assert last.complete(inbox_id, got[0], [Reply(text="late")])
            with engine.connect() as c:
                assert c.execute(select(func.count()).where(InboxRow.status.in_(("queued", "processing")))).scalar() == 0
                per = c.execute(select(OutboundRow.inbox_id, func.count()).group_by(OutboundRow.inbox_id)).all()
            assert all(n == 1 for _, n in per)

    Pipeline.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    Pipeline.TestCase().runTest()
