"""Accounts of one platform (WeCom corps, DingTalk apps, mailboxes), loaded the same way for every one.

The default account comes from COPILOT_<PLATFORM>_* environment variables and serves the deployment's
tenant; more come from a list in the platform's copilot.toml section (`[[wecom.corps]]`,
`[[dingtalk.apps]]`, `[[email.mailboxes]]`). Each account is validated with its pydantic model, keys
(and the fields that must differ, e.g. an app key) are checked to be unique, and whatever is wrong
becomes a `ConfigProblem` naming the setting and the fix: that account is left out, `copilot doctor`
shows the problem, and every other account keeps working. Nothing here raises on bad settings.
"""
from __future__ import annotations

import json
import os
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

from pydantic import BaseModel, ValidationError

from connectors.channel import Check

M = TypeVar("M", bound=BaseModel)
Issue = tuple[str, str, str]  # (field, what is wrong, how to fix it)


@dataclass(frozen=True)
class ConfigProblem:
    account: str  # the account's key ("default": the environment's), or "#n" for an entry without a usable key
    setting: str  # where it is set: COPILOT_WECOM_SECRET, or [[wecom.corps]] key=east: secret
    detail: str
    fix: str

    def check(self, platform: str) -> Check:
        return Check(f"{platform} {self.account}: settings", False, f"{self.setting}: {self.detail}", self.fix)

    def __str__(self) -> str:
        return f"{self.setting}: {self.detail} (fix: {self.fix})"


@dataclass(frozen=True)
class AccountSpec(Generic[M]):
    platform: str  # "wecom": COPILOT_WECOM_*, the [wecom] section
    list_key: str  # "corps": [[wecom.corps]]
    model: type[M]  # has `key` and `tenant` fields
    present: tuple[str, ...]  # any of these set in the environment means the default account is configured
    inherit: tuple[str, ...] = ()  # environment values the TOML accounts take unless they set their own (API bases)
    env_extra: tuple[str, ...] = ()  # more environment names the model reads (old spellings)
    own_tenant: bool = True  # a TOML account is its own tenant, named by its key (else: its `tenant`, or the deployment's)
    default_in_toml: bool = False  # a TOML entry may be the default account (its key may be omitted); it replaces the env one
    unique: tuple[str, ...] = ()  # fields no two accounts may share
    key_pattern: str = r"^[a-z0-9][a-z0-9_-]{0,31}$"
    key_help: str = "1-32 lowercase letters, digits, _ or -"
    default_key: str = "default"
    validate: Callable[[Any], list[Issue]] | None = None  # semantic checks after the model accepted the values
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # values before validation

    def env_name(self, name: str) -> str:
        return f"COPILOT_{self.platform.upper()}_{name.upper()}"

    def toml_name(self, key: str, name: str) -> str:
        return f"[[{self.platform}.{self.list_key}]] key={key!r}: {name}"


def url_issues(account: Any, defaults: Mapping[str, str]) -> list[Issue]:
    """An issue for each field named in `defaults` whose value is not an http(s) URL; the fix names the default."""
    return [(f, f"{getattr(account, f)!r} is not an http(s) URL", f"leave {{setting}} unset to use {default}")
            for f, default in defaults.items() if not getattr(account, f).startswith(("http://", "https://"))]


