"""Knowledge is only knowledge: data folders (CRM exports, evaluation sets, the copilot's own data directory)
and files that look like CRM exports are never ingested as documents, or `copilot search` would hand any
rep the contacts table.

- A folder named like a data folder (`crm`, `eval`, or COPILOT_KNOWLEDGE_DATA_DIRS) anywhere below a walked
  folder is skipped; a path in that setting (and the data directory) is skipped with everything under it.
- A CSV/TSV whose header names personal contact columns (phone, e-mail, contact, WeChat, ...) is refused
  with a reason, wherever it comes from (a folder, a chat upload, the admin API).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

DEFAULT_DATA_DIRS = ("crm", "eval")
_CONTACT_COLUMN = re.compile(r"phone|mobile|^tel|telephone|e-?mail|contact|wechat|weixin|wecom_userid|dingtalk_userid|"
                             r"电话|手机|邮箱|联系人|联系方式|微信|身份证", re.I)


class DataFolders:
    """Which paths hold data, not documents."""

    def __init__(self, entries: Iterable[str | Path] = DEFAULT_DATA_DIRS) -> None:
        self.names: set[str] = set()
        self.paths: list[Path] = []
        for e in entries:
            s = str(e).strip()
            if not s:
                continue
            if "/" in s or "\\" in s or Path(s).is_absolute():
                self.paths.append(Path(s).expanduser().resolve())
            else:
                self.names.add(s)

    def reason(self, path: Path, root: Path | None = None) -> str | None:
        """Why `path` is data (None: it may be a document)."""
        full = path.resolve()
        for p in self.paths:
            if full == p or p in full.parents:
                return f"{p} is a data folder (COPILOT_KNOWLEDGE_DATA_DIRS / COPILOT_DATA_DIR), not knowledge"
        try:
            parts = path.relative_to(root).parts[:-1] if root is not None and path != root else path.parts[:-1]
        except ValueError:
            parts = path.parts[:-1]
        hit = next((part for part in parts if part in self.names), None)
        if hit is not None:
            return f"the folder {hit!r} holds data (CRM exports, evaluation sets), not knowledge"
        return None


def crm_export_reason(data: bytes, name: str) -> str | None:
    """A CSV/TSV whose header names personal contact columns: why it is refused (None: not one)."""
    if Path(name).suffix.lower() not in (".csv", ".tsv"):
        return None
    head = data[:4096].split(b"\n", 1)[0]
    for enc in ("utf-8-sig", "gb18030"):
        try:
            line = head.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    columns = [c.strip().strip('"').strip() for c in re.split(r"[,\t;]", line)]
    personal = [c for c in columns if c and _CONTACT_COLUMN.search(c)]
    if not personal:
        return None
    return (f"looks like a CRM export (personal contact columns: {', '.join(personal[:4])}): contacts are CRM data, "
            "not knowledge; import it with `copilot crm import`")
