"""WeCom intelligent robot (智能机器人, API mode) settings: one robot from COPILOT_WECOM_ROBOT_* variables, more
from copilot.toml.

    [[wecom.robots]]
    key = "sales"             # URL /wecom/robot/sales/callback (omit the key once: "default")
    token = "..."             # the robot's API settings: Token
    aes_key = "..."           # and EncodingAESKey (43 characters)
    robot_id = "aib..."       # the robot's id (aibotid): callbacks naming another robot are refused
    tenant = "default"        # whose people and knowledge its users reach (the deployment's when left out)
    name = "销售助手"          # how people @ it in groups, stripped from the question

A single `[wecom.robot]` table is read as the default robot. Owns configuration only; loading is
connectors/config.py's, as for every platform: a robot with a bad value is left out and reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr

from connectors.config import AccountSpec, ConfigProblem, Issue, load_accounts
from connectors.wecom.config import aes_key_problem

DEFAULT_KEY = "default"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"
RESPONSE_PATH = "/cgi-bin/aibot/response"
# where WeCom keeps the (encrypted) images and files users send a robot: Tencent's picture CDN and COS buckets
FILE_HOSTS = (".qpic.cn", ".myqcloud.com", ".tencentcos.cn", ".qq.com")
CONSOLE = "WeCom admin console → 智能机器人 → your robot → API 模式"


class RobotConfig(BaseModel):
    """One intelligent robot. `key` names it in its callback URL; `tenant` is whose data its users reach."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    key: str = DEFAULT_KEY
    tenant: str = "default"
    token: SecretStr = SecretStr("")
    aes_key: SecretStr = SecretStr("")
    robot_id: str = ""
    name: str = ""
    api_base: str = DEFAULT_API_BASE  # WeCom's API host: a callback's response_url must point there, nowhere else
    stream_seconds: float = 330.0  # WeCom polls a stream for 6 minutes from the question; past this, response_url
    sweep_seconds: float = 30.0  # how often finished answers nobody polled for are pushed to response_url

    def response_url_ok(self, url: str) -> bool:
        """Whether a callback's response_url is WeCom's (`api_base`) response endpoint: the body names it, and the reply is
        POSTed to it, so any other host (an internal address, a metadata service) is refused."""
        got, base = _split(url), _split(self.api_base)
        return got is not None and base is not None and got[:2] == base[:2] and \
            got[2].startswith(base[2].rstrip("/") + RESPONSE_PATH)

    def file_url_ok(self, url: str) -> bool:
        """Whether a file url of a callback is on WeCom's file hosts (https on Tencent's CDN or COS, or `api_base`'s host)."""
        got, base = _split(url), _split(self.api_base)
        if got is None:
            return False
        if base is not None and got[:2] == base[:2]:
            return True
        host = got[1].rsplit(":", 1)[0] if got[1].count(":") == 1 else got[1]
        return got[0] == "https" and host.endswith(FILE_HOSTS)

    @property
    def path(self) -> str:
        return f"/wecom/robot/{self.key}/callback"

    def setting(self, name: str) -> str:
        return SPEC.env_name(name) if self.key == DEFAULT_KEY else SPEC.toml_name(self.key, name)

    def issues(self) -> list[Issue]:
        out: list[Issue] = []
        for f in ("token", "aes_key"):
            if not getattr(self, f):
                out.append((f, "is empty", f"set {self.setting(f)} ({CONSOLE})"))
        if self.aes_key:
            problem = aes_key_problem(self.aes_key.get_secret_value())
            if problem:
                out.append(("aes_key", problem, f"copy the EncodingAESKey again into {self.setting('aes_key')} ({CONSOLE})"))
        if self.token and not re.fullmatch(r"[A-Za-z0-9]{1,32}", self.token.get_secret_value()):
            out.append(("token", "must be 1-32 letters or digits", f"copy the Token again into {self.setting('token')}"))
        if self.robot_id and not re.fullmatch(r"[\w\-]{1,64}", self.robot_id):
            out.append(("robot_id", "must be 1-64 letters, digits, _ or -", f"copy the robot's id (aibotid) into {self.setting('robot_id')}"))
        if _split(self.api_base) is None:
            out.append(("api_base", "must be an http(s) URL", f"leave {self.setting('api_base')} out: WeCom's is {DEFAULT_API_BASE}"))
        if not 1 <= self.stream_seconds <= 355:
            out.append(("stream_seconds", "must be between 1 and 355", "leave it out: WeCom polls a stream for 6 minutes"))
        return out


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, host[:port], path) of an http(s) url without credentials, lower-cased; None for anything else."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return None
    if u.scheme not in ("http", "https") or not u.hostname or u.username is not None or u.password is not None or "\\" in url:
        return None
    return u.scheme, u.hostname.lower() + (f":{port}" if port is not None else ""), u.path or "/"


@dataclass(frozen=True)
class _RobotSpec(AccountSpec):
    def toml_name(self, key: str, name: str) -> str:
        return f"[[wecom.robots]] key={key!r}: {name}"


SPEC = _RobotSpec(platform="wecom_robot", list_key="robots", model=RobotConfig, present=("token", "aes_key"), own_tenant=False,
                  default_in_toml=True, inherit=("api_base",), validate=lambda r: r.issues())


def load_robots(tenant: str = "default", section: Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None) -> tuple[list[RobotConfig], list[ConfigProblem]]:
    """Every usable robot (COPILOT_WECOM_ROBOT_*, then [wecom.robot] and [[wecom.robots]]) and what is wrong with the others."""
    section = section or {}
    robots = section.get("robots", [])
    single = section.get("robot")
    if isinstance(single, dict):
        robots = [single, *(robots if isinstance(robots, list) else [robots])]
    return load_accounts(SPEC, tenant, {"robots": robots}, env)
