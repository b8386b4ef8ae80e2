"""The local channel ("console"): the web chat at /chat (connector.py, parse.py, the page in web/) and `copilot chat` in a
terminal (terminal.py). Used by tests too: the whole pipeline without a platform."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from connectors.channel import ChannelContext
from connectors.local.connector import History, Identity, LocalConnector, Timeline

__all__ = ["LocalConnector", "build"]


def build(ctx: ChannelContext, *, history: History, identity: Identity, web_chat: bool = True, timeline: Timeline | None = None,
          words: Mapping[str, Mapping[str, str]] | None = None) -> LocalConnector:
    """The web chat: always there (its page and API only when `web_chat`). `history`, `identity` and `timeline` are
    the core's (the replies of a conversation; the signed-in sender of a request, or None; a conversation as its
    person saw it), `words` the page's texts per language (the catalogue's chat_* messages)."""
    return LocalConnector(history, identity, tenant=ctx.tenant, uploads=Path(ctx.data_dir) / "uploads", max_upload=ctx.max_download,
                          web_chat=web_chat, timeline=timeline, words=words)
