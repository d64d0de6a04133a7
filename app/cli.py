"""The `undersigned` command."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.orm import Session

from app import urls
from app.config import MailBackend, Settings
from app.db import Database, utcnow
from app.errors import DomainError
from app.keycheck import KeyCheckFailed, check_secret_key
from app.letters.models import FieldRule, SignerKind

cli = typer.Typer(help="Undersigned: open letters, signed and confirmed by email.",
                  no_args_is_help=True, add_completion=False)  # fmt: skip
db_cli = typer.Typer(help="Database commands.", no_args_is_help=True)
letter_cli = typer.Typer(help="Letters: create, list, edit, publish, close, reopen, "
                         "archive, export.", no_args_is_help=True)  # fmt: skip
admin_cli = typer.Typer(help="Organizer accounts.", no_args_is_help=True)
dev_cli = typer.Typer(help="Development: test and benchmark data, never for a real letter.",
                      no_args_is_help=True)  # fmt: skip
cli.add_typer(db_cli, name="db")
cli.add_typer(letter_cli, name="letter")
cli.add_typer(admin_cli, name="admin")
cli.add_typer(dev_cli, name="dev")


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

    fewer_malloc_arenas()
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
    if workers > 1:  # each server process writes its metrics there; /metrics sums them
        from app.metrics import prepare_multiprocess_dir

        prepare_multiprocess_dir(settings.data_dir)
    from app.logs import log_config

    typer.echo(
        f"Organizers sign in at {urls.login_url(settings.base_url)} "
        "(make the first account with: undersigned admin create YOU@EXAMPLE.ORG)"
    )
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
        log_config=log_config(level=settings.log_level, json_lines=settings.log_format == "json"),
        # An access log would record client IPs and, in /verify/<token> paths, links
        # that confirm signatures. Off unless the operator asks for it.
        access_log=settings.access_log,
        # uvicorn replaces a worker that misses its health check (default 5 s); under a
        # surge on a busy 2-core machine a healthy worker can miss it while starting
        # (seen in `make bench`), and replacing it drops the requests it holds.
        timeout_worker_healthcheck=30,
    )


MALLOC_ARENAS = 2
"""glibc's malloc arenas per process for `serve` and `worker` (D185)."""
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def fewer_malloc_arenas() -> bool:
    """Caps glibc's malloc arenas at MALLOC_ARENAS, unless the operator set
    MALLOC_ARENA_MAX: for the processes uvicorn spawns (they read the variable when they
    start) and, through mallopt, for the threads this process starts from now on. glibc
    gives every thread that allocates an arena of its own, up to eight per core, and
    keeps what is freed in them: a process serving on a few dozen threads grew by 20 MB
    and more (D185). Returns whether this process's cap was set (False: not glibc, or
    the operator's own value)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(MALLOC_ARENAS)
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):  # not glibc: nothing to cap
        return False


@cli.command()
def worker() -> None:
    """Deliver the outbox until stopped (safe to run several)."""
    from app.jobs import run_worker
    from app.logs import configure
    from app.mail.backends import make_backend

    fewer_malloc_arenas()
    settings = _settings()
    configure(level=settings.log_level, json_lines=settings.log_format == "json")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _database(settings) as database:
        _check_secret_key(database, settings)
        typer.echo(f"Mail worker delivering through the {settings.mail_backend} backend.")
        run_worker(
            database,
            make_backend(settings),
            settings=settings,
            stop=stop,
            senders=settings.mail_senders,
        )


@cli.command()
def demo() -> None:
    """Create the demo letters if they are missing (idempotent)."""
    from app.letters.demo import create_demo_letters

    settings = _settings()
    with _transaction(settings) as session:
        created = create_demo_letters(session)
    typer.echo(f"Demo letters created: {', '.join(created)}" if created else "Demo letters exist.")


# --- letters -------------------------------------------------------------------------------

OPTION_NAMES = {
    "body": "body-file",
    "body_markdown": "body-file",
    "field_title": "signer-title",
    "field_organization": "signer-organization",
    "field_city": "signer-city",
    "field_comment": "signer-comment",
    "forbidden_domains": "forbid-domain",
    "required_domains": "require-domain",
    "domain_names": "domain-name",
}
"""The command line's option for a letter field, where it is not the field's own name."""


def _option(field: str) -> str:
    return "--" + OPTION_NAMES.get(field, field.replace("_", "-"))


def _refused(exc: DomainError, *, status: int) -> typer.Exit:
    """Prints what was wrong, each field's problem under its option's name; exit status
    2 for input that is invalid in itself, 1 for what the database's state refuses."""
    fields: dict[str, str] = getattr(exc, "fields", None) or {}
    typer.echo("Invalid letter:" if fields and status == 2 else exc.detail, err=True)
    for field, message in fields.items():
        if message != exc.detail:
            typer.echo(f"  {_option(field)}: {message}", err=True)
    return typer.Exit(status)


