"""Files the email connector keeps beside the mailbox, under data_dir/email/.

Attachments are written under attachments/ (named by content hash) before the message reaches the
sink: the bytes stay reachable even if someone deletes the mail from the mailbox. Unparseable mail is
kept byte for byte under unparsed/.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{64}$")
REF_PREFIX = "email:"


class Files:
    """Attachment bytes and unparseable mail under data_dir/email/."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "email"
        self.attachments = self.root / "attachments"
        self.unparsed = self.root / "unparsed"

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        path = self.attachments / digest[:2] / digest
        if not path.exists():
            _write_atomic(path, data)
        return REF_PREFIX + digest

    def get(self, ref: str) -> bytes:
        digest = ref.removeprefix(REF_PREFIX)
        if not ref.startswith(REF_PREFIX) or not _SHA.match(digest):
            raise ValueError(f"not an email attachment reference: {ref!r}")
        path = self.attachments / digest[:2] / digest
        if not path.is_file():
            raise FileNotFoundError(f"attachment {digest[:12]}… is no longer under {self.attachments}")
        return path.read_bytes()

    def keep_unparsed(self, name: str, raw: bytes, reason: str) -> Path:
        safe = re.sub(r"[^\w.-]", "_", name)[:120]
        path = self.unparsed / f"{safe}.eml"
        _write_atomic(path, raw)
        _write_atomic(path.with_suffix(".reason.txt"), reason.encode("utf-8"))
        return path

    def unparsed_files(self) -> list[Path]:
        return sorted(self.unparsed.glob("*.eml")) if self.unparsed.is_dir() else []


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
