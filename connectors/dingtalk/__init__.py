"""DingTalk (钉钉) connector: enterprise internal robots over HTTP callbacks or Stream mode.

config (apps and tenants), crypto (callback signature), parse (payload -> InboundMessage),
render (Reply -> markdown / ActionCard), client (API + token), stream (Stream mode receiver),
connector (the Connector). Imports only bot.models, bot.connector, bot.settings and itself.
"""
from __future__ import annotations

from typing import Any

from connectors.dingtalk.connector import DingTalkConnector


def dingtalk_connector(settings: Any) -> DingTalkConnector | None:
    """The connector for the configured DingTalk apps, or None when there are none."""
    return DingTalkConnector.from_settings(settings)


__all__ = ["DingTalkConnector", "dingtalk_connector"]