def _read_body(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"Cannot read {path}: {exc}", err=True)
        raise typer.Exit(2) from exc


SlugArgument = Annotated[str, typer.Argument(help="The letter's slug, as in /letters/SLUG.")]


def _rule(field: str, default: FieldRule) -> object:
    return typer.Option(
        case_sensitive=False,
        show_default=False,
        help=f"The sign form's {field} field: off, optional or required "
        f"(new letters: {default.value}).",
    )


SignerTitle = Annotated[FieldRule | None, _rule("job title", FieldRule.OPTIONAL)]
SignerOrganization = Annotated[FieldRule | None, _rule("organization", FieldRule.OPTIONAL)]
SignerCity = Annotated[FieldRule | None, _rule("city", FieldRule.OPTIONAL)]
SignerComment = Annotated[FieldRule | None, _rule("comment (why I signed)", FieldRule.OFF)]
ForbidDomain = Annotated[
    list[str] | None,
    typer.Option(
        "--forbid-domain",
        show_default=False,
        help="Addresses at this email domain (and its subdomains) cannot sign. Repeat it, "
        "or separate domains with commas.",
    ),
]
RequireDomain = Annotated[
    list[str] | None,
    typer.Option(
        "--require-domain",
        show_default=False,
        help="Only addresses at this email domain (or its subdomains, or another "
        "--require-domain) can sign: an employees-only letter. Repeat it, or separate "
        "domains with commas.",
    ),
]

Signers = Annotated[
    SignerKind | None,
    typer.Option(
        case_sensitive=False,
        show_default=False,
        help="Who signs: people, or organizations (a sign-on letter: the form asks for "
        "the organization and the signer's name and title, all required; new letters: "
        "people).",
    ),
]
DomainName = Annotated[
    list[str] | None,
    typer.Option(
        "--domain-name",
        show_default=False,
        help='A verified work domain shown as a company name: "google.com = Google". '
        "Repeat it for more (free-mail domains earn no badge and are refused).",
    ),
]
ContactRetentionDays = Annotated[
    int | None,
    typer.Option(
        show_default=False,
        help="Days after the letter closes that kept contact addresses are erased "
        "(0 to 730; new letters: 90).",
    ),
]
AnonymizeAfterMonths = Annotated[
    int | None,
    typer.Option(
        show_default=False,
        help="Months after the letter closes that its signers' names and details are "
        "erased (0 to 60; the count stays). Without it, never.",
    ),
]


def _signer_safety(
    signers: SignerKind | None,
    domain_name: list[str] | None,
    contact_retention_days: int | None,
    anonymize_after_months: int | None,
) -> dict[str, object]:
    """The signer-safety options given (None: not given)."""
    given: dict[str, object] = {
        "signers": signers,
        "domain_names": domain_name,
        "contact_retention_days": contact_retention_days,
        "anonymize_after_months": anonymize_after_months,
    }
    return {name: value for name, value in given.items() if value is not None}


