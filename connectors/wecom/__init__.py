"""WeCom (企业微信) self-built app connector: config, crypto, parse, client, render, connector.

Imports only the channel core (connectors.message, connectors.channel, connectors.text, connectors.config)
and its own modules.
"""
from __future__ import annotations

from connectors.channel import ChannelContext
from connectors.wecom.config import CorpConfig, load_corps
from connectors.wecom.connector import WeComConnector

__all__ = ["CorpConfig", "WeComConnector", "build"]


def build(ctx: ChannelContext) -> WeComConnector | None:
    """The deployment's WeCom connector, or None when no corp is configured.

    A misconfigured corp does not stop the process: it is left out, `copilot doctor` shows what is
    wrong, and the other corps keep working.
    """
    corps, problems = load_corps(ctx.tenant, ctx.section)
    return WeComConnector(corps, problems=problems, max_file=min(ctx.max_download, 20 * 1024 * 1024),
                          labels=ctx.labels or None, engine=ctx.engine) if corps or problems else None
