"""A bad setting stops ``videogen`` with one line naming the variable and the fix (exit 3)."""

from __future__ import annotations

import pytest

from videogen.errors import EXIT_CONFIG

from .conftest import Cli


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("JIMENG_VIDEO_API_TIMEOUT", "soon", "is not a number"),
        ("VIDEOGEN_DEDUPE_SECONDS", "-1", "is out of range"),
        ("VIDEOGEN_PROVIDER", "acme", "is not one of: jenius, tokenops, volcengine"),
        ("VIDEOGEN_SANDBOX", "maybe", "is not a yes/no value"),
        ("JENIUS_BASE_URL", "www.jenius.cn", "is not a URL"),
    ],
)
def test_a_bad_setting_is_one_error_line_without_a_traceback(
    cli: Cli, variable: str, value: str, words: str
) -> None:
    done = cli.run("tasks", extra_env={variable: value})

    assert done.returncode == EXIT_CONFIG, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"videogen: error: {variable}=") and words in line
    assert "Traceback" not in done.stderr and "pydantic" not in done.stderr.lower()
