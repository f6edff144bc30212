"""Issue 7, secrets: no credential reaches a tool result, a resource, CLI output, a log line
(DEBUG) or the ledger file — on success, on provider errors and with keys the provider rejects.

The sandbox accepts only its own (obviously fake) keys, so the successful runs scan for those;
the session token (signed and sent, ignored by the sandbox) and the rejected keys are values
unique to this test run. Also scanned: ``Authorization`` headers and V4 credential strings.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from videogen.sandbox import (
    SANDBOX_JENIUS_KEY,
    SANDBOX_SECRET_KEY,
    SANDBOX_TOKENOPS_KEY,
    SandboxOptions,
    serve,
)

from .evidence_helpers import CLI_ARGS, REQUESTS, clean_env, settings_env

pytestmark = pytest.mark.anyio

SESSION_TOKEN = "STS-evidence-" + secrets.token_hex(16)
WRONG = {
    "VOLC_SECRETKEY": "volc-evidence-" + secrets.token_hex(16),
    "TOKENOPS_API_KEY": "sk-evidence-" + secrets.token_hex(16),
    "JENIUS_API_KEY": "jenius-evidence-" + secrets.token_hex(16),
}
MARKERS = ("Authorization", "HMAC-SHA256 Credential=", "Bearer ", "X-Security-Token")


def secret_values() -> list[str]:
    return [SANDBOX_SECRET_KEY, SANDBOX_TOKENOPS_KEY, SANDBOX_JENIUS_KEY, SESSION_TOKEN,
            *WRONG.values()]  # fmt: skip


def leaks(where: str, blob: str | bytes) -> list[str]:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    found = [f"{where}: secret {value[:12]}..." for value in secret_values() if value in text]
    found += [f"{where}: {marker!r}" for marker in MARKERS if marker.lower() in text.lower()]
    return found


def ledger_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("*")) if p.is_file())


async def test_no_secret_reaches_results_resources_logs_or_the_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mcp import Client
    from mcp_types import TextContent

    from videogen.config import Settings
    from videogen.mcp_server import create_server

    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    async with serve(SandboxOptions(job_seconds=1.0)) as sandbox:
        good = {**settings_env(tmp_path), **sandbox.env(), "VOLC_SESSIONTOKEN": SESSION_TOKEN}
        bad = {**good, **WRONG, "VIDEOGEN_DATA_DIR": str(tmp_path / "data-bad")}
        for env in (good, bad):
            settings = Settings.from_env({**env, "VIDEOGEN_LOG_LEVEL": "DEBUG"})
            async with Client(create_server(settings, warm_up_after=None)) as client:
                for args in REQUESTS.values():
                    result = await client.call_tool("generate_video", {**args, "wait_seconds": 30})
                    seen.append(repr(result.structured_content))
                    seen += [c.text for c in result.content if isinstance(c, TextContent)]
                sandbox.set_faults("reject_text:1", "fail_after_generating:1")
                for args in (REQUESTS["volcengine"], {**REQUESTS["tokenops"], "new": True}):
                    result = await client.call_tool("generate_video", {**args, "wait_seconds": 30})
                    seen += [c.text for c in result.content if isinstance(c, TextContent)]
                sandbox.set_faults()
                listed = await client.call_tool("list_tasks", {"limit": 100})
                seen.append(repr(listed.structured_content))
                assert isinstance(listed.structured_content, dict)
                for task in listed.structured_content["tasks"]:
                    checked = await client.call_tool("check_task", {"task_id": task["task_id"]})
                    seen.append(repr(checked.structured_content))
                    resource = await client.read_resource(f"videogen://tasks/{task['task_id']}")
                    seen += [getattr(c, "text", "") for c in resource.contents]
        detected = await _detect_with_wrong_keys(tmp_path, sandbox.env())
        seen.append(detected)
        submits = sandbox.log.count(operation="submit")
    assert submits >= 4, "the good-key runs did not reach the provider"
    assert any("rejected" in s.lower() or "credential" in s.lower() for s in seen)

    found = [leak for i, text in enumerate(seen) for leak in leaks(f"result {i}", text)]
    found += leaks("log", caplog.text)
    for folder in ("data", "data-bad"):
        found += leaks(f"ledger {folder}", ledger_bytes(tmp_path / folder))
    assert caplog.text, "nothing was logged at DEBUG: the log scan would prove nothing"
    assert not found, found


async def _detect_with_wrong_keys(tmp_path: Path, env: dict[str, str]) -> str:
    from mcp import Client
    from mcp_types import TextContent

    from videogen.config import Settings
    from videogen.mcp_server import create_server

    settings = Settings.from_env({**settings_env(tmp_path / "detect"), **env, **WRONG})
    async with Client(create_server(settings, warm_up_after=None)) as client:
        result = await client.call_tool(
            "detect_subjects", {"image": f"{env['JIMENG_VIDEO_API_URL']}/assets/image/x.png"}
        )
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_no_secret_reaches_cli_output_at_debug_or_its_ledger(tmp_path: Path) -> None:
    """stdout + stderr of ``videogen`` at VIDEOGEN_LOG_LEVEL=DEBUG, good keys and wrong keys."""
    outputs: list[str] = []
    async with serve(SandboxOptions(job_seconds=1.0)) as sandbox:
        base = clean_env(
            tmp_path, **sandbox.env(), VOLC_SESSIONTOKEN=SESSION_TOKEN, VIDEOGEN_LOG_LEVEL="DEBUG"
        )
        runs = [
            (base, ["generate", *CLI_ARGS["volcengine"]]),
            (base, ["generate", *CLI_ARGS["tokenops"], "--json"]),
            ({**base, **WRONG}, ["generate", *CLI_ARGS["volcengine"], "--new"]),
            ({**base, **WRONG}, ["generate", *CLI_ARGS["jenius"]]),
        ]
        codes = []
        for env, args in runs:
            done = await _run(env, args)
            codes.append(done.returncode)
            outputs.append(done.stdout + done.stderr)
    assert codes[:2] == [0, 0] and all(code != 0 for code in codes[2:]), codes
    found = [leak for i, text in enumerate(outputs) for leak in leaks(f"run {i}", text)]
    found += leaks("ledger", ledger_bytes(tmp_path / "data"))
    assert not found, found


async def _run(env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    import anyio

    done = await anyio.run_process([sys.executable, "-m", "videogen", *args], env=env, check=False)
    return subprocess.CompletedProcess(
        args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode("utf-8")
    )
