"""Every setting is declared once (``config.Environment``): its default and bounds there are the
ones the program runs with, ``--help`` and the README show, and a value outside them is refused
with a message naming the variable."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Le
from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from videogen import cli
from videogen.config import HTTP_TOKEN_MIN_CHARS, VARIABLES, Environment, Settings
from videogen.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def variable_of(declared: FieldInfo) -> str:
    """The variable a field is read from (the first, when it has a fallback)."""
    alias = declared.validation_alias
    return str(alias.choices[0] if isinstance(alias, AliasChoices) else alias)


DECLARED = {variable_of(f): (name, f) for name, f in Environment.model_fields.items()}
NUMBERS = {
    variable: (name, f, *bounds)
    for variable, (name, f) in DECLARED.items()
    for bounds in [
        (
            next((m.ge for m in f.metadata if isinstance(m, Ge)), None),
            next((m.le for m in f.metadata if isinstance(m, Le)), None),
        )
    ]
    if None not in bounds
}


def shown(default: Any) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    return refused.value.message


def test_every_variable_is_declared_once_with_a_description() -> None:
    assert list(VARIABLES) == list(DECLARED)
    assert len(VARIABLES) == len(Environment.model_fields)
    for variable, (_, declared) in DECLARED.items():
        assert declared.description or variable == "VIDEOGEN_LOG_LEVEL", variable
        assert VARIABLES[variable] and "\n" not in VARIABLES[variable], variable


@pytest.mark.parametrize("variable", list(DECLARED))
def test_the_help_text_shows_the_declared_default(variable: str) -> None:
    default = DECLARED[variable][1].default
    if isinstance(default, (int, float, str)) and not isinstance(default, bool):
        assert VARIABLES[variable].endswith(f"(default {shown(default)})"), VARIABLES[variable]


def test_the_program_runs_with_the_declared_defaults() -> None:
    """What ``Settings.from_env({})`` holds and what a ``Settings(...)`` built by hand starts
    with are the declared defaults: one place for each."""
    read = Settings.from_env({"HOME": "/home/u"})
    by_hand = {f.name: f.default for f in dataclasses.fields(Settings)}
    compared = []
    for name, declared in Environment.model_fields.items():
        computed = declared.default is None  # from HOME, or from other settings
        if not computed and by_hand.get(name, dataclasses.MISSING) is not dataclasses.MISSING:
            assert getattr(read, name) == declared.default == by_hand[name], name
            compared.append(name)
    assert {"request_timeout", "poll_interval", "lease_seconds", "log_level"} <= set(compared)
    mb = Environment.model_fields["max_download_mb"].default
    assert read.max_download_bytes == by_hand["max_download_bytes"] == mb * 1024 * 1024
    assert VARIABLES["JIMENG_VIDEO_API_TIMEOUT"] == "request timeout in seconds (default 300)"
    assert f"at least {HTTP_TOKEN_MIN_CHARS} characters" in VARIABLES["VIDEOGEN_HTTP_TOKEN"]
    assert VARIABLES["VIDEOGEN_PROVIDER"].startswith("jenius | tokenops | volcengine ")
    assert VARIABLES["VIDEOGEN_LOG_LEVEL"] == "DEBUG | INFO | WARNING | ERROR (default WARNING)"


def test_help_lists_every_declared_variable_with_its_text() -> None:
    for variable, text in VARIABLES.items():
        assert re.search(rf"^  {variable} +{re.escape(text)}$", cli.EPILOG, re.M), variable


def test_the_readme_table_is_exactly_the_declared_variables_in_order() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("\n| variable | meaning |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    rows = [re.fullmatch(r"\| `(\w+)` \| (.*) \|", row) for row in table.splitlines()]
    documented = [(row[1], row[2].replace("\\|", "|")) for row in rows if row]
    assert len(documented) == len(rows)
    assert documented == list(VARIABLES.items())


@pytest.mark.parametrize("variable", list(NUMBERS))
def test_every_number_is_refused_outside_its_bounds_naming_the_variable(variable: str) -> None:
    _, declared, low, high = NUMBERS[variable]
    whole = declared.annotation in (int, int | None)
    not_a_number = refusal({variable: "lots"})
    assert not_a_number.startswith(f"{variable}='lots' is not a ")
    assert ("whole number" in not_a_number) is whole
    too_high = refusal({variable: str(high * 10 + 1)})
    assert too_high.startswith(f"{variable}=") and (str(high) if whole else f"{high:g}") in too_high
    unset = "no limit" if declared.default is None else f"default ({shown(declared.default)})"
    assert unset in too_high
    assert refusal({variable: str(low - 1)}).startswith(f"{variable}=")
    prices = {"VIDEOGEN_PRICES": "volcengine:*=0.1"}  # a spend limit needs them
    for edge in (low, high):
        Settings.from_env({variable: str(int(edge) if whole else edge), **prices})


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("JIMENG_VIDEO_API_TIMEOUT", "soon", "is not a number: set it to a number of seconds"),
        ("VIDEOGEN_WAIT_SECONDS", "3601", "is out of range: use a value between 0 and 3600"),
        ("VIDEOGEN_MAX_DOWNLOAD_MB", "1.5", "is not a whole number between 1 and 1048576"),
        ("VIDEOGEN_LOG_LEVEL", "loud", "is not one of: DEBUG, INFO, WARNING, ERROR"),
        ("VIDEOGEN_SANDBOX", "perhaps", "is not a yes/no value: use 1 or 0"),
        ("TOKENOPS_BASE_URL", "api.tokenops.ai", "is not a URL: give it as http(s)://"),
        ("AWS_ENDPOINT_URL", "minio:9000", "is not a URL"),
        ("VIDEOGEN_DATA_DIR", "/tmp/a\x00b", "contains a NUL byte"),
        ("VIDEOGEN_INPUT_DIRS", "pictures", "which is not an absolute path"),
        ("VIDEOGEN_STORAGE_URL", "https://bucket", "is not an S3 location"),
        ("VIDEOGEN_DATABASE_URL", "sqlite:///x.db", "is not a PostgreSQL URL"),
        ("VIDEOGEN_PRICES", "cheap", "e.g. volcengine:t2v_720p=0.07"),
    ],
)
def test_a_bad_value_of_each_kind_is_one_sentence_naming_the_variable(
    variable: str, value: str, words: str
) -> None:
    message = refusal({variable: value})
    assert message.startswith(variable) and words in message
    assert "validation error" not in message.lower() and "pydantic" not in message.lower()
    assert "\n" not in message


def test_several_bad_values_are_all_named_at_once() -> None:
    message = refusal({"JIMENG_VIDEO_API_TIMEOUT": "0", "VIDEOGEN_PROVIDER": "acme"})
    assert "JIMENG_VIDEO_API_TIMEOUT=0 is out of range" in message
    assert "VIDEOGEN_PROVIDER='acme' is not one of" in message


def test_only_the_given_mapping_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A test's dict is the whole environment: not os.environ, not a .env file."""
    monkeypatch.setenv("JIMENG_VIDEO_API_TIMEOUT", "7")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("JIMENG_VIDEO_POLL_INTERVAL=9\n")
    given = Settings.from_env({})
    assert (given.request_timeout, given.poll_interval) == (300.0, 5.0)
    process = Settings.from_env()
    assert (process.request_timeout, process.poll_interval) == (7.0, 5.0)


