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

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import urlparse

from bot.agent.egress import EgressPolicy, guarded_client
from bot.ops import deadline
from bot.settings import Settings

log = logging.getLogger("copilot.llm")


class ModelUnavailable(RuntimeError):
    """The model could not be used (not configured, refused by policy, down, slow, malformed, over budget)."""


def host_allowed(settings: Settings) -> bool:
    """With COPILOT_LLM_ALLOW_EXTERNAL=false only loopback or allow-listed hosts may see data (the same
    policy the model clients' transport enforces on the address it connects to: bot.agent.egress)."""
    return EgressPolicy.of(settings).allows_url(settings.llm_base_url)


# PII masking ------------------------------------------------------------------------------------
_PII = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("ID", re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")),  # PRC resident ID
    ("CARD", re.compile(r"(?<!\d)(?:\d[ -]?){15,18}\d(?!\d)")),  # bank cards (16-19 digits)
    ("PHONE", re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)|(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")),
]


@dataclass
class Masker:
    """Replaces PII with stable placeholders (⟦PHONE_1⟧) and restores them in the model's reply; with
    `for_account`, also the names of the account's contacts (⟦NAME_1⟧) and its amounts (⟦AMOUNT_1⟧)."""

    forward: dict[str, str] = field(default_factory=dict)
    back: dict[str, str] = field(default_factory=dict)
    terms: list[tuple[str, str]] = field(default_factory=list)  # (kind, literal), longest first

    @classmethod
    def for_account(cls, names: Iterable[str] = (), amounts: Iterable[float | int | str] = ()) -> Masker:
        terms = [("NAME", n.strip()) for n in names if n and len(n.strip()) >= 2]
        for a in amounts:
            terms += [("AMOUNT", v) for v in _amount_forms(a)]
        return cls(terms=sorted(set(terms), key=lambda kv: -len(kv[1])))

    def mask(self, text: str) -> str:
        for kind, value in self.terms:
            if value in text:
                text = text.replace(value, self._token(kind, value))
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


WAN = "万"  # ten thousand: how amounts are written in Chinese (120万), to mask them in every form


def _amount_forms(amount: float | int | str) -> list[str]:
    """How an amount may be written: 1200000, 1,200,000, 1200000.00, 120万, 120 万."""
    try:
        value = float(str(amount).replace(",", ""))
    except ValueError:
        return []
    if value < 1000:
        return []  # small numbers are everywhere (counts, days): masking them would garble the prompt
    whole = int(value)
    forms = {f"{whole:,}", f"{value:,.2f}", f"{value:.2f}"} | ({str(whole)} if value == whole else {str(value)})
    if whole % 10_000 == 0:
        wan = f"{whole // 10_000}"
        forms |= {f"{wan}{WAN}", f"{wan} {WAN}"}
    elif whole >= 10_000:
        forms |= {f"{value / 10_000:g}{WAN}"}
    return sorted(forms, key=len, reverse=True)


# untrusted output ---------------------------------------------------------------------------------
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_TAG = re.compile(r"<\s*(img|a|iframe|image|svg|script|object|embed|link|meta)\b[^>]*>(?:\s*</\s*\1\s*>)?", re.I)
_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M)
_BARE_URL = re.compile(r"(?:https?|ftp)://[^\s<>()\[\]\"'`]+|\bwww\.[^\s<>()\[\]\"'`]+", re.I)


def _host(url: str) -> str:
    return (urlparse(url if "://" in url else "http://" + url).hostname or "").lower()


def strip_untrusted(text: str, allowed_hosts: Iterable[str] = ()) -> str:
    """Model output before any channel sees it: images are removed (a chat client fetches them: a planted
    instruction could carry data out in the URL), and links to hosts not on the allow-list (our own
    public_url and COPILOT_OUTPUT_LINK_HOSTS) keep their text but lose their target."""
    allowed = {h.lower() for h in allowed_hosts if h}

    def ok(url: str) -> bool:
        return _host(url) in allowed

    text = _MD_IMAGE.sub(lambda m: m.group(0) if ok(m.group(2)) else (m.group(1) or ""), text)
    text = _MD_LINK.sub(lambda m: m.group(0) if ok(m.group(2)) else m.group(1), text)
    text = _HTML_TAG.sub("", text)
    text = _REF_DEF.sub(lambda m: m.group(0) if any(ok(u) for u in _BARE_URL.findall(m.group(0))) else "", text)
    return _BARE_URL.sub(lambda m: m.group(0) if ok(m.group(0)) else "", text)


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
            self._llm = ChatOpenAI(base_url=s.llm_base_url, api_key=s.llm_api_key.get_secret_value() or "not-needed", model=s.llm_model,
                                   http_client=guarded_client(s, s.llm_timeout),
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
        deadline.check()
        try:
            msg = self._stream(llm, messages, masker, on_text) if on_text is not None and not tools else llm.invoke(messages)
            deadline.check()  # a blocking call that returned after its attempt was given up: its result is not used
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
        return ModelReply(strip_untrusted(masker.unmask(content), self.link_hosts).strip(), calls, tokens, latency)

    @property
    def link_hosts(self) -> list[str]:
        """Hosts whose links and images may appear in model output: ours (public_url) and the allow-list."""
        return [_host(self.settings.base_url), *self.settings.output_link_hosts]

    def _stream(self, llm, messages, masker: Masker, on_text: Callable[[str], None]):
        full = None
        last = 0.0
        for chunk in llm.stream(messages):
            deadline.check()  # the attempt was given up: stop reading (closes the stream)
            full = chunk if full is None else full + chunk
            now = time.monotonic()
            if now - last > 0.15 and isinstance(full.content, str):
                on_text(strip_untrusted(masker.unmask(full.content), self.link_hosts))
                last = now
        if full is None:
            raise ModelUnavailable("the model streamed nothing")
        return full
