"""Prompt files and fixed user-facing texts, loaded once at start from prompts/.

A prompt file is Markdown with front matter (job, version, language rules in the body); its
version is recorded with every draft, so `copilot report drafts` can compare variants.
"""
from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path

import frontmatter


@dataclass(frozen=True)
class Prompt:
    """A prompt file: the system part, and a user template below a line `## user` ({placeholders})."""

    name: str
    version: str
    system: str
    user: str

    def render(self, **fields: object) -> tuple[str, str]:
        return self.system.format(**fields), self.user.format(**fields)


LANGS = ("zh", "en")


def ui_lang(code: str | None) -> str:
    """The catalogue a language code reads from: English for "en", Chinese for everything else."""
    return "en" if code == "en" else "zh"


def placeholders(text: str) -> set[str]:
    """The {names} a message expects (format specs aside): "{n} in {when:%H:%M}" -> {"n", "when"}."""
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(text) if field}


class Prompts:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._messages = {lang: tomllib.loads((folder / f"messages.{lang}.toml").read_text(encoding="utf-8")) for lang in LANGS}
        self._prompts: dict[str, Prompt] = {}
        for f in sorted(folder.glob("*.md")):
            post = frontmatter.loads(f.read_text(encoding="utf-8"))
            system, _, user = post.content.partition("\n## user\n")
            self._prompts[f.stem] = Prompt(f.stem, str(post.metadata.get("version", "1")), system.strip(), user.strip())

    def catalogue(self, lang: str) -> dict[str, str]:
        """Every message of one language (prompts/messages.<lang>.toml), key -> text with {placeholders}."""
        return dict(self._messages[ui_lang(lang)])

    def labels(self, prefix: str) -> dict[str, dict[str, str]]:
        """The messages whose keys start with `prefix`, per language: e.g. "channel_" for the connectors'
        labels (ChannelContext.labels), which cannot read this catalogue themselves."""
        return {lang: {k: v for k, v in m.items() if k.startswith(prefix)} for lang, m in self._messages.items()}

    def has(self, key: str) -> bool:
        return any(key in m for m in self._messages.values())

    def raw(self, key: str, lang: str = "zh") -> str:
        """The message as written, placeholders unfilled; a key missing in `lang` comes from the other language."""
        lang = ui_lang(lang)
        for code in (lang, *(c for c in LANGS if c != lang)):
            if key in self._messages[code]:
                return self._messages[code][key]
        raise KeyError(f"message {key!r} is in none of prompts/messages.{{{','.join(LANGS)}}}.toml")

    def msg(self, key: str, lang: str = "zh", **fields: object) -> str:
        """The message `key` in `lang` ("en", else Chinese) with its {placeholders} filled from `fields`."""
        text = self.raw(key, lang)
        missing = placeholders(text) - fields.keys()
        if missing:
            raise KeyError(f"message {key!r} ({ui_lang(lang)}) needs {', '.join(sorted(missing))}")
        return text.format(**fields)

    def both(self, key: str, **fields: object) -> str:
        """Chinese, then English, on two lines: for someone whose language is not known."""
        return "\n".join(self.msg(key, lang, **fields) for lang in LANGS)

    def prompt(self, name: str) -> Prompt:
        try:
            return self._prompts[name]
        except KeyError:
            raise KeyError(f"prompt file prompts/{name}.md is missing") from None

    def names(self) -> list[str]:
        return sorted(self._prompts)
