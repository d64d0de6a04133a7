"""Every knob in one place. Read once at start-up, then passed down."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from limits import parse_many
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


MIN_SECRET_BYTES = 32
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'

TEMPLATES_DIR = shipped_dir("templates")
STATIC_DIR = shipped_dir("static")
MIGRATIONS_DIR = shipped_dir("migrations")


class MailBackend(StrEnum):
    DEV = "dev"
    SMTP = "smtp"


class ProofOfWork(StrEnum):
    """When the sign form asks for an ALTCHA proof of work (D69)."""

    OFF = "off"
    ALWAYS = "always"
    AUTO = "auto"
    """Only for a letter while its signing runs above PROOF_OF_WORK_ABOVE."""


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class DatabasePooler(StrEnum):
    """What sits between the app and PostgreSQL."""

    NONE = "none"
    TRANSACTION = "transaction"
    """PgBouncer (or alike) in transaction mode: no server-side prepared statements."""


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UNDERSIGNED_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # an error message never repeats a key or a password
    )

    database_url: str = "sqlite:///./var/undersigned.db"
    database_pool_size: int = Field(
        default=5,  # app.db.DEFAULT_POOL_SIZE (D191); tests/test_db.py checks they agree
        ge=3,
        le=1000,
        description="Database connections per process; all but 2 serve requests (D51).",
    )
    database_read_url: str | None = Field(
        default=None,
        description="A PostgreSQL read replica for public reads (letter pages, signer "
        "list, tally and list API, breakdown). Writes, the confirm and manage pages, the "
        "dashboard and the worker always use DATABASE_URL.",
    )
    database_pooler: DatabasePooler = Field(
        default=DatabasePooler.NONE,
        description="transaction: DATABASE_URL (and DATABASE_READ_URL) go through PgBouncer "
        "in transaction mode; psycopg's server-side prepared statements are turned off "
        "(adds ?prepare_threshold=none to the URLs).",
    )
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
    smtp_security: SmtpSecurity = Field(
        default=SmtpSecurity.NONE,
        description="Default: starttls when SMTP_USERNAME or SMTP_PASSWORD is set, else none. "
        "`none` with a username or password is refused: the password would go in clear.",
    )
    smtp_timeout_seconds: float = 20.0
    mail_senders: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Emails one `undersigned worker` process sends at once, each on its own "
        "SMTP connection (threads; each holds one database connection while it records). "
        "More is faster; a worker killed mid-send may then resend up to one message per "
        "sender, not one. The worker inside `undersigned serve` sends one at a time.",
    )
    mail_from: str = "Undersigned <letters@localhost>"

    rate_limit_storage: str = Field(
        default="memory://",
        description="Where rate limits count: memory:// (one process) or redis://host:port/db "
        "(shared by every process).",
    )
    rate_limits: bool = True
    rate_limit_sign: str = Field(
        default="30/minute;300/hour",
        description="Sign requests per client per letter (the form and the API together).",
    )
    rate_limit_login_address: str = Field(
        default="10/hour", description="Sign-in link requests per email address."
    )
    rate_limit_login_client: str = Field(
        default="10/minute;50/hour", description="Sign-in link requests per client."
    )
    rate_limit_api: str = Field(
        default="600/minute", description="Requests to /api/v1 per client, all routes together."
    )
    rate_limit_sign_unproven: str = Field(
        default="5/minute;20/hour",
        description="While proof of work is asked for: sign requests without it (no "
        "JavaScript) per client per letter.",
    )
    rate_limit_sign_unproven_letter: str = Field(
        default="60/minute",
        description="While proof of work is asked for: sign requests without it per "
        "letter, all clients together.",
    )
    rate_limit_invite: str = Field(
        default="20/hour;100/day",
        description="Invitations (co-organizers, organizers) sent per organizer.",
    )
    rate_limit_emails: str = Field(
        default="5/hour",
        description="Emails about one letter to one address (links, already-signed notes); "
        "past it the newest submission waits, nobody is locked out.",
    )
    proof_of_work: ProofOfWork = Field(
        default=ProofOfWork.AUTO,
        description="ALTCHA proof of work on the sign form: off, always, or auto (only for "
        "a letter while its signing runs above PROOF_OF_WORK_ABOVE).",
    )
    proof_of_work_above: str = Field(
        default="120/minute",
        description="In auto mode: sign requests per letter (all clients) past which the "
        "letter asks for proof of work.",
    )
    proof_of_work_cost: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="PBKDF2 iterations per try of the proof of work (about 256 tries "
        "are needed; 5000 takes a phone about a second).",
    )
    rate_limit_key_prefix: str = Field(
        default="undersigned",
        max_length=100,
        description="Prefix of the rate limits' keys in Redis (several sites may share one).",
    )
    form_min_seconds: float = Field(
        default=2.0,
        ge=0,
        le=600,
        description="A sign form sent sooner after it was shown is taken for a bot's (the "
        "same answer, nothing stored). 0 turns the form's timestamp check off.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy IPs or networks, comma-separated (or a JSON list), whose "
        "X-Forwarded-For is believed.",
    )
    verify_max_age_days: int = Field(default=7, ge=1, le=60)
    public_cache_seconds: int = Field(
        default=5,
        ge=0,
        le=300,
        description="How long public pages and API answers (the same for every visitor) "
        "are kept in each process and by a proxy in front (s-maxage). 0: not kept; "
        "browsers and proxies revalidate with the ETag every time.",
    )

    # Not in the contract, but operators may want them.
    run_mail_worker: bool = Field(
        default=False, description="Run the outbox worker inside the web process."
    )
    max_request_bytes: int = 64 * 1024
    max_dashboard_request_bytes: int = Field(
        default=1024 * 1024,
        description="Under /dashboard (signed-in organizers only): a letter's text is long.",
    )
    open_registration: bool = Field(
        default=False,
        description="Anyone may make an organizer account by asking for a sign-in link. "
        "Off: accounts are made by an admin (`undersigned admin create`, the dashboard).",
    )
    organizer_session_days: int = Field(
        default=14, ge=1, le=90, description="How long a dashboard sign-in lasts."
    )
    log_level: str = "info"
    log_format: LogFormat = Field(
        default=LogFormat.TEXT,
        description="text, or json: one JSON object per line (time, level, logger, "
        "request_id, message).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="/metrics answers loopback clients, and others that send "
        "`Authorization: Bearer <this>`. Unset: loopback only.",
    )
    access_log: bool = Field(
        default=False, description="uvicorn's access log: client IPs and token URLs. Off."
    )
    log_sequence_seconds: float = Field(
        default=2.0,
        gt=0,
        le=5,
        description="The worker appends newly queued changes to each letter's signature "
        "log and signs a checkpoint at least this often (seconds, more than 0, at most 5).",
    )
    log_key: SecretStr | None = Field(
        default=None,
        description="The signature log's Ed25519 signer key, PRIVATE+KEY+<name>+<key ID>+"
        "<base64> (Go's note format). Default: generated once into DATA_DIR/log_key. Set "
        "it when several machines sign checkpoints: they must share one key.",
    )
    allow_dev_mail_on_network: bool = Field(
        default=False,
        description="Let `undersigned serve` listen on a non-loopback address with "
        "MAIL_BACKEND=dev. /dev/mail still answers loopback clients only.",
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

    @field_validator(
        "rate_limit_sign",
        "rate_limit_login_address",
        "rate_limit_login_client",
        "rate_limit_api",
        "rate_limit_sign_unproven",
        "rate_limit_sign_unproven_letter",
        "rate_limit_invite",
        "rate_limit_emails",
        "proof_of_work_above",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        # `limits` notation: "30/minute;300/hour" (also "30 per minute", "5/10 minutes").
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                "not a rate limit: write it like 30/minute or 30/minute;300/hour"
            ) from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_key_length(value.get_secret_value(), "UNDERSIGNED_SECRET_KEY")
        return value

    @field_validator("log_key")
    @classmethod
    def _signer_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            text = value.get_secret_value().strip()
            check_signer_key(text)
            value = SecretStr(text)
        return value

    @model_validator(mode="after")
    def _normalise(self) -> Settings:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        has_credentials = bool(self.smtp_username or self.smtp_password)
        if has_credentials and "smtp_security" not in self.model_fields_set:
            # Credentials, and no word on security: never send the password in clear.
            object.__setattr__(self, "smtp_security", SmtpSecurity.STARTTLS)
        if has_credentials and self.smtp_security == SmtpSecurity.NONE:
            raise ValueError(
                "SMTP_SECURITY=none with SMTP_USERNAME/SMTP_PASSWORD would send the SMTP "
                "password in clear: set SMTP_SECURITY to starttls or tls (or leave it unset: "
                "with credentials it defaults to starttls)"
            )
        if self.secret_key is None:
            object.__setattr__(self, "secret_key", SecretStr(_load_or_create_secret(self.data_dir)))
        self._database_urls()
        return self

    def _database_urls(self) -> None:
        if self.database_read_url == "":
            object.__setattr__(self, "database_read_url", None)
        if self.database_read_url and not (
            self.database_url.startswith("postgresql")
            and self.database_read_url.startswith("postgresql")
        ):
            raise ValueError("DATABASE_READ_URL (a read replica) needs PostgreSQL for both URLs")
        if self.database_pooler == DatabasePooler.TRANSACTION:
            if not self.database_url.startswith("postgresql"):
                raise ValueError("DATABASE_POOLER=transaction is for PostgreSQL (PgBouncer)")
            for name in ("database_url", "database_read_url"):
                url = getattr(self, name)
                if url and "prepare_threshold=" not in url:
                    joined = f"{url}{'&' if '?' in url else '?'}prepare_threshold=none"
                    object.__setattr__(self, name, joined)

    @property
    def secret(self) -> str:
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()

    @property
    def verify_max_age_seconds(self) -> int:
        return self.verify_max_age_days * 24 * 3600

    @property
    def email_cap(self) -> tuple[int, timedelta]:
        """RATE_LIMIT_EMAILS as (emails, window); the shortest of its limits when it
        lists several."""
        item = min(parse_many(self.rate_limit_emails), key=lambda item: item.get_expiry())
        return item.amount, timedelta(seconds=item.get_expiry())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


def _check_key_length(key: str, where: str, *, put_it: str = "") -> None:
    size = len(key.encode())
    if size < MIN_SECRET_BYTES:
        found = "is empty" if size == 0 else f"is only {size} byte{'s' * (size != 1)} long"
        raise ValueError(
            f"the secret key in {where} {found}; it needs at least {MIN_SECRET_BYTES} "
            f"random bytes. Make one with: {MAKE_A_KEY}{put_it}"
        )


_SIGNER_KEY = re.compile(r"PRIVATE\+KEY\+([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]{44})")
"""Go's note signer key for Ed25519: 0x01 and a 32-byte seed are 44 base64 characters."""


