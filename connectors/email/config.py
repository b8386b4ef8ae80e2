"""Mailbox settings: `[[email.mailboxes]]` in copilot.toml, plus one default mailbox from the
environment (COPILOT_EMAIL_IMAP_HOST, COPILOT_EMAIL_USERNAME, ... any Mailbox field, upper-case).

Owns configuration only; loading is connectors/config.py's, as for every platform: a mailbox with a
bad setting is left out and reported (`ConfigProblem`), the others keep working. A TOML mailbox
without a key is the default one (and replaces the environment's).
"""
from __future__ import annotations

import ssl
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.config import AccountSpec, ConfigProblem, load_accounts

Security = Literal["ssl", "starttls", "none"]
_IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
_SMTP_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


class Mailbox(BaseModel):
    """One mailbox the copilot reads (IMAP) and sends from (SMTP)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str = Field("default", pattern=r"^[\w.-]{1,40}$")
    imap_host: str
    imap_port: int = 0  # 0: the usual port for imap_security
    imap_security: Security = "ssl"
    username: str
    password: SecretStr = SecretStr("")  # revealed (get_secret_value) only at login, never in a repr or log
    folder: str = "INBOX"
    smtp_host: str = ""  # empty: this mailbox only receives
    smtp_port: int = 0
    smtp_security: Security = "starttls"
    smtp_username: str = ""  # empty: same as username
    smtp_password: SecretStr = SecretStr("")  # empty: same as password
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
    # The receiving server's authserv-id (RFC 8601): only its Authentication-Results header can make a
    # sender a directory person (authres.py). Empty: nobody is verified, all mail is a customer's at most.
    # COPILOT_EMAIL_AUTHSERV_ID applies to every mailbox that sets none.
    authserv_id: str = ""

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
        """The SMTP password, revealed: only for the login itself."""
        return (self.smtp_password or self.password).get_secret_value()

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if not self.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


SPEC = AccountSpec(platform="email", list_key="mailboxes", model=Mailbox, present=("imap_host",),
                   inherit=("authserv_id",), env_extra=("imap_ssl", "imap_starttls"), own_tenant=False, default_in_toml=True,
                   key_pattern=r"^[\w.-]{1,40}$", key_help="1-40 letters, digits, '.', '_' or '-'")


def load_mailboxes(tenant: str, section: Mapping[str, Any] | None = None,
                   env: Mapping[str, str] | None = None) -> tuple[list[Mailbox], list[ConfigProblem]]:
    """Every usable mailbox (COPILOT_EMAIL_IMAP_HOST's first, unless a [[email.mailboxes]] entry is the
    default one) and what is wrong with the others."""
    return load_accounts(SPEC, tenant, section, env)
