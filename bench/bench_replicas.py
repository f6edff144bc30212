"""Replicas on one PostgreSQL against the SQLite single process: N tasks through MCP over HTTP.

Three cases, each run ``--runs`` times in turn (case after case, run after run, so a change in
the machine's load touches every case alike); the figures are medians:

- ``sqlite``: one ``videogen serve --http`` on a SQLite data folder (the embedded default: the
  baseline);
- ``postgres x1``: one replica on a PostgreSQL ledger (``VIDEOGEN_DATABASE_URL``);
- ``postgres x3``: three replicas on one PostgreSQL database, each with its own
  ``VIDEOGEN_DATA_DIR``, one output folder shared (one machine).

Each case run has a fresh sandbox in a child process (jobs of ``--job-seconds``, no concurrency
limit), fresh folders and, on PostgreSQL, a fresh database in the one cluster this script
starts from the system's binaries (``tests/postgres.py``) and removes at the end. The replicas
answer every call at once with the pending task (``VIDEOGEN_WAIT_SECONDS=0``) and keep working
in the background. This process is the client: N distinct ``generate_video`` calls (one prompt,
distinct seeds, so the sandbox renders one video for all) over MCP streamable HTTP with a bearer
token, round-robin over the replicas, at most ``--concurrency`` at once. Then it reads the ledger
every 0.1 s (one ``count``) until every task is ``completed``.

Figures per case run:

- ``all_saved_s``: first call sent -> the ledger says all N are completed (saved and probed);
  ``submit_s``: first call sent -> last answer received;
- ``replica_cpu_ms_per_task``: user+system CPU of the replica processes, from when they are up
  (health answered, engine started) to just before they are stopped, per task;
  ``postgres_cpu_ms_per_task``: the same window for every process of the cluster (the
  postmaster, its live children and the children it reaped); ``server_cpu_ms_per_task``: both;
- ``replica_peak_rss_mb``: the highest RSS of each replica (sampled every 0.1 s);
- ``completed``, ``files`` (MP4s in the output folder), ``submits`` (submit requests in the
  sandbox's log, which the sandbox child reports when it exits: each task is submitted once, so
  this should be N), ``call_errors`` (calls that answered an error).

The PostgreSQL server runs with ``fsync=on`` and ``synchronous_commit=off``: a commit is not
waited for on disk, as SQLite's WAL with ``synchronous=NORMAL`` (the product's setting) does not
sync a commit either; both stay consistent after a crash. The client and the ledger watcher run
in this process and share the machine's CPUs with the servers; their CPU is reported
(``client_cpu_s``) but not counted in the per-task figures.

Run: ``uv run --group dev python bench/bench_replicas.py [--tasks 1000] [--job-seconds 5]
[--runs 3] [--concurrency 16] [--poll-interval S] [--cases sqlite,pg1,pg3]``; a smoke run:
``--tasks 30 --job-seconds 1 --runs 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any, cast

import anyio
import httpx2
import psutil
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-replicas-token".ljust(40, "x")
PROMPT = "a paper boat on a pond"
#: PostgreSQL's settings here (over ``tests/postgres.py``'s, which are for tests): durable on
#: disk, commits not waited for (as SQLite's ``synchronous=NORMAL``), the default buffers.
POSTGRES_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "synchronous_commit": "off",
    "shared_buffers": "128MB",
}
#: How often the ledger is read while waiting for the tasks to be saved.
WATCH_SECONDS = 0.1

SANDBOX_CHILD = """
import json, sys
from videogen.sandbox import SandboxOptions, serve_in_thread
with serve_in_thread(SandboxOptions(job_seconds=float(sys.argv[1]))) as sandbox:
    print(json.dumps({"env": sandbox.env()}), flush=True)
    sys.stdin.read()
    submits = sandbox.log.select(operation="submit")
    print(json.dumps({
        "submits": len(submits),
        "submitted_tasks": len({e.task_id for e in submits if e.task_id}),
        "polls": sandbox.log.count(operation="poll"),
        "downloads": sandbox.log.count(operation="download"),
    }), flush=True)
