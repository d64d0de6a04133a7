"""The `undersigned` command."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.orm import Session

from app import urls
from app.config import MailBackend, Settings
from app.db import Database
from app.errors import DomainError
from app.keycheck import KeyCheckFailed, check_secret_key

cli = typer.Typer(help="Undersigned: open letters, signed and confirmed by email.",
                  no_args_is_help=True, add_completion=False)  # fmt: skip
db_cli = typer.Typer(help="Database commands.", no_args_is_help=True)
letter_cli = typer.Typer(help="Letter commands.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(letter_cli, name="letter")


SLUG_RULE = "use lower-case letters, digits and single dashes, like ice-out"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo("Invalid settings (UNDERSIGNED_* variables or .env):", err=True)
        for error in exc.errors():
            field = "_".join(str(part) for part in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            typer.echo(f"  UNDERSIGNED_{field}: {message}" if field else f"  {message}", err=True)
        raise typer.Exit(2) from exc
    except (SettingsError, ValueError) as exc:
        typer.echo(f"Invalid settings (UNDERSIGNED_* variables or .env):\n{exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    """A Database for a one-off command, disposed when it ends."""
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    try:
        yield database
    finally:
        database.dispose()


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    """One write transaction, for a one-off command."""
    with _database(settings) as database, database.write() as session:
        yield session


def _migrate(settings: Settings) -> None:
    """Migrates, with this process's key checked against the database's first (a
    migration may re-key stored hashes with it) and recorded after."""
    from app.migrate import upgrade

    with _database(settings) as database:
        _check_secret_key(database, settings, migrated=False)
        upgrade(database, secret_key=settings.secret)
        _check_secret_key(database, settings)


def _check_secret_key(database: Database, settings: Settings, *, migrated: bool = True) -> None:
    """A process whose SECRET_KEY differs from the database's refuses to start."""
    try:
        check_secret_key(database, settings, migrated=migrated)
    except KeyCheckFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """Only this machine can reach a server bound to `host`. A name other than
    localhost counts as the network: it may resolve to anything."""
    ip = _ip(host)
    return host.lower() in ("localhost", "localhost.") if ip is None else ip.is_loopback


def base_url_for(host: str, port: int) -> str:
    """The address a browser on this machine uses to reach `--host`/`--port`."""
    ip = _ip(host)
    if host.lower() in ("localhost", "localhost.") or (ip is not None and ip.is_unspecified):
        return f"http://127.0.0.1:{port}"  # 0.0.0.0 and :: answer on loopback too
    if ip is not None and ip.version == 6:
        return f"http://[{ip}]:{port}"
    return f"http://{host}:{port}"


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (Alembic upgrade head)."""
    _migrate(_settings())
    typer.echo("Database is up to date.")


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not deliver mail here.")
    ] = False,
) -> None:
    """Migrate, then serve the web app (with the mail worker unless --no-worker)."""
    import uvicorn

    settings = _settings()
    if (
        settings.mail_backend == MailBackend.DEV
        and not is_loopback(host)
        and not settings.allow_dev_mail_on_network
    ):
        typer.echo(
            f"Refusing to serve on {host}: MAIL_BACKEND is dev, which keeps every email, "
            "with its confirmation link, in the dev mailbox instead of sending it. Serve on "
            "127.0.0.1, or set UNDERSIGNED_MAIL_BACKEND=smtp, or, to listen on the network "
            "anyway, UNDERSIGNED_ALLOW_DEV_MAIL_ON_NETWORK=true (/dev/mail still answers "
            "only this machine).",
            err=True,
        )
        raise typer.Exit(2)
    # The factory re-reads Settings in each server process; this is how it learns
    # about --no-worker and about a BASE_URL derived from --host and --port.
    os.environ["UNDERSIGNED_RUN_MAIL_WORKER"] = "false" if no_worker else "true"
    derived = "base_url" not in settings.model_fields_set
    if derived:
        os.environ["UNDERSIGNED_BASE_URL"] = base_url_for(host, port)
        settings = _settings()
    _migrate(settings)  # and the key check
    typer.echo(f"Undersigned on {settings.base_url} (listening on {host}:{port})")
    if derived:
        typer.echo(
            f"UNDERSIGNED_BASE_URL is not set: links in emails and the API use "
            f"{settings.base_url}. Set it to the public address if there is one."
        )
    if settings.mail_backend == "dev":
        typer.echo(f"Dev mailbox: {urls.dev_mailbox_url(settings.base_url)}")
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
        server_header=False,
        log_level=settings.log_level,
        # An access log would record client IPs and, in /verify/<token> paths, links
        # that confirm signatures. Off unless the operator asks for it.
        access_log=settings.access_log,
    )


@cli.command()
def worker() -> None:
    """Deliver the outbox until stopped (safe to run several)."""
    from app.jobs import run_worker
    from app.mail.backends import make_backend

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _database(settings) as database:
        _check_secret_key(database, settings)
        typer.echo(f"Mail worker delivering through the {settings.mail_backend} backend.")
        run_worker(database, make_backend(settings), settings=settings, stop=stop)


@cli.command()
def demo() -> None:
    """Create the demo letters if they are missing (idempotent)."""
    from app.letters.demo import create_demo_letters

    settings = _settings()
    with _transaction(settings) as session:
        created = create_demo_letters(session)
    typer.echo(f"Demo letters created: {', '.join(created)}" if created else "Demo letters exist.")


@letter_cli.command("create")
def letter_create(
    slug: Annotated[str, typer.Option(help="URL name: lower-case letters, digits, dashes.")],
    title: Annotated[str, typer.Option()],
    body_file: Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)],
    summary: str = "",
    addressed_to: str = "",
    goal: Annotated[int | None, typer.Option(min=1)] = None,
    closes_at: Annotated[datetime | None, typer.Option(help="UTC, e.g. 2027-01-31T23:59")] = None,
    publish: Annotated[bool, typer.Option("--publish", help="Open it for signatures now.")] = False,
) -> None:
    """Create a letter from a Markdown file."""
    from datetime import UTC

    from app.letters.models import LetterStatus
    from app.letters.schemas import LetterCreate
    from app.letters.service import create_letter

    settings = _settings()
    try:
        data = LetterCreate(
            slug=slug,
            title=title,
            summary=summary,
            body_markdown=body_file.read_text(encoding="utf-8"),
            addressed_to=addressed_to,
            goal=goal,
            closes_at=closes_at.replace(tzinfo=closes_at.tzinfo or UTC) if closes_at else None,
            status=LetterStatus.OPEN if publish else LetterStatus.DRAFT,
        )
    except ValidationError as exc:
        typer.echo("Invalid letter:", err=True)
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = SLUG_RULE if error["type"] == "string_pattern_mismatch" else error["msg"]
            typer.echo(f"  {field.replace('_', '-')}: {message}", err=True)
        raise typer.Exit(2) from exc
    try:
        with _transaction(settings) as session:
            status = create_letter(session, data=data).status.value
    except DomainError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Letter {slug!r} created ({status}): {urls.letter_url(settings.base_url, slug)}")


@cli.command()
def purge() -> None:
    """Apply the retention rules now (the worker also does this hourly)."""
    from app.jobs import purge as apply_retention

    settings = _settings()
    with _transaction(settings) as session:
        counts = apply_retention(session, settings=settings)
    for name, count in counts.items():
        typer.echo(f"{name}: {count} deleted")


def main() -> None:
    # The SQLite file (and its -wal and -shm), the dev mailbox's emails and DATA_DIR
    # itself hold signers' addresses: nobody but this user reads what we create.
    os.umask(0o077)
    cli()
