"""Waiting in a test for something another task or thread will do: poll, never sleep a fixed time."""
from __future__ import annotations

import asyncio


async def until(check, timeout: float = 60.0, every: float = 0.1):
    """`check()`'s first truthy value, polled every `every` s; AssertionError after `timeout` s (generous: the machine
    may be busy)."""
    for _ in range(max(1, int(timeout / every))):
        got = check()
        if got:
            return got
        await asyncio.sleep(every)
    raise AssertionError("timed out")
