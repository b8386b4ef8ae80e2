"""Which files a list of paths names for ingestion: files as given, folders walked in a stable order."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rag.formats import SUFFIXES


def expand(paths: Iterable[Path], exclude: tuple[str, ...] = ()) -> list[tuple[Path, Path]]:
    """(root, file) pairs: files as given, directories walked for supported suffixes (sorted),
    skipping hidden entries and top-level folders named in `exclude`."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += [(p, f) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in SUFFIXES and not _skipped(f, p, exclude)]
        else:
            out.append((p.parent, p))
    return out


def _skipped(f: Path, root: Path, exclude: tuple[str, ...]) -> bool:
    parts = f.relative_to(root).parts
    return any(part.startswith(".") for part in parts) or (len(parts) > 1 and parts[0] in exclude)
