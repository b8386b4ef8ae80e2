"""WeCom (企业微信) self-built app connector: config, crypto, parse, client, render, connector.

Imports only the channel core (connectors.message, connectors.channel, connectors.text) and its own modules.
"""
from __future__ import annotations

from connectors.channel import ChannelContext
from connectors.wecom.config import CorpConfig, WeComConfigError, load_corps
from connectors.wecom.connector import WeComConnector

__all__ = ["CorpConfig", "WeComConnector", "build"]


def build(ctx: ChannelContext) -> WeComConnector | None:
    """The deployment's WeCom connector, or None when no corp is configured.

    A malformed [[wecom.corps]] section does not stop the process: the connector carries the error,
    `copilot doctor` shows it, and the default corp (from the environment) keeps working.
    """
    try:
        corps = load_corps(ctx.tenant, toml=ctx.section)
    except WeComConfigError as exc:
        try:
            corps = load_corps(ctx.tenant, toml={})
        except WeComConfigError as env_exc:
            return WeComConnector([], config_error=f"{env_exc}; {exc}")
        return WeComConnector(corps, config_error=str(exc))
    return WeComConnector(corps) if corps else None
