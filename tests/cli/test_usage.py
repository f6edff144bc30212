"""`videogen usage` and the spending limits on the command line (issue 20)."""

from __future__ import annotations

import json

from videogen.errors import EXIT_OK, EXIT_USAGE

from .conftest import Cli


def test_a_limit_refuses_the_next_generate_and_usage_json_shows_the_spend(cli: Cli) -> None:
    limited = cli.with_env(VIDEOGEN_LIMIT_VIDEOS_PER_DAY="2")
    first = json.loads(limited.run("generate", "a kite", "--no-wait", "--json").stdout)
    limited.run("generate", "a boat", "--no-wait", "--json")
    refused = limited.run("generate", "a train", "--no-wait", "--json")

    report = limited.run("usage", "--json", "--days", "7")
    text = limited.run("usage")

    assert first["usage"] == "today: 1 video, 5 s; limits: 1 of 2 videos today"
    assert first["videos_today"] == 1
    assert refused.returncode == EXIT_USAGE
    assert json.loads(refused.stdout)["kind"] == "spending_limit"  # --json: the error object
    assert "VIDEOGEN_LIMIT_VIDEOS_PER_DAY=2" in refused.stderr
    assert "2 videos already billed today" in refused.stderr
    assert "resets at" in refused.stderr and "nothing was billed" in refused.stderr
    assert report.returncode == EXIT_OK, report.stderr
    usage = json.loads(report.stdout)
    assert (usage["days"], usage["videos"], usage["seconds"]) == (7, 2, 10)
    assert usage["sandbox"] is True and usage["spend"] is None
    assert usage["limits"] == {"VIDEOGEN_LIMIT_VIDEOS_PER_DAY": 2}
    (row,) = usage["rows"]
    assert (row["provider"], row["mode"], row["owner"], row["videos"]) == (
        "volcengine",
        "t2v_720p",
        None,
        2,
    )
    assert f"| {row['day']} | volcengine | t2v_720p | local | 2 | 10 |  |" in text.stdout
    assert "Limits: VIDEOGEN_LIMIT_VIDEOS_PER_DAY=2" in text.stdout


def test_usage_in_a_fresh_data_folder_creates_nothing_and_says_no_limits_are_set(
    cli: Cli,
) -> None:
    done = cli.run("usage")

    assert done.returncode == EXIT_OK, done.stderr
    assert "0 videos, 0 s" in done.stdout and "No spending limits are set" in done.stdout
    assert not cli.data_dir.exists()


def test_usage_refuses_a_bad_day_count(cli: Cli) -> None:
    done = cli.run("usage", "--days", "0")

    assert done.returncode == EXIT_USAGE and "--days must be" in done.stderr