@letter_cli.command("create")
def letter_create(
    slug: Annotated[
        str, typer.Option(help="The address: /letters/SLUG (lower-case letters, digits, dashes).")
    ],
    title: Annotated[str, typer.Option(help="The letter's title.")],
    body_file: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A UTF-8 Markdown file with the letter's text.",
        ),
    ],
    summary: Annotated[str, typer.Option(help="One or two sentences for the list.")] = "",
    addressed_to: Annotated[str, typer.Option(help="Who the letter is written to.")] = "",
    goal: Annotated[int | None, typer.Option(help="The goal: confirmed signatures.")] = None,
    closes_at: Annotated[
        str | None, typer.Option(help="When it stops taking signatures, UTC: 2027-01-31T23:59.")
    ] = None,
    from_name: Annotated[str, typer.Option(help="Who is behind it: a group's name.")] = "",
    from_url: Annotated[str, typer.Option(help="A link for the group (http or https).")] = "",
    signer_title: SignerTitle = None,
    signer_organization: SignerOrganization = None,
    signer_city: SignerCity = None,
    signer_comment: SignerComment = None,
    allow_anonymous: Annotated[
        bool, typer.Option(help="Let signers be counted without being shown.")
    ] = True,
    show_signers: Annotated[
        bool, typer.Option(help="Show the list of signers on the letter's page.")
    ] = True,
    forbid_domain: ForbidDomain = None,
    require_domain: RequireDomain = None,
    signers: Signers = None,
    domain_name: DomainName = None,
    contact_retention_days: ContactRetentionDays = None,
    anonymize_after_months: AnonymizeAfterMonths = None,
    publish: Annotated[
        bool, typer.Option("--publish", help="Open it for signatures now (else: a draft).")
    ] = False,
) -> None:
    """Create a letter from a Markdown file (a draft unless --publish).

    The job title, organization and city are optional on the sign form and the comment
    is off unless --signer-* says otherwise. Exit status 2: invalid input; 1: refused
    (the slug is taken, the closing time has passed)."""
    from app.errors import InvalidInput
    from app.letters.models import LetterStatus
    from app.letters.schemas import LetterCreate, parse
    from app.letters.service import create_letter
    from app.organizers.service import SHELL

    settings = _settings()
    values: dict[str, object] = {
        "slug": slug,
        "title": title,
        "summary": summary,
        "body_markdown": _read_body(body_file),
        "addressed_to": addressed_to,
        "goal": goal,
        "closes_at": closes_at,
        "from_name": from_name,
        "from_url": from_url,
        "allow_anonymous": allow_anonymous,
        "show_signers": show_signers,
        "status": LetterStatus.OPEN if publish else LetterStatus.DRAFT,
    }
    rules = {"field_title": signer_title, "field_organization": signer_organization,
             "field_city": signer_city, "field_comment": signer_comment}  # fmt: skip
    values.update({name: rule for name, rule in rules.items() if rule is not None})
    domains = {"forbidden_domains": forbid_domain, "required_domains": require_domain}
    values.update({name: listed for name, listed in domains.items() if listed})
    values.update(
        _signer_safety(signers, domain_name, contact_retention_days, anonymize_after_months)
    )
    try:
        data = parse(LetterCreate, values)
    except InvalidInput as exc:
        raise _refused(exc, status=2) from exc
    try:
        with _transaction(settings) as session:
            status = create_letter(session, data=data, actor=SHELL).status.value
    except DomainError as exc:
        raise _refused(exc, status=1) from exc
    typer.echo(f"Letter {slug!r} created ({status}): {urls.letter_url(settings.base_url, slug)}")


@letter_cli.command("list")
def letter_list() -> None:
    """Every letter: slug, status, confirmed signatures, title (archived ones last)."""
    from app.letters.service import dashboard_letters

    settings = _settings()
    with _database(settings) as database, database.read() as session:
        rows = [
            (item.letter.slug, item.state.value, f"{item.signature_count}", item.letter.title)
            for item in dashboard_letters(session, organizer=None)
        ]
    if not rows:
        typer.echo("No letters yet: undersigned letter create --help")
        return
    header = ("SLUG", "STATUS", "COUNT", "TITLE")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        typer.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")


def _change_status(
    slug: str, transition: str, *, closes_at: str | None = None, clear: bool = False
) -> None:
    from app.errors import InvalidInput
    from app.letters.schemas import parse_closes_at
    from app.letters.service import Transition, change_status, get_letter, letter_state
    from app.organizers.service import SHELL

    settings = _settings()
    try:
        new_closes_at = parse_closes_at(closes_at)
    except InvalidInput as exc:
        raise _refused(exc, status=2) from exc
    try:
        with _transaction(settings) as session:
            letter = get_letter(session, slug=slug)
            change_status(session, letter=letter, transition=Transition(transition),
                          actor=SHELL, closes_at=new_closes_at, clear_closes_at=clear)  # fmt: skip
            state = letter_state(letter, utcnow()).value
    except DomainError as exc:
        raise _refused(_not_found_named(exc, slug), status=1) from exc
    typer.echo(f"Letter {slug!r} is {state}.")


def _not_found_named(exc: DomainError, slug: str) -> DomainError:
    from app.errors import LetterNotFound

    if isinstance(exc, LetterNotFound):
        return LetterNotFound(
            f"There is no letter with the slug {slug!r} (undersigned letter list)."
        )
    return exc