def check_signer_key(key: str) -> None:
    """ValueError unless `key` is an Ed25519 signer key as `Signer.skey()` writes it
    (`app.transparency.note`, which reads it again when it is used):
    `PRIVATE+KEY+<name>+<8 hex digits: the key ID>+<base64 of 0x01 and the 32-byte
    seed>`, its key ID that of its name and public key. The message never repeats the
    key."""
    found = _SIGNER_KEY.fullmatch(key)
    raw = base64.b64decode(found.group(3)) if found else b""
    if found is None or raw[0] != 1:
        raise ValueError(
            "not an Ed25519 signer key: it is written PRIVATE+KEY+<name>+<8 hex digits>+"
            "<44 base64 characters>, as in the DATA_DIR/log_key file of the machine that "
            "made it"
        )
    public = Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key().public_bytes_raw()
    key_id = hashlib.sha256(found.group(1).encode() + b"\n\x01" + public).digest()[:4]
    if key_id.hex() != found.group(2):
        raise ValueError(
            "the signer key's ID does not match its name and key: the key was changed or "
            "cut (copy the whole DATA_DIR/log_key line of the machine that made it)"
        )


def _read_secret(path: Path) -> str:
    key = path.read_text().strip()
    _check_key_length(
        key, str(path), put_it=" and write it into that file, or set UNDERSIGNED_SECRET_KEY"
    )
    return key


def _load_or_create_secret(data_dir: Path) -> str:
    """The key lives in a 0600 file so that restarts keep links valid."""
    return load_or_create_private_file(
        data_dir, "secret_key", make=lambda: secrets.token_urlsafe(48), read=_read_secret
    )


def load_or_create_private_file(
    data_dir: Path, name: str, *, make: Callable[[], str], read: Callable[[Path], str]
) -> str:
    """The content of the private (0600) file `data_dir/name`, made by `make` the first
    time: the session secret here, the signature log's key in `app.signlog.keys`.

    A new file is written to a private temporary file beside it, flushed to disk, then
    hard-linked into place: the name appears only once the whole content is there, so a
    process racing this one never reads a half-written or empty file, and the loser of
    a race (the link fails: the name exists) reads the winner's."""
    path = data_dir / name
    try:
        return read(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    content = make()
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: its file is complete
            return read(path)
        _fsync_directory(data_dir)
    finally:
        os.unlink(tmp)
    return content


def _fsync_directory(directory: Path) -> None:
    """Makes a new name in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