def read_env(spec: AccountSpec, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The COPILOT_<PLATFORM>_* values that are set (empty ones count as unset)."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for name in [*spec.model.model_fields, *spec.env_extra]:
        if name == "key" or (name == "tenant" and spec.own_tenant):
            continue
        raw = env.get(spec.env_name(name), "")
        if raw.strip():
            info = spec.model.model_fields.get(name)
            out[name] = _list_value(raw) if info is not None and _is_sequence(info.annotation) else raw.strip()
    return out


def load_accounts(spec: AccountSpec[M], tenant: str, section: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[list[M], list[ConfigProblem]]:
    """Every usable account (the environment's first) and what is wrong with the others."""
    section = section or {}
    problems: list[ConfigProblem] = []
    env_values = read_env(spec, env)
    inherited = {k: v for k, v in env_values.items() if k in spec.inherit}
    entries = section.get(spec.list_key, [])
    table = f"[[{spec.platform}.{spec.list_key}]]"
    if not isinstance(entries, list):
        problems.append(ConfigProblem("#1", f"[{spec.platform}] {spec.list_key}", "is not a list of tables",
                                      f"write each account as its own {table} table"))
        entries = []
    raw: list[tuple[str, dict[str, Any], Callable[[str], str]]] = []  # (key, values, how to name a setting)
    toml_default = spec.default_in_toml and any(isinstance(e, dict) and str(e.get("key") or spec.default_key) == spec.default_key
                                                for e in entries)
    if not toml_default and any(env_values.get(f) for f in spec.present):
        raw.append((spec.default_key, {**env_values, "key": spec.default_key, "tenant": env_values.get("tenant") or tenant},
                    spec.env_name))
    for i, entry in enumerate(entries):
        where = f"#{i + 1}"
        if not isinstance(entry, dict):
            problems.append(ConfigProblem(where, f"{table} {where}", "is not a table", f"write each account as its own {table} table"))
            continue
        key = str(entry.get("key") or (spec.default_key if spec.default_in_toml else "")).strip()
        if not re.match(spec.key_pattern, key) or (key == spec.default_key and not spec.default_in_toml):
            problems.append(ConfigProblem(where, f"{table} {where}: key", f"{key!r} is not a usable key",
                                          f"give it a key of {spec.key_help}" + ("" if spec.default_in_toml else f", not {spec.default_key!r}")
                                          + ("; the key names its tenant (and its callback URL)" if spec.own_tenant else "")))
            continue
        values = {**inherited, **{k: v for k, v in entry.items() if k not in ("key", "tenant")}, "key": key}
        if spec.own_tenant:
            if key == tenant:
                problems.append(ConfigProblem(key, spec.toml_name(key, "key"), f"equals the deployment's tenant {tenant!r}",
                                              "give the account another key: it becomes the account's own tenant"))
                continue
            values["tenant"] = key
        else:
            values["tenant"] = str(entry.get("tenant") or "") or tenant
        raw.append((key, values, lambda name, key=key: spec.toml_name(key, name)))

    accounts: list[M] = []
    taken: dict[tuple[str, Any], str] = {}
    for key, values, name in raw:
        if spec.normalize is not None:
            values = spec.normalize(values)
        if ("key", key) in taken:
            problems.append(ConfigProblem(key, name("key"), f"{key!r} is used twice", "give every account its own key"))
            continue
        try:
            account = spec.model.model_validate(values)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(map(str, err["loc"])) or "value"
                msg = "is missing" if err["type"] == "missing" else err["msg"]
                fix = f"set {name(loc)}" if err["type"] == "missing" else f"change {name(loc)}: {msg[:1].lower()}{msg[1:]}"
                problems.append(ConfigProblem(key, name(loc), msg, fix))
            continue
        issues = spec.validate(account) if spec.validate is not None else []
        for f, detail, fix in issues:
            problems.append(ConfigProblem(key, name(f), detail, fix.replace("{setting}", name(f))))
        if issues:
            continue
        clash = next((f for f in spec.unique if (f, getattr(account, f)) in taken), None)
        if clash is not None:
            problems.append(ConfigProblem(key, name(clash), f"{getattr(account, clash)!r} is already used by {taken[(clash, getattr(account, clash))]!r}",
                                          "each account appears once: remove the duplicate"))
            continue
        taken[("key", key)] = key
        for f in spec.unique:
            taken[(f, getattr(account, f))] = key
        accounts.append(account)
    return accounts, problems


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (tuple, list) or annotation in (tuple, list)


def _list_value(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        try:
            value = json.loads(raw)
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    return [p.strip() for p in raw.split(",") if p.strip()]


__all__ = ["AccountSpec", "ConfigProblem", "load_accounts", "read_env"]
