"""What an untrusted file may cost before it is refused, checked while parsing (rag.formats); the
process limits around the parser (CPU, memory, wall clock) are rag.sandbox's."""
from __future__ import annotations

import io
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler


class IngestError(ValueError):
    """A file that cannot be ingested; the message says why, for the uploader. `code` names the kind of
    refusal (the message catalogue has a sentence for each: `kb_refused_<code>`)."""

    def __init__(self, message: str, code: str = "unreadable") -> None:
        super().__init__(message)
        self.code = code


# What a file may cost before it is refused (rows x columns, zip contents, passages): hostile files
# claim a huge dimension, expand a small zip into gigabytes or nest YAML aliases.
MAX_CELLS = 500_000
MAX_COLUMNS = 1_000
MAX_ZIP_ENTRIES = 10_000
MAX_UNZIPPED_BYTES = 100 * 1024 * 1024
MAX_ZIP_RATIO = 100
MAX_BLOCKS = 100_000
MAX_FRONT_MATTER = 64 * 1024
MAX_PAGE_IMAGES = 8  # pictures of one PDF page read by OCR (a scan is one; a page of a thousand tiles is not a scan)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors or aliases: a few hundred bytes of nested aliases expand to gigabytes."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise IngestError("the front matter uses YAML anchors or aliases (&, *); write the values out", "yaml_alias")
        return super().compose_node(parent, index)


class FrontMatter(YAMLHandler):
    def load(self, fm: str, **kwargs: object) -> Any:
        if len(fm) > MAX_FRONT_MATTER:
            raise IngestError(f"the front matter is longer than {MAX_FRONT_MATTER // 1024} KB", "too_large")
        return yaml.load(fm, Loader=_NoAliasLoader)  # a SafeLoader that also refuses aliases


# Office (zip) -----------------------------------------------------------------------------------
def check_zip(data: bytes, kind: str) -> None:
    """Refuse a zip-based Office file before opening it: too many entries, too much unpacked, or packed
    too tightly (a zip bomb). The sizes are the ones the archive declares; zipfile reads no more than that."""
    import zipfile

    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise IngestError(f"the {kind} is encrypted (password-protected Office file); upload an unprotected copy", "encrypted")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise IngestError(f"the {kind} is damaged and cannot be opened ({type(exc).__name__})", "damaged") from exc
    if len(infos) > MAX_ZIP_ENTRIES:
        raise IngestError(f"the {kind} holds {len(infos)} parts (at most {MAX_ZIP_ENTRIES}); it is not a normal Office file", "zip_bomb")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > MAX_UNZIPPED_BYTES:
        raise IngestError(f"the {kind} unpacks to {total >> 20} MB (at most {MAX_UNZIPPED_BYTES >> 20} MB); split it", "too_large")
    if total > 1 << 20 and total > MAX_ZIP_RATIO * max(packed, 1):
        raise IngestError(f"the {kind} is compressed {total // max(packed, 1)}:1 (at most {MAX_ZIP_RATIO}:1); it looks like a zip bomb",
                          "zip_bomb")


def capped_rows(rows, budget: list[int], kind: str):
    """Rows as lists, refused once the file passes MAX_CELLS cells or a row passes MAX_COLUMNS columns;
    the dimension a file claims is never trusted (an empty row costs one cell)."""
    for r in rows:
        r = list(r)
        while r and (r[-1] is None or r[-1] == ""):
            r.pop()
        if len(r) > MAX_COLUMNS:
            raise IngestError(f"the {kind} has a row with more than {MAX_COLUMNS} columns", "too_large")
        budget[0] -= max(len(r), 1)
        if budget[0] < 0:
            raise IngestError(f"the {kind} has more than {MAX_CELLS} cells; split it", "too_large")
        yield r
