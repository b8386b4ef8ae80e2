"""Signed links to a cited document: anyone holding the link sees what its viewer could see.

The signature binds tenant, role, team and an expiry, so a citation forwarded out of its chat
cannot be widened to a document of another audience.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode

TTL = 30 * 24 * 3600


def load_secret(data_dir: Path) -> bytes:
    path = data_dir / "secret.key"
    if not path.exists():
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


class LinkSigner:
    def __init__(self, secret: bytes, base_url: str) -> None:
        self.secret = secret
        self.base_url = base_url.rstrip("/")

    def _sig(self, doc_id: str, tenant: str, role: str, team: str, exp: int) -> str:
        msg = "\n".join((doc_id, tenant, role, team, str(exp))).encode()
        return base64.urlsafe_b64encode(hmac.new(self.secret, msg, hashlib.sha256).digest()[:18]).decode()

    def url(self, doc_id: str, tenant: str, role: str, team: str, chunk_id: str = "") -> str:
        exp = int(time.time()) + TTL
        q = {"tenant": tenant, "role": role, "team": team, "exp": exp, "sig": self._sig(doc_id, tenant, role, team, exp)}
        if chunk_id:
            q["chunk"] = chunk_id
        return f"{self.base_url}/kb/{quote(doc_id, safe='')}?{urlencode(q)}"

    def verify(self, doc_id: str, tenant: str, role: str, team: str, exp: str, sig: str) -> bool:
        if not exp.isdigit() or int(exp) < time.time():
            return False
        return hmac.compare_digest(self._sig(doc_id, tenant, role, team, int(exp)), sig)
