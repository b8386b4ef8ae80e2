"""WeCom settings: the default corp from COPILOT_WECOM_* variables, more corps from copilot.toml.

    [[wecom.corps]]
    key = "east"            # URL /wecom/east/callback, and the tenant of everything from this corp
    corp_id = "ww..."
    token = "..."
    aes_key = "..."         # EncodingAESKey: 43 characters
    agent_id = 1000002
    secret = "..."
    markdown = true

Owns configuration only: nothing here talks to WeCom. Loading is connectors/config.py's, as for every
platform: a corp with a bad value is left out and reported (`ConfigProblem`, shown by `copilot doctor`)
instead of the process refusing to start with a traceback.
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, SecretStr

from connectors.config import AccountSpec, ConfigProblem, Issue, load_accounts

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
DEFAULT_LOGIN_BASE = "https://login.work.weixin.qq.com"  # the web login (企业微信扫码登录) page
DEFAULT_KEY = "default"
CONSOLE = "WeCom admin console → 应用管理 → your app"


class CorpConfig(BaseModel):
    """One corp's self-built app. `key` names it in URLs; `tenant` isolates its data downstream."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    key: str = DEFAULT_KEY
    tenant: str = "default"
    corp_id: str = ""
    token: SecretStr = SecretStr("")  # secrets: revealed (get_secret_value) only where used, never in a repr or log
    aes_key: SecretStr = SecretStr("")
    agent_id: int = 0
    secret: SecretStr = SecretStr("")
    api_base: str = DEFAULT_API_BASE
    login_base: str = DEFAULT_LOGIN_BASE
    markdown: bool = True
    # outbound pacing. WeCom drops (silently) more than 30 messages a minute or 1000 an hour from one
    # app to one member: a bucket of `user_burst` refilled at `user_rate_per_minute` never exceeds
    # either (10 + 16 = 26 per minute, 10 + 960 = 970 per hour). 0 turns a limit off.
    rate_per_minute: int = 3000
    rate_burst: int = 200
    user_rate_per_minute: int = 16
    user_burst: int = 10
    duplicate_check_seconds: int = 600  # WeCom drops an identical message to the same user within this window (max 1800)

    @property
    def configured(self) -> bool:
        return bool(self.corp_id or self.token or self.aes_key or self.secret)

    def setting(self, name: str) -> str:
        return SPEC.env_name(name) if self.key == DEFAULT_KEY else SPEC.toml_name(self.key, name)

    def issues(self) -> list[Issue]:
        """(field, what is wrong, how to fix it) for each bad or missing value; empty when usable."""
        out: list[Issue] = []
        for f in ("corp_id", "token", "aes_key", "secret"):
            if not getattr(self, f):
                out.append((f, "is empty", f"set {self.setting(f)} ({CONSOLE})"))
        if not self.agent_id:
            out.append(("agent_id", "is empty", f"set {self.setting('agent_id')} to the app's AgentId ({CONSOLE})"))
        if self.aes_key:
            problem = aes_key_problem(self.aes_key.get_secret_value())
            if problem:
                out.append(("aes_key", problem, f"copy the EncodingAESKey again from 接收消息 → 设置API接收 into {self.setting('aes_key')} "
                                                "(43 letters and digits; click 随机获取 to make a new one)"))
        if self.token and not re.fullmatch(r"[A-Za-z0-9]{1,32}", self.token.get_secret_value()):
            out.append(("token", "must be 1-32 letters or digits", f"copy the Token again into {self.setting('token')}"))
        return out

    def problems(self) -> list[tuple[str, str]]:
        """(what is wrong, how to fix it), for messages."""
        return [(f"{f} {what}" if what.startswith(("is ", "must ")) else what, fix) for f, what, fix in self.issues()]


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


SPEC = AccountSpec(platform="wecom", list_key="corps", model=CorpConfig, present=("corp_id", "token", "aes_key", "secret"),
                   inherit=("api_base", "login_base"), validate=lambda c: c.issues())


def load_corps(tenant: str = "default", section: Mapping[str, Any] | None = None,
               env: Mapping[str, str] | None = None) -> tuple[list[CorpConfig], list[ConfigProblem]]:
    """Every usable corp (the COPILOT_WECOM_* one first, then copilot.toml's) and what is wrong with the others."""
    return load_accounts(SPEC, tenant, section, env)
