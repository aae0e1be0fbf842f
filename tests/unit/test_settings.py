"""Settings from GIM_* variables: clear one-line errors, .env support, documented in
.env.example (issue 3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gim_tasks.errors import SettingsError
from gim_tasks.settings import Settings, load_settings, redact, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "GIM_DATABASE_URL": "postgresql://gim:pw@db.example:5432/gim",
    "GIM_REDIS_URL": "redis://:pw@cache.example:6379/0",
}


def _set(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_missing_database_url_names_variable_and_example(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _set(monkeypatch, GIM_REDIS_URL=GOOD["GIM_REDIS_URL"])
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "GIM_DATABASE_URL is not set" in message
    assert "example: GIM_DATABASE_URL=postgresql://" in message
    assert "\n" not in message
    assert "GIM_REDIS_URL" not in message


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("GIM_DATABASE_URL", "mysql://x@h/db", "must be a PostgreSQL URL"),
        ("GIM_DATABASE_URL", "postgresql://h:5432", "must be a PostgreSQL URL"),
        ("GIM_REDIS_URL", "http://cache:6379", "must be a Redis URL"),
        ("GIM_IDB_URLS", "postgresql://h/idb1,nonsense", "must be a PostgreSQL URL"),
        ("GIM_SMTP_PORT", "seventy", "valid integer"),
        ("GIM_SMTP_PORT", "70000", "less than or equal to 65535"),
        ("GIM_LOG_LEVEL", "LOUD", "should match pattern"),
        ("GIM_LOG_FORMAT", "xml", "should match pattern"),
    ],
)
def test_malformed_setting_is_named_with_example(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    _set(monkeypatch, **{**GOOD, variable: value})
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable} is invalid: ")
    assert expected in message
    assert f"(example: {variable}=" in message


def test_idb_urls_are_comma_separated(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _set(monkeypatch, **GOOD, GIM_IDB_URLS=" postgresql://h/idb_voice , postgresql://h/idb_mm,")
    assert load_settings().idb_urls == ["postgresql://h/idb_voice", "postgresql://h/idb_mm"]


def test_dotenv_file_is_read_and_environment_wins(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "GIM_DATABASE_URL=postgresql://from-file/gim\nGIM_REDIS_URL=redis://from-file/0\n"
    )
    _set(monkeypatch, GIM_REDIS_URL="redis://from-env/1")
    settings = load_settings()
    assert settings.database_url == "postgresql://from-file/gim"
    assert settings.redis_url == "redis://from-env/1"


def test_env_example_documents_every_setting_once() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = re.findall(r"^#?\s*(GIM_[A-Z_]+)=", text, flags=re.MULTILINE)
    expected = sorted("GIM_" + name.upper() for name in Settings.model_fields)
    assert sorted(documented) == expected


def test_redact_hides_password_only() -> None:
    assert redact("postgresql://gim:s3cret@h:5432/gim") == "postgresql://gim:***@h:5432/gim"
    assert redact("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact("postgresql://gim@h/gim") == "postgresql://gim@h/gim"


def test_sqlalchemy_url_names_psycopg_driver() -> None:
    assert sqlalchemy_url("postgresql://h/db") == "postgresql+psycopg://h/db"
    assert sqlalchemy_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"


def test_h1_a_multi_host_database_url_is_accepted_and_written_for_libpq() -> None:
    from gim_tasks.db.sessions import libpq_url
    from gim_tasks.settings import Settings

    url = "postgresql://gim@/mart?host=10.0.0.2:5432&host=10.0.0.3:5432&target_session_attrs=read-write"
    found = Settings(database_url=url, redis_url="redis://127.0.0.1:6379/0")
    assert found.database_url == url
    assert libpq_url(url) == (
        "postgresql://gim@10.0.0.2:5432,10.0.0.3:5432/mart?target_session_attrs=read-write"
    )
    assert libpq_url("postgresql+psycopg://gim:pw@h:5432/mart") == "postgresql://gim:pw@h:5432/mart"
