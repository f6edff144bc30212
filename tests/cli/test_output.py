"""--output: an unusable path exits 3 before anything is billed; a failed save is retried with
``check --output``; missing folders are created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from videogen.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE

from .conftest import Cli

if TYPE_CHECKING:
    from videogen.sandbox import RunningSandbox

PROMPT = "a paper boat drifting on a pond"


def test_an_unusable_output_path_exits_3_before_anything_is_submitted(
    standalone: tuple[Cli, RunningSandbox], tmp_path: Path
) -> None:
    """/dev/null or a path under a file: refused at once, no (billed) submit was sent."""
    cli, sandbox = standalone
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for output in ("/dev/null", str(blocker / "deep" / "x.mp4")):
        done = cli.run("generate", PROMPT, "--output", output)

        assert done.returncode == EXIT_CONFIG, (output, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr
    assert sandbox.log.count("volcengine", "submit") == 0


def test_a_missing_output_folder_is_created_with_its_parents(cli: Cli, tmp_path: Path) -> None:
    """As the README says: "its folder is created"."""
    target = tmp_path / "new" / "deep" / "boat.mp4"
    done = cli.run("generate", PROMPT, "--output", str(target), "--json")

    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["local_path"] == str(target) and target.is_file()


def test_a_save_that_fails_exits_3_and_check_output_saves_it_elsewhere(
    cli: Cli, tmp_path: Path
) -> None:
    """The folder vanishes while the task runs: the ready task's OutputError exits 3 (not 1);
    `check ID --output FOLDER` then saves the video there without a new submit."""
    folder = tmp_path / "out"
    made = cli.run("generate", PROMPT, "--output", str(folder), "--no-wait", "--json")
    task_id = json.loads(made.stdout)["task_id"]
    folder.rmdir()
    folder.write_text("the folder was replaced by a file")

    failed = cli.run("check", task_id, "--wait", "30", "--json")
    elsewhere = tmp_path / "elsewhere"
    saved = cli.run("check", task_id, "--wait", "30", "--output", str(elsewhere), "--json")

    assert failed.returncode == EXIT_CONFIG, failed.stderr
    assert json.loads(failed.stdout)["status"] == "ready"
    assert saved.returncode == EXIT_OK, saved.stderr
    result = json.loads(saved.stdout)
    assert result["task_id"] == task_id and Path(result["local_path"]).parent == elsewhere
    assert Path(result["local_path"]).is_file()


def test_check_output_takes_a_folder_not_a_file_name(cli: Cli) -> None:
    done = cli.run("check", "vg_000000000000", "--output", "boat.mp4")

    assert done.returncode == EXIT_USAGE and "takes a folder" in done.stderr


def test_an_output_file_name_the_saver_would_refuse_exits_2_before_anything_is_submitted(
    standalone: tuple[Cli, RunningSandbox], tmp_path: Path
) -> None:
    """Issue 14 item 2: a hidden name was billed, then could never be saved."""
    cli, sandbox = standalone
    for name in (".hidden.mp4", "nul.mp4", "\u202egnp.mp4"):
        done = cli.run("generate", PROMPT, "--output", str(tmp_path / "out" / name))

        assert done.returncode == EXIT_USAGE, (name, done.stderr)
        assert "plain file name" in done.stderr and "Traceback" not in done.stderr
    assert sandbox.log.count("volcengine", "submit") == 0


def test_check_output_saves_a_video_whose_save_failed_without_being_told_to_wait(
    cli: Cli, tmp_path: Path
) -> None:
    """Issue 14 item 5: the README's rescue, exactly as written (no --wait)."""
    folder = tmp_path / "out"
    made = cli.run("generate", PROMPT, "--output", str(folder), "--no-wait", "--json")
    task_id = json.loads(made.stdout)["task_id"]
    folder.rmdir()
    folder.write_text("the folder was replaced by a file")
    failed = cli.run("check", task_id, "--wait", "30", "--json")
    assert failed.returncode == EXIT_CONFIG, failed.stderr

    elsewhere = tmp_path / "elsewhere"
    saved = cli.run("check", task_id, "--output", str(elsewhere), "--json")

    assert saved.returncode == EXIT_OK, saved.stdout + saved.stderr
    local = Path(json.loads(saved.stdout)["local_path"])
    assert local.parent == elsewhere and local.is_file()


def test_a_repeated_generate_writes_the_file_it_names_without_a_second_submit(
    standalone: tuple[Cli, RunningSandbox], tmp_path: Path
) -> None:
    """Issue 14 item 6: the same prompt with --output x/boat.mp4 gets x/boat.mp4."""
    cli, sandbox = standalone
    first = cli.run("generate", PROMPT, "--json")
    target = tmp_path / "x" / "boat.mp4"
    again = cli.run("generate", PROMPT, "--output", str(target), "--json")

    assert first.returncode == EXIT_OK, first.stderr
    assert again.returncode == EXIT_OK, again.stderr
    result = json.loads(again.stdout)
    assert result["local_path"] == str(target) and target.is_file()
    assert result["task_id"] == json.loads(first.stdout)["task_id"]
    assert sandbox.log.count("volcengine", "submit") == 1


def test_check_of_a_deleted_video_says_so_and_saves_it_again(cli: Cli) -> None:
    """Issue 14 item 7: a Save Path that does not exist is never reported as saved."""
    made = cli.run("generate", PROMPT, "--json")
    first = json.loads(made.stdout)
    Path(first["local_path"]).unlink()

    checked = cli.run("check", first["task_id"], "--json")

    assert checked.returncode == EXIT_OK, checked.stdout + checked.stderr
    result = json.loads(checked.stdout)
    assert result["status"] == "completed" and Path(result["local_path"]).is_file()
    assert any("is gone" in note for note in result["notes"])
