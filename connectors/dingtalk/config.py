"""Which DingTalk apps (corps) this deployment serves, and how each one receives messages.

The default app comes from COPILOT_DINGTALK_* environment variables and serves the main tenant;
more apps come from `[[dingtalk.apps]]` in copilot.toml, each in its own tenant named by its `key`
(so two corps never share conversations, identities or knowledge). A misconfigured app is left
out and reported by `copilot doctor` instead of stopping the whole gateway.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_API = "https://api.dingtalk.com"
DEFAULT_OAPI = "https://oapi.dingtalk.com"
MODES = ("http", "stream")
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class DingTalkEnv(BaseSettings):
    """The default app: COPILOT_DINGTALK_APP_KEY, _APP_SECRET, _ROBOT_CODE, _MODE, _API_BASE, _OAPI_BASE."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_DINGTALK_", extra="ignore", env_ignore_empty=True)

    app_key: str = ""
    app_secret: str = ""
    robot_code: str = ""  # empty: the app key (an internal app's robot code usually equals it)
    mode: str = "http"
    api_base: str = DEFAULT_API
    oapi_base: str = DEFAULT_OAPI


@dataclass(frozen=True)
class DingTalkApp:
    key: str  # "default" for the env app; the [[dingtalk.apps]] key otherwise (also the URL segment)
    tenant: str
    app_key: str
    app_secret: str
    robot_code: str
    mode: Literal["http", "stream"] = "http"
    api_base: str = DEFAULT_API
    oapi_base: str = DEFAULT_OAPI

    @property
    def callback_path(self) -> str:
        return "/dingtalk/callback" if self.key == "default" else f"/dingtalk/{self.key}/callback"

    @property
    def label(self) -> str:
        return f"dingtalk[{self.key}]"


@dataclass(frozen=True)
class ConfigProblem:
    app: str
    detail: str
    fix: str


def load_apps(tenant: str, env: DingTalkEnv | None = None, section: dict[str, Any] | None = None) -> tuple[list[DingTalkApp], list[ConfigProblem]]:
    """All configured apps plus what is wrong with the ones left out."""
    env = env or DingTalkEnv()
    section = section or {}
    apps: list[DingTalkApp] = []
    problems: list[ConfigProblem] = []
    api_base = env.api_base.rstrip("/") or DEFAULT_API
    oapi_base = env.oapi_base.rstrip("/") or DEFAULT_OAPI
    if env.app_key or env.app_secret:
        _add(apps, problems, dict(key="default", app_key=env.app_key, app_secret=env.app_secret,
                                  robot_code=env.robot_code, mode=env.mode), tenant, api_base, oapi_base, "COPILOT_DINGTALK_")
    entries = section.get("apps", [])
    if not isinstance(entries, list):
        problems.append(ConfigProblem("copilot.toml", "[dingtalk] apps must be an array of tables",
                                      "write each app as a [[dingtalk.apps]] table"))
        entries = []
    for i, raw in enumerate(entries):
        if not isinstance(raw, dict):
            problems.append(ConfigProblem(f"apps[{i}]", "not a table", "write each app as a [[dingtalk.apps]] table"))
            continue
        key = str(raw.get("key", "")).strip()
        if not _KEY.match(key) or key == "default":
            problems.append(ConfigProblem(f"apps[{i}]", f"key {key!r} is not a valid app key",
                                          "give each [[dingtalk.apps]] a key of 1-32 lowercase letters, digits, - or _ (not 'default')"))
            continue
        if key == tenant or any(a.key == key for a in apps):
            problems.append(ConfigProblem(key, f"key {key!r} is used twice (or equals the main tenant)",
                                          "give every app its own key: it names the app's tenant"))
            continue
        _add(apps, problems, raw, key, str(raw.get("api_base") or api_base).rstrip("/"),
             str(raw.get("oapi_base") or oapi_base).rstrip("/"), f"[[dingtalk.apps]] key={key}: ")
    seen: dict[str, str] = {}
    for a in list(apps):
        if a.app_key in seen:
            apps.remove(a)
            problems.append(ConfigProblem(a.key, f"app_key {a.app_key} is already used by app {seen[a.app_key]!r}",
                                          "each DingTalk app appears once; remove the duplicate"))
        else:
            seen[a.app_key] = a.key
    return apps, problems


def _add(apps: list[DingTalkApp], problems: list[ConfigProblem], raw: dict[str, Any], tenant: str, api_base: str,
         oapi_base: str, where: str) -> None:
    key = str(raw.get("key", "default"))
    app_key, secret = str(raw.get("app_key") or "").strip(), str(raw.get("app_secret") or "").strip()
    mode = str(raw.get("mode") or "http").strip().lower()
    missing = [n for n, v in (("app_key", app_key), ("app_secret", secret)) if not v]
    if missing:
        names = " and ".join(f"{where}{n.upper()}" if where.endswith("_") else f"{where}{n}" for n in missing)
        problems.append(ConfigProblem(key, f"{' and '.join(missing)} missing",
                                      f"set {names} (developer console → the app → 凭证与基础信息 Client ID / Client Secret)"))
        return
    if mode not in MODES:
        problems.append(ConfigProblem(key, f"mode {mode!r} is not http or stream",
                                      f"set {where}{'MODE' if where.endswith('_') else 'mode'} to http (public callback URL) or stream (no public URL)"))
        return
    if not api_base.startswith(("http://", "https://")) or not oapi_base.startswith(("http://", "https://")):
        problems.append(ConfigProblem(key, f"API base {api_base!r} / {oapi_base!r} is not an http(s) URL",
                                      "leave COPILOT_DINGTALK_API_BASE unset to use https://api.dingtalk.com"))
        return
    robot = str(raw.get("robot_code") or "").strip() or app_key
    apps.append(DingTalkApp(key=key, tenant=tenant, app_key=app_key, app_secret=secret, robot_code=robot,
                            mode=mode, api_base=api_base, oapi_base=oapi_base))  # type: ignore[arg-type]
