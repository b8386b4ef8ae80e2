"""Citation links and the server's keys: created private from the first byte, never overwritten, expiring,
bound to their claims, revocable by rotating the key ring."""
from __future__ import annotations

import time

import pytest

from bot.web.links import KeyRing, LinkSigner, create_key_file, load_secret


def query_of(url: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_key_files_are_0600_and_never_overwritten(tmp_path):
    first = load_secret(tmp_path)
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_secret(tmp_path) == first  # read back, not replaced
    with pytest.raises(FileExistsError):
        create_key_file(tmp_path / "secret.key")


def test_a_link_verifies_only_with_its_own_claims_and_until_it_expires(tmp_path):
    signer = LinkSigner(KeyRing(tmp_path / "keys"), "http://copilot.example", ttl=60)
    url = signer.url("bc-xingtu", "default", "rep", "华东区", "c1", "zhangwei")
    q = query_of(url)
    assert url.endswith("#c1") and q["for"] == "zhangwei"
    claims = signer.verify("bc-xingtu", q)
    assert claims is not None and (claims.person, claims.chunk_id, claims.role) == ("zhangwei", "c1", "rep")
    for key, value in (("role", "admin"), ("team", ""), ("for", "lijun"), ("chunk", "c2"), ("tenant", "east")):
        assert signer.verify("bc-xingtu", {**q, key: value}) is None, key
    assert signer.verify("other-doc", q) is None
    assert signer.verify("bc-xingtu", {**q, "exp": str(int(time.time()) - 1)}) is None


def test_rotation_keeps_old_links_until_revoked(tmp_path):
    ring = KeyRing(tmp_path / "keys")
    signer = LinkSigner(ring, "http://copilot.example")
    q = query_of(signer.url("d", "default", "rep", "", "c", "p"))
    ring.rotate()
    assert signer.verify("d", q) is not None and query_of(signer.url("d", "default", "rep", "", "c", "p"))["kid"] != q["kid"]
    ring.rotate(revoke=True)
    assert signer.verify("d", q) is None and len(ring.keys()) == 1
