"""Signed links to a cited passage, short-lived and bound to the person they were made for.

The signature binds the document, the cited passage, the viewer's tenant, role and team, the person and an
expiry, so a citation forwarded out of its chat cannot be widened to another audience, and a link opened in a
browser signed in as someone else is refused. Links are signed with the newest key of a key ring
(data_dir/link-keys/<kid>.key, each created 0600 with O_EXCL); `copilot kb links rotate` adds a key, and
`--revoke` deletes the older ones, which voids every link signed with them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

DEFAULT_TTL = 24 * 3600


def create_key_file(path: Path, nbytes: int = 32) -> bytes:
    """A new random key at `path`, readable by this user only from the first byte (never overwrites)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def load_secret(data_dir: Path) -> bytes:
    """The server's own key (sessions, CSRF): data_dir/secret.key, created on first use."""
    path = data_dir / "secret.key"
    try:
        return create_key_file(path)
    except FileExistsError:
        return path.read_bytes()


class KeyRing:
    """The link-signing keys: the newest signs, every key present verifies."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not self.keys():
            self.rotate()

    def keys(self) -> dict[str, bytes]:
        if not self.folder.is_dir():
            return {}
        return {p.stem: p.read_bytes() for p in sorted(self.folder.glob("*.key"))}

    def current(self) -> tuple[str, bytes]:
        kid, key = sorted(self.keys().items())[-1]
        return kid, key

    def rotate(self, revoke: bool = False) -> str:
        """A new signing key; with `revoke`, the older keys are deleted and links signed with them stop working."""
        kid = f"k{time.time_ns():020d}"
        create_key_file(self.folder / f"{kid}.key")
        if revoke:
            for old in self.keys():
                if old != kid:
                    (self.folder / f"{old}.key").unlink(missing_ok=True)
        return kid


@dataclass(frozen=True)
class LinkClaims:
    doc_id: str
    chunk_id: str
    tenant: str
    role: str
    team: str
    person: str


class LinkSigner:
    def __init__(self, ring: KeyRing, base_url: str, ttl: float = DEFAULT_TTL) -> None:
        self.ring = ring
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl

    @staticmethod
    def _sig(key: bytes, c: LinkClaims, exp: int) -> str:
        msg = "\n".join((c.doc_id, c.chunk_id, c.tenant, c.role, c.team, c.person, str(exp))).encode()
        return base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()[:18]).decode()

    def url(self, doc_id: str, tenant: str, role: str, team: str, chunk_id: str = "", person: str = "") -> str:
        exp = int(time.time() + self.ttl)
        kid, key = self.ring.current()
        claims = LinkClaims(doc_id, chunk_id, tenant, role, team, person)
        q = {"chunk": chunk_id, "tenant": tenant, "role": role, "team": team, "for": person, "exp": exp, "kid": kid,
             "sig": self._sig(key, claims, exp)}
        return f"{self.base_url}/kb/{quote(doc_id, safe='')}?{urlencode(q)}" + (f"#{quote(chunk_id, safe='')}" if chunk_id else "")

    def verify(self, doc_id: str, query: dict[str, str]) -> LinkClaims | None:
        """The claims of a valid, unexpired link signed by a key still in the ring; None otherwise."""
        exp, sig = query.get("exp", ""), query.get("sig", "")
        key = self.ring.keys().get(query.get("kid", ""))
        if key is None or not exp.isdigit() or int(exp) < time.time():
            return None
        claims = LinkClaims(doc_id, query.get("chunk", ""), query.get("tenant", ""), query.get("role", ""), query.get("team", ""),
                            query.get("for", ""))
        return claims if hmac.compare_digest(self._sig(key, claims, int(exp)), sig) else None