"""


@dataclass(frozen=True)
class Case:
    name: str
    key: str
    replicas: int
    postgres: bool


CASES = (
    Case("sqlite x1", "sqlite", 1, postgres=False),
    Case("postgres x1", "pg1", 1, postgres=True),
    Case("postgres x3", "pg3", 3, postgres=True),
)


# -- the parts: sandbox, PostgreSQL, replicas ----------------------------------------------------


class Sandbox:
    """The sandbox in a child process: ``env`` points at it; ``report`` is its request counts,
    read when it exits (after every replica stopped)."""

    def __init__(self, job_seconds: float) -> None:
        self.env: dict[str, str] = {}
        self.report: dict[str, int] = {}
        self._child = subprocess.Popen(
            [sys.executable, "-c", SANDBOX_CHILD, str(job_seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C reaches this script, which stops it in order
        )

    def __enter__(self) -> Sandbox:
        try:
            assert self._child.stdout is not None
            self.env = dict(json.loads(self._child.stdout.readline())["env"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.close()
            line = child.stdout.readline()
            if line.strip():
                self.report = json.loads(line)
            child.wait(timeout=15)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()


def postgres_helpers() -> ModuleType:
    """``tests/postgres.py``: the cluster the tests start, started here the same way."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    return importlib.import_module("postgres")


@contextmanager
def postgres_cluster() -> Iterator[Any]:
    """One PostgreSQL for the whole run, stopped and removed at the end."""
    helpers = postgres_helpers()
    binaries = helpers.server_binaries()
    if binaries is None:
        sys.exit(f"PostgreSQL server binaries not found: {helpers.INSTALL_HINT}")
    cluster = helpers.start_cluster(binaries, settings=POSTGRES_SETTINGS)
    try:
        yield cluster
    finally:
        cluster.stop()


def postgres_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def cluster_cpu(postmaster: psutil.Process) -> float:
    """CPU seconds of the cluster so far: the postmaster, the children it reaped (backends of
    closed connections) and its live children."""
    times = postmaster.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in postmaster.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return float(total)


def postmaster_of(cluster: Any) -> psutil.Process:
    pid = int((Path(cluster.data) / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    ps: psutil.Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)


@contextmanager
def replicas_running(envs: list[dict[str, str]], folder: Path) -> Iterator[list[Replica]]:
    """One ``videogen serve --http`` per environment, each stopped (SIGTERM, then SIGKILL after
    30 s) at the end; their stderr goes to files in ``folder``."""
    started: list[Replica] = []
    logs: list[IO[bytes]] = []
    try:
        for n, env in enumerate(envs):
            port = free_port()
            log = folder / f"replica{n}.log"
            logs.append(log.open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "videogen", "serve", "--http", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logs[-1],
                start_new_session=True,
            )
            started.append(Replica(port, process, log, psutil.Process(process.pid)))
        for replica in started:
            wait_healthy(replica)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
        for file in logs:
            file.close()


def wait_healthy(replica: Replica, within: float = 60) -> None:
    """Until ``/healthz`` answers 200: the replica listens, its engine started, its ledger
    answers."""
    deadline = time.monotonic() + within
    with httpx2.Client(timeout=5) as http:
        while time.monotonic() < deadline:
            if replica.process.poll() is not None:
                raise RuntimeError(f"a replica exited at start:\n{tail(replica.log)}")
            with contextlib.suppress(httpx2.HTTPError):
                if http.get(f"http://127.0.0.1:{replica.port}/healthz").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"a replica was not healthy after {within:g} s:\n{tail(replica.log)}")


def tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.is_file() else ""


