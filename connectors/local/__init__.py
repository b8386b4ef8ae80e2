"""The local channel ("console"): the web chat at / (connector.py, parse.py) and `copilot chat` in a
terminal (terminal.py). Used by tests too: the whole pipeline without a platform."""
from __future__ import annotations

from pathlib import Path

from connectors.channel import ChannelContext
from connectors.local.connector import History, LocalConnector, Users

__all__ = ["LocalConnector", "build"]


def build(ctx: ChannelContext, *, history: History, users: Users) -> LocalConnector:
    """The web chat: always there. `history` and `users` are the core's (replies of a conversation, the people to chat as)."""
    return LocalConnector(history, users, tenant=ctx.tenant, uploads=Path(ctx.data_dir) / "uploads", max_upload=ctx.max_download)
