"""Where model clients may connect: the one egress guard for the chat model, an `openai:` embedder and
any HTTP reranker.

With COPILOT_LLM_ALLOW_EXTERNAL=false (the default) a client reaches only loopback addresses and the
hosts in COPILOT_LLM_ALLOWED_HOSTS. The check is made on the address actually connected: the host is
resolved once, the address is checked, and the connection goes to that very address (the Host header
and TLS server name keep the original name), so a DNS answer that changes between the check and the
connection (rebinding) cannot send data elsewhere.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx


class EgressRefused(httpx.TransportError):
    """The model host is not allowed (raised by the transport before any byte is sent)."""


@dataclass(frozen=True)
class EgressPolicy:
    allow_external: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def of(cls, settings) -> EgressPolicy:
        return cls(bool(settings.llm_allow_external), tuple(h.strip().lower() for h in settings.llm_allowed_hosts if h.strip()))

    def _listed(self, host: str, ip: ipaddress._BaseAddress | None) -> bool:
        for entry in self.allowed_hosts:
            if entry == host:
                return True
            if ip is not None:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
        return False

    def resolve(self, host: str, port: int) -> str:
        """The one address to connect to for `host`, or EgressRefused saying why."""
        host = host.lower().strip("[]")
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addrs = [literal]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise EgressRefused(f"model host {host} does not resolve: {exc}") from None
            addrs = [ipaddress.ip_address(str(ai[4][0]).split("%")[0]) for ai in infos]
        if not addrs:
            raise EgressRefused(f"model host {host} has no address")
        for ip in addrs:
            if self.allow_external or ip.is_loopback or self._listed(host, ip):
                return str(ip)
        raise EgressRefused(f"model host {host} ({addrs[0]}) is not loopback or in COPILOT_LLM_ALLOWED_HOSTS "
                            "and COPILOT_LLM_ALLOW_EXTERNAL=false")

    def allows_url(self, url: str) -> bool:
        parsed = urlparse(url)
        try:
            self.resolve(parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
        except EgressRefused:
            return False
        return True


def _pinned(request: httpx.Request, policy: EgressPolicy) -> None:
    host = request.url.host
    ip = policy.resolve(host, request.url.port or (443 if request.url.scheme == "https" else 80))
    if ip != host:
        request.headers.setdefault("Host", request.url.netloc.decode("ascii"))
        request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = request.url.copy_with(host=ip)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, policy: EgressPolicy, **kw) -> None:
        super().__init__(**kw)
        self.policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _pinned(request, self.policy)
        return super().handle_request(request)


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy, **kw) -> None:
        super().__init__(**kw)
        self.policy = policy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _pinned(request, self.policy)
        return await super().handle_async_request(request)


def guarded_client(settings, timeout: float = 60.0) -> httpx.Client:
    """An httpx client for a model endpoint that connects only where the policy allows (no proxies from the
    environment: a proxy would be the address actually connected)."""
    return httpx.Client(transport=GuardedTransport(EgressPolicy.of(settings)), timeout=timeout, trust_env=False)


def guarded_async_client(settings, timeout: float = 60.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=AsyncGuardedTransport(EgressPolicy.of(settings)), timeout=timeout, trust_env=False)
