"""HTTP helpers shared by the channels: a multipart form the gateway's web server received (read under limits), and
the pooled client session a platform's API client sends through."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO

import aiohttp
from aiohttp import web

MAX_FIELD = 64 * 1024  # one text field of a form
SPOOL_IN_MEMORY = 1024 * 1024  # a file bigger than this goes to a temporary file while the form is read


@dataclass
class Upload:
    """One uploaded file, spooled (to disk past SPOOL_IN_MEMORY) while the request was read."""

    name: str
    content_type: str
    size: int
    file: IO[bytes]

    def read(self) -> bytes:
        """The bytes; the spool is closed (and its temporary file removed) after."""
        try:
            self.file.seek(0)
            return self.file.read()
        finally:
            self.file.close()

    def close(self) -> None:
        self.file.close()


async def read_form(request: web.Request, limit: int, *, total: int | None = None,
                    max_parts: int = 16) -> tuple[dict[str, str], list[Upload]]:
    """A multipart form, streamed: text fields, and files spooled to disk (never the whole body in memory).

    413 as soon as a file passes `limit` bytes or the body passes `total` (default: one file's worth plus the
    fields), checked while the body arrives, chunked or not; 400 for more than `max_parts` parts or a text
    field over MAX_FIELD. Nothing of a refused form stays behind."""
    total = total if total is not None else limit + 16 * MAX_FIELD
    if request.content_length is not None and request.content_length > total:
        raise web.HTTPRequestEntityTooLarge(max_size=total, actual_size=request.content_length)
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: list[Upload] = []
    seen = parts = 0
    try:
        while (part := await reader.next()) is not None:
            parts += 1
            if parts > max_parts:
                raise web.HTTPBadRequest(text=f"at most {max_parts} parts in a form")
            if part.filename:
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
                files.append(Upload(PurePath(part.filename).name, part.headers.get("Content-Type", ""), 0, spool))
                size = 0
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    seen += len(chunk)
                    if size > limit:
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
                    if seen > total:
                        raise web.HTTPRequestEntityTooLarge(max_size=total, actual_size=seen)
                    spool.write(chunk)
                files[-1].size = size
            else:
                data = bytearray()
                while chunk := await part.read_chunk(1 << 14):
                    data += chunk
                    seen += len(chunk)
                    if len(data) > MAX_FIELD:
                        raise web.HTTPBadRequest(text=f"a form field is longer than {MAX_FIELD} bytes")
                    if seen > total:
                        raise web.HTTPRequestEntityTooLarge(max_size=total, actual_size=seen)
                fields[part.name or ""] = part.decode(bytes(data)).decode("utf-8", "replace")
    except BaseException:
        for f in files:
            f.close()
        raise
    return fields, files


class PooledSession:
    """One aiohttp client session for a platform client's calls: opened on first use (again if it was closed), so it
    belongs to the event loop that uses it; `aclose` closes it. `timeout` in seconds (None: aiohttp's default)."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            kw = {"timeout": aiohttp.ClientTimeout(total=self.timeout)} if self.timeout is not None else {}
            self._session = aiohttp.ClientSession(**kw)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


async def read_capped(response: aiohttp.ClientResponse, limit: int, too_large: Exception) -> bytes:
    """A download's body, read in chunks; `too_large` is raised as soon as it passes `limit` bytes."""
    buf = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            raise too_large
    return bytes(buf)


def json_object(text: str) -> dict:
    """A platform's JSON answer as a dict: {} when it is empty, not JSON, or not an object."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
