"""The model layer: an OpenAI-compatible chat model through LangChain, behind the trust layer.

- Data stays in its domain: with COPILOT_LLM_ALLOW_EXTERNAL=false only loopback or allow-listed
  hosts are called.
- PII (phones, emails, ID numbers, bank cards) is masked before text leaves and unmasked in the
  reply; prompts and raw output are logged only with COPILOT_DEBUG=true.
- Timeouts and retries with backoff come from the OpenAI client; a per-conversation token budget
  stops runaway conversations; every call is audited (model, tokens, latency).
- Any failure raises `ModelUnavailable`, and every caller has an offline fallback.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

from bot.settings import Settings

log = logging.getLogger("copilot.llm")


class ModelUnavailable(RuntimeError):
    """The model could not be used (not configured, refused by policy, down, slow, malformed, over budget)."""


def host_allowed(settings: Settings) -> bool:
    """With COPILOT_LLM_ALLOW_EXTERNAL=false only loopback or allow-listed hosts may see data."""
    host = (urlparse(settings.llm_base_url).hostname or "").lower()
    if settings.llm_allow_external or host in {h.lower() for h in settings.llm_allowed_hosts}:
        return True
    if host == "localhost":
        return True
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


# PII masking ------------------------------------------------------------------------------------
_PII = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("ID", re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")),  # PRC resident ID
    ("CARD", re.compile(r"(?<!\d)(?:\d[ -]?){15,18}\d(?!\d)")),  # bank cards (16-19 digits)
    ("PHONE", re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)|(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")),
]


@dataclass
class Masker:
    """Replaces PII with stable placeholders (⟦PHONE_1⟧) and restores them in the model's reply."""

    forward: dict[str, str] = field(default_factory=dict)
    back: dict[str, str] = field(default_factory=dict)

    def mask(self, text: str) -> str:
        for kind, rx in _PII:
            text = rx.sub(lambda m, k=kind: self._token(k, m.group(0)), text)
        return text

    def _token(self, kind: str, value: str) -> str:
        if value in self.forward:
            return self.forward[value]
        token = f"⟦{kind}_{sum(1 for t in self.back if t.startswith('⟦' + kind)) + 1}⟧"
        self.forward[value] = token
        self.back[token] = value
        return token

    def unmask(self, text: str) -> str:
        for token, value in self.back.items():
            text = text.replace(token, value)
        return text


@dataclass
class ModelReply:
    text: str
    tool_calls: list[dict[str, Any]]
    tokens: int
    latency: float


class ChatModel:
    """One OpenAI-compatible endpoint. `complete` is synchronous (workers run it in threads)."""

    def __init__(self, settings: Settings, audit: Callable[..., None], usage: Callable[[str, int], int]) -> None:
        self.settings = settings
        self.audit = audit  # audit(kind, name, actor, detail)
        self.usage = usage  # usage(conversation_key, tokens_to_add) -> total so far
        self._llm = None

    @property
    def configured(self) -> bool:
        return bool(self.settings.llm_base_url)

    def _client(self):
        if self._llm is None:
            from langchain_openai import ChatOpenAI

            s = self.settings
            self._llm = ChatOpenAI(base_url=s.llm_base_url, api_key=s.llm_api_key or "not-needed", model=s.llm_model,
                                   timeout=s.llm_timeout, max_retries=s.llm_retries, temperature=0.2, stream_usage=True)
        return self._llm

    def complete(self, system: str, user: str, *, actor: str, conversation: str, tools: list | None = None,
                 masker: Masker | None = None, job: str = "", on_text: Callable[[str], None] | None = None) -> ModelReply:
        """One model call. With `on_text` (and no tools) the answer is streamed: `on_text` gets the text
        so far (unmasked) as it grows, for channels that can show an answer while it is written."""
        s = self.settings
        if not self.configured:
            raise ModelUnavailable("no model configured")
        if not host_allowed(s):
            raise ModelUnavailable(f"model host {urlparse(s.llm_base_url).hostname} is not allowed (COPILOT_LLM_ALLOW_EXTERNAL=false)")
        if conversation and self.usage(conversation, 0) >= s.llm_token_budget:
            raise ModelUnavailable("this conversation used its model token budget")
        masker = masker or Masker()
        messages = [("system", masker.mask(system)), ("human", masker.mask(user))]
        if s.debug:
            log.debug("model prompt (%s): %s", job, messages)
        llm = self._client()
        if tools:
            llm = llm.bind_tools(tools)
        started = time.perf_counter()
        try:
            msg = self._stream(llm, messages, masker, on_text) if on_text is not None and not tools else llm.invoke(messages)
        except Exception as exc:
            latency = time.perf_counter() - started
            self.audit("model", job or "complete", actor, {"model": s.llm_model, "error": type(exc).__name__, "latency_ms": round(latency * 1000)})
            log.warning("model call failed (%s): %s", job, type(exc).__name__)
            raise ModelUnavailable(f"model call failed: {type(exc).__name__}") from exc
        latency = time.perf_counter() - started
        usage = getattr(msg, "usage_metadata", None) or {}
        tokens = int(usage.get("total_tokens") or 0)
        if conversation:
            self.usage(conversation, tokens)
        self.audit("model", job or "complete", actor, {"model": s.llm_model, "tokens": tokens, "latency_ms": round(latency * 1000)})
        content = msg.content if isinstance(msg.content, str) else "".join(
            part.get("text", "") for part in msg.content if isinstance(part, dict))
        if s.debug:
            log.debug("model output (%s): %s", job, content)
        calls = [{"name": c["name"], "args": {k: masker.unmask(v) if isinstance(v, str) else v for k, v in (c.get("args") or {}).items()}}
                 for c in (getattr(msg, "tool_calls", None) or [])]
        if not content.strip() and not calls:
            raise ModelUnavailable("the model returned an empty answer")
        return ModelReply(masker.unmask(content).strip(), calls, tokens, latency)

    @staticmethod
    def _stream(llm, messages, masker: Masker, on_text: Callable[[str], None]):
        full = None
        last = 0.0
        for chunk in llm.stream(messages):
            full = chunk if full is None else full + chunk
            now = time.monotonic()
            if now - last > 0.15 and isinstance(full.content, str):
                on_text(masker.unmask(full.content))
                last = now
        if full is None:
            raise ModelUnavailable("the model streamed nothing")
        return full
