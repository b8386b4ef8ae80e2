"""The checks of a built copilot that `copilot doctor` prints and the console's Reps & channels page shows: the
database, the embedding model, the knowledge index, the directory, the model, the inbox, the outbound replies and
each channel's own checks. Each says what it looked at, whether it is fine and how to fix it; none changes anything.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from bot.settings import Settings
from connectors.channel import Check

if TYPE_CHECKING:
    from bot.app import App


async def app_checks(cp: App) -> list[Check]:
    settings = cp.settings
    checks = [Check("database", True, settings.db_url.split("@")[-1]),
              Check("embedding model", True, f"{cp.knowledge.embedder.model_id} ({cp.knowledge.embedder.dim} dims)")]
    n = await asyncio.to_thread(cp.knowledge.vectors.count)
    if cp.knowledge.vectors.broken:  # the channels keep answering from keyword search meanwhile
        checks.append(Check("knowledge index", False, f"{cp.knowledge.vectors.broken} — run `copilot kb rebuild`", "copilot kb rebuild"))
    else:
        checks.append(Check("knowledge index", n > 0, f"{n} passages", "" if n else "copilot ingest knowledge/  (or start `copilot serve` once)"))
    people = await asyncio.to_thread(cp.directory.list)
    checks.append(Check("rep directory", bool(people), f"{len(people)} people", "" if people else "copilot reps add ID --name NAME --role rep"))
    checks.append(await llm_check(settings))
    checks.append(await redis_check(cp))
    counts = await asyncio.to_thread(cp.inbox.counts)
    dead = counts.get("dead", 0)
    waiting = counts.get("queued", 0) + counts.get("processing", 0)
    checks.append(Check("inbox", dead == 0, f"{counts.get('done', 0)} done, {waiting} waiting, {dead} dead letters",
                        "inspect with `copilot inbox dead`; the senders were told it failed" if dead else ""))
    out = await asyncio.to_thread(cp.outbox.counts)
    pending, dead_out = out.get("pending", 0) + out.get("sending", 0), out.get("dead", 0)
    checks.append(Check("outbound replies", dead_out == 0, f"{out.get('sent', 0)} sent, {pending} pending, {dead_out} dead letters",
                        "see the channel checks below for the cause; `copilot inbox dead` lists them, `copilot inbox retry ID` resends"
                        if dead_out else ""))
    return checks + await cp.channels.doctor()


async def redis_check(cp: App) -> Check:
    if cp.shared is None:
        return Check("redis", True, "not configured (COPILOT_REDIS_URL): each process keeps its own access tokens, rate limits "
                     "and replay memory (the replay memory in the database)")
    try:
        version = await asyncio.wait_for(cp.shared.ping(), 3)
    except Exception as exc:
        return Check("redis", False, f"{cp.shared.where}: {type(exc).__name__} {exc} — meanwhile each process uses its own tokens and "
                     "rate limits, and the database for replay memory", "start Redis or fix COPILOT_REDIS_URL (or unset it)")
    return Check("redis", True, f"{cp.shared.where} (Redis {version}): access tokens, rate limits and replay memory shared by every process")


async def llm_check(settings: Settings) -> Check:
    if settings.offline:
        return Check("model", True, "offline mode (no COPILOT_LLM_BASE_URL): extractive answers, template drafts, rule-based CRM logging")
    host = urlparse(settings.llm_base_url).hostname or ""
    from bot.agent.llm import host_allowed

    if not host_allowed(settings):
        return Check("model", False, f"{host} is not a loopback or allow-listed host and COPILOT_LLM_ALLOW_EXTERNAL=false",
                     "add the host to COPILOT_LLM_ALLOWED_HOSTS or use a model inside your network")
    import aiohttp

    url = settings.llm_base_url.rstrip("/") + "/models"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            async with s.get(url, headers={"Authorization": f"Bearer {settings.llm_api_key.get_secret_value()}"}) as r:
                if r.status == 401:
                    return Check("model", False, f"{url}: 401 unauthorized", "set COPILOT_LLM_API_KEY")
                if r.status >= 400:
                    return Check("model", False, f"{url}: HTTP {r.status}", "check COPILOT_LLM_BASE_URL (it should end in /v1)")
                data = await r.json(content_type=None)
        names = [m.get("id") for m in data.get("data", [])] if isinstance(data, dict) else []
        if names and settings.llm_model not in names:
            return Check("model", False, f"{settings.llm_model} not served; available: {', '.join(names[:5])}", "set COPILOT_LLM_MODEL to one of them")
        return Check("model", True, f"{settings.llm_model} at {settings.llm_base_url}")
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return Check("model", False, f"{url}: {type(exc).__name__} {exc}", "start the model server or fix COPILOT_LLM_BASE_URL; until then the copilot runs offline answers")
