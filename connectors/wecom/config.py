"""WeCom settings: the default corp from COPILOT_WECOM_* variables, more corps from copilot.toml.

    [[wecom.corps]]
    key = "east"            # URL /wecom/east/callback, and the tenant of everything from this corp
    corp_id = "ww..."
    token = "..."
    aes_key = "..."         # EncodingAESKey: 43 characters
    agent_id = 1000002
    secret = "..."
    markdown = true

Owns configuration only: nothing here talks to WeCom. A corp with a bad value is still loaded
(`problems()` says what is wrong and how to fix it) so that `copilot doctor` can report it
instead of the process refusing to start with a traceback.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
DEFAULT_KEY = "default"
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class CorpFields(BaseModel):
    """What every corp is configured with (from copilot.toml, or the environment for the default corp)."""

    corp_id: str = ""
    token: str = ""
    aes_key: str = ""
    agent_id: int = 0
    secret: str = ""
    api_base: str = DEFAULT_API_BASE
    markdown: bool = True
    # outbound pacing. WeCom drops (silently) more than 30 messages a minute or 1000 an hour from one
    # app to one member: a bucket of `user_burst` refilled at `user_rate_per_minute` never exceeds
    # either (10 + 16 = 26 per minute, 10 + 960 = 970 per hour). 0 turns a limit off.
    rate_per_minute: int = 3000
    rate_burst: int = 200
    user_rate_per_minute: int = 16
    user_burst: int = 10
    duplicate_check_seconds: int = 600  # WeCom drops an identical message to the same user within this window (max 1800)


class CorpConfig(CorpFields):
    """One corp's self-built app. `key` names it in URLs; `tenant` isolates its data downstream."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    key: str = DEFAULT_KEY
    tenant: str = "default"

    @property
    def configured(self) -> bool:
        return bool(self.corp_id or self.token or self.aes_key or self.secret)

    def problems(self) -> list[tuple[str, str]]:
        """(what is wrong, how to fix it) for each bad or missing value; empty when usable."""
        env = self.key == DEFAULT_KEY
        name = (lambda f: f"COPILOT_WECOM_{f.upper()}") if env else (lambda f: f"{f} in [[wecom.corps]] key={self.key!r}")
        out = []
        for f in ("corp_id", "token", "aes_key", "secret"):
            if not getattr(self, f):
                out.append((f"{f} is empty", f"set {name(f)} (WeCom admin console → 应用管理 → your app)"))
        if not self.agent_id:
            out.append(("agent_id is empty", f"set {name('agent_id')} to the app's AgentId (应用管理 → your app)"))
        if self.aes_key:
            problem = aes_key_problem(self.aes_key)
            if problem:
                out.append((problem, f"copy the EncodingAESKey again from 接收消息 → 设置API接收 into {name('aes_key')} "
                                     "(43 letters and digits; click 随机获取 to make a new one)"))
        if self.token and not re.fullmatch(r"[A-Za-z0-9]{1,32}", self.token):
            out.append(("token must be 1-32 letters or digits", f"copy the Token again into {name('token')}"))
        return out


def aes_key_problem(aes_key: str) -> str:
    if len(aes_key) != 43:
        return f"EncodingAESKey has {len(aes_key)} characters; WeCom's has exactly 43"
    try:
        key = base64.b64decode(aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        return "EncodingAESKey is not valid base64 (letters and digits only)"
    if len(key) != 32:
        return f"EncodingAESKey decodes to {len(key)} bytes, not 32"
    return ""


class WeComEnv(CorpFields, BaseSettings):
    """The default corp, from the environment."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_WECOM_", extra="ignore", env_ignore_empty=True)


class WeComConfigError(ValueError):
    pass


def load_corps(main_tenant: str = "default", toml: Mapping[str, Any] | None = None, **env_overrides: Any) -> list[CorpConfig]:
    """Every configured corp: the default one (if its env is set) first, then copilot.toml's."""
    try:
        env = WeComEnv(**env_overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise WeComConfigError(f"bad setting COPILOT_WECOM_{str(err['loc'][0]).upper()}: {err['msg']}") from None
    corps: list[CorpConfig] = []
    default = CorpConfig(key=DEFAULT_KEY, tenant=main_tenant, **env.model_dump())
    if default.configured:
        corps.append(default)
    section = toml or {}
    entries = section.get("corps", [])
    if not isinstance(entries, list):
        raise WeComConfigError("[wecom] corps must be a list of [[wecom.corps]] tables")
    seen = {c.key for c in corps}
    for i, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise WeComConfigError(f"[[wecom.corps]] entry {i + 1} is not a table")
        key = str(raw.get("key", "")).strip()
        if not _KEY.match(key) or key == DEFAULT_KEY:
            raise WeComConfigError(f"[[wecom.corps]] entry {i + 1}: key {key!r} must be 1-32 lowercase letters, digits, _ or - "
                                   f"(and not {DEFAULT_KEY!r}); it becomes the URL /wecom/KEY/callback and the tenant")
        if key in seen or key == main_tenant:
            raise WeComConfigError(f"[[wecom.corps]] key {key!r} is used twice (or equals the main tenant {main_tenant!r})")
        seen.add(key)
        values = {k: v for k, v in raw.items() if k in CorpConfig.model_fields and k not in ("key", "tenant")}
        values.setdefault("api_base", env.api_base)
        try:
            corps.append(CorpConfig(key=key, tenant=key, **values))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise WeComConfigError(f"[[wecom.corps]] key={key!r}: {err['loc'][0]}: {err['msg']}") from None
    return corps

