"""Mailbox settings: `[[email.mailboxes]]` in copilot.toml, plus one default mailbox from the
environment (COPILOT_EMAIL_IMAP_HOST, COPILOT_EMAIL_USERNAME, ...).

Owns configuration only.
"""
from __future__ import annotations

import ssl
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


Security = Literal["ssl", "starttls", "none"]
_IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
_SMTP_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


class ConfigError(ValueError):
    """A mailbox setting that cannot work; the message names the setting."""


class Mailbox(BaseModel):
    """One mailbox the copilot reads (IMAP) and sends from (SMTP)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = Field("default", pattern=r"^[\w.-]{1,40}$")
    imap_host: str
    imap_port: int = 0  # 0: the usual port for imap_security
    imap_security: Security = "ssl"
    username: str
    password: str = Field("", repr=False)
    folder: str = "INBOX"
    smtp_host: str = ""  # empty: this mailbox only receives
    smtp_port: int = 0
    smtp_security: Security = "starttls"
    smtp_username: str = ""  # empty: same as username
    smtp_password: str = Field("", repr=False)  # empty: same as password
    address: str = ""  # the copilot's own address; empty: username when it is an address
    aliases: tuple[str, ...] = ()  # other addresses that are the copilot too (never processed)
    from_name: str = ""  # display name on outgoing mail unless the reply names one
    tenant: str = ""  # empty: the deployment's tenant
    poll_seconds: float = 60.0
    idle: bool = True
    # Servers drop an IDLE after ~30 minutes (RFC 2177 asks clients to re-issue before 29).
    idle_seconds: float = 25 * 60
    backfill_days: int = 1  # on first connect, mail received this many days back is handed over
    timeout: float = 30.0
    ca_file: str = ""  # extra CA bundle (a self-signed server); empty: the system store
    tls_verify: bool = True
    # Exactly-once sending: the copilot Bcc's itself and, when a send's outcome is unknown, looks
    # for its own copy (and in sent_folder, if the provider keeps one) before sending again.
    bcc_self: bool = True
    sent_folder: str = ""
    confirm_wait: float = 60.0  # seconds to let our own copy arrive before deciding it was not sent
    auto_replies_per_thread: int = 5  # automatic replies per thread per 24 h

    @model_validator(mode="before")
    @classmethod
    def _legacy_tls_keys(cls, data: Any) -> Any:
        # `imap_ssl = true` / `imap_starttls = true` read naturally in TOML; map them onto imap_security.
        if isinstance(data, dict) and "imap_security" not in data:
            data = dict(data)
            if data.pop("imap_starttls", False) in (True, "true", "1", 1):
                data["imap_security"] = "starttls"
            elif "imap_ssl" in data:
                data["imap_security"] = "ssl" if data.pop("imap_ssl") in (True, "true", "1", 1) else "none"
        return data

    @property
    def imap_port_(self) -> int:
        return self.imap_port or _IMAP_PORTS[self.imap_security]

    @property
    def smtp_port_(self) -> int:
        return self.smtp_port or _SMTP_PORTS[self.smtp_security]

    @property
    def own_address(self) -> str:
        return (self.address or (self.username if "@" in self.username else "")).strip().lower()

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset(a.strip().lower() for a in (self.own_address, *self.aliases) if a.strip())

    @property
    def smtp_user(self) -> str:
        return self.smtp_username or self.username

    @property
    def smtp_pass(self) -> str:
        return self.smtp_password or self.password

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class EmailEnv(BaseSettings):
    """The default mailbox from COPILOT_EMAIL_* (any Mailbox field, upper-case)."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_EMAIL_", extra="ignore", env_ignore_empty=True)

    key: str = "default"
    imap_host: str = ""
    imap_port: int = 0
    imap_security: Security | None = None
    imap_ssl: bool | None = None
    imap_starttls: bool | None = None
    username: str = ""
    password: str = ""
    folder: str = "INBOX"
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_security: Security = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    address: str = ""
    from_name: str = ""
    tenant: str = ""
    poll_seconds: float = 60.0
    idle: bool = True
    sent_folder: str = ""
    ca_file: str = ""

    def mailbox(self) -> dict[str, Any] | None:
        if not self.imap_host:
            return None
        return {k: v for k, v in self.model_dump().items() if v is not None}


def load_mailboxes(tenant: str, section: Mapping[str, Any] | None = None) -> list[Mailbox]:
    """Every configured mailbox: the TOML list first, then the environment's default mailbox (unless
    the TOML already has one under the same key). Raises ConfigError naming the bad setting."""
    section = section or {}
    raw: list[dict[str, Any]] = [dict(m) for m in section.get("mailboxes", []) if isinstance(m, dict)]
    env = EmailEnv().mailbox()
    if env is not None and env.get("key", "default") not in {m.get("key", "default") for m in raw}:
        raw.append(env)
    out: list[Mailbox] = []
    for i, data in enumerate(raw):
        data.setdefault("tenant", "")
        try:
            mb = Mailbox(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = f"[[email.mailboxes]] #{i + 1}" if i < len(section.get("mailboxes", [])) else "COPILOT_EMAIL_*"
            raise ConfigError(f"{where}: {'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}") from None
        if not mb.tenant:
            mb = mb.model_copy(update={"tenant": tenant})
        out.append(mb)
    keys = [m.key for m in out]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"[[email.mailboxes]]: duplicate key among {keys}")
    return out
