"""The web chat connector: the page at /chat (its scripts and styles under /chat/assets/, nothing from elsewhere),
messages in over POST /api/chat, replies out by waking the page that long-polls /api/replies (the reply itself is
durable in the outbox already; the answer being written is offered as `partial`). GET /api/history gives the
conversation as the person saw it (their messages, the replies, which buttons are settled), GET /api/chat/ui the
page's words in the reader's language (a `copilot_lang` cookie the page's switch sets, else the browser's).

Who is writing is never read from the request's fields: `identity(request)`, handed in by the factory, gives
the sender the gateway verified (the signed-in session), or None (401). A person sees only their own
conversations (parse.own).

A real connector in every respect (messages go through the durable inbox and the worker pool;
replies come back through the outbox), so tests run the whole pipeline without a platform.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Awaitable, Callable, Mapping

from aiohttp import web

from connectors.channel import Check, Sink
from connectors.http import read_form
from connectors.local.parse import CHANNEL, ID, NotYours, PayloadError, own, parse
from connectors.message import Attachment, Reply, Target

WEB = Path(__file__).parent / "web"
History = Callable[[str, str, int], Awaitable[list[dict]]]  # (tenant, conversation id, after id) -> replies
Identity = Callable[[web.Request], "tuple[str, str] | None"]  # request -> (sender id, display name) the gateway verified
Timeline = Callable[[str, str], Awaitable[dict]]  # (tenant, conversation id) -> {"items": messages and replies, "after": newest reply id}
LANG_COOKIE = "copilot_lang"
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none'; "
                                           "frame-ancestors 'none'; form-action 'self'"}


class LocalConnector:
    name = CHANNEL

    def __init__(self, history: History, identity: Identity, *, tenant: str = "default", uploads: Path | None = None,
                 max_upload: int = 25 * 1024 * 1024, web_chat: bool = True, timeline: Timeline | None = None,
                 words: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """`timeline`: a conversation as its person saw it (GET /api/history); `words`: the page's texts per language."""
        self.history = history
        self.timeline = timeline
        self.words = words or {}
        self.identity = identity
        self.web_chat = web_chat
        self.tenant = tenant
        self.uploads = uploads
        self.max_upload = max_upload
        self._waiters: dict[str, asyncio.Event] = {}
        self._partial: dict[str, str] = {}  # conversation -> the answer being written (not durable)
        self._loop: asyncio.AbstractEventLoop | None = None

    # receive ---------------------------------------------------------------------------------
    def sender(self, request: web.Request) -> tuple[str, str]:
        who = self.identity(request)
        if who is None:
            raise web.HTTPUnauthorized(text="sign in first")
        return who

    def routes(self, sink: Sink) -> list[web.RouteDef]:
        if not self.web_chat:
            return []

        async def page(request: web.Request) -> web.StreamResponse:
            self.sender(request)
            return web.FileResponse(WEB / "index.html", headers=PAGE_HEADERS)

        async def home(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound("/chat")

        async def ui(request: web.Request) -> web.Response:
            self.sender(request)
            lang = self.lang(request)
            names = {code: w.get("chat_language", code) for code, w in sorted(self.words.items())}  # each in its own language
            return web.json_response({"lang": lang, "langs": names, "words": self.words.get(lang, {}),
                                      "max_upload": self.max_upload, "uploads": self.uploads is not None},
                                     headers={"Cache-Control": "no-store"})

        async def history(request: web.Request) -> web.Response:
            sender, _ = self.sender(request)
            conv = self._own(sender, request.query.get("conversation", ""))
            body = await self.timeline(self.tenant, conv) if self.timeline else {"items": [], "after": 0}
            return web.json_response(body, headers={"Cache-Control": "no-store"})

        async def post(request: web.Request) -> web.Response:
            sender, name = self.sender(request)
            if request.content_type.startswith("multipart/"):
                fields, attachment = await self._read_upload(request)
            elif request.content_type != "application/json":
                raise web.HTTPUnsupportedMediaType(text="send the message as application/json (or a file as multipart/form-data)")
            else:
                try:
                    fields = await request.json()
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise web.HTTPBadRequest(text="body is not valid JSON") from None
                attachment = None
            try:
                msg = parse(fields, attachment, tenant=self.tenant, sender=sender, sender_name=name)
            except NotYours as exc:
                raise web.HTTPForbidden(text=str(exc)) from None
            except PayloadError as exc:
                raise web.HTTPBadRequest(text=str(exc)) from None
            acc = await sink(msg)  # Throttled propagates: the gateway answers 429 with Retry-After
            return web.json_response({"inbox_id": acc.inbox_id, "duplicate": acc.duplicate,
                                      "conversation": str(fields.get("conversation") or f"web-{sender}")},
                                     status=200 if acc.duplicate else 202)

        async def replies(request: web.Request) -> web.Response:
            sender, _ = self.sender(request)
            conv = self._own(sender, request.query.get("conversation", ""))
            try:
                after = int(request.query.get("after", "0"))
                wait = min(float(request.query.get("wait", "25")), 60.0)
            except ValueError:
                raise web.HTTPBadRequest(text="after and wait must be numbers") from None
            seen = request.query.get("plen", "0")  # how much of the answer being written the page already shows
            rows = await self.history(self.tenant, conv, after)
            if not rows and wait > 0 and str(len(self._partial.get(conv, ""))) == seen:
                ev = self._waiters.setdefault(conv, asyncio.Event())
                try:
                    await asyncio.wait_for(ev.wait(), timeout=wait)
                except asyncio.TimeoutError:
                    pass
                rows = await self.history(self.tenant, conv, after)
            body = {"replies": rows}
            if not rows and self._partial.get(conv):
                body["partial"] = self._partial[conv]
            return web.json_response(body)

        return [
            web.get("/", home),
            web.get("/chat", page),
            web.static("/chat/assets", WEB, append_version=False),
            web.get("/api/chat/ui", ui),
            web.get("/api/history", history),
            web.post("/api/chat", post),
            web.get("/api/replies", replies),
        ]

    @staticmethod
    def _own(sender: str, conv: str) -> str:
        if not ID.match(conv):
            raise web.HTTPBadRequest(text="conversation must be 1-128 letters, digits or .:@_-")
        try:
            return own(sender, conv)
        except NotYours as exc:
            raise web.HTTPForbidden(text=str(exc)) from None

    def lang(self, request: web.Request) -> str:
        """The page's language: the reader's choice (cookie), else the browser's first language we have, else the first."""
        have = sorted(self.words) or ["zh"]
        chosen = request.cookies.get(LANG_COOKIE, "")
        if chosen in have:
            return chosen
        for part in request.headers.get("Accept-Language", "").split(","):
            code = part.split(";")[0].strip().lower()[:2]
            if code in have:
                return code
        return "zh" if "zh" in have else have[0]

    async def _read_upload(self, request: web.Request) -> tuple[dict, Attachment]:
        if self.uploads is None:
            raise web.HTTPBadRequest(text="file upload is not enabled")
        fields, files = await read_form(request, self.max_upload, max_parts=8)  # the body spooled, its total capped
        for extra in files[1:]:
            extra.close()
        attachment = None
        for up in files[:1]:
            name, mime, data = up.name, up.content_type, await asyncio.to_thread(up.read)
            digest = hashlib.sha256(data).hexdigest()
            self.uploads.mkdir(parents=True, exist_ok=True)
            (self.uploads / digest).write_bytes(data)
            attachment = Attachment(name=name, mime=mime, size=len(data), ref=digest)
            fields.setdefault("id", "upload-" + digest[:24])
        if attachment is None:
            raise web.HTTPBadRequest(text="no file in the upload")
        return fields, attachment

    async def start(self, sink: Sink) -> None:
        self._loop = asyncio.get_running_loop()

    # send --------------------------------------------------------------------------------------
    async def send(self, target: Target, reply: Reply, key: str) -> None:
        # the reply is already durable in the outbox; delivery is waking the page that polls for it
        self._partial.pop(target.conversation_id, None)
        self._wake(target.conversation_id)

    def preview(self, target: Target, text: str) -> None:
        """The answer so far, while the model writes it (called from a worker thread)."""
        self._partial[target.conversation_id] = text
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, target.conversation_id)

    def _wake(self, conversation_id: str) -> None:
        ev = self._waiters.pop(conversation_id, None)
        if ev is not None:
            ev.set()

    async def fetch(self, tenant: str, attachment: Attachment) -> bytes:
        if self.uploads is None or not re.fullmatch(r"[0-9a-f]{64}", attachment.ref):
            raise FileNotFoundError(attachment.ref)
        return (self.uploads / attachment.ref).read_bytes()

    async def doctor(self) -> list[Check]:
        return [Check("console channel", True, "web chat and `copilot chat`")]

    async def aclose(self) -> None:
        for ev in self._waiters.values():
            ev.set()