@letter_cli.command("publish")
def letter_publish(slug: SlugArgument) -> None:
    """Open a draft for signatures."""
    _change_status(slug, "publish")


@letter_cli.command("close")
def letter_close(slug: SlugArgument) -> None:
    """Stop taking signatures (the page and the count stay)."""
    _change_status(slug, "close")


@letter_cli.command("reopen")
def letter_reopen(
    slug: SlugArgument,
    closes_at: Annotated[
        str | None, typer.Option(help="A new closing time, UTC: 2027-01-31T23:59.")
    ] = None,
    no_closes_at: Annotated[
        bool, typer.Option("--no-closes-at", help="Remove the closing time.")
    ] = False,
) -> None:
    """Take signatures again (also un-archives).

    A closing time that has passed must be replaced (--closes-at) or removed
    (--no-closes-at)."""
    if closes_at is not None and no_closes_at:
        typer.echo("Give --closes-at or --no-closes-at, not both.", err=True)
        raise typer.Exit(2)
    _change_status(slug, "reopen", closes_at=closes_at, clear=no_closes_at)


@letter_cli.command("archive")
def letter_archive(slug: SlugArgument) -> None:
    """Close the letter and take it off the home page (its page and count stay)."""
    _change_status(slug, "archive")


@letter_cli.command("edit")
def letter_edit(
    slug: SlugArgument,
    title: Annotated[str | None, typer.Option(help="A new title.")] = None,
    body_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A UTF-8 Markdown file with the new text.",
        ),
    ] = None,
    summary: Annotated[str | None, typer.Option(help="A new summary.")] = None,
    addressed_to: Annotated[str | None, typer.Option(help="Who it is written to.")] = None,
    goal: Annotated[int | None, typer.Option(help="A new goal (not below the count).")] = None,
    no_goal: Annotated[bool, typer.Option("--no-goal", help="Remove the goal.")] = False,
    closes_at: Annotated[
        str | None, typer.Option(help="A new closing time, UTC: 2027-01-31T23:59.")
    ] = None,
    no_closes_at: Annotated[
        bool, typer.Option("--no-closes-at", help="Remove the closing time.")
    ] = False,
    from_name: Annotated[str | None, typer.Option(help='Who is behind it ("" for none).')] = None,
    from_url: Annotated[str | None, typer.Option(help='Their link ("" for none).')] = None,
    signer_title: SignerTitle = None,
    signer_organization: SignerOrganization = None,
    signer_city: SignerCity = None,
    signer_comment: SignerComment = None,
    allow_anonymous: Annotated[
        bool | None,
        typer.Option(
            "--allow-anonymous/--no-allow-anonymous",
            show_default=False,
            help="Let signers be counted without being shown, or not.",
        ),
    ] = None,
    show_signers: Annotated[
        bool | None,
        typer.Option(
            "--show-signers/--no-show-signers",
            show_default=False,
            help="Show the list of signers on the letter's page, or not.",
        ),
    ] = None,
    forbid_domain: Annotated[
        list[str] | None,
        typer.Option(
            "--forbid-domain",
            show_default=False,
            help="Refuse addresses at this email domain (and its subdomains). Repeat it "
            "for more: the domains given replace the letter's list.",
        ),
    ] = None,
    no_forbidden_domains: Annotated[
        bool, typer.Option("--no-forbidden-domains", help="Refuse no domain (but throwaway ones).")
    ] = False,
    require_domain: Annotated[
        list[str] | None,
        typer.Option(
            "--require-domain",
            show_default=False,
            help="Only addresses at this email domain (or its subdomains) can sign. Repeat "
            "it for more: the domains given replace the letter's list.",
        ),
    ] = None,
    no_required_domains: Annotated[
        bool, typer.Option("--no-required-domains", help="Let addresses at any domain sign.")
    ] = False,
    signers: Signers = None,
    domain_name: Annotated[
        list[str] | None,
        typer.Option(
            "--domain-name",
            show_default=False,
            help='A verified work domain shown as a company name: "google.com = Google". '
            "Repeat it for more: the ones given replace the letter's list.",
        ),
    ] = None,
    no_domain_names: Annotated[
        bool, typer.Option("--no-domain-names", help="Show verified domains as domains.")
    ] = False,
    contact_retention_days: ContactRetentionDays = None,
    anonymize_after_months: AnonymizeAfterMonths = None,
    no_anonymize: Annotated[
        bool, typer.Option("--no-anonymize", help="Never anonymize the signers.")
    ] = False,
) -> None:
    """Change a letter: only the options given change.

    A new title or text of a letter that people have signed makes a new version (its
    page then says so and shows the changes). Exit status 2: invalid input; 1: refused
    (a goal below the count, a closing time in the past)."""
    from app.errors import InvalidInput
    from app.letters.schemas import LetterFields, parse
    from app.letters.service import current_fields, edit_letter, get_letter
    from app.organizers.service import SHELL

    for given, cleared, name, no in (
        (goal, no_goal, "goal", "no-goal"),
        (closes_at, no_closes_at, "closes-at", "no-closes-at"),
        (forbid_domain, no_forbidden_domains, "forbid-domain", "no-forbidden-domains"),
        (require_domain, no_required_domains, "require-domain", "no-required-domains"),
        (domain_name, no_domain_names, "domain-name", "no-domain-names"),
        (anonymize_after_months, no_anonymize, "anonymize-after-months", "no-anonymize"),
    ):
        if given is not None and cleared:
            typer.echo(f"Give --{name} or --{no}, not both.", err=True)
            raise typer.Exit(2)
    given_values: dict[str, object] = {
        "title": title,
        "body_markdown": _read_body(body_file),
        "summary": summary,
        "addressed_to": addressed_to,
        "goal": goal,
        "closes_at": closes_at,
        "from_name": from_name,
        "from_url": from_url,
        "field_title": signer_title,
        "field_organization": signer_organization,
        "field_city": signer_city,
        "field_comment": signer_comment,
        "allow_anonymous": allow_anonymous,
        "show_signers": show_signers,
        "forbidden_domains": forbid_domain,
        "required_domains": require_domain,
    }
    given_values.update(
        _signer_safety(signers, domain_name, contact_retention_days, anonymize_after_months)
    )
    changes = {name: value for name, value in given_values.items() if value is not None}
    if no_domain_names:
        changes["domain_names"] = {}
    if no_anonymize:
        changes["anonymize_after_months"] = None
    if no_goal:
        changes["goal"] = None
    if no_closes_at:
        changes["closes_at"] = None
    if no_forbidden_domains:
        changes["forbidden_domains"] = []
    if no_required_domains:
        changes["required_domains"] = []
    if not changes:
        typer.echo("Nothing to change: see undersigned letter edit --help.", err=True)
        raise typer.Exit(2)
    settings = _settings()
    try:
        with _transaction(settings) as session:
            letter = get_letter(session, slug=slug)
            try:
                data = parse(LetterFields, {**current_fields(letter), **changes})
            except InvalidInput as exc:
                raise _refused(exc, status=2) from exc
            edited = edit_letter(session, letter=letter, data=data, actor=SHELL)
    except DomainError as exc:
        raise _refused(_not_found_named(exc, slug), status=1) from exc
    if not edited.changed:
        typer.echo(f"Letter {slug!r}: nothing changed.")
        return
    names = ", ".join(_option(name).removeprefix("--") for name in edited.changed)
    version = (f"; new version {edited.version} of the text" if edited.new_version
               else f"; text version {edited.version}")  # fmt: skip
    typer.echo(f"Letter {slug!r} changed: {names}{version}.")


