"""``python -m videogen.sandbox`` runs standalone, prints where it is, and stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx2

from videogen.sandbox import SANDBOX_JENIUS_KEY, main


def test_the_sandbox_command_prints_its_urls_and_env_and_serves_until_interrupted() -> None:
    """The first line names the URL; the env block has the fake keys; SIGINT ends it cleanly."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "videogen.sandbox",
            "--job-seconds",
            "0.5",
            "--fault",
            "rate_limit:poll:1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("videogen sandbox listening on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1].strip()
        lines = [process.stdout.readline() for _ in range(12)]
        assert any(f"JENIUS_API_KEY={SANDBOX_JENIUS_KEY}" in line for line in lines)
        poll_url = f"{url}/jenius/api/plugins/video/tasks/x"
        headers = {"Authorization": f"Bearer {SANDBOX_JENIUS_KEY}"}
        statuses = [httpx2.get(poll_url, headers=headers).status_code for _ in range(2)]
        assert statuses == [429, 404]  # the --fault applies, once
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()


def test_help_documents_the_fault_grammar(capsys: object) -> None:
    """--help lists every fault kind."""
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    for kind in (
        "rate_limit",
        "server_error",
        "drop",
        "truncate_download",
        "slow_download",
        "reject_text",
        "reject_image",
        "reject_copyright",
        "fail_after_generating",
        "expired_urls",
        "concurrency",
        "job_seconds",
    ):
        assert kind in out
