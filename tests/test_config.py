"""Settings read from UNDERSIGNED_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import MailBackend, Settings


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