@letter_cli.command("translate")
def letter_translate(
    slug: SlugArgument,
    locale: Annotated[str, typer.Option(help="The translation's language: es.")],
    title: Annotated[str | None, typer.Option(help="The title in that language.")] = None,
    body_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A UTF-8 Markdown file with the text in that language.",
        ),
    ] = None,
    summary: Annotated[str, typer.Option(help="The summary in that language.")] = "",
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove the translation into that language.")
    ] = False,
) -> None:
    """Add, replace or remove a letter's translation (its readers in that language see
    it; everyone signs the same letter). Exit status 2: invalid input; 1: no letter."""
    from app.errors import InvalidInput
    from app.letters.service import get_letter
    from app.letters.translations import remove_translation, set_translation
    from app.organizers.service import SHELL

    if remove == (title is not None or body_file is not None):
        typer.echo("Give --title and --body-file, or --remove.", err=True)
        raise typer.Exit(2)
    if not remove and (title is None or body_file is None):
        typer.echo("A translation needs --title and --body-file.", err=True)
        raise typer.Exit(2)
    values = {
        "title": title or "",
        "summary": summary,
        "body_markdown": _read_body(body_file) or "",
    }
    settings = _settings()
    try:
        with _transaction(settings) as session:
            letter = get_letter(session, slug=slug)
            try:
                if remove:
                    done = remove_translation(session, letter=letter, locale=locale, actor=SHELL)
                    message = "removed" if done else "it had no such translation"
                else:
                    saved = set_translation(
                        session, letter=letter, locale=locale, values=values, actor=SHELL
                    )
                    message = "translation " + (
                        "added" if saved.created else "changed" if saved.changed else "unchanged"
                    )
            except InvalidInput as exc:
                raise _refused(exc, status=2) from exc
    except DomainError as exc:
        raise _refused(_not_found_named(exc, slug), status=1) from exc
    typer.echo(f"Letter {slug!r} ({locale}): {message}.")


