"""Every knob in one place. Read once at start-up, then passed down."""

from __future__ import annotations

import json
import os
import secrets
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def shipped_dir(name: str) -> Path:
    """`templates`, `static` or `migrations`. They live at the top of the repository and
    the wheel carries them inside the package (pyproject's force-include), so look in
    the installed package first, then in the checkout beside it."""
    packaged = resources.files("app") / name
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(str(resources.files("app"))).parent / name
    if checkout.is_dir():
        return checkout
    raise RuntimeError(f"{name}/ is missing from this installation of undersigned")


TEMPLATES_DIR = shipped_dir("templates")
STATIC_DIR = shipped_dir("static")
MIGRATIONS_DIR = shipped_dir("migrations")


class MailBackend(StrEnum):
    DEV = "dev"
    SMTP = "smtp"


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UNDERSIGNED_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///./var/undersigned.db"
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs every token and keys the email hash. "
        "Default: generated once into DATA_DIR/secret_key (mode 0600).",
    )
    base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("./var")

    mail_backend: MailBackend = MailBackend.DEV
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_timeout_seconds: float = 20.0
    mail_from: str = "Undersigned <letters@localhost>"

    rate_limit_storage: str = "memory://"
    rate_limits: bool = True
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Proxy IPs, comma-separated (or a JSON list)."
    )
    verify_max_age_days: int = Field(default=7, ge=1, le=60)

    # Not in the contract, but operators may want them.
    run_mail_worker: bool = Field(
        default=False, description="Run the outbox worker inside the web process."
    )
    max_request_bytes: int = 64 * 1024
    log_level: str = "info"
    access_log: bool = Field(
        default=False, description="uvicorn's access log: client IPs and token URLs. Off."
    )

    @model_validator(mode="before")
    @classmethod
    def _off_means_false(cls, data: Any) -> Any:
        # RATE_LIMITS is documented as on|off.
        if isinstance(data, dict):
            for key in ("rate_limits", "RATE_LIMITS"):
                if str(data.get(key, "")).lower() in {"on", "off"}:
                    data[key] = data[key].lower() == "on"
        return data

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _normalise(self) -> Settings:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.secret_key is None:
            object.__setattr__(self, "secret_key", SecretStr(_load_or_create_secret(self.data_dir)))
        return self

    @property
    def secret(self) -> str:
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()

    @property
    def verify_max_age_seconds(self) -> int:
        return self.verify_max_age_days * 24 * 3600

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def _load_or_create_secret(data_dir: Path) -> str:
    """The key lives in a 0600 file so that restarts keep links valid."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
