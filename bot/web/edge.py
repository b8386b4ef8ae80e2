"""The door of the web server: which address a request comes from, and how much each address and each signed-in
person may ask, checked before any body is read.

- **Client address**: the peer, unless the peer is a configured proxy (`trusted_proxies`); then the nearest
  address of X-Forwarded-For that is not a trusted proxy. A client cannot pick its own address by sending the
  header: it is read only when a trusted proxy sent the request.
- **Per address**: state-changing requests are limited per address (platform callbacks excepted: a whole company's
  messages arrive from a few platform addresses; they prove themselves by signature and are limited per sender in
  the intake); an address that keeps being refused (401/403: bad passwords, bad signatures, missing CSRF tokens) is
  refused altogether for a while.
- **Per person**: state-changing requests are limited per signed-in person, and an upload is refused before its
  body is read when its sender has no message left in the intake's limit, so nothing is spooled to disk first.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Awaitable, Callable, Iterable

from aiohttp import web

from bot.pipeline.ratelimit import Limiter
from bot.web.session import PERSON, SAFE_METHODS
from connectors.channel import Throttled

log = logging.getLogger("copilot.edge")
ADDRESS = web.RequestKey("copilot.address", str)  # the client address (see client_address)
CALLBACK_PREFIXES = ("/wecom/", "/dingtalk/", "/feishu/")  # verified by the platform's signature, limited per sender in the intake
UNLIMITED = ("/healthz", "/readyz", "/metrics")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Admits = Callable[[str, str], Awaitable[bool]]  # (tenant, person id) -> whether the intake would take their next message


def parse_networks(items: Iterable[str]) -> list[Network]:
    """`["127.0.0.1", "10.0.0.0/8"]` as networks; a bad entry is a configuration error naming it."""
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {item!r} is not an IP address or network") from None
    return nets


def _trusted(address: str, proxies: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(request: web.Request, proxies: list[Network]) -> str:
    peer = request.remote or "unknown"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):  # each proxy appends the address it saw: the rightmost untrusted one is the client
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage in the header: the proxy's own address is all we know
    return peer


def address_middleware(proxies: list[Network], per_address: Limiter, failures: Limiter):
    @web.middleware
    async def door(request: web.Request, handler: Handler) -> web.StreamResponse:
        address = client_address(request, proxies)
        request[ADDRESS] = address
        if request.path in UNLIMITED:
            return await handler(request)
        if request.path.startswith(CALLBACK_PREFIXES):
            # a platform's servers deliver every tenant's callbacks: a refused one (anyone can point an app of their own
            # at this URL, signed with their own key) must not count against the address the real ones come from
            return await handler(request)
        if not await failures.ready(address):
            raise Throttled(retry_after=failures.retry_after)
        if request.method not in SAFE_METHODS and not await per_address.allow(address):
            raise Throttled(retry_after=per_address.retry_after)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            await _count(exc.status, address, failures)
            raise
        await _count(response.status, address, failures)
        return response

    return door


async def _count(status: int, address: str, failures: Limiter) -> None:
    if status in (401, 403) and not await failures.allow(address):
        log.warning("client %s refused for a while: too many refused requests", address)


def person_middleware(per_person: Limiter, admits: Admits, upload_paths: Iterable[str]):
    """After the session middleware: limits per signed-in person, checked before the handler reads the body."""
    uploads = frozenset(upload_paths)

    @web.middleware
    async def person(request: web.Request, handler: Handler) -> web.StreamResponse:
        who = request.get(PERSON)
        if who is None or request.method in SAFE_METHODS:
            return await handler(request)
        if not await per_person.allow(f"{who.tenant}|{who.id}"):
            raise Throttled(retry_after=per_person.retry_after)
        if request.path in uploads and request.content_type.startswith("multipart/") and not await admits(who.tenant, who.id):
            raise Throttled(retry_after=per_person.retry_after)
        return await handler(request)

    return person
