"""The local channel ("console"): the web chat at / (connector.py, parse.py) and `copilot chat` in a
terminal (terminal.py). Used by tests too: the whole pipeline without a platform."""
from __future__ import annotations

from pathlib import Path

from connectors.channel import ChannelContext
from connectors.local.connector import History, Identity, LocalConnector

__all__ = ["LocalConnector", "build"]


def build(ctx: ChannelContext, *, history: History, identity: Identity, web_chat: bool = True) -> LocalConnector:
    """The web chat: always there (its page and API only when `web_chat`). `history` and `identity` are the core's
    (the replies of a conversation; the signed-in sender of a request, or None)."""
    return LocalConnector(history, identity, tenant=ctx.tenant, uploads=Path(ctx.data_dir) / "uploads", max_upload=ctx.max_download,
                          web_chat=web_chat)
