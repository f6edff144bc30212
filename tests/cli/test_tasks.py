"""Waiting in bounded steps: --no-wait then check, tasks, and the exit codes of each outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from videogen.errors import (
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_FAILED,
    EXIT_PENDING,
    EXIT_REJECTED,
    EXIT_USAGE,
)

from .conftest import Cli

if TYPE_CHECKING:
    from videogen.sandbox import RunningSandbox

PROMPT = "a paper boat drifting on a pond"


def test_no_wait_then_check_across_processes_saves_the_video_once(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    """generate --no-wait exits 7 with a task id; a later process's check finishes it."""
    cli, sandbox = standalone
    submitted = cli.run("generate", PROMPT, "--no-wait", "--json")

    assert submitted.returncode == EXIT_PENDING, submitted.stderr
    pending = json.loads(submitted.stdout)
    assert pending["status"] in ("queued", "running") and pending["done"] is False
    assert pending["sandbox"] is False and pending["notice"] is None
    assert f"videogen check {pending['task_id']}" in pending["next_step"]

    checked = cli.run("check", pending["task_id"], "--wait", "60", "--json")

    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout)
    assert result["task_id"] == pending["task_id"] and result["status"] == "completed"
    assert Path(result["local_path"]).is_file()
    assert sandbox.log.count(operation="submit") == 1
    assert len(list(cli.output_dir.glob("*.mp4"))) == 1


