"""WeCom (企业微信) self-built app connector: config, crypto, parse, client, render, connector.

Imports only bot.models, bot.connector, bot.settings (toml_section) and its own modules.
"""
from __future__ import annotations

from typing import Any

from connectors.wecom.config import CorpConfig, WeComConfigError, load_corps
from connectors.wecom.connector import WeComConnector

__all__ = ["CorpConfig", "WeComConnector", "wecom_connector"]


def wecom_connector(settings: Any) -> WeComConnector | None:
    """The deployment's WeCom connector, or None when no corp is configured.

    A malformed [[wecom.corps]] section does not stop the process: the connector carries the error,
    `copilot doctor` shows it, and the default corp (from the environment) keeps working.
    """
    main_tenant = getattr(settings, "tenant", "default")
    try:
        corps = load_corps(main_tenant)
    except WeComConfigError as exc:
        try:
            corps = load_corps(main_tenant, toml={})
        except WeComConfigError as env_exc:
            return WeComConnector([], config_error=f"{env_exc}; {exc}")
        return WeComConnector(corps, config_error=str(exc))
    return WeComConnector(corps) if corps else None