@letter_cli.command("export")
def letter_export(
    slug: SlugArgument,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Write the CSV to this file (readable by you only) instead of standard output.",
        ),
    ] = None,
) -> None:
    """Write the letter's confirmed signatures as CSV.

    Addresses appear only for signers who agreed to be contacted (no other is kept).
    The export is recorded in the letter's audit log."""
    from app.letters.service import get_letter
    from app.organizers.service import SHELL
    from app.signatures.export import csv_lines, record_export

    settings = _settings()
    with _database(settings) as database:
        try:
            with database.write() as session:
                letter_id = get_letter(session, slug=slug).id
                record_export(session, actor=SHELL, letter_id=letter_id)
        except DomainError as exc:
            raise _refused(_not_found_named(exc, slug), status=1) from exc
        lines = csv_lines(database, letter_id=letter_id)
        if output is None:
            for line in lines:
                typer.echo(line, nl=False)
            return
        count = -1  # the header
        try:
            with output.open("w", encoding="utf-8", newline="") as file:
                for line in lines:
                    file.write(line)
                    count += 1
        except OSError as exc:
            typer.echo(f"Cannot write {output}: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"{count} signatures written to {output}.", err=True)


# --- organizers -----------------------------------------------------------------------------


@admin_cli.command("create")
def admin_create(
    email: Annotated[str, typer.Argument(help="Their email address (they sign in with it).")],
) -> None:
    """Make an organizer an admin (the account is created if needed).

    Admins act as owners on every letter and manage organizers. Safe to run twice."""
    from app.errors import InvalidInput
    from app.letters.schemas import organizer_email
    from app.organizers.service import SHELL, canonical_email, create_organizer, find_organizer
    from app.organizers.service import record as audit

    try:
        address = canonical_email(organizer_email(email))
    except InvalidInput as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(2) from exc
    settings = _settings()
    with _transaction(settings) as session:
        existing = find_organizer(session, email=address)
        was_admin = existing is not None and existing.is_admin
        organizer = create_organizer(session, email=address, is_admin=True)
        if not was_admin:
            audit(session, actor=SHELL, letter_id=None, action="organizer.admin",
                  organizer_id=organizer.id, email=organizer.email)  # fmt: skip
    if was_admin:
        typer.echo(f"{address} is already an admin.")
    elif existing is not None:
        typer.echo(f"{address} is now an admin.")
    else:
        where = urls.login_url(settings.base_url)
        if "base_url" not in settings.model_fields_set:  # `serve` may use another port
            where = f"/login on the server ({where} with `make run`)"
        typer.echo(f"Admin {address} created. They sign in at {where}")


@cli.command()
def purge() -> None:
    """Apply the retention rules now (the worker also does this hourly)."""
    from app.jobs import forget_in_files
    from app.jobs import purge as apply_retention

    settings = _settings()
    with _database(settings) as database:
        with database.write() as session:
            counts = apply_retention(session, settings=settings)
        forget_in_files(database)  # SQLite: erased rows leave the WAL too
    for name, count in counts.items():
        typer.echo(f"{name}: {count} deleted")


@cli.command()
def check(
    repair: Annotated[
        bool, typer.Option("--repair", help="Set each wrong tally to its count (audited).")
    ] = False,
    overdue_minutes: Annotated[
        int, typer.Option(min=1, help="Report pending emails due longer ago than this.")
    ] = 15,
) -> None:
    """Integrity report: every letter's tally against its signatures, and the outbox
    (stuck, overdue and failed emails). The worker runs it daily and logs it.

    Exit status 0: all is well (after --repair, if given); 1: something is wrong."""
    from datetime import timedelta

    from app.integrity import run_check

    settings = _settings()
    with _database(settings) as database:
        report = run_check(
            database, repair=repair, overdue_after=timedelta(minutes=overdue_minutes)
        )
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


# --- development -----------------------------------------------------------------------------


@dev_cli.command("seed")
def dev_seed(
    letter: Annotated[str, typer.Option(help="The letter's slug (a draft, unless --force).")],
    signatures: Annotated[
        int, typer.Option(help="How many confirmed signatures to add (1 to 10,000,000).")
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Seed a published letter too (test databases only)."),
    ] = False,
    days: Annotated[
        int,
        typer.Option(min=0, max=3650, help="Spread their confirmation times over these past days."),
    ] = 30,
    random_seed: Annotated[
        int | None, typer.Option(help="Make the same names again (else: random).")
    ] = None,
) -> None:
    """TEST AND BENCHMARK DATA ONLY: fill a letter with made-up signatures.

    Realistic confirmed signatures (names, titles, organizations, cities;
    some anonymous, some with a verified work domain and a name threshold;
    made-up .example and free-mail addresses), numbered after the letter's
    last position, the tally moved by as many in the same transaction
    (`undersigned check` stays clean). No email is sent. A published letter
    is refused unless --force: its readers would see signatures nobody gave.

    Exit status 2: invalid input, or a published letter without --force;
    1: no such letter."""
    import time

    from app.errors import InvalidInput
    from app.letters.service import get_letter
    from app.signatures.seed import MAX_SEED, seed_signatures

    if not 1 <= signatures <= MAX_SEED:
        typer.echo(f"--signatures: between 1 and {MAX_SEED:,}.", err=True)
        raise typer.Exit(2)
    settings = _settings()
    started = time.perf_counter()
    try:
        with _transaction(settings) as session:
            found = get_letter(session, slug=letter)
            try:
                seeded = seed_signatures(session, letter=found, count=signatures,
                                         secret_key=settings.secret, force=force, days=days,
                                         random_seed=random_seed, settings=settings)  # fmt: skip
            except InvalidInput as exc:
                typer.echo(exc.detail, err=True)
                raise typer.Exit(2) from exc
    except DomainError as exc:
        raise _refused(_not_found_named(exc, letter), status=1) from exc
    seconds = time.perf_counter() - started
    typer.echo(
        f"Letter {letter!r}: {seeded.added:,} signatures added (positions "
        f"{seeded.first_position:,} to {seeded.last_position:,}) in {seconds:.1f} s; "
        f"tally {seeded.verified_count:,}."
    )


@cli.command()
def backup(
    path: Annotated[Path, typer.Argument(help="Where to write the copy (a new file).")],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
) -> None:
    """Copy the live SQLite database to PATH, consistently, while the app runs.

    On PostgreSQL it prints how to use pg_dump and runs nothing. Exit status 0: the copy
    is written; 1: it failed or PATH exists (without --force); 2: not a SQLite file
    database (nothing written)."""
    from app.backup import BackupRefused, backup_sqlite, pg_dump_advice, sqlite_path

    settings = _settings()
    source = sqlite_path(settings.database_url)
    if source is None:
        if settings.database_url.startswith("postgresql"):
            typer.echo(pg_dump_advice(settings.database_url, path), err=True)
        else:
            typer.echo("Only a SQLite database file can be backed up by this command.", err=True)
        raise typer.Exit(2)
    try:
        done = backup_sqlite(source, path, force=force)
    except BackupRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"Backup written to {done.path} ({done.size:,} bytes, {done.pages:,} pages).")


