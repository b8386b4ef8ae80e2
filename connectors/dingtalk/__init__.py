"""DingTalk (钉钉) connector: enterprise internal robots over HTTP callbacks or Stream mode.

config (apps and tenants), crypto (callback signature), parse (payload -> InboundMessage),
render (Reply -> markdown / ActionCard), client (API + token), stream (Stream mode receiver),
connector (the Connector). Imports only the channel core and itself.
"""
from __future__ import annotations

from connectors.channel import ChannelContext
from connectors.dingtalk.connector import DingTalkConnector


def build(ctx: ChannelContext) -> DingTalkConnector | None:
    """The connector for the configured DingTalk apps, or None when there are none."""
    return DingTalkConnector.build(ctx)


__all__ = ["DingTalkConnector", "build"]
