"""What the command line says: human output a terminal can show safely, errors a script can read,
messages worded for the command line."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

from videogen.errors import EXIT_PENDING, EXIT_USAGE

from .conftest import Cli, png

if TYPE_CHECKING:
    from videogen.sandbox import RunningSandbox

HOSTILE_PROMPT = "a red \x1b[31mboat\x1b]0;owned\x07 on a \x9b2Jpond\nline two"


def test_check_and_tasks_show_a_prompts_escape_sequences_as_text(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    """A prompt's ANSI escapes never reach the terminal raw: they are shown as visible escapes."""
    cli, sandbox = standalone
    sandbox.options.job_seconds = 60.0
    submitted = cli.run("generate", HOSTILE_PROMPT, "--no-wait", "--json")
    assert submitted.returncode == EXIT_PENDING, submitted.stderr
    task_id = json.loads(submitted.stdout)["task_id"]

    for shown in (cli.run("check", task_id), cli.run("tasks")):
        assert task_id in shown.stdout, shown.stderr
        for raw in ("\x1b", "\x07", "\x9b"):
            assert raw not in shown.stdout
        assert "\\x1b[31mboat" in shown.stdout
    check_lines = cli.run("check", task_id).stdout.splitlines()
    assert (
        "- Prompt: a red \\x1b[31mboat\\x1b]0;owned\\x07 on a \\x9b2Jpond line two" in check_lines
    )


def test_with_json_every_error_is_one_json_object_on_stdout(cli: Cli) -> None:
    """Scripts parse errors too: usage, refused input and unknown task each print one object."""
    usage = cli.run("generate", "a boat", "--duration", "7", "--json")
    refused = cli.run("generate", "a boat", "--mode", "i2v_first_720p", "--json")
    unknown = cli.run("check", "vg_000000000000", "--json")

    for done, kind in ((usage, "usage"), (refused, "input"), (unknown, "not_found")):
        assert done.returncode == EXIT_USAGE, done.stderr
        error = json.loads(done.stdout)
        assert error["error"] is True and error["kind"] == kind, error
        assert error["exit_code"] == EXIT_USAGE and error["message"]
        assert "error:" in done.stderr  # people still read it on stderr
    assert "--duration" in json.loads(usage.stdout)["message"]
    assert "task_id" not in json.loads(refused.stdout)
    assert json.loads(unknown.stdout)["task_id"] == "vg_000000000000"


def test_without_json_an_error_prints_nothing_on_stdout(cli: Cli) -> None:
    done = cli.run("check", "vg_000000000000")
    assert done.returncode == EXIT_USAGE and done.stdout == ""


def test_serve_on_port_0_says_the_port_it_really_listens_on(cli: Cli) -> None:
    """The start-up line is a plain stderr line (not a WARNING) naming the bound port."""
    with subprocess.Popen(
        [sys.executable, "-m", "videogen", "serve", "--http", "--port", "0"],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stderr is not None
            line = server.stderr.readline()
            match = re.fullmatch(
                r"videogen: serving MCP .* at http://127\.0\.0\.1:(\d+)/mcp\n", line
            )
            assert match, line
            port = int(match.group(1))
            assert port != 0
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                pass  # the port named is the port listened on
        finally:
            server.terminate()


def test_serve_on_a_bad_or_busy_port_is_a_usage_error_without_a_traceback(cli: Cli) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        for port in ("70000", "-1", taken):
            done = cli.run("serve", "--http", "--port", port, timeout=30)
            assert done.returncode == EXIT_USAGE, done.stderr
            assert "Traceback" not in done.stderr and "--port" in done.stderr, done.stderr
            assert done.stderr.count("\n") == 1, done.stderr


def test_image_errors_name_the_file_and_speak_of_the_current_directory(cli: Cli) -> None:
    """With two images given, the refused one is named; relative paths are the shell's."""
    (cli.cwd / "first.png").write_bytes(png(640, 480))
    (cli.cwd / "last.png").write_bytes(b"not an image at all")

    wrong = cli.run("generate", "a door opens", "--image", "first.png", "--tail-image", "last.png")
    missing = cli.run("generate", "a door opens", "--image", "nowhere.png")

    assert wrong.returncode == EXIT_USAGE and "'last.png'" in wrong.stderr, wrong.stderr
    assert "'first.png'" not in wrong.stderr
    assert missing.returncode == EXIT_USAGE and "'nowhere.png'" in missing.stderr
    assert "current directory" in missing.stderr and "server's working" not in missing.stderr


def test_the_duplicate_note_tells_a_shell_user_about_new(cli: Cli) -> None:
    first = cli.run("generate", "a paper boat", "--json")
    again = cli.run("generate", "a paper boat", "--json")

    assert first.returncode == 0 and again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["task_id"] == json.loads(first.stdout)["task_id"]
    (note,) = [n for n in result["notes"] if "identical request" in n]
    assert "--new" in note and "new=true" not in note, note


def test_an_embedded_sandbox_result_links_a_file_that_outlives_the_command(cli: Cli) -> None:
    done = cli.run("generate", "a paper boat at dusk")

    assert done.returncode == 0, done.stderr
    (link,) = re.findall(r"^\[Download Video\]\((.*)\)$", done.stdout, re.MULTILINE)
    assert link.startswith("file://"), link
    saved = Path(url2pathname(urlparse(link).path))
    assert saved.is_file() and saved.parent == cli.output_dir
    assert "- Preview: a local preview" in done.stdout