# --- `undersigned log`: the signature log (issue 12) ---

log_cli = typer.Typer(help="The signature log: sequence it, verify it.", no_args_is_help=True)
cli.add_typer(log_cli, name="log")


@log_cli.command("sequence")
def log_sequence(
    letter: Annotated[
        str | None, typer.Option(help="Only this letter's log (its slug). Default: every letter.")
    ] = None,
) -> None:
    """Append every queued change to the letters' signature logs now, signing a
    checkpoint per batch (the worker does this every LOG_SEQUENCE_SECONDS). Prints each
    letter whose log grew and its new size. Exit status 1: no such letter."""
    from app.letters.service import get_letter
    from app.signlog.sequencer import sequence_letters

    settings = _settings()
    grown: dict[str, tuple[int, int]] = {}
    with _database(settings) as database:
        letter_ids = None
        if letter is not None:
            try:
                with database.read() as session:
                    letter_ids = [get_letter(session, slug=letter).id]
            except DomainError as exc:
                raise _refused(_not_found_named(exc, letter), status=1) from exc
        while done := sequence_letters(database, settings, letter_ids=letter_ids):
            for batch in done:
                appended = grown.get(batch.slug, (0, 0))[0] + batch.appended
                grown[batch.slug] = (appended, batch.size)
    if not grown:
        typer.echo("Nothing was queued.")
    for slug, (appended, size) in grown.items():
        typer.echo(f"{slug}: {appended:,} entries appended; log size {size:,}.")


