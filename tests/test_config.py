"""Settings read from UNDERSIGNED_* variables."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import MailBackend, Settings, SmtpSecurity


def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    monkeypatch.setenv("UNDERSIGNED_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(f"UNDERSIGNED_{name}", value)
    return Settings(_env_file=None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.0.0.2", ["10.0.0.2"]),
        ("10.0.0.2, 10.0.0.3", ["10.0.0.2", "10.0.0.3"]),
        ('["10.0.0.4"]', ["10.0.0.4"]),
        ("", []),
    ],
)
def test_trusted_proxies_take_a_comma_list_or_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str, expected: list[str]
) -> None:
    assert _settings(monkeypatch, tmp_path, TRUSTED_PROXIES=raw).trusted_proxies == expected


@pytest.mark.parametrize(("raw", "expected"), [("on", True), ("off", False), ("OFF", False)])
def test_rate_limits_on_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, raw: str, expected: bool
) -> None:
    assert _settings(monkeypatch, tmp_path, RATE_LIMITS=raw).rate_limits is expected


def test_defaults_and_normalisation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = _settings(monkeypatch, tmp_path, BASE_URL="https://letters.example.org/")
    assert settings.base_url == "https://letters.example.org"
    assert settings.secure_cookies is True
    assert settings.mail_backend == MailBackend.DEV
    assert settings.verify_max_age_seconds == 7 * 24 * 3600
    assert settings.access_log is False
    assert settings.database_url == "sqlite:///./var/undersigned.db"


@pytest.mark.parametrize(
    "env",
    [{"MAIL_BACKEND": "pigeon"}, {"VERIFY_MAX_AGE_DAYS": "0"}, {"TRUSTED_PROXIES": "[bad"}],
)
def test_bad_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]
) -> None:
    with pytest.raises(ValidationError):
        _settings(monkeypatch, tmp_path, **env)


# --- the secret key ---

MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def test_a_secret_key_shorter_than_32_bytes_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for short in ("a", "s3cr3t-but-only-31-bytes-long!!"):
        with pytest.raises(ValidationError) as refused:
            _settings(monkeypatch, tmp_path, SECRET_KEY=short)
        message = str(refused.value)
        assert "at least 32 random bytes" in message
        assert MAKE_A_KEY in message
        if len(short) > 1:
            assert short not in message, "an error message never repeats the key"
    assert _settings(monkeypatch, tmp_path, SECRET_KEY="x" * 32).secret == "x" * 32
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("content", ["", "\n", "too-short-a-key"])
def test_an_empty_or_short_key_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    key_file = tmp_path / "secret_key"
    key_file.write_text(content)
    with pytest.raises(ValidationError) as refused:
        _settings(monkeypatch, tmp_path)
    message = str(refused.value)
    assert str(key_file) in message
    assert "at least 32 random bytes" in message
    assert MAKE_A_KEY in message
    assert key_file.read_text() == content, "a refused key file is left for the operator"


def test_a_new_key_file_is_private_and_appears_only_complete(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data" / "var"
    key_file = data_dir / "secret_key"
    seen_at_fsync: list[bool] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if not seen_at_fsync:  # the first fsync: the key's own bytes
            seen_at_fsync.append(key_file.exists())
        real_fsync(fd)

    monkeypatch.setattr("app.config.os.fsync", fsync)
    monkeypatch.setenv("UNDERSIGNED_DATA_DIR", str(data_dir))
    settings = Settings(_env_file=None)

    assert seen_at_fsync == [False], "the key file must not exist until its bytes are on disk"
    assert key_file.read_text() == settings.secret
    assert len(settings.secret.encode()) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert sorted(path.name for path in data_dir.iterdir()) == ["secret_key"]  # no temp file
    again = Settings(_env_file=None)
    assert again.secret == settings.secret, "a restart keeps the key"


def test_the_loser_of_a_race_reads_the_winners_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another process creates the file between our check and our link."""
    winner = "w" * 64
    real_link = os.link

    def link(source: str, target: str) -> None:
        Path(target).write_text(winner)  # the racing process got there first
        real_link(source, target)

    monkeypatch.setattr("app.config.os.link", link)
    assert _settings(monkeypatch, tmp_path).secret == winner
    assert (tmp_path / "secret_key").read_text() == winner
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]


