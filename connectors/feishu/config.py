"""Which Feishu (飞书) / Lark apps this deployment serves, and how each one receives events.

The default app comes from COPILOT_FEISHU_* environment variables (APP_ID, APP_SECRET, ENCRYPT_KEY,
VERIFICATION_TOKEN, MODE, API_BASE, LOGIN_BASE, ...) and serves the main tenant; more apps come from
`[[feishu.apps]]` in copilot.toml, each in its own tenant named by its `key`. Loading is
connectors/config.py's, as for every platform: a misconfigured app is left out and reported by
`copilot doctor` instead of stopping the gateway.

HTTP mode needs the Encrypt Key and the Verification Token: an event is believed only when it decrypts
with the key, is signed with it (X-Lark-Signature) and carries the token. The long connection (mode
"ws") is authenticated by the app secret when it is opened and needs neither.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from connectors.config import AccountSpec, ConfigProblem, Issue, load_accounts, url_issues

DEFAULT_API = "https://open.feishu.cn"  # Lark (international): https://open.larksuite.com
DEFAULT_LOGIN = "https://accounts.feishu.cn"  # Lark: https://accounts.larksuite.com
MODES = ("http", "ws")
CREDENTIALS = "开发者后台 (open.feishu.cn/app) → the app → 凭证与基础信息 App ID / App Secret"
EVENT_KEYS = "开发者后台 → the app → 事件与回调 → 加密策略 Encrypt Key / Verification Token"


class FeishuApp(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = "default"  # "default" for the env app; the [[feishu.apps]] key otherwise (also the URL segment)
    tenant: str = "default"
    app_id: str = ""  # cli_...
    app_secret: SecretStr = SecretStr("")
    encrypt_key: SecretStr = SecretStr("")
    verification_token: SecretStr = SecretStr("")
    tenant_key: str = ""  # the organisation's tenant_key: events naming another are refused; empty: not checked
    mode: Literal["http", "ws"] = "http"
    user_id_type: Literal["open_id", "user_id", "union_id"] = "open_id"  # which of a person's ids the directory links
    cards: bool = True  # replies as interactive cards (False: plain text messages)
    preview_interval: float = 0.5  # seconds between two updates of a card while the answer is written
    api_base: str = DEFAULT_API
    login_base: str = DEFAULT_LOGIN

    @model_validator(mode="after")
    def _tidy(self) -> "FeishuApp":
        for name in ("app_id", "tenant_key"):
            object.__setattr__(self, name, getattr(self, name).strip())
        for name in ("app_secret", "encrypt_key", "verification_token"):
            object.__setattr__(self, name, SecretStr(getattr(self, name).get_secret_value().strip()))
        object.__setattr__(self, "api_base", self.api_base.rstrip("/") or DEFAULT_API)
        object.__setattr__(self, "login_base", self.login_base.rstrip("/") or DEFAULT_LOGIN)
        return self

    @property
    def callback_path(self) -> str:
        """Where Feishu posts events and card callbacks (the same URL serves both)."""
        return "/feishu/events" if self.key == "default" else f"/feishu/{self.key}/events"

    @property
    def label(self) -> str:
        return f"feishu[{self.key}]"


def _issues(app: FeishuApp) -> list[Issue]:
    out: list[Issue] = [(f, "is missing", f"set {{setting}} ({CREDENTIALS})") for f in ("app_id", "app_secret") if not getattr(app, f)]
    if app.mode == "http":
        out += [(f, "is missing: HTTP events are believed only when encrypted, signed and carrying the token",
                 f"set {{setting}} ({EVENT_KEYS}), or use mode = \"ws\" (长连接)")
                for f in ("encrypt_key", "verification_token") if not getattr(app, f).get_secret_value()]
    out += url_issues(app, {"api_base": DEFAULT_API, "login_base": DEFAULT_LOGIN})
    if not 0.05 <= app.preview_interval <= 30:
        out.append(("preview_interval", f"{app.preview_interval} is not between 0.05 and 30 seconds", "set {setting} to about 0.5"))
    return out


def _lower(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, **{k: values[k].strip().lower() for k in ("mode", "user_id_type") if isinstance(values.get(k), str)}}


SPEC = AccountSpec(platform="feishu", list_key="apps", model=FeishuApp, present=("app_id", "app_secret"),
                   inherit=("api_base", "login_base"), unique=("app_id",), validate=_issues, normalize=_lower)


def load_apps(tenant: str, section: Mapping[str, Any] | None = None,
              env: Mapping[str, str] | None = None) -> tuple[list[FeishuApp], list[ConfigProblem]]:
    """Every usable app (the COPILOT_FEISHU_* one first) and what is wrong with the others."""
    return load_accounts(SPEC, tenant, section, env)
