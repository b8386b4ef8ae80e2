"""Which channel connectors a deployment runs, from its settings (the console channel is always on)."""
from __future__ import annotations

from bot.connector import Connector
from bot.settings import Settings


def channel_connectors(settings: Settings) -> list[Connector]:
    connectors: list[Connector] = []
    from connectors.dingtalk import dingtalk_connector

    if (dingtalk := dingtalk_connector(settings)) is not None:
        connectors.append(dingtalk)
    from connectors.wecom import wecom_connector

    if (wecom := wecom_connector(settings)) is not None:
        connectors.append(wecom)
    from connectors.email import email_connector

    if (email := email_connector(settings)) is not None:
        connectors.append(email)
    return connectors
