"""Which DingTalk apps (corps) this deployment serves, and how each one receives messages.

The default app comes from COPILOT_DINGTALK_* environment variables (APP_KEY, APP_SECRET, ROBOT_CODE,
MODE, API_BASE, OAPI_BASE) and serves the main tenant; more apps come from `[[dingtalk.apps]]` in
copilot.toml, each in its own tenant named by its `key` (so two corps never share conversations,
identities or knowledge). Loading is connectors/config.py's, as for every platform: a misconfigured
app is left out and reported by `copilot doctor` instead of stopping the whole gateway.
"""
from __future__ import annotations

import os
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.config import AccountSpec, ConfigProblem, Issue, load_accounts, url_issues

DEFAULT_API = "https://api.dingtalk.com"
DEFAULT_OAPI = "https://oapi.dingtalk.com"
MODES = ("http", "stream")
CREDENTIALS = "developer console → the app → 凭证与基础信息 Client ID / Client Secret"


class DingTalkApp(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = "default"  # "default" for the env app; the [[dingtalk.apps]] key otherwise (also the URL segment)
    tenant: str = "default"
    app_key: str = ""
    app_secret: SecretStr = SecretStr("")  # revealed (get_secret_value) only where used, never in a repr or log
    robot_code: str = ""  # empty: the app key (an internal app's robot code usually equals it)
    corp_id: str = ""  # the corp's CorpId (ding...): messages naming another corp are refused; empty: not checked (doctor says so)
    mode: Literal["http", "stream"] = "http"
    api_base: str = DEFAULT_API
    login_base: str = "https://login.dingtalk.com"  # the web login (钉钉扫码登录) page
    oapi_base: str = DEFAULT_OAPI
    # Replies as interactive cards (AI 卡片), streamed while the answer is written (connectors/dingtalk/cards.py).
    cards: bool = False
    card_template_id: str = ""  # empty: DingTalk's public AI markdown card (BUILTIN_TEMPLATE); else one from 卡片平台
    card_content_key: str = ""  # the template's streamed markdown variable; empty: msgContent (built-in) or content (own)
    card_interval: float = Field(default=0.3, ge=0.0, le=10.0)  # seconds at least between two updates of a card

    @model_validator(mode="after")
    def _tidy(self) -> "DingTalkApp":
        for name in ("app_key", "robot_code", "corp_id", "card_template_id", "card_content_key"):
            object.__setattr__(self, name, getattr(self, name).strip())
        object.__setattr__(self, "app_secret", SecretStr(self.app_secret.get_secret_value().strip()))
        object.__setattr__(self, "api_base", self.api_base.rstrip("/") or DEFAULT_API)
        object.__setattr__(self, "oapi_base", self.oapi_base.rstrip("/") or DEFAULT_OAPI)
        if not self.robot_code:
            object.__setattr__(self, "robot_code", self.app_key)
        return self

    @property
    def callback_path(self) -> str:
        return "/dingtalk/callback" if self.key == "default" else f"/dingtalk/{self.key}/callback"

    @property
    def label(self) -> str:
        return f"dingtalk[{self.key}]"


def _issues(app: DingTalkApp) -> list[Issue]:
    out: list[Issue] = [(f, "is missing", f"set {{setting}} ({CREDENTIALS})") for f in ("app_key", "app_secret") if not getattr(app, f)]
    return out + url_issues(app, {"api_base": DEFAULT_API, "oapi_base": DEFAULT_OAPI})


def _lower_mode(values: dict[str, Any]) -> dict[str, Any]:
    mode = values.get("mode")
    return {**values, "mode": mode.strip().lower()} if isinstance(mode, str) else values


CARD_SETTINGS = ("cards", "card_template_id", "card_content_key", "card_interval")  # [dingtalk] may set them for every app
SPEC = AccountSpec(platform="dingtalk", list_key="apps", model=DingTalkApp, present=("app_key", "app_secret"),
                   inherit=("api_base", "oapi_base"), unique=("app_key",), validate=_issues, normalize=_lower_mode)


def load_apps(tenant: str, section: Mapping[str, Any] | None = None,
              env: Mapping[str, str] | None = None) -> tuple[list[DingTalkApp], list[ConfigProblem]]:
    """Every usable app (the COPILOT_DINGTALK_* one first) and what is wrong with the others. The card settings
    written directly under [dingtalk] apply to every app that does not set its own (COPILOT_DINGTALK_* for the
    environment's app, the app's own table for the others)."""
    section = dict(section or {})
    shared = {k: section[k] for k in CARD_SETTINGS if k in section}
    if shared:
        env = {**{SPEC.env_name(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in shared.items()},
               **{k: v for k, v in (os.environ if env is None else env).items() if v.strip()}}
        if isinstance(section.get("apps"), list):
            section["apps"] = [{**shared, **e} if isinstance(e, dict) else e for e in section["apps"]]
    return load_accounts(SPEC, tenant, section, env)