def test_check_without_wait_reports_a_running_task_as_a_status_block(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    """check with no --wait looks once; a task not yet done exits 7 with what to do next."""
    cli, sandbox = standalone
    sandbox.options.job_seconds = 60.0
    submitted = cli.run("generate", PROMPT, "--no-wait", "--json")
    task_id = json.loads(submitted.stdout)["task_id"]

    checked = cli.run("check", task_id)

    assert checked.returncode == EXIT_PENDING, checked.stderr
    assert f"- Task ID: {task_id}" in checked.stdout
    assert f"videogen check {task_id}" in checked.stdout


def test_no_wait_then_check_works_with_the_embedded_sandbox_and_no_credentials(
    cli: Cli,
) -> None:
    """The embedded sandbox keeps its tasks in the data dir: a later process finishes them."""
    submitted = cli.run("generate", PROMPT, "--no-wait", "--json")

    assert submitted.returncode == EXIT_PENDING, submitted.stderr
    pending = json.loads(submitted.stdout)
    assert pending["status"] in ("queued", "running") and pending["sandbox"] is True
    assert f"videogen check {pending['task_id']}" in pending["next_step"]
    assert not list(cli.output_dir.glob("*.mp4"))

    checked = cli.run("check", pending["task_id"], "--wait", "30", "--json")

    assert checked.returncode == 0, checked.stderr
    result = json.loads(checked.stdout)
    assert result["task_id"] == pending["task_id"] and result["status"] == "completed"
    assert result["sandbox"] is True and Path(result["local_path"]).is_file()
    assert [p.name for p in cli.output_dir.glob("*.mp4")] == [Path(result["local_path"]).name]
    assert submits_seen_by_the_sandbox(cli) == 1
    assert "Traceback" not in submitted.stderr + checked.stderr


def submits_seen_by_the_sandbox(cli: Cli) -> int:
    """Submits in the embedded sandbox's persistent request log (every process's)."""
    import sqlite3

    db = sqlite3.connect(cli.data_dir / "sandbox" / "sandbox.sqlite3")
    try:
        (count,) = db.execute("SELECT COUNT(*) FROM requests WHERE operation = 'submit'").fetchone()
    finally:
        db.close()
    return int(count)


def test_tasks_lists_what_was_generated_newest_first(cli: Cli) -> None:
    """tasks (text and --json) shows the task id, status and saved file."""
    made = json.loads(cli.run("generate", PROMPT, "--json").stdout)

    listed = cli.run("tasks")
    as_json = cli.run("tasks", "--limit", "5", "--json")

    assert listed.returncode == 0 and as_json.returncode == 0
    first = listed.stdout.splitlines()[0]
    assert first.startswith(made["task_id"]) and "completed" in first
    assert made["local_path"] in first and "volcengine (sandbox)" in first
    items = json.loads(as_json.stdout)
    assert [i["task_id"] for i in items] == [made["task_id"]]


def test_tasks_only_reads_the_ledger_and_starts_no_sandbox(cli: Cli) -> None:
    """Listing needs no sandbox: one whose store cannot be opened does not stop it."""
    made = json.loads(cli.run("generate", PROMPT, "--no-wait", "--json").stdout)
    store = cli.data_dir / "sandbox"
    moved = cli.data_dir / "sandbox-moved"
    store.rename(moved)
    store.write_text("not a folder: the embedded sandbox cannot open its store here")

    listed = cli.run("tasks", "--json")
    broken = cli.run("check", made["task_id"])

    assert listed.returncode == 0, listed.stderr
    assert [i["task_id"] for i in json.loads(listed.stdout)] == [made["task_id"]]
    assert broken.returncode == EXIT_CONFIG  # what `tasks` used to do too


def test_tasks_in_a_fresh_data_folder_creates_nothing(cli: Cli) -> None:
    listed = cli.run("tasks")

    assert listed.returncode == 0 and "No tasks yet" in listed.stdout
    assert not cli.data_dir.exists()


def test_a_repeated_request_returns_the_first_task_unless_new_is_given(cli: Cli) -> None:
    """The duplicate guard keeps an identical request from being billed twice."""
    first = json.loads(cli.run("generate", PROMPT, "--json").stdout)
    again = json.loads(cli.run("generate", PROMPT, "--json").stdout)
    forced = json.loads(cli.run("generate", PROMPT, "--new", "--json").stdout)

    assert again["task_id"] == first["task_id"]
    assert any("identical request" in note for note in again["notes"])
    assert forced["task_id"] != first["task_id"]


def test_a_prompt_refused_by_content_review_exits_5(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    cli, sandbox = standalone
    sandbox.set_faults("reject_text")
    done = cli.run("generate", PROMPT)

    assert done.returncode == EXIT_REJECTED
    assert done.stdout == ""
    assert done.stderr.startswith("videogen: error: ") and "Traceback" not in done.stderr


def test_a_task_that_fails_at_the_provider_exits_6_with_the_reason(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    cli, sandbox = standalone
    sandbox.set_faults("fail_after_generating")
    done = cli.run("generate", PROMPT, "--json")

    assert done.returncode in (EXIT_FAILED, EXIT_REJECTED), done.stderr
    if done.stdout:
        result = json.loads(done.stdout)
        assert result["status"] == "failed" and result["error"]


def test_a_wait_that_ends_first_exits_7(standalone: tuple[Cli, RunningSandbox]) -> None:
    cli, sandbox = standalone
    sandbox.options.job_seconds = 60.0
    done = cli.run("generate", PROMPT, "--wait", "0.5", "--json")

    assert done.returncode == EXIT_PENDING, done.stderr
    assert json.loads(done.stdout)["status"] in ("queued", "running")


def test_a_bad_setting_exits_3_naming_the_variable(cli: Cli) -> None:
    done = cli.run("generate", PROMPT, extra_env={"JIMENG_VIDEO_POLL_INTERVAL": "soon"})

    assert done.returncode == EXIT_CONFIG
    assert "JIMENG_VIDEO_POLL_INTERVAL" in done.stderr and "Traceback" not in done.stderr


def test_a_provider_without_keys_exits_4_naming_the_variables(cli: Cli) -> None:
    """Keys for TokenOps only, but Volcengine asked for: the message names what to set."""
    keyed = cli.with_env(VIDEOGEN_SANDBOX=None, TOKENOPS_API_KEY="tk-not-a-real-key")
    done = keyed.run("generate", PROMPT, "--provider", "volcengine")

    assert done.returncode == EXIT_CREDENTIALS
    assert "VOLC_ACCESSKEY" in done.stderr and "tk-not-a-real-key" not in done.stderr


def test_bad_arguments_and_unknown_tasks_exit_2(cli: Cli) -> None:
    assert cli.run("generate", PROMPT, "--duration", "7").returncode == EXIT_USAGE
    refused = cli.run("generate", PROMPT, "--tail-image", "https://example.com/b.png")
    assert refused.returncode == EXIT_USAGE and "videogen: error:" in refused.stderr
    unknown = cli.run("check", "vg_000000000000")
    assert unknown.returncode == EXIT_USAGE and "vg_000000000000" in unknown.stderr


def test_a_wait_that_ends_first_in_the_embedded_sandbox_is_finished_by_a_later_check(
    cli: Cli,
) -> None:
    """--wait 0 leaves the task running in the embedded sandbox's state; check saves it."""
    slow = {"VIDEOGEN_SANDBOX_JOB_SECONDS": "2"}
    done = cli.run("generate", PROMPT, "--wait", "0", extra_env=slow)

    assert done.returncode == EXIT_PENDING, done.stderr
    assert "**Video not ready yet**" in done.stdout
    assert "cannot finish" not in done.stderr
    task_id = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if "Task ID" in line)

    checked = cli.run("check", task_id, "--wait", "30")

    assert checked.returncode == 0, checked.stderr
    assert f"- Task ID: {task_id}" in checked.stdout
    assert len(list(cli.output_dir.glob("*.mp4"))) == 1


def test_an_error_inside_the_embedded_app_prints_one_line_and_no_server_log(cli: Cli) -> None:
    """The error leaves through the embedded sandbox: its web server must not log it again."""
    unknown = cli.run("check", "vg_000000000000")

    assert unknown.returncode == EXIT_USAGE
    assert unknown.stderr.count("\n") == 1, unknown.stderr
    assert unknown.stderr.startswith("videogen: error:") and "vg_000000000000" in unknown.stderr


def test_ctrl_c_while_waiting_prints_one_line_and_the_task_can_still_be_checked(cli: Cli) -> None:
    """SIGINT mid-wait: a one-line message naming the task and the command that follows it (no
    traceback, no server log); the task lives on."""
    import signal
    import subprocess
    import sys
    import time

    env = {**cli.env, "VIDEOGEN_SANDBOX_JOB_SECONDS": "3"}
    with subprocess.Popen(
        [sys.executable, "-m", "videogen", "generate", PROMPT],
        env=env,
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as waiting:
        ledger = cli.data_dir / "tasks.sqlite3"
        deadline = time.monotonic() + 60
        while not has_a_queued_task(ledger) and time.monotonic() < deadline:
            time.sleep(0.05)  # no event crosses the process boundary; the ledger is the sign
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=30)

    assert waiting.returncode == 130, err
    assert out == "" and err.count("\n") == 1 and "interrupted" in err, err
    (task_id,) = [t["task_id"] for t in json.loads(cli.run("tasks", "--json").stdout)]
    assert f"`videogen check {task_id}`" in err, err
    checked = cli.run("check", task_id, "--wait", "30")
    assert checked.returncode == 0, checked.stderr


def has_a_queued_task(ledger: Path) -> bool:
    import sqlite3

    if not ledger.exists():
        return False
    db = sqlite3.connect(ledger)
    try:
        row = db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").fetchone()
    except sqlite3.Error:
        return False
    finally:
        db.close()
    return bool(row[0])


def test_tasks_lists_the_readable_rows_and_names_the_ones_a_newer_version_wrote(cli: Cli) -> None:
    """One row this version cannot read (an unknown status) does not stop the listing."""
    import sqlite3
    import time

    from videogen.ledger import Ledger
    from videogen.models import GenerationRequest, Task

    ledger = Ledger.in_dir(cli.data_dir)
    now = time.time()
    for task_id in ("vg_0000000000a1", "vg_0000000000b2"):
        request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=task_id)
        ledger.insert(Task(id=task_id, request=request, status="queued", created_at=now,
                           updated_at=now))  # fmt: skip
    ledger.close()
    with sqlite3.connect(cli.data_dir / "tasks.sqlite3") as db:
        db.execute("UPDATE tasks SET data = replace(data, '\"queued\"', '\"paused\"') "
                   "WHERE id = 'vg_0000000000b2'")  # fmt: skip

    listed = cli.run("tasks")
    as_json = cli.run("tasks", "--json")

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("vg_0000000000a1")
    assert "1 task(s) recorded by a newer videogen" in listed.stdout
    assert "vg_0000000000b2" in listed.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert [i["task_id"] for i in json.loads(as_json.stdout)] == ["vg_0000000000a1"]
