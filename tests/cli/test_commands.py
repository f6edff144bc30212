"""The other subcommands, --help, the skill, seed 002's script and the MCP bundle manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from skills_ref.validator import validate

from videogen import catalog
from videogen.cli import EXIT_CODES_HELP, install_skill, skill_source
from videogen.config import CREDENTIAL_VARIABLES, SANDBOX_NOTICE, VARIABLES
from videogen.errors import EXIT_CONFIG, EXIT_PENDING, EXIT_USAGE, OutputError

from .conftest import Cli, png

if TYPE_CHECKING:
    from videogen.sandbox import RunningSandbox

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "skill" / "scripts" / "generate_video.py"


def test_help_lists_every_command_every_variable_and_the_exit_codes(cli: Cli) -> None:
    done = cli.run("--help")

    assert done.returncode == 0
    for command in ("generate", "check", "tasks", "scenes", "detect", "serve", "sandbox", "skill"):
        assert re.search(rf"^\s+{command}\s", done.stdout, flags=re.MULTILINE), command
    for name in VARIABLES:
        assert name in done.stdout
    assert EXIT_CODES_HELP in done.stdout


def test_generate_help_offers_seed_002s_options_and_the_new_ones(cli: Cli) -> None:
    done = cli.run("generate", "--help")

    assert done.returncode == 0
    for option in (
        "--mode",
        "--duration",
        "--fps",
        "--image",
        "--tail-image",
        "--seed",
        "--output",
        "--json",
        "--provider",
        "--scene",
        "--images",
        "--audio",
        "--mask",
        "--aspect-ratio",
        "--camera",
        "--camera-strength",
        "--resolution",
        "--fast",
        "--no-wait",
        "--wait",
        "--new",
        "--sandbox",
    ):
        assert option in done.stdout, option


def test_scenes_lists_the_scenes_and_camera_moves_as_text_and_json(cli: Cli) -> None:
    text = cli.run("scenes")
    data = json.loads(cli.run("scenes", "--json").stdout)

    assert text.returncode == 0
    for name in catalog.SCENES:
        assert f"- {name}:" in text.stdout
    assert [s["name"] for s in data["scenes"]] == list(catalog.SCENES)
    assert data["camera_moves"] == list(catalog.CAMERA_MOVES)


def test_detect_reports_the_subjects_masks_largest_first(cli: Cli) -> None:
    """detect against the embedded sandbox: the notice, the verdict and mask URLs."""
    portrait = "https://example.com/portrait.png"
    text = cli.run("detect", portrait, "--wait", "10")
    report = json.loads(cli.run("detect", portrait, "--wait", "10", "--json").stdout)

    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == SANDBOX_NOTICE
    assert "**Subject detection:**" in text.stdout
    assert report["provider"] == "volcengine" and isinstance(report["contains_subject"], bool)
    masks = re.findall(r"^- Mask \d+ \(largest first\): (http\S+)$", text.stdout, re.MULTILINE)
    assert masks and len(masks) == len(report["mask_urls"])  # two runs, two sandboxes


def test_sandbox_subcommand_is_the_sandboxs_own_command_line(cli: Cli) -> None:
    done = cli.run("sandbox", "--help")

    assert done.returncode == 0
    assert "--job-seconds" in done.stdout and "--fault" in done.stdout
    assert "rate_limit:<operation>" in done.stdout
    assert "``" not in done.stdout and "::" not in done.stdout  # plain text, not reST


def test_serve_over_http_on_a_public_address_refuses_to_start_without_a_token(cli: Cli) -> None:
    done = cli.run("serve", "--http", "--host", "0.0.0.0", "--port", "0", timeout=30)

    assert done.returncode != 0
    assert "VIDEOGEN_HTTP_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_seed_002s_script_prints_the_seeds_usage(cli: Cli) -> None:
    done = cli.script(SCRIPT, "--help")

    assert done.returncode == 0
    assert done.stdout.startswith("scripts/generate_video.py PROMPT [OPTIONS]\n")
    for line in (
        "  --mode MODE           Generation mode (default: t2v_720p)",
        "  --duration SECS       Video duration: 4, 5, 6, 8, 10 (default: 5)",
        "  --fps FPS             Frames per second: 24, 25, 30 (default: 24)",
        "  --tail-image URL      Tail image URL for first & last frame mode",
        "  --json                Output raw JSON response",
        "  JIMENG_VIDEO_MAX_POLL_ATTEMPTS    Max polling attempts (default: 120)",
    ):
        assert line in done.stdout.splitlines()


def test_seed_002s_script_without_volcengine_keys_never_bills_another_provider(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    """Only TOKENOPS_API_KEY set: the script keeps its promise (sandbox) unless told otherwise."""
    keyed, provider = standalone
    cli = keyed.with_env(VOLC_ACCESSKEY=None, VOLC_SECRETKEY=None, JENIUS_API_KEY=None)

    offline = cli.script(SCRIPT, "a paper boat", "--no-wait")
    assert provider.log.count("tokenops", "submit") == 0
    chosen = cli.script(SCRIPT, "a paper boat", "--provider", "tokenops", "--no-wait", "--new")

    assert offline.returncode == chosen.returncode == EXIT_PENDING, offline.stderr + chosen.stderr
    assert offline.stdout.splitlines()[0] == SANDBOX_NOTICE
    assert SANDBOX_NOTICE not in chosen.stdout
    assert provider.log.count("tokenops", "submit") == 1


def test_seed_002s_script_saves_a_video_and_prints_the_block(cli: Cli) -> None:
    done = cli.script(SCRIPT, "a paper boat", "--duration", "5", "--fps", "24", "--seed", "7")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [SANDBOX_NOTICE, "**Generated Video:**"]
    saved = re.search(r"^- Save Path: (.+)$", done.stdout, flags=re.MULTILINE)
    assert saved and Path(saved.group(1)).is_file()


def test_skill_install_copies_a_valid_skill_into_a_folder_named_after_it(
    cli: Cli, tmp_path: Path
) -> None:
    skills = tmp_path / "skills"
    done = cli.run("skill", "install", "--dir", str(skills))

    assert done.returncode == 0, done.stderr
    installed = skills / "videogen"
    assert validate(installed) == []
    assert (installed / "scripts" / "generate_video.py").is_file()
    for name in ("volcengine", "tokenops", "jenius"):
        assert (installed / "references" / f"{name}.md").is_file()


def test_skill_install_keeps_an_identical_copy_and_refuses_a_different_one(tmp_path: Path) -> None:
    dest = install_skill(tmp_path)
    assert install_skill(tmp_path) == dest  # identical: nothing to do

    (dest / "SKILL.md").write_text("edited by hand\n")
    with pytest.raises(OutputError, match="--force"):
        install_skill(tmp_path)
    assert (dest / "SKILL.md").read_text() == "edited by hand\n"

    install_skill(tmp_path, force=True)
    assert (dest / "SKILL.md").read_bytes() == (skill_source() / "SKILL.md").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["videogen"]  # no staging left behind


def test_skill_install_refusal_exits_3(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "videogen").mkdir()
    (tmp_path / "videogen" / "SKILL.md").write_text("someone else's\n")

    done = cli.run("skill", "install", "--dir", str(tmp_path))

    assert done.returncode == EXIT_CONFIG and "--force" in done.stderr


def test_the_bundle_manifest_maps_its_settings_to_the_programs_variables() -> None:
    manifest = json.loads((REPO / "manifest.json").read_text())

    assert manifest["manifest_version"] == "0.4" and manifest["name"] == "jimeng-videogen-mcp"
    server = manifest["server"]
    assert server["type"] == "uv" and (REPO / server["entry_point"]).is_file()
    assert server["mcp_config"]["args"][-1] == "jimeng-videogen-mcp"
    user_config = manifest["user_config"]
    assert set(user_config) <= set(VARIABLES)
    assert server["mcp_config"]["env"] == {k: f"${{user_config.{k}}}" for k in user_config}
    secrets = {v for names in CREDENTIAL_VARIABLES.values() for v in names}
    assert secrets <= set(user_config)
    for name, option in user_config.items():
        assert option.get("sensitive", False) is (name in secrets), name
    # macOS has no ~/Videos: leave the folder to the built-in, per-platform default.
    assert user_config["VIDEOGEN_OUTPUT_DIR"].get("default", "") == ""
    assert {t["name"] for t in manifest["tools"]} == {
        "generate_video",
        "check_task",
        "list_tasks",
        "list_scenes",
        "detect_subjects",
    }


def test_the_readme_opens_with_the_two_commands_and_documents_every_variable() -> None:
    readme = (REPO / "README.md").read_text()

    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines() == [
        'uv run videogen generate "a paper boat drifting on a pond"',
        "uv run --group dev pytest",
    ]
    for name, meaning in VARIABLES.items():
        assert f"| `{name}` | {meaning.replace('|', chr(92) + '|')} |" in readme, name
    # The Claude Desktop example works on every platform: no hard-coded ~/Videos folder.
    assert '/Videos/videogen"' not in readme and "Movies/videogen" in readme
    for line in EXIT_CODES_HELP.splitlines()[1:]:
        code, meaning = line.strip().split("  ", 1)
        assert f"| {code} | {meaning} |" in readme


def test_an_error_in_the_embedded_sandbox_is_one_line_without_a_traceback(
    cli: Cli, tmp_path: Path
) -> None:
    """A refused input ends with one `videogen: error:` line naming the fix, nothing else."""
    portrait = tmp_path / "portrait.png"
    portrait.write_bytes(png(400, 600))
    done = cli.run("detect", str(portrait))

    assert done.returncode == EXIT_USAGE
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("videogen: error: ")
    assert "URL" in done.stderr


@pytest.mark.anyio
async def test_serve_speaks_mcp_over_stdio_with_the_five_tools(cli: Cli) -> None:
    """``videogen serve`` is the stdio MCP server, the same one ``jimeng-videogen-mcp`` runs."""
    import sys

    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "videogen", "serve"], env=cli.env, cwd=cli.cwd
    )
    async with Client(params) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        scenes = await client.call_tool("list_scenes", {})

    assert names == {"generate_video", "check_task", "list_tasks", "list_scenes", "detect_subjects"}
    assert not scenes.is_error


def test_the_default_output_folder_is_movies_on_macos_and_videos_elsewhere() -> None:
    from videogen.config import default_output_dir

    home = Path("/home/u")
    assert default_output_dir(home, "darwin") == home / "Movies" / "videogen"
    assert default_output_dir(home, "linux") == home / "Videos" / "videogen"
    assert default_output_dir(home, "win32") == home / "Videos" / "videogen"
