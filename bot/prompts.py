"""Prompt files and fixed user-facing texts, loaded once at start from prompts/.

A prompt file is Markdown with front matter (job, version, language rules in the body); its
version is recorded with every draft, so `copilot report drafts` can compare variants.
"""
from __future__ import annotations

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


class Prompts:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._messages = tomllib.loads((folder / "messages.toml").read_text(encoding="utf-8"))
        self._prompts: dict[str, Prompt] = {}
        for f in sorted(folder.glob("*.md")):
            post = frontmatter.loads(f.read_text(encoding="utf-8"))
            system, _, user = post.content.partition("\n## user\n")
            self._prompts[f.stem] = Prompt(f.stem, str(post.metadata.get("version", "1")), system.strip(), user.strip())

    def msg(self, key: str, lang: str = "zh", **fmt: object) -> str:
        entry = self._messages[key]
        text = entry.get(lang) or entry["zh"]
        return text.format(**fmt) if fmt else text

    def prompt(self, name: str) -> Prompt:
        try:
            return self._prompts[name]
        except KeyError:
            raise KeyError(f"prompt file prompts/{name}.md is missing") from None

    def names(self) -> list[str]:
        return sorted(self._prompts)