class PeakRss:
    """The highest RSS of each process, sampled every 0.1 s in a thread."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.peaks = [0] * len(processes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for index, process in enumerate(self.processes):
            with contextlib.suppress(psutil.NoSuchProcess):
                self.peaks[index] = max(self.peaks[index], process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> PeakRss:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# -- the ledger, read from outside ---------------------------------------------------------------


class LedgerCounts:
    """How many tasks the ledger holds in each status (one query per call), read from outside
    the replicas: the SQLite file or the PostgreSQL database."""

    QUERY = "SELECT status, count(*) FROM tasks GROUP BY status"

    def __init__(self, data_dir: Path, url: str | None) -> None:
        if url is not None:
            import psycopg

            self._conn: Any = psycopg.connect(url, autocommit=True)
        else:
            path = data_dir / "tasks.sqlite3"
            self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False)

    def __call__(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self._conn.execute(self.QUERY).fetchall()}

    def close(self) -> None:
        self._conn.close()


async def until_saved(count: LedgerCounts, tasks: int, within: float) -> dict[str, int]:
    """Read the ledger every ``WATCH_SECONDS`` until all ``tasks`` are completed, or every
    task recorded is finished some other way, or ``within`` seconds passed; the last statuses
    read."""
    terminal = {"completed", "failed", "expired", "unknown"}
    statuses: dict[str, int] = {}
    with anyio.move_on_after(within):
        while True:
            statuses = await anyio.to_thread.run_sync(count)
            done = sum(n for s, n in statuses.items() if s in terminal)
            if statuses.get("completed", 0) >= tasks or sum(statuses.values()) == done >= tasks:
                break
            await anyio.sleep(WATCH_SECONDS)
    return statuses


# -- the client ----------------------------------------------------------------------------------


@dataclass
class Calls:
    """What the calls answered."""

    answered: int = 0
    errors: int = 0
    first_error: str = ""
    statuses: dict[str, int] | None = None


async def send_calls(replicas: list[Replica], tasks: int, concurrency: int) -> Calls:
    """``tasks`` distinct generate_video calls, call i to replica i mod n, at most
    ``concurrency`` at once; each worker keeps one MCP client per replica."""
    calls = Calls(statuses={})
    numbers = iter(range(tasks))

    async def worker() -> None:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
            )
            clients: dict[int, Client] = {}
            for n in numbers:
                index = n % len(replicas)
                if index not in clients:
                    transport = streamable_http_client(replicas[index].url, http_client=http)
                    clients[index] = await stack.enter_async_context(Client(transport))
                arguments = {"prompt": PROMPT, "provider": "volcengine", "seed": n}
                result = await clients[index].call_tool("generate_video", arguments)
                calls.answered += 1
                if result.is_error:
                    calls.errors += 1
                    calls.first_error = calls.first_error or str(result.content)[:300]
                    continue
                data = result.structured_content or {}
                status = str(data.get("status"))
                assert calls.statuses is not None
                calls.statuses[status] = calls.statuses.get(status, 0) + 1

    async with anyio.create_task_group() as group:
        for _ in range(min(concurrency, tasks)):
            group.start_soon(worker)
    return calls


# -- one case, once ------------------------------------------------------------------------------


def replica_env(
    sandbox: dict[str, str], root: Path, n: int, url: str | None, poll_interval: float | None
) -> dict[str, str]:
    """A replica's whole environment: PATH and the settings (nothing else is inherited, so no
    real provider key reaches it)."""
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env = {
        **inherited,
        **sandbox,
        "HOME": str(root / "home"),
        "VIDEOGEN_OUTPUT_DIR": str(root / "videos"),
        "VIDEOGEN_DATA_DIR": str(root / (f"replica{n}" if url else "") / "data"),
        "VIDEOGEN_WAIT_SECONDS": "0",
        "VIDEOGEN_HTTP_TOKEN": TOKEN,
        "VIDEOGEN_LOG_LEVEL": "WARNING",
    }
    if url is not None:
        env["VIDEOGEN_DATABASE_URL"] = url
    if poll_interval is not None:
        env["JIMENG_VIDEO_POLL_INTERVAL"] = str(poll_interval)
    return env


async def run_case(case: Case, cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    url = cluster.new_database() if case.postgres else None
    with tempfile.TemporaryDirectory(prefix="videogen-bench-") as tmp:
        root = Path(tmp)
        with ExitStack() as stack:
            sandbox = stack.enter_context(Sandbox(args.job_seconds))
            envs = [
                replica_env(sandbox.env, root, n, url, args.poll_interval)
                for n in range(case.replicas)
            ]
            replicas = stack.enter_context(replicas_running(envs, root))
            count = LedgerCounts(root / "data", url)
            stack.callback(count.close)
            postmaster = postmaster_of(cluster) if case.postgres else None
            me = psutil.Process()

            replica_cpu_0 = [r.cpu() for r in replicas]
            pg_cpu_0 = cluster_cpu(postmaster) if postmaster else 0.0
            my_cpu_0 = sum(me.cpu_times()[:2])
            with PeakRss([r.ps for r in replicas]) as rss:
                started = time.perf_counter()
                calls = await send_calls(replicas, args.tasks, args.concurrency)
                submit_s = time.perf_counter() - started
                statuses = await until_saved(count, args.tasks, args.timeout)
                saved_s = time.perf_counter() - started
                replica_cpu = [r.cpu() - c for r, c in zip(replicas, replica_cpu_0, strict=True)]
                pg_cpu = cluster_cpu(postmaster) - pg_cpu_0 if postmaster else 0.0
                my_cpu = sum(me.cpu_times()[:2]) - my_cpu_0
            files = len(list((root / "videos").glob("*.mp4")))
        # the replicas stopped, then the sandbox, which reported its log
        report = sandbox.report
        completed = statuses.get("completed", 0)
        figures: dict[str, Any] = {
            "case": case.name,
            "replicas": case.replicas,
            "tasks": args.tasks,
            "all_saved_s": round(saved_s, 2),
            "submit_s": round(submit_s, 2),
            "replica_cpu_s": [round(c, 2) for c in replica_cpu],
            "replica_cpu_ms_per_task": round(sum(replica_cpu) * 1000 / args.tasks, 2),
            "postgres_cpu_ms_per_task": round(pg_cpu * 1000 / args.tasks, 2),
            "server_cpu_ms_per_task": round((sum(replica_cpu) + pg_cpu) * 1000 / args.tasks, 2),
            "client_cpu_s": round(my_cpu, 2),
            "replica_peak_rss_mb": [round(p / 1e6, 1) for p in rss.peaks],
            "completed": completed,
            "statuses": statuses,
            "files": files,
            "submits": report.get("submits", -1),
            "submitted_tasks": report.get("submitted_tasks", -1),
            "polls": report.get("polls", -1),
            "downloads": report.get("downloads", -1),
            "answers": calls.statuses,
            "call_errors": calls.errors,
            "replica_exit_codes": [r.process.returncode for r in replicas],
        }
        if calls.errors:
            figures["first_error"] = calls.first_error
        if not saved_once(figures) or any(figures["replica_exit_codes"]):
            figures["replica_logs"] = [tail(r.log) for r in replicas]
    return figures


def saved_once(figures: dict[str, Any]) -> bool:
    """Every task completed, one file and one submit each, no call answered an error."""
    wanted = figures["tasks"]
    return bool(
        figures["completed"] == figures["files"] == figures["submits"] == wanted
        and figures["submitted_tasks"] == wanted
        and figures["call_errors"] == 0
    )


# -- the whole run -------------------------------------------------------------------------------


def summary(case: Case, runs: list[dict[str, Any]]) -> dict[str, object]:
    def median(key: str) -> float:
        return round(statistics.median(float(r[key]) for r in runs), 2)

    return {
        "case": case.name,
        "replicas": case.replicas,
        "runs": len(runs),
        "all_saved_s": median("all_saved_s"),
        "all_saved_runs_s": [r["all_saved_s"] for r in runs],
        "submit_s": median("submit_s"),
        "replica_cpu_ms_per_task": median("replica_cpu_ms_per_task"),
        "postgres_cpu_ms_per_task": median("postgres_cpu_ms_per_task"),
        "server_cpu_ms_per_task": median("server_cpu_ms_per_task"),
        "client_cpu_s": median("client_cpu_s"),
        "replica_peak_rss_mb_max": max(max(r["replica_peak_rss_mb"]) for r in runs),
        "completed_min": min(int(r["completed"]) for r in runs),
        "files_min": min(int(r["files"]) for r in runs),
        "submits_max": max(int(r["submits"]) for r in runs),
        "call_errors_max": max(int(r["call_errors"]) for r in runs),
        "every_task_saved_once": all(saved_once(r) for r in runs),
    }


def ratios(summaries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each PostgreSQL case against the SQLite single process (figure / baseline)."""
    base = next((s for s in summaries if s["case"] == "sqlite x1"), None)
    if base is None:
        return {}
    keys = ("all_saved_s", "submit_s", "replica_cpu_ms_per_task", "server_cpu_ms_per_task")
    return {
        s["case"]: {
            f"{key}_vs_sqlite": round(float(s[key]) / float(base[key]), 2)
            for key in keys
            if float(base[key]) > 0
        }
        for s in summaries
        if s is not base
    }


