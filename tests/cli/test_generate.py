"""``videogen generate`` end to end: a real MP4 saved, seed 002's block, --json, --output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import pytest

from videogen.config import SANDBOX_NOTICE

from .conftest import Cli, png

PROMPT = "a paper boat drifting on a pond"


def probe(path: Path) -> tuple[float, float, int, int]:
    """Duration (s), frame rate, width, height read from the file itself."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = float(stream.average_rate or 0)
        return frames / rate, rate, stream.codec_context.width, stream.codec_context.height


def block_fields(stdout: str) -> dict[str, str]:
    """The ``- Name: value`` lines of the block."""
    return dict(re.findall(r"^- ([A-Za-z ]+): (.*)$", stdout, flags=re.MULTILINE))


def test_generate_saves_a_real_mp4_and_prints_seed_002s_block_after_the_sandbox_notice(
    cli: Cli,
) -> None:
    """The thin path: no credentials, one command, a playable file and the seed's block."""
    done = cli.with_env(VIDEOGEN_SANDBOX=None).run("generate", PROMPT)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == SANDBOX_NOTICE
    assert lines[1:4] == [
        "**Generated Video:**",
        lines[2],
        "**Generation Info:**",
    ]
    # The embedded sandbox stops with the command: the link is the saved file (item 27).
    assert re.fullmatch(r"\[Download Video\]\(file:///\S+\.mp4\)", lines[2])
    fields = block_fields(done.stdout)
    assert fields["Prompt"] == PROMPT
    assert fields["Mode"] == "t2v_720p"
    saved = Path(fields["Save Path"])
    assert saved.is_file() and saved.parent == cli.output_dir
    duration, fps, _, _ = probe(saved)
    assert fields["Duration"] == f"{float(fields['Duration'].split()[0]):g} seconds"
    assert float(fields["Duration"].split()[0]) == pytest.approx(duration, abs=0.05)
    assert float(fields["FPS"]) == pytest.approx(fps, abs=0.01)
    assert duration == pytest.approx(5.0, abs=0.1)
    assert "\r" not in done.stderr  # no progress line when stderr is not a terminal


def test_json_prints_only_the_structured_result_with_the_probed_facts(cli: Cli) -> None:
    """--json: stdout is one JSON document; duration and fps are conformed and probed."""
    done = cli.run("generate", PROMPT, "--duration", "4", "--fps", "30", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["done"] is True
    assert result["sandbox"] is True and result["notice"] == SANDBOX_NOTICE
    assert (result["provider"], result["mode"]) == ("volcengine", "t2v_720p")
    assert result["prompt"] == PROMPT
    duration, fps, width, height = probe(Path(result["local_path"]))
    assert result["duration"] == pytest.approx(duration, abs=0.05)
    assert duration == pytest.approx(4.0, abs=1 / 30 + 0.01)
    assert fps == pytest.approx(30.0) and result["fps"] == pytest.approx(30.0)
    assert (result["width"], result["height"]) == (width, height) == (1280, 720)


def test_output_ending_in_mp4_names_the_saved_file(cli: Cli) -> None:
    """--output clips/boat.mp4: the file lands exactly there (relative to the cwd)."""
    done = cli.run("generate", PROMPT, "--output", "clips/boat.mp4", "--json")

    assert done.returncode == 0, done.stderr
    target = cli.cwd / "clips" / "boat.mp4"
    assert json.loads(done.stdout)["local_path"] == str(target)
    assert target.is_file()


def test_output_without_mp4_is_a_folder_to_save_into(cli: Cli, tmp_path: Path) -> None:
    """--output DIR: the video gets its own name inside DIR."""
    folder = tmp_path / "elsewhere"
    done = cli.run("generate", PROMPT, "--output", str(folder), "--json")

    assert done.returncode == 0, done.stderr
    saved = Path(json.loads(done.stdout)["local_path"])
    assert saved.parent == folder and saved.suffix == ".mp4" and saved.is_file()
    assert not cli.output_dir.exists() or not any(cli.output_dir.glob("*.mp4"))


def test_an_omitted_mode_is_inferred_from_the_inputs_and_the_result_says_so(
    cli: Cli, tmp_path: Path
) -> None:
    """One local image and no --mode: i2v_first_720p, with the intake's note in the result."""
    image = tmp_path / "pond.png"
    image.write_bytes(png(480, 360))
    done = cli.run("generate", "the boat sails away", "--image", str(image), "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["mode"] == "i2v_first_720p"
    assert any("i2v_first_720p" in note for note in result["notes"])


def test_a_terminal_gets_a_progress_line_updated_in_place(cli: Cli) -> None:
    """stderr on a terminal: a \\r-updated line with the elapsed time and status (the terminal's
    own control sequences, such as erase-line, aside)."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "videogen", "generate", PROMPT, "--json"],
            env={**cli.env, "VIDEOGEN_SANDBOX_JOB_SECONDS": "2"},
            cwd=cli.cwd,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=100,
            check=False,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    terminal = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())

    assert process.returncode == 0, terminal
    assert json.loads(process.stdout)["status"] == "completed"  # stdout stays clean
    assert re.search(r"\r\w+ — \d+ s elapsed", terminal)
    assert terminal.count("\r") >= 2


def test_output_never_overwrites_an_existing_file(cli: Cli) -> None:
    """A second video for the same --output file gets a numbered name; the first is kept."""
    target = cli.cwd / "boat.mp4"
    target.write_bytes(b"precious")
    done = cli.run("generate", PROMPT, "--output", "boat.mp4", "--json")

    assert done.returncode == 0, done.stderr
    saved = Path(json.loads(done.stdout)["local_path"])
    assert saved != target and saved.parent == cli.cwd and saved.is_file()
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("args", "provider", "mode"),
    [
        (
            ["--scene", "celebrity", "--images", "https://example.com/me.jpg"],
            "jenius",
            "scene:celebrity",
        ),
        (
            [
                "a talking fox",
                "--image",
                "https://example.com/fox.png",
                "--audio",
                "https://example.com/hello.mp3",
            ],
            "volcengine",
            "omnihuman",
        ),
        (
            [
                "a paper boat",
                "--provider",
                "tokenops",
                "--mode",
                "i2v_first_720p",
                "--image",
                "https://example.com/boat.png",
            ],
            "tokenops",
            "i2v_first_720p",
        ),
    ],
)
def test_scenes_portraits_and_other_providers_run_through_the_same_command(
    cli: Cli, args: list[str], provider: str, mode: str
) -> None:
    """A scene picks Jenius on its own; --provider picks the API; each saves a video."""
    done = cli.run("generate", *args, "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["provider"], result["mode"], result["status"]) == (provider, mode, "completed")
    assert Path(result["local_path"]).is_file()