def test_processes_starting_together_share_one_key(tmp_path: Path) -> None:
    """Real processes racing to create the key: every one ends with the same key."""
    code = "from app.config import Settings; print(Settings(_env_file=None).secret, flush=True)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERSIGNED_")}
    env["UNDERSIGNED_DATA_DIR"] = str(tmp_path / "var")
    processes = [
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert keys == {(tmp_path / "var" / "secret_key").read_text()}
    assert [path.name for path in (tmp_path / "var").iterdir()] == ["secret_key"]


# --- SMTP credentials never travel in clear ---


def test_smtp_credentials_default_to_starttls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _settings(monkeypatch, tmp_path).smtp_security == SmtpSecurity.NONE
    with_login = _settings(monkeypatch, tmp_path, SMTP_USERNAME="u", SMTP_PASSWORD="p")
    assert with_login.smtp_security == SmtpSecurity.STARTTLS
    assert _settings(monkeypatch, tmp_path, SMTP_SECURITY="tls").smtp_security == SmtpSecurity.TLS


@pytest.mark.parametrize(
    "credentials", [{"SMTP_USERNAME": "u", "SMTP_PASSWORD": "pw"}, {"SMTP_PASSWORD": "pw"}]
)
def test_smtp_security_none_with_credentials_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, credentials: dict[str, str]
) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(monkeypatch, tmp_path, SMTP_SECURITY="none", **credentials)
    assert "password in clear" in str(refused.value)
    assert "pw" not in str(refused.value).replace("password", "")


def test_the_dev_mailbox_stays_off_the_network_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _settings(monkeypatch, tmp_path).allow_dev_mail_on_network is False
    allowed = _settings(monkeypatch, tmp_path, ALLOW_DEV_MAIL_ON_NETWORK="true")
    assert allowed.allow_dev_mail_on_network is True


# --- the signature log: its sequencing interval and a shared key ---


def test_log_sequence_seconds_is_more_than_0_and_at_most_5(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _settings(monkeypatch, tmp_path).log_sequence_seconds == 2.0
    assert _settings(monkeypatch, tmp_path, LOG_SEQUENCE_SECONDS="5").log_sequence_seconds == 5
    for bad in ("0", "-1", "5.5", "soon"):
        with pytest.raises(ValidationError):
            _settings(monkeypatch, tmp_path, LOG_SEQUENCE_SECONDS=bad)


def test_a_shared_log_key_signs_instead_of_the_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.signlog import keys
    from app.transparency.note import Signer

    shared = Signer.generate("letters.example.org")
    settings = _settings(monkeypatch, tmp_path, LOG_KEY=f" {shared.skey()}\n")
    assert keys.signer(settings).skey() == shared.skey()
    assert keys.verifier(settings).vkey() == shared.verifier.vkey()
    assert not (tmp_path / keys.KEY_FILE).exists(), "no key file is made when one is given"
    # Without it, the key file (made once) signs.
    monkeypatch.delenv("UNDERSIGNED_LOG_KEY")
    default = keys.signer(_settings(monkeypatch, tmp_path))
    assert default.skey() != shared.skey()
    assert (tmp_path / keys.KEY_FILE).read_text().strip() == default.skey()


def test_a_bad_log_key_is_refused_at_start_up_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.transparency.note import Signer

    good = Signer.generate("letters.example.org").skey()
    other = Signer.generate("letters.example.org").skey()
    _, _, name, key_id, encoded = good.split("+", 4)  # base64 may hold a "+" too
    cut = good[:-5]
    renamed = f"PRIVATE+KEY+elsewhere.example+{key_id}+{encoded}"
    swapped = f"PRIVATE+KEY+{name}+{other.split('+', 4)[3]}+{encoded}"
    for bad, reason in (
        (cut, "not an Ed25519 signer key"),
        ("PRIVATE+KEY+" + "x" * 40, "not an Ed25519 signer key"),
        (good.replace("+A", "+B", 1), "not an Ed25519 signer key"),  # not type 0x01
        (renamed, "does not match"),
        (swapped, "does not match"),
    ):
        with pytest.raises(ValidationError) as refused:
            _settings(monkeypatch, tmp_path, LOG_KEY=bad)
        message = str(refused.value)
        assert reason in message, (bad, message)
        assert encoded not in message and encoded[:20] not in message


def test_the_command_line_names_a_bad_log_key(tmp_path: Path) -> None:
    from tests.support.processes import clean_env, run_in_process

    env = clean_env(data_dir=str(tmp_path), log_key="PRIVATE+KEY+oops",
                    database_url=f"sqlite:///{tmp_path / 'x.db'}")  # fmt: skip
    done = run_in_process(["log", "sequence"], cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "UNDERSIGNED_LOG_KEY: not an Ed25519 signer key" in done.stderr
