"""The connector contract: how a channel plugs into the gateway.

A connector is a thin adapter: it turns platform requests into `InboundMessage`s handed to the
sink (the durable inbox) and delivers `Reply`s. It never imports bot, rag or crm. Its abilities are
small protocols (receive over HTTP or in the background, send text, send a rich reply, fetch a file,
diagnose, preview); a new platform writes one receiver and `send_text`, and the core renders replies
as text for it (`connectors.text.render_text`, split under its limit).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Mapping, Protocol, runtime_checkable

from aiohttp import web
from sqlalchemy.engine import Engine

from connectors.cache import SharedClaims, TokenCache
from connectors.labels import Labels
from connectors.message import Attachment, InboundMessage, Reply, Target


@dataclass(frozen=True)
class Accepted:
    inbox_id: int
    duplicate: bool


Sink = Callable[[InboundMessage], Awaitable[Accepted]]


@dataclass(frozen=True)
class ChannelContext:
    """What the app factory hands a connector's `build(ctx)`: its own [section] of copilot.toml and the
    shared resources it may use. A connector never reads global settings."""

    section: Mapping[str, Any] = field(default_factory=dict)
    tenant: str = "default"  # the deployment's tenant, for accounts that name none
    public_url: str = "http://127.0.0.1:8080"  # how platforms reach the gateway (callback URLs)
    data_dir: Path = Path("data")  # where a connector may keep files (attachments, unparsed mail)
    max_download: int = 25 * 1024 * 1024  # the largest file a connector fetches
    engine: Engine | None = None  # the copilot's database, for connectors that keep state in tables
    labels: Labels = field(default_factory=dict)  # the channel_* messages per language (connectors/labels.py); {}: the shipped ones
    tokens: TokenCache | None = None  # access tokens shared by the deployment's processes (connectors/cache.py); None: this process's own
    claims: SharedClaims | None = None  # the replay guard's memory shared by the processes; None: the database (`engine`) and memory


@dataclass(frozen=True)
class Check:
    """One line of `copilot doctor`: what was checked, whether it passed, and how to fix it."""

    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


class Throttled(Exception):
    """The sink refused a message for now (its sender is over the rate limit). Nothing was stored: the
    connector answers the platform so that it delivers again later (HTTP 429, no Stream ack, the IMAP
    cursor left where it was)."""

    def __init__(self, retry_after: float = 20.0) -> None:
        super().__init__(f"too many messages from this sender; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class SendError(Exception):
    """Delivery failed. `retryable` failures are retried with backoff; others go to dead letters."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None, defer: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.defer = defer  # not a failure: the platform's pacing says "later" (does not use up an attempt)


# Capabilities. A connector is any object with a `name` (the channel in InboundMessage.channel) and
# the few of these it has; the core (bot/pipeline/channels.py) checks each with isinstance and falls
# back where one is missing. The floor is one receiver and `TextSender`.
@runtime_checkable
class Connector(Protocol):
    name: str


@runtime_checkable
class HttpReceiver(Protocol):
    """Receives over the gateway's web server."""

    def routes(self, sink: Sink) -> list[web.RouteDef]: ...


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...  # release what it holds (connections, sessions)


@runtime_checkable
class BackgroundReceiver(Protocol):
    """Receives on its own (a websocket, IMAP IDLE): started once with the sink, closed at shutdown."""

    async def start(self, sink: Sink) -> None: ...  # must return; the work runs in tasks it owns

    async def aclose(self) -> None: ...


TextUnit = Literal["chars", "bytes"]  # how a platform measures its limit: characters, or UTF-8 bytes


@runtime_checkable
class TextSender(Protocol):
    """Plain text out. The core renders a Reply as text for it (citations, buttons as numbered choices)
    and splits it under `text_limit`, measured in `text_unit`."""

    text_limit: int
    text_unit: TextUnit

    async def send_text(self, target: Target, text: str, key: str) -> None: ...  # key: idempotency key


@runtime_checkable
class RichSender(Protocol):
    """A whole Reply out, rendered for the platform (markdown, cards) by the connector itself."""

    async def send(self, target: Target, reply: Reply, key: str) -> None: ...


@runtime_checkable
class FileFetcher(Protocol):
    async def fetch(self, tenant: str, attachment: Attachment) -> bytes: ...


@runtime_checkable
class Diagnosable(Protocol):
    async def doctor(self) -> list[Check]: ...


class SignInRefused(Exception):
    """The platform did not confirm who is signing in (the message is for the log, not the browser)."""


@runtime_checkable
class WebSignIn(Protocol):
    """Signs a browser in to the web console with the platform's own account (its OAuth / QR-code login).
    The core keeps the state, the session and the directory; the connector speaks the platform's protocol."""

    label: str  # the catalogue key of the button ("signin_with_wecom")

    def signs_in(self, tenant: str) -> bool: ...  # whether an account of `tenant` is set up for it

    def signin_url(self, tenant: str, state: str, redirect_uri: str) -> str: ...  # the platform's login page (when signs_in)

    async def signin_user(self, tenant: str, query: Mapping[str, str]) -> str: ...  # the platform user id the directory links


@runtime_checkable
class Previewer(Protocol):
    def preview(self, target: Target, text: str) -> None: ...  # the answer so far; called from a worker thread
