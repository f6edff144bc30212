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


# -- a provider that echoes the credentials it was sent (issue 14 item 11) --------------------

ECHO_KEY = "sk-echoed-" + secrets.token_hex(16)
ECHO_SECRET = "volc-echoed-" + secrets.token_hex(16)
ECHO_SESSION = "STS-echoed-" + secrets.token_hex(16)
ECHO_BEARER = "Bearer unconfigured-" + secrets.token_hex(8)


def _echo(words: str) -> str:
    """Provider text quoting every credential back, plus a bearer value it saw elsewhere."""
    return f"{words}: key {ECHO_KEY}, secret {ECHO_SECRET}, token {ECHO_SESSION}, {ECHO_BEARER}"


def _echo_leaks(where: str, blob: str | bytes) -> list[str]:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    values = (ECHO_KEY, ECHO_SECRET, ECHO_SESSION, ECHO_BEARER.split()[1])
    return [f"{where}: {value[:14]}..." for value in values if value in text]


@pytest.mark.parametrize("provider", ["volcengine", "tokenops", "jenius"])
async def test_a_provider_error_echoing_a_secret_is_raised_without_it(provider: str) -> None:
    """A 400 whose text quotes the key keeps the provider's words but never the credentials."""
    import httpx2

    from videogen import providers
    from videogen.config import ProviderEndpoint
    from videogen.errors import ProviderError
    from videogen.intake import build_request
    from videogen.providers.base import PreparedImage, PreparedInputs

    endpoint = ProviderEndpoint(
        "https://api.example", api_key=ECHO_KEY, access_key="AKechoed",
        secret_key=ECHO_SECRET, session_token=ECHO_SESSION,
    )  # fmt: skip
    answer = httpx2.Response(400, text=_echo("invalid request"))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda _: answer))
    request = build_request(**{"provider": provider, **REQUESTS[provider]}).request  # type: ignore[arg-type]
    inputs = PreparedInputs(images=tuple(PreparedImage(url=url) for url in request.images))
    async with client:
        adapter = providers.create(provider, endpoint, client)  # type: ignore[arg-type]
        with pytest.raises(ProviderError) as raised:
            await adapter.submit(request, inputs)
    error = raised.value
    assert "invalid request" in error.message, error.message  # the provider's words are kept
    shown = f"{error.message} {error.provider_message} {error!r} {error.args}"
    assert not _echo_leaks(provider, shown), shown


async def test_a_failed_poll_echoing_the_key_reaches_no_ledger_log_or_listing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TokenOps fails a task with a message quoting the key: the task's error in the ledger, the
    engine's log and ``videogen tasks --json`` keep the failure but not the key."""
    import anyio
    import httpx2

    from videogen.config import ProviderEndpoint, Settings
    from videogen.engine import Engine
    from videogen.intake import build_request
    from videogen.ledger import Ledger
    from videogen.providers.tokenops import TokenOpsProvider

    caplog.set_level(logging.DEBUG)
    task_json = {"id": "echo-1", "object": "video"}
    answers = [
        httpx2.Response(200, json={**task_json, "status": "in_queue"}),
        httpx2.Response(
            200, json={**task_json, "status": "failed", "error": _echo("the GPU caught fire")}
        ),
    ]
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda _: answers.pop(0)))
    endpoint = ProviderEndpoint("https://api.example/v1", api_key=ECHO_KEY)
    settings = Settings(
        volcengine=ProviderEndpoint("https://volc.example"), tokenops=endpoint,
        jenius=ProviderEndpoint("https://jenius.example"), provider="tokenops", sandbox=False,
        poll_interval=0.05, output_dir=tmp_path / "out", data_dir=tmp_path / "data",
    )  # fmt: skip
    adapter = TokenOpsProvider(endpoint, client)
    ledger = Ledger.in_dir(settings.data_dir)
    engine = Engine(settings, ledger, providers=lambda _: adapter, clients=lambda _: client)
    request = build_request(provider="tokenops", prompt="a paper boat").request
    async with client, anyio.create_task_group() as group:
        engine.attach(group, resume=False)
        task = await engine.generate(request, wait_seconds=10)
        group.cancel_scope.cancel()
    ledger.close()
    assert task.status == "failed" and task.error is not None
    assert "GPU caught fire" in task.error.message
    listing = await _run(clean_env(tmp_path), ["tasks", "--json"])
    assert "GPU caught fire" in listing.stdout, listing.stderr
    found = _echo_leaks("ledger", ledger_bytes(tmp_path / "data"))
    found += _echo_leaks("log", caplog.text) + _echo_leaks("tasks --json", listing.stdout)
    found += _echo_leaks("result", task.error.message)
    assert not found, found
