"""The model layer: an OpenAI-compatible chat model through LangChain, behind the trust layer."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

from bot.settings import Settings


def host_allowed(settings: Settings) -> bool:
    """With COPILOT_LLM_ALLOW_EXTERNAL=false only loopback, private-network or allow-listed hosts may see data."""
    host = (urlparse(settings.llm_base_url).hostname or "").lower()
    if settings.llm_allow_external or host in {h.lower() for h in settings.llm_allowed_hosts}:
        return True
    if host == "localhost":
        return True
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)
