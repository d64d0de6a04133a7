"""The signature log's Ed25519 key: generated once into DATA_DIR/log_key (mode 0600, as
the session secret), in Go's note signer-key format. The public half, in the note
verifier-key format, is published at /.well-known/undersigned-log-key.

Its name is BASE_URL's host (and path) when the key is made; each letter's log has its
own origin, `<host>/letters/<slug>`, so one key signs every letter's checkpoints.

UNDERSIGNED_LOG_KEY, when set, is the key instead of the file: machines that do not
share DATA_DIR (several workers, several app servers) must sign with one key, or the
published key would not verify another machine's checkpoints."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from app.config import Settings, load_or_create_private_file
from app.transparency.note import Signer, Verifier

KEY_FILE = "log_key"


def log_host(settings: Settings) -> str:
    parts = urlsplit(settings.base_url)
    return f"{parts.netloc}{parts.path}".rstrip("/") or "localhost"


def origin(settings: Settings, slug: str) -> str:
    """The checkpoint origin line of a letter's log."""
    return f"{log_host(settings)}/letters/{slug}"


def _read(path: Path) -> str:
    text = path.read_text().strip()
    Signer.parse(text)  # a damaged key file stops here, with the reason
    return text


@cache
def _signer(data_dir: Path, name: str) -> Signer:
    return Signer.parse(
        load_or_create_private_file(
            data_dir, KEY_FILE, make=lambda: Signer.generate(name).skey(), read=_read
        )
    )


@cache
def _configured(skey: str) -> Signer:
    return Signer.parse(skey)  # Settings checked it already (config.check_signer_key)


def signer(settings: Settings) -> Signer:
    """The log's signer: UNDERSIGNED_LOG_KEY, else DATA_DIR/log_key (made on first use;
    the same in every process sharing DATA_DIR)."""
    if settings.log_key is not None:
        return _configured(settings.log_key.get_secret_value())
    return _signer(settings.data_dir.resolve(), log_host(settings).replace("+", "-"))


def verifier(settings: Settings) -> Verifier:
    return signer(settings).verifier