@log_cli.command("verify")
def log_verify(
    url: Annotated[str, typer.Argument(help="The letter's page: https://HOST/letters/SLUG.")],
    key: Annotated[
        str | None,
        typer.Option(help="The log's key (NAME+ID+BASE64), from a source you trust."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(help="Read the log's key from this file.")
    ] = None,
    since: Annotated[
        Path | None,
        typer.Option(help="A checkpoint saved earlier with --save: check the log only grew."),
    ] = None,
    save: Annotated[
        Path | None, typer.Option(help="Write the verified checkpoint here, for a later --since.")
    ] = None,
) -> None:
    """Check a letter's signature log over HTTP, trusting only the log's key.

    Verifies the signed checkpoint, downloads every entry and rebuilds its Merkle root
    and count, compares the count with the public one, checks a few inclusion proofs
    and, with --since, that the log extends the checkpoint saved then. Without --key it
    uses the key the server publishes (trust on first use). Exit status 0: verified;
    1: a problem was found; 2: bad arguments, or the server could not be asked."""
    from app.signlog.verify import FetchError, UsageError, fetch_key, parse_key, verify_letter

    def _refuse(message: str) -> typer.Exit:
        typer.echo(message, err=True)
        return typer.Exit(2)

    if key is not None and key_file is not None:
        raise _refuse("Give the key once: --key or --key-file.")
    try:
        key_text = key_file.read_text() if key_file is not None else key
        saved = since.read_text() if since is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        raise _refuse(f"Cannot read {exc}") from exc
    try:
        if key_text is None:
            verifier = fetch_key(url)
            typer.echo(
                f"WARNING: no --key: checking with the key the server itself publishes, "
                f"{verifier.vkey()}\n"
                "A server that lies about its log can lie about its key too. Compare this key "
                "with one published elsewhere, then pass it with --key.",
                err=True,
            )
        else:
            verifier = parse_key(key_text)
        report = verify_letter(url, verifier, saved)
    except UsageError as exc:
        raise _refuse(str(exc)) from exc
    except FetchError as exc:
        raise _refuse(f"Could not check the log: {exc}") from exc
    typer.echo(f"Log:   {report.origin}")
    if report.size is not None:
        signed = f", signed at {report.created_at}" if report.created_at else ""
        typer.echo(f"Size:  {report.size:,} entries{signed}")
        typer.echo(f"Root:  {report.root_base64}")
    if report.count is not None:
        typer.echo(
            f"Count: {report.count:,} ({report.adds:,} added, {report.removes:,} taken away)"
            + (f"; public count {report.tally:,}" if report.tally is not None else "")
        )
    if report.since_size is not None:
        typer.echo(f"Since: it extends the saved checkpoint of {report.since_size:,} entries")
    for note in report.notes:
        typer.echo(f"Note:  {note}")
    if not report.ok:
        for problem in report.problems:
            typer.echo(f"PROBLEM: {problem}")
        if save is not None:
            typer.echo(f"Nothing saved to {save}: the log did not verify.")
        raise typer.Exit(1)
    typer.echo(f"OK ({report.inclusion_checked} inclusion proofs checked too)")
    if save is not None and report.note is not None:
        try:
            save.write_text(report.note)
        except OSError as exc:
            raise _refuse(f"Cannot write {exc}") from exc
        typer.echo(f"Checkpoint saved to {save}: check again later with --since {save}")


def main() -> None:
    # The SQLite file (and its -wal and -shm), the dev mailbox's emails and DATA_DIR
    # itself hold signers' addresses: nobody but this user reads what we create.
    os.umask(0o077)
    cli()
