"""HTTP helpers shared by the channels that receive over the gateway's web server."""
from __future__ import annotations

from pathlib import PurePath

from aiohttp import web


async def read_form(request: web.Request, limit: int) -> tuple[dict[str, str], list[tuple[str, str, bytes]]]:
    """A multipart form, streamed: text fields, and files as (name, content type, bytes), each file
    refused with 413 as soon as it passes `limit` bytes."""
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: list[tuple[str, str, bytes]] = []
    while (part := await reader.next()) is not None:
        if part.filename:
            data = bytearray()
            while chunk := await part.read_chunk(1 << 16):
                data += chunk
                if len(data) > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
            files.append((PurePath(part.filename).name, part.headers.get("Content-Type", ""), bytes(data)))
        else:
            fields[part.name or ""] = (await part.read(decode=True)).decode("utf-8", "replace")
    return fields, files