def test_blank_values_are_unset_and_choices_take_any_case() -> None:
    settings = Settings.from_env(
        {"JIMENG_VIDEO_API_TIMEOUT": "  ", "VIDEOGEN_PROVIDER": " TokenOps ",
         "VIDEOGEN_LOG_LEVEL": "debug", "VIDEOGEN_SANDBOX": "yes", "VIDEOGEN_OUTPUT_DIR": ""}
    )  # fmt: skip
    assert settings.request_timeout == 300.0
    assert (settings.provider, settings.log_level, settings.sandbox) == ("tokenops", "DEBUG", True)


def test_the_store_region_falls_back_to_aws_default_region() -> None:
    store = {"VIDEOGEN_STORAGE_URL": "s3://team-videos/videogen/"}
    assert Settings.from_env(store).storage.region == "us-east-1"  # type: ignore[union-attr]
    fallback = Settings.from_env({**store, "AWS_DEFAULT_REGION": "eu-west-1"}).storage
    assert fallback is not None and (fallback.region, fallback.prefix) == ("eu-west-1", "videogen")
    both = {**store, "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "ap-east-1"}
    assert Settings.from_env(both).storage.region == "ap-east-1"  # type: ignore[union-attr]


def test_a_secret_is_never_echoed_in_a_refusal() -> None:
    message = refusal({"VIDEOGEN_DATABASE_URL": "mysql://u:sekrit-password-1@h/db",
                       "VIDEOGEN_HTTP_TOKEN": "short-sekrit"})  # fmt: skip
    assert "VIDEOGEN_DATABASE_URL" in message and "VIDEOGEN_HTTP_TOKEN" in message
    assert "sekrit" not in message
