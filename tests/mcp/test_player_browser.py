"""The MCP Apps player in a real browser, against the real server over streamable HTTP.

``videogen serve --http`` runs on loopback with the embedded sandbox (3 s jobs); ``node
ui/test/browser.mjs`` builds a small AppBridge host page, opens it in Debian's headless
Chromium through playwright-core and checks the running and finished states, the download and
display-mode requests, the sandbox notice, the fallback when a host refuses the video read, and
an unknown task. Screenshots land in ``tests/artifacts/``.

Needs node, /usr/bin/chromium and ``npm ci`` in ``ui/``; skipped with the reason when one is
missing, unless ``VIDEOGEN_REQUIRE_BROWSER=1`` (as ``.ci/apps`` sets), which makes it a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import child_env, free_port, stop, wait_for_port

ROOT = Path(__file__).parents[2]
UI = ROOT / "ui"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("VIDEOGEN_CHROMIUM", "/usr/bin/chromium")

EXPECTED_CHECKS = (
    "running state shows status, mode, provider and a moving elapsed time",
    "the view followed the task with check_task only (nothing billed)",
    "the <video> loads from a Blob URL and reports the probed duration",
    "under the specification's default CSP (no blob:) the video plays from a data: URL",
    "the poster is shown first",
    "the video plays and a frame grabbed from it is not blank",
    "the sandbox notice is visible",
    "Download reaches the host as ui/download-file with the MP4",
    "inline, the view asks for at most 500 px",
    "fullscreen and back go through ui/request-display-mode",
    "a host that refuses the video read gets poster, download and the save path",
    "the view follows the host's dark theme",
    "an unknown task shows the server's message in words",
)

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    for package in ("playwright-core", "vite", "@modelcontextprotocol/ext-apps"):
        if not (UI / "node_modules" / package).is_dir():
            return f"ui/node_modules lacks {package} (run `npm ci` in ui/)"
    return None


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """``videogen serve --http`` on a free loopback port, sandbox jobs of 3 s."""
    port = free_port()
    videogen = Path(sys.executable).with_name("videogen")
    process = subprocess.Popen(
        [str(videogen), "serve", "--http", "--host", "127.0.0.1", "--port", str(port)],
        env=child_env(tmp_path, VIDEOGEN_SANDBOX_JOB_SECONDS="3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.fixture
def browser_ready() -> None:
    missing = _missing()
    if missing is None:
        return
    if os.environ.get("VIDEOGEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test must run here, but {missing}")
    pytest.skip(missing)


@pytest.mark.timeout(300)
def test_the_player_follows_a_task_and_plays_the_saved_video_in_chromium(
    browser_ready: None, server_url: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report_file = ARTIFACTS / "browser-report.json"
    report_file.unlink(missing_ok=True)
    done = subprocess.run(
        ["node", "test/browser.mjs", "--server", server_url, "--artifacts", str(ARTIFACTS)],
        cwd=UI,
        env={**os.environ, "VIDEOGEN_CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert report_file.exists(), done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert done.returncode == 0 and not report["failures"], json.dumps(report, indent=1)[-6000:]
    passed = {c["name"] for c in report["checks"] if c["ok"]}
    assert set(EXPECTED_CHECKS) <= passed, set(EXPECTED_CHECKS) - passed
    for shot in ("player-running.png", "player-finished.png"):
        assert (ARTIFACTS / shot).stat().st_size > 5000, shot
    print(f"screenshots and report in {ARTIFACTS}")
