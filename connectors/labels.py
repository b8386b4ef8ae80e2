"""The words a channel adds around a reply ("回复 1 确认", "来源", "⚠ 3 天未更新", a card's title): the
`channel_*` messages of the message catalogue (prompts/messages.<lang>.toml), one mapping per language.

The app factory hands them to every connector in `ChannelContext.labels`, read from the deployment's
catalogue; a connector or renderer given none reads the catalogue that ships with the copilot. Either
way no label is written in connectors/, and a reply is labelled in its own language (`Reply.lang`).
"""
from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Mapping

Labels = Mapping[str, Mapping[str, str]]  # language -> message key -> text with {placeholders}
PREFIX = "channel_"
LANGS = ("zh", "en")


def pick(catalogues: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """The channel_* messages of each language's catalogue."""
    return {lang: {k: v for k, v in cat.items() if k.startswith(PREFIX)} for lang, cat in catalogues.items()}


@lru_cache(maxsize=1)
def shipped() -> Labels:
    """The labels of the catalogue that ships with the copilot (the top-level `prompts` package: data only)."""
    import prompts

    folder = Path(prompts.__file__).resolve().parent
    return pick({lang: tomllib.loads((folder / f"messages.{lang}.toml").read_text(encoding="utf-8")) for lang in LANGS})


def label(labels: Labels | None, lang: str, key: str, **fields: object) -> str:
    """The label `key` in `lang` (English for "en", Chinese for anything else), else in a language that has it."""
    labels = labels or shipped()
    for code in ("en" if lang == "en" else "zh", *labels):
        text = (labels.get(code) or {}).get(key)
        if text is not None:
            return text.format(**fields)
    raise KeyError(f"no channel label {key!r}: add it to prompts/messages.{{zh,en}}.toml")


def every(labels: Labels | None, key: str, **fields: object) -> list[str]:
    """The label in every language: to recognise it in text someone else wrote."""
    labels = labels or shipped()
    return [label(labels, code, key, **fields) for code in labels if key in (labels.get(code) or {})]
