"""Cooperative cancellation of a message's attempt once it ran past its time.

A worker thread cannot be killed. When the dispatcher gives up on an attempt (the handler timeout), it sets the
attempt's event; the work still running in a thread for it stops at its next check (`check()`): between the
pieces of a streamed answer, after a model call returns, before a write or a send. So a timed-out attempt does
no more work and changes nothing after the retry has started (writes and sends carry idempotency keys besides).

The event travels in a context variable: the dispatcher sets it before it starts the handler, the handler's task
copies the context, and `asyncio.to_thread` hands the context to the thread.
"""
from __future__ import annotations

import threading
from contextvars import ContextVar

_attempt: ContextVar[threading.Event | None] = ContextVar("copilot_attempt", default=None)


class AttemptCancelled(BaseException):
    """The attempt this code runs for was given up (a BaseException, like asyncio.CancelledError, so that no
    `except Exception` fallback carries on with the work)."""


def begin() -> tuple[threading.Event, object]:
    """A new attempt in the current context: its event (set it to cancel) and the token to `end` it with."""
    event = threading.Event()
    return event, _attempt.set(event)


def end(token) -> None:
    _attempt.reset(token)


def check() -> None:
    """Raise AttemptCancelled when the attempt this code runs for was given up; nothing outside an attempt."""
    event = _attempt.get()
    if event is not None and event.is_set():
        raise AttemptCancelled("the attempt ran past its time; a retry has taken over")
