"""Settings read from the environment (prefix ``LIFELINE_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "demo-secret-key"})
DEMO_SECRET_KEY = "demo-secret-key"
MISSING_SECRET_KEY = (
    "LIFELINE_SECRET_KEY is not set (or is a placeholder): make one with "
    "export LIFELINE_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
)
# Signs every session cookie: short enough to guess means anyone can sign in as anyone.
MIN_SECRET_KEY_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFELINE_", env_file=None, extra="ignore")

    env: Literal["production", "development", "demo", "test"] = "production"
    database_url: str = "sqlite+aiosqlite:///./lifeline.db"
    redis_url: str | None = None
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = ""

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "Lifeline <lifeline@localhost>"

    # Outbox relay: retries with exponential backoff, leases so two senders never share a row.
    delivery_max_attempts: int = Field(default=6, ge=1)
    delivery_backoff_base_seconds: float = Field(default=5.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=900.0, gt=0)
    delivery_lease_seconds: float = Field(default=60.0, gt=0)
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    # Escalation emails (SMTP costs money) per account per hour; beyond it email rows are
    # recorded as skipped and push still goes out.
    email_cap_per_hour: int = Field(default=500, ge=0)

    # Outbound webhooks: hosts on loopback, private or link-local networks (and cloud metadata)
    # are refused unless this is true (a receiver on the same network, the tests' loopback).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Slack's Web API; tests point it at a local server that answers as Slack does.
    slack_api_url: str = "https://slack.com/api/"

    heartbeat_seconds: float = Field(default=15.0, gt=0)
    # Live streams (SSE + WebSocket) one user may hold open: the next SSE stream gets a 429,
    # the next WebSocket is closed with 1008.
    max_streams_per_user: int = Field(default=20, ge=1)
    presence_ttl_seconds: float = Field(default=45.0, gt=0)
    # An agent's wait (MCP) reports progress this often, so clients keep the call alive.
    agent_progress_seconds: float = Field(default=10.0, gt=0)

    max_page_size: int = Field(default=100, ge=1)
    # The demo's mail sink writes each caught message here; /demo/mail shows them.
    mail_sink_dir: str | None = None
    # Logs: JSON lines when true, or when unset and stderr is not a terminal.
    log_json: bool | None = None
    log_level: str = "INFO"
    # Requests with a larger body are refused with 413 before anything reads them.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # When set, GET /metrics needs "Authorization: Bearer <this>".
    metrics_token: str | None = None
    # On SIGTERM a server stops accepting, waits this long for open requests and streams to
    # end, then closes them and drains its after-commit work.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.env != "production":
            return self
        if self.secret_key.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(MISSING_SECRET_KEY)
        if len(self.secret_key.strip()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"LIFELINE_SECRET_KEY is too short: at least {MIN_SECRET_KEY_LENGTH} characters "
                "in production; make one with export LIFELINE_SECRET_KEY=$(python3 -c "
                "'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host)


@lru_cache
def get_settings() -> Settings:
    return Settings()
