"""Logging set-up: readable lines on a terminal, JSON lines with COPILOT_LOG_JSON=true.

Secrets never reach a log: tracebacks are rendered without local variables, and every line passes a
redaction filter (a stdlib `logging.Filter` on the handler, a structlog processor, and the formatter's
final text) that masks the configured secret values and common credential patterns.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import tomllib
from typing import Any, Iterable

import structlog
from pydantic import SecretStr

MASK = "***"
_SECRET_NAME = re.compile(r"(secret|token|password|passwd|aes_key|api_key|apikey|private_key|database_url)", re.I)
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"(?i)\b((?:[a-z_]*?)(?:password|passwd|pwd|secret|token|api_key|apikey|aes_key|access_key)"
               r"['\"]?\s*[=:]\s*['\"]?)[^\s'\",;&)}]+"),
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)"),  # scheme://user:password@host
    re.compile(r"\b(sk-)[A-Za-z0-9_-]{8,}"),  # OpenAI-style API keys
]


class Redactor:
    """Masks the configured secret values and common credential patterns in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # a number (a token budget, an agent id) is no secret, and masking it would garble every count in the log
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6 and not s.strip().isdigit()}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.secrets:
            if value in text:
                text = text.replace(value, MASK)
        for rx in _PATTERNS:
            text = rx.sub(lambda m: m.group(1) + MASK + (m.group(2) if m.re.groups > 1 else ""), text)
        return text


class RedactFilter(logging.Filter):
    """On the handler: the record's message is rendered and masked before any formatter sees it."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) or record.args:
            try:
                message = record.getMessage()
            except Exception:  # a malformed call: keep the template, drop the arguments
                message = str(record.msg)
            record.msg, record.args = self.redact(message), None
        return True


def redact_processor(redact: Redactor):
    """The structlog processor: masks every string value of the event dict (the rendered traceback too)."""

    def process(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        for k, v in list(event.items()):
            if isinstance(v, str):
                event[k] = redact(v)
        return event

    return process


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    def __init__(self, redact: Redactor, **kw: Any) -> None:
        super().__init__(**kw)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def secret_values(settings: Any = None, env: dict[str, str] | None = None) -> list[str]:
    """Every secret this process knows: the settings' SecretStr fields, COPILOT_* variables named like a
    secret, and the values of keys named like a secret in copilot.toml."""
    out: list[str] = []
    if settings is not None:
        for name in type(settings).model_fields:
            value = getattr(settings, name, None)
            if isinstance(value, SecretStr):
                out.extend(_url_password(value.get_secret_value()))
    env = os.environ if env is None else env
    out.extend(v for k, v in env.items() if k.startswith("COPILOT_") and _SECRET_NAME.search(k) and v)
    path = os.environ.get("COPILOT_CONFIG", "copilot.toml")
    try:
        with open(path, "rb") as fh:
            out.extend(_toml_secrets(tomllib.load(fh)))
    except (OSError, tomllib.TOMLDecodeError):
        pass
    return [v for s in out for v in _url_password(s)]


def _url_password(value: str) -> list[str]:
    m = re.match(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:([^@\s/]+)@", value, re.I)  # Redis URLs have no user: redis://:pw@host
    return [value, m.group(1)] if m else [value]


def _toml_secrets(node: Any, key: str = "") -> list[str]:
    if isinstance(node, dict):
        return [v for k, child in node.items() for v in _toml_secrets(child, str(k))]
    if isinstance(node, list):
        return [v for child in node for v in _toml_secrets(child, key)]
    return [node] if isinstance(node, str) and node and _SECRET_NAME.search(key) else []


def configure(level: str = "INFO", json: bool = False, secrets: Iterable[str] = ()) -> None:
    redact = Redactor(secrets)
    # no local variables in tracebacks: a frame holding a settings object or a token would print it
    renderer = structlog.processors.JSONRenderer(ensure_ascii=False) if json else structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback)
    formatter = _RedactingFormatter(
        redact,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                    redact_processor(redact), renderer],
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(RedactFilter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("chromadb", "httpx", "urllib3", "aiohttp.access", "jieba", "sentence_transformers", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
