"""A process killed mid-task and restarted resumes it: one submit, one file.

The sandbox runs in this test process (``serve_in_thread``) and outlives the engine, which runs
in a subprocess that is SIGKILLed while the task is in flight; a second subprocess resumes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from videogen.ledger import Ledger
from videogen.models import Task
from videogen.sandbox import SandboxOptions, serve_in_thread

FIRST_RUN = """
import sys, anyio
from videogen.app import open_app
from videogen.config import Settings
from videogen.models import GenerationRequest

async def main() -> None:
    settings = Settings.from_env()
    request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="a paper boat")
    async with open_app(settings) as app:
        task = await app.engine.submit(request)
        print(task.id, flush=True)
        await app.engine.check(task.id, wait_seconds=600)  # killed long before this ends

anyio.run(main)
"""

SECOND_RUN = """
import sys, anyio
from videogen.app import open_app
from videogen.config import Settings

async def main() -> None:
    async with open_app(Settings.from_env()) as app:
        print(app.resumed, flush=True)
        task = await app.engine.check(sys.argv[1], wait_seconds=60)
        print(task.status, flush=True)

anyio.run(main)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_process_killed_mid_task_resumes_after_restart_with_one_submit_and_one_file(
    tmp_path: Path,
) -> None:
    with serve_in_thread(SandboxOptions(job_seconds=2.0)) as sandbox:
        env = {
            **os.environ,
            **sandbox.env(),
            "HOME": str(tmp_path),
            "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "out"),
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
            "JIMENG_VIDEO_POLL_INTERVAL": "0.25",
            "VIDEOGEN_SANDBOX": "0",
        }
        with subprocess.Popen(
            [sys.executable, "-c", FIRST_RUN], env=env, stdout=subprocess.PIPE, text=True
        ) as first:
            assert first.stdout is not None
            task_id = first.stdout.readline().strip()
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL

        killed = read_task(tmp_path, task_id)
        assert killed.status in ("queued", "running")
        assert killed.local_path is None

        second = subprocess.run(
            [sys.executable, "-c", SECOND_RUN, task_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert second.returncode == 0, second.stderr
        resumed, status = second.stdout.split()
        submits = sandbox.log.count(operation="submit")
    assert resumed == "1"
    assert status == "completed"
    assert submits == 1
    saved = read_task(tmp_path, task_id).local_path
    assert saved is not None
    assert [p.name for p in (tmp_path / "out").glob("*.mp4")] == [Path(saved).name]


def read_task(root: Path, task_id: str) -> Task:
    ledger = Ledger.in_dir(root / "data")
    try:
        return ledger.get(task_id)
    finally:
        ledger.close()