def table(summaries: list[dict[str, Any]], ratio: dict[str, dict[str, float]]) -> str:
    head = (
        f"{'case':<12} {'all saved':>10} {'submits in':>11} {'replica CPU':>12} "
        f"{'PG CPU':>9} {'server CPU':>11} {'x sqlite':>9} {'peak RSS':>9} {'saved once':>10}"
    )
    lines = [head, f"{'':<12} {'s':>10} {'s':>11} {'ms/task':>12} {'ms/task':>9} "
             f"{'ms/task':>11} {'wall/CPU':>9} {'MB':>9}"]  # fmt: skip
    for s in summaries:
        r = ratio.get(s["case"], {})
        versus = (
            f"{r['all_saved_s_vs_sqlite']:.2f}/{r['server_cpu_ms_per_task_vs_sqlite']:.2f}"
            if r
            else "-"
        )
        lines.append(
            f"{s['case']:<12} {s['all_saved_s']:>10.2f} {s['submit_s']:>11.2f} "
            f"{s['replica_cpu_ms_per_task']:>12.2f} {s['postgres_cpu_ms_per_task']:>9.2f} "
            f"{s['server_cpu_ms_per_task']:>11.2f} {versus:>9} "
            f"{s['replica_peak_rss_mb_max']:>9.1f} "
            f"{'yes' if s['every_task_saved_once'] else 'NO':>10}"
        )
    return "\n".join(lines)


