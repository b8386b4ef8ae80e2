"""Bounded requests against the real gateway on loopback: a chunked multipart upload (no Content-Length) over the
total cap is refused with 413 while it is still being sent, not after it was buffered; too many parts is a 400."""
from __future__ import annotations

import asyncio

import aiohttp

TOKEN = "s3cret-admin-token"
MB = 1024 * 1024


async def gateway_server(make_app, make_settings, aiohttp_server):
    from bot.web.gateway import create_web_app

    cp = make_app(make_settings(admin_token=TOKEN, max_upload_bytes=2 * MB))
    return await aiohttp_server(create_web_app(cp))


async def send_chunked(port: int, path: str, parts: int, part_size: int, stop_after: int, headers: dict | None = None) -> tuple[int, int]:
    """POST a chunked multipart body of `parts` files, `part_size` bytes each, without a Content-Length; stop at
    the first byte of a response (or after `stop_after` bytes). Returns (status, bytes of body sent). `headers`:
    instead of the admin token (e.g. a session cookie and its CSRF token)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    boundary = "xXbOuNdArYXx"
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {"Authorization": f"Bearer {TOKEN}"}).items())
    writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    sent = 0
    response = asyncio.ensure_future(reader.readline())

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    block = b"x" * (256 * 1024)
    try:
        for p in range(parts):
            writer.write(chunk(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f{p}.txt"\r\n'
                               f"Content-Type: text/plain\r\n\r\n".encode()))
            for _ in range(part_size // len(block)):
                writer.write(chunk(block))
                sent += len(block)
                await writer.drain()
                await asyncio.sleep(0)
                if response.done() or sent >= stop_after:
                    raise StopIteration
            writer.write(chunk(b"\r\n"))
        writer.write(chunk(f"--{boundary}--\r\n".encode()) + b"0\r\n\r\n")
        await writer.drain()
    except (StopIteration, ConnectionError):
        pass
    line = await asyncio.wait_for(response, 30)
    writer.close()
    return int(line.split()[1]), sent


async def test_a_chunked_upload_over_the_total_cap_is_refused_while_it_is_sent(make_app, make_settings, aiohttp_server):
    server = await gateway_server(make_app, make_settings, aiohttp_server)
    # many files, each under the 2 MB per-file cap, 960 MB in all: the total cap (4 files' worth, 8 MB) stops it
    status, sent = await send_chunked(server.port, "/admin/kb/upload", parts=640, part_size=int(1.5 * MB), stop_after=960 * MB)
    assert status == 413
    assert sent < 8 * MB + 16 * MB  # the cap plus what the socket buffers held: nowhere near the 960 MB
    # one file over its own cap
    status, sent = await send_chunked(server.port, "/admin/kb/upload", parts=1, part_size=40 * MB, stop_after=40 * MB)
    assert status == 413 and sent < 2 * MB + 16 * MB


async def test_a_form_with_too_many_parts_is_refused_and_a_good_one_accepted(make_app, make_settings, aiohttp_server):
    server = await gateway_server(make_app, make_settings, aiohttp_server)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        form = aiohttp.FormData()
        for i in range(40):
            form.add_field("file", b"# t\n\nx", filename=f"{i}.md")
        async with s.post(server.make_url("/admin/kb/upload"), data=form) as r:
            assert r.status == 400 and "parts" in await r.text()
        form = aiohttp.FormData()
        form.add_field("file", "# 玄鸟\n\n玄鸟方案的保修期为五年。\n".encode(), filename="xuanniao.md")
        async with s.post(server.make_url("/admin/kb/upload"), data=form) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["results"][0]["status"] == "added"
