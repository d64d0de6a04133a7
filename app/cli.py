"""The `undersigned` command."""

from __future__ import annotations

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
from app.config import Settings
from app.db import Database
from app.errors import DomainError

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
    except (ValidationError, SettingsError, ValueError) as exc:
        typer.echo(f"Invalid settings (UNDERSIGNED_* variables or .env):\n{exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    """A Database for a one-off command, disposed when it ends."""
    database = Database(settings.database_url)
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
    from app.migrate import upgrade

    with _database(settings) as database:
        upgrade(database)


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
    _migrate(settings)
    # The factory re-reads Settings in each server process; this is how it learns
    # about --no-worker.
    os.environ["UNDERSIGNED_RUN_MAIL_WORKER"] = "false" if no_worker else "true"
    typer.echo(f"Undersigned on {settings.base_url} (listening on {host}:{port})")
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
    typer.echo(f"Mail worker delivering through the {settings.mail_backend} backend.")
    with _database(settings) as database:
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
    cli()