async def bench(args: argparse.Namespace, cases: list[Case]) -> dict[str, object]:
    load_before = os.getloadavg()
    with postgres_cluster() as cluster:
        version = postgres_version(cluster.url())
        results: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cases}
        for n, case in itertools.product(range(args.runs), cases):
            figures = await run_case(case, cluster, args)
            results[case.name].append(figures)
            print(f"{case.name}, run {n + 1}: " + json.dumps(figures), flush=True)
    summaries = [summary(c, results[c.name]) for c in cases]
    ratio = ratios(summaries)
    return {
        "bench": "replicas",
        "tasks": args.tasks,
        "job_seconds": args.job_seconds,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "poll_interval": args.poll_interval,
        "postgres": version,
        "postgres_settings": POSTGRES_SETTINGS,
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cases": summaries,
        "ratios_vs_sqlite": ratio,
        "table": table(summaries, ratio),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight at most")
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="seconds (default: the product's)"
    )
    parser.add_argument(
        "--cases", default="sqlite,pg1,pg3", help="comma-separated: sqlite, pg1, pg3"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="longest wait for the tasks of one case run"
    )
    args = parser.parse_args()
    wanted = {c for c in args.cases.split(",") if c}
    cases = [c for c in CASES if c.key in wanted]
    if not cases or wanted - {c.key for c in CASES}:
        parser.error(f"--cases: choose among {', '.join(c.key for c in CASES)}")
    # A SIGTERM stops the run as Ctrl-C does: every part started here is stopped and removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = anyio.run(bench, args, cases)
    except KeyboardInterrupt:
        sys.exit("interrupted: every replica, sandbox and the PostgreSQL cluster were stopped")
    print(cast(str, result.pop("table")))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
