"""Feishu (飞书) / Lark connector: an app's bot over HTTP event callbacks or the long connection.

config (apps and tenants), crypto (Encrypt Key decryption and X-Lark-Signature, with lark-oapi), parse
(event -> InboundMessage), render (Reply -> card), client (API + tenant token), cards (one card per answer,
updated while it is written), stream (long connection), connector (the Connector). Imports only the
channel core and itself. lark-oapi takes seconds to import: it is loaded only when an app is configured.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.channel import ChannelContext
from connectors.feishu.config import load_apps

if TYPE_CHECKING:
    from connectors.feishu.connector import FeishuConnector


def build(ctx: ChannelContext, **kw: Any) -> "FeishuConnector | None":
    """The connector for the configured Feishu apps, or None when there are none (`kw`: e.g. ws_options)."""
    apps, problems = load_apps(ctx.tenant, ctx.section)
    if not apps and not problems:
        return None
    from connectors.feishu.connector import FeishuConnector

    return FeishuConnector(apps, problems, public_url=ctx.public_url, max_download=ctx.max_download, labels=ctx.labels or None,
                           engine=ctx.engine, tokens=ctx.tokens, claims=ctx.claims, **kw)


__all__ = ["build"]
