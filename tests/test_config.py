"""Settings come from the environment, and a bad value names the variable and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from videogen.config import SANDBOX_NOTICE, Settings, default_output_dir
from videogen.errors import ConfigError, CredentialsError
from videogen.ledger import open_ledger


def test_no_credentials_means_the_sandbox_and_seed_defaults() -> None:
    settings = Settings.from_env({"HOME": "/home/u"})
    assert settings.sandbox is True
    assert settings.notice == SANDBOX_NOTICE
    assert settings.volcengine.base_url == "https://visual.volcengineapi.com"
    assert settings.tokenops.base_url == "https://api.tokenops.ai/v1"
    assert settings.jenius.base_url == "https://www.jenius.cn/api"
    assert (settings.request_timeout, settings.poll_interval, settings.max_poll_attempts) == (
        300.0,
        5.0,
        120,
    )
    assert settings.output_dir == default_output_dir(Path("/home/u"))
    assert default_output_dir(Path("/h"), platform="linux") == Path("/h/Videos/videogen")
    assert default_output_dir(Path("/h"), platform="darwin") == Path("/h/Movies/videogen")
    assert settings.data_dir == Path("/home/u/.local/state/videogen")


def test_credentials_choose_the_provider_and_leave_the_sandbox() -> None:
    settings = Settings.from_env({"TOKENOPS_API_KEY": "tk-test", "HOME": "/h"})
    assert (settings.sandbox, settings.provider, settings.notice) == (False, "tokenops", None)
    assert settings.require_credentials("tokenops").api_key == "tk-test"


def test_missing_credentials_name_the_variables_to_set() -> None:
    settings = Settings.from_env({"TOKENOPS_API_KEY": "tk-test"})
    with pytest.raises(CredentialsError, match="VOLC_ACCESSKEY and VOLC_SECRETKEY"):
        settings.require_credentials("volcengine")


def test_half_a_volcengine_key_pair_is_refused() -> None:
    with pytest.raises(ConfigError, match="VOLC_SECRETKEY is not set"):
        Settings.from_env({"VOLC_ACCESSKEY": "AKLTx"})


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("JIMENG_VIDEO_POLL_INTERVAL", "soon", "is not a number"),
        ("JIMENG_VIDEO_API_TIMEOUT", "0", "out of range"),
        ("JIMENG_VIDEO_API_URL", "visual.example", "is not a URL"),
        ("VIDEOGEN_PROVIDER", "acme", "is not one of"),
        ("VIDEOGEN_SANDBOX", "maybe", "yes/no"),
        ("VIDEOGEN_MAX_CONCURRENT", "0", "not a whole number between 1"),
        ("VIDEOGEN_MAX_CONCURRENT_TOKENOPS", "2.5", "not a whole number between 1"),
    ],
)
def test_bad_values_stop_with_a_message_naming_the_variable(
    name: str, value: str, words: str
) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({name: value})
    assert name in error.value.message
    assert words in error.value.message


def test_concurrency_limits_apply_to_every_provider_or_one_which_wins() -> None:
    settings = Settings.from_env(
        {"VIDEOGEN_MAX_CONCURRENT": "3", "VIDEOGEN_MAX_CONCURRENT_VOLCENGINE": "1"}
    )
    assert [settings.concurrency_limit(p) for p in ("volcengine", "tokenops", "jenius")] == [
        1,
        3,
        3,
    ]
    assert Settings.from_env({}).concurrency_limit("volcengine") is None
    only = Settings.from_env({"VIDEOGEN_MAX_CONCURRENT_JENIUS": "2"})
    assert (only.concurrency_limit("jenius"), only.concurrency_limit("tokenops")) == (2, None)


def test_secrets_never_appear_in_the_settings_repr() -> None:
    token_a, token_b = "tok-a".ljust(32, "a"), "tok-b".ljust(32, "b")
    settings = Settings.from_env(
        {"VOLC_ACCESSKEY": "AKLTvisible", "VOLC_SECRETKEY": "s3cr3t-value",
         "VIDEOGEN_HTTP_TOKEN": f"{token_a}, {token_b}"}
    )  # fmt: skip
    assert "s3cr3t-value" not in repr(settings)
    assert "tok-a" not in repr(settings)
    assert set(settings.secrets()) >= {"s3cr3t-value", token_a, token_b}


@pytest.mark.parametrize("tokens", ["x", "a" * 31, f"{'a' * 40},short"])
def test_a_guessable_http_token_is_refused_with_how_to_make_a_good_one(tokens: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"VIDEOGEN_HTTP_TOKEN": tokens})
    assert "VIDEOGEN_HTTP_TOKEN" in error.value.message
    assert "at least 32" in error.value.message
    assert "secrets.token_urlsafe(32)" in error.value.message
    assert "short" not in error.value.message and "aaaa" not in error.value.message


def test_a_long_http_token_is_accepted() -> None:
    token = "k" * 32
    assert Settings.from_env({"VIDEOGEN_HTTP_TOKEN": f" {token} ,"}).http_tokens == (token,)


def test_a_database_url_chooses_postgresql_and_stays_out_of_the_repr() -> None:
    url = "postgresql://team:s3cret-db-password@db.internal:5432/videogen"
    settings = Settings.from_env({"HOME": "/home/u", "VIDEOGEN_DATABASE_URL": url})
    assert settings.database_url == url
    assert "s3cret-db-password" not in repr(settings)
    assert Settings.from_env({"HOME": "/home/u"}).database_url is None
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"HOME": "/h", "VIDEOGEN_DATABASE_URL": "mysql://u:hunter2hunter2@h/db"})
    assert "VIDEOGEN_DATABASE_URL" in refused.value.message
    assert "postgresql://user:password@host:5432/dbname" in refused.value.message
    assert "hunter2" not in refused.value.message


def test_without_psycopg_a_database_url_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if psycopg were not installed (a module set to None cannot be imported)."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "videogen.ledger.postgres", raising=False)
    settings = Settings.from_env(
        {"HOME": str(tmp_path), "VIDEOGEN_DATABASE_URL": "postgresql://u@127.0.0.1:1/db"}
    )
    with pytest.raises(ConfigError) as refused:
        open_ledger(settings)
    assert "psycopg is not installed" in refused.value.message
    assert "uv tool install 'jimeng-videogen-mcp[postgres]'" in refused.value.message


def test_the_embedded_default_never_imports_psycopg(tmp_path: Path) -> None:
    """Start-up stays as fast as before: the SQLite ledger opens without the PostgreSQL driver."""
    code = (
        "import sys; from videogen.config import Settings; from videogen.ledger import "
        f"open_ledger; open_ledger(Settings.from_env({{'HOME': {str(tmp_path)!r}}})).close(); "
        "import videogen.app, videogen.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_http_tokens_are_scrubbed_like_every_other_secret() -> None:
    """A VIDEOGEN_HTTP_TOKEN never reaches a printed or stored message: the one scrubber
    (errors.scrub, which the CLI's error lines go through too) knows it once it is read."""
    from videogen.errors import scrub

    token = "tok-not-a-real-secret-5150-abcdefghijklmnop"
    Settings.from_env({"VIDEOGEN_HTTP_TOKEN": token})
    assert scrub(f"refused {token}.") == "refused ***."
