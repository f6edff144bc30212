"""Every benchmark in one command, and the results page regenerated from that run.

    uv run --group dev python bench/run_all.py          # full: the benches' own defaults
                                                        # (long: 1 GiB download, 500 tasks,
                                                        # 1,000 tasks x 3 cases x 3 runs)
    uv run --group dev python bench/run_all.py --quick  # fewer repetitions, smaller sizes
    uv run --group dev python bench/run_all.py --only polls,startup --no-page

Each bench runs in its own process, in turn (never two at once: they would share the CPUs).
Its output is kept verbatim on the page; its figures are read from that output (each bench
prints its project figure next to a baseline measured in the same run). The fault matrix
(``tests/evidence``, ``-m slow``) runs too and its tables go on the page. Writes
``bench/README.md``: a table of figure, baseline, ratio, target, pass/fail, with the date and the
machine (nproc, Python). Nothing on the page is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "bench" / "README.md"


#: What ``bench_replicas.py`` measures (its figures are in the table above and its raw output
#: below).
REPLICAS_SECTION = """## Replicas on PostgreSQL (`bench/bench_replicas.py`)

Issue 19's benchmark: N tasks (default 1,000) through one and three `videogen serve --http`
replicas on one PostgreSQL, against one process on SQLite (the embedded default), in the same
run. Each case runs `--runs` times (default 3), case after case, with a fresh sandbox (a child
process, 5 s jobs, no concurrency limit), fresh folders and a fresh database in the one
PostgreSQL cluster the script starts from the system's binaries (`tests/postgres.py`; fsync on,
commits not waited for, as SQLite's `synchronous=NORMAL`). The client, in the bench process,
sends N distinct `generate_video` calls over MCP streamable HTTP with a bearer token,
round-robin over the replicas, 16 at once; the replicas answer each at once with the pending
task (`VIDEOGEN_WAIT_SECONDS=0`) and go on in the background. Measured (medians):

- *all saved*: first call sent -> the ledger says every task is `completed` (read every 0.1 s);
  *submits in*: first call sent -> last answer;
- *CPU per task*: user + system CPU of the replica processes, and of every process of the
  PostgreSQL cluster, from the replicas being up to just before they stop, divided by N (the
  client's own CPU is reported apart and not counted);
- the peak RSS of each replica; tasks completed, files saved and submits in the sandbox's log
  (each task must be submitted once).

On one machine the replicas, PostgreSQL, the sandbox and the client share the same CPUs, so
three replicas cannot be faster than one here by having more hardware: the figures say what
PostgreSQL and the extra replicas cost per task, not how far a fleet scales."""


@dataclass
class Row:
    bench: str
    figure: str
    value: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None  # None: no target, information only


@dataclass
class Bench:
    name: str
    full: list[str]
    quick: list[str]
    parse: Callable[[str], list[Row]]
    timeout: float = 3600


def _num(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    if found is None:
        raise ValueError(f"figure not found: {pattern!r}")
    return float(found.group(1))


def _last_json(text: str) -> dict[str, object]:
    """The last JSON object printed (one line, or an indented block at the end)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{") and line.endswith("}"):
            data: dict[str, object] = json.loads(line)
            return data
    start = text.rfind("\n{")
    data = json.loads(text[start:] if start >= 0 else text)
    return data


def parse_startup(out: str) -> list[Row]:
    base = _num(r"bare MCPServer\s+(\d+) ms", out)
    ours = _num(r"jimeng-videogen-mcp\s+(\d+) ms", out)
    ratio = ours / base
    exit_base = _num(r"exit: bare MCPServer\s+(\d+) ms", out)
    exit_ours = _num(r"exit: jimeng-videogen-mcp\s+(\d+) ms", out)
    return [
        Row("startup", "MCP cold start: spawn -> initialize + tools/list (median)",
            f"{ours:.0f} ms", f"{base:.0f} ms (bare SDK MCPServer, same tools)",
            f"{ratio:.2f}x", "<= 1.15x", ratio <= 1.15),
        Row("startup", "stdin closed right after tools/list -> exited (median)",
            f"{exit_ours:.0f} ms", f"{exit_base:.0f} ms (bare SDK MCPServer)",
            f"{exit_ours / exit_base:.2f}x", "<= 500 ms", exit_ours <= 500),
    ]  # fmt: skip


def parse_inflight(out: str) -> list[Row]:
    f = _last_json(out)
    tasks = int(cast(Any, f["tasks"]))
    rows: list[Row] = []
    completed_all = rss_ok = True
    peak = 0.0
    for g in cast(list[dict[str, Any]], f["intervals"]):
        interval, runs, target = float(g["poll_interval"]), int(g["runs"]), float(g["target_s"])
        ready, saved = float(g["all_ready_s"]), float(g["all_saved_s"])
        alone_ready = float(g["baseline_one_task_ready_s"])
        alone_saved = float(g["baseline_one_task_saved_s"])
        label = "product default" if g["product_default"] else "stress"
        each = ", ".join(f"{v:g}" for v in g["all_saved_runs_s"])
        rows += [
            Row("inflight", f"{tasks} tasks in flight, polls every {interval:g} s ({label}): all "
                f"ready, tracked to the end (median of {runs})", f"{ready:.2f} s",
                f"{alone_ready:.2f} s (one task alone)", f"{ready / alone_ready:.2f}x",
                f"<= job + 2 polls = {target:g} s", ready <= target),
            Row("inflight", f"{tasks} tasks in flight, polls every {interval:g} s ({label}): all "
                f"saved, downloaded and probed (median of {runs}; runs: {each} s)",
                f"{saved:.2f} s", f"{alone_saved:.2f} s (one task alone)",
                f"{saved / alone_saved:.2f}x", f"<= {target:g} s", saved <= target),
        ]  # fmt: skip
        if "bare_all_saved_s" in g:  # the floor: a bare loop over the same parts, same run
            bare, cpu, bare_cpu = (
                float(g["bare_all_saved_s"]),
                float(g["cpu_ms_per_task"]),
                float(g["bare_cpu_ms_per_task"]),
            )
            rows += [
                Row("inflight", f"{tasks} tasks in flight, polls every {interval:g} s: all saved "
                    f"vs the bare loop (median of {runs})", f"{saved:.2f} s",
                    f"{bare:.2f} s (bare loop: adapter, client, sandbox; no ledger, fsync, probe)",
                    f"{saved / bare:.2f}x", "<= 1.3x", saved <= 1.3 * bare),
                Row("inflight", f"{tasks} tasks in flight, polls every {interval:g} s: CPU per "
                    f"task vs the bare loop (median of {runs})", f"{cpu:.2f} ms",
                    f"{bare_cpu:.2f} ms (bare loop)", f"{cpu / bare_cpu:.2f}x", "<= 1.5x",
                    cpu <= 1.5 * bare_cpu),
            ]  # fmt: skip
        completed_all = completed_all and int(g["completed_min"]) == tasks
        peak = max(peak, float(g["peak_rss_mb_max"]))
        rss_ok = rss_ok and float(g["peak_rss_mb_max"]) < 150
    rows.append(
        Row("inflight", f"{tasks} tasks: completed in every run; highest peak RSS",
            f"{'all' if completed_all else 'NOT all'} {tasks}; {peak:g} MB", "-", "-",
            "all completed, RSS < 150 MB", completed_all and rss_ok)
    )  # fmt: skip
    return rows


def parse_download(out: str) -> list[Row]:
    size = re.search(r"download (\d+) MiB", out)
    ours = _num(r"videogen\s+median\s+[\d.]+ s\s+(\d+) MiB/s", out)
    curl = _num(r"curl\s+median\s+[\d.]+ s\s+(\d+) MiB/s", out)
    fsync = _num(r"curl\+fsync\s+median\s+[\d.]+ s\s+(\d+) MiB/s", out)
    ours_cpu = _num(r"videogen\s+median\s+[\d.]+ s\s+\d+ MiB/s\s+cpu\s+([\d.]+) s", out)
    curl_cpu = _num(r"curl\s+median\s+[\d.]+ s\s+\d+ MiB/s\s+cpu\s+([\d.]+) s", out)
    growth = _num(r"peak RSS growth of the downloading process: median ([\d.]+) MiB", out)
    label = f"download throughput, {size.group(1) if size else '?'} MiB over loopback"
    return [
        Row("download", label, f"{ours:.0f} MiB/s", f"{curl:.0f} MiB/s (curl -o)",
            f"{ours / curl:.2f}x", ">= 0.8x (issue 4)", ours / curl >= 0.8),
        Row("download", label + ", curl also made durable", f"{ours:.0f} MiB/s",
            f"{fsync:.0f} MiB/s (curl -o, then fsync)", f"{ours / fsync:.2f}x",
            ">= 0.95x (videogen always fsyncs before publishing)", ours / fsync >= 0.95),
        Row("download", "download CPU (user + sys of the downloading process, median)",
            f"{ours_cpu:.2f} s", f"{curl_cpu:.2f} s (curl -o)", f"{ours_cpu / curl_cpu:.2f}x",
            "<= 1.5x", ours_cpu / curl_cpu <= 1.5),
        Row("download", "download peak RSS growth (median)", f"{growth:.1f} MiB", "-", "-",
            "< 32 MB", growth * 1.048576 < 32),
    ]  # fmt: skip


def parse_conform(out: str) -> list[Row]:
    decode = _num(r"baseline: decode the source once\s+median\s+([\d.]+) s", out)
    source = re.search(r"source: (\S+)", out)
    rows = []
    for seconds, fps, wall in re.findall(
        r"conform to\s+(\d+) s @ (\d+) fps\s+median\s+([\d.]+) s", out
    ):
        wall_s = float(wall)
        rows.append(
            Row("conform", f"conform a 10 s {source.group(1) if source else ''} clip to "
                f"{seconds} s @ {fps} fps", f"{wall_s:.2f} s",
                f"{decode:.2f} s (decode the source once)", f"{wall_s / decode:.2f}x",
                "faster than real time (clip s / wall s >= 1)", int(seconds) / wall_s >= 1)
        )  # fmt: skip
    if not rows:
        raise ValueError("no conform figures")
    full = re.search(r"trim 8 s @ 24 fps, re-encode every frame.*?median\s+([\d.]+) s", out)
    copy = re.search(r"trim 8 s @ 24 fps, copy.*?median\s+([\d.]+) s", out)
    if full and copy:
        full_s, copy_s = float(full.group(1)), float(copy.group(1))
        rows.append(
            Row("conform", "trim a 10 s clip to 8 s @ 24 fps, copying what it keeps",
                f"{copy_s:.2f} s", f"{full_s:.2f} s (re-encode every frame)",
                f"{copy_s / full_s:.2f}x", "<= 0.25x (issue 16)", copy_s / full_s <= 0.25)
        )  # fmt: skip
    return rows


def parse_polls(out: str) -> list[Row]:
    f = _last_json(out)
    figures = cast(dict[str, dict[str, float]], f["figures"])
    ours = figures["videogen"]
    rows = []
    for name, base in figures.items():
        if name == "videogen":
            continue
        baseline = "002" in name
        ratio = ours["ratio_runs"] if baseline else ours["polls"] / base["polls"]
        rows.append(
            Row("polls", f"polls per task vs {name} loop, with a warmed ledger (median latency "
                "after done, unscaled; median of runs)",
                f"{ours['polls']:.1f} polls, {ours['latency']:.1f} s",
                f"{base['polls']:.1f} polls, {base['latency']:.1f} s",
                f"{ratio:.2f}x polls",
                "polls <= 0.5x, latency <= loop's" if baseline else "-",
                ratio <= 0.5 and ours["latency"] <= base["latency"] if baseline else True)
        )  # fmt: skip
    done, asked, rss = f["runs_completed"], f["runs"], float(cast(float, f["peak_rss_mb"]))
    jobs = min(cast(list[int], f["jobs_per_run"]))
    rows.append(
        Row("polls", "cold render cache every run (a new prompt per run): runs completed; "
            "peak RSS of the one process (engine + embedded sandbox)",
            f"{done} of {asked} runs ({jobs}+ jobs each); {rss:.0f} MB", "-", "-",
            "every run completes; RSS < 300 MB with 60 jobs" if jobs >= 60 else
            "every run completes; RSS < 300 MB",
            done == asked and rss < 300)
    )  # fmt: skip
    return rows


def parse_replicas(out: str) -> list[Row]:
    f = _last_json(out)
    tasks, runs = int(cast(Any, f["tasks"])), int(cast(Any, f["runs"]))
    cases = {c["case"]: c for c in cast(list[dict[str, Any]], f["cases"])}
    base = cases["sqlite x1"]
    rows: list[Row] = []
    for name, case in cases.items():
        if case is base:
            continue
        saved, cpu = float(case["all_saved_s"]), float(case["server_cpu_ms_per_task"])
        base_saved, base_cpu = float(base["all_saved_s"]), float(base["server_cpu_ms_per_task"])
        rows += [
            Row("replicas", f"{tasks} tasks over MCP, {name} on one PostgreSQL: first call -> "
                f"all saved (median of {runs})", f"{saved:.2f} s",
                f"{base_saved:.2f} s (one process on SQLite)", f"{saved / base_saved:.2f}x",
                "-", None),
            Row("replicas", f"{tasks} tasks over MCP, {name} on one PostgreSQL: CPU per task, "
                f"replicas + PostgreSQL (median of {runs})",
                f"{cpu:.1f} ms ({float(case['replica_cpu_ms_per_task']):.1f} + "
                f"{float(case['postgres_cpu_ms_per_task']):.1f})",
                f"{base_cpu:.1f} ms (one process on SQLite)", f"{cpu / base_cpu:.2f}x",
                "-", None),
        ]  # fmt: skip
    once = all(bool(c["every_task_saved_once"]) for c in cases.values())
    peak = max(float(c["replica_peak_rss_mb_max"]) for c in cases.values())
    rows.append(
        Row("replicas", "every task saved, one file and one submit each, no call refused, in "
            "every case and run; highest peak RSS of a replica",
            f"{'yes' if once else 'NO'}; {peak:g} MB", "-", "-", "every task saved once", once)
    )  # fmt: skip
    return rows


def parse_matrix(out: str) -> list[Row]:
    passed = re.search(r"(\d+) passed", out)
    failed = re.search(r"(\d+) failed", out)
    n_pass, n_fail = int(passed.group(1)) if passed else 0, int(failed.group(1)) if failed else 0
    return [
        Row("faults", "fault matrix: every fault x provider x {MCP, CLI} (tables below)",
            f"{n_pass} of {n_pass + n_fail} interfaces pass", "-", "-", "every cell passes",
            n_fail == 0 and n_pass > 0)
    ]  # fmt: skip


def benches(evidence_out: Path) -> list[Bench]:
    py = [sys.executable]
    return [
        Bench("startup", [*py, "bench/bench_startup.py"], [*py, "bench/bench_startup.py",
              "--runs", "5"], parse_startup),
        Bench("inflight", [*py, "bench/bench_inflight.py", "--tasks", "500", "--poll-intervals",
              "1"], [*py, "bench/bench_inflight.py", "--tasks", "100", "--runs", "1",
              "--poll-intervals", "1"], parse_inflight),
        Bench("inflight", [*py, "bench/bench_inflight.py", "--tasks", "1000", "--poll-intervals",
              "5"], [*py, "bench/bench_inflight.py", "--tasks", "200", "--runs", "1",
              "--poll-intervals", "5"], parse_inflight),
        Bench("inflight", [*py, "bench/bench_inflight.py", "--tasks", "2000", "--poll-intervals",
              "5"], [*py, "bench/bench_inflight.py", "--tasks", "400", "--runs", "1",
              "--poll-intervals", "5"], parse_inflight),
        Bench("download", [*py, "bench/bench_download.py"], [*py, "bench/bench_download.py",
              "--size-mib", "256", "--runs", "3"], parse_download),
        Bench("conform", [*py, "bench/bench_conform.py"], [*py, "bench/bench_conform.py",
              "--runs", "1"], parse_conform),
        Bench("polls", [*py, "bench/bench_polls.py"], [*py, "bench/bench_polls.py",
              "--tasks", "2", "--runs", "1"], parse_polls),
        Bench("replicas", [*py, "bench/bench_replicas.py"], [*py, "bench/bench_replicas.py",
              "--tasks", "200", "--runs", "1"], parse_replicas),
        Bench("faults", [*py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow",
              "tests/evidence/test_fault_matrix.py"], [], parse_matrix),
    ]  # fmt: skip


@dataclass
class Outcome:
    bench: Bench
    command: list[str]
    output: str
    seconds: float
    rows: list[Row]
    error: str | None


def run_bench(bench: Bench, quick: bool, env: dict[str, str]) -> Outcome:
    command = (bench.quick or bench.full) if quick else bench.full
    print(f"== {bench.name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=bench.timeout,
            check=False,
        )  # fmt: skip
        output = done.stdout + (f"\n[stderr]\n{done.stderr}" if done.stderr.strip() else "")
        code = done.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = f"timed out after {bench.timeout:g} s\n{exc.stdout or ''}", -1
    seconds = time.monotonic() - started
    error = None
    rows: list[Row] = []
    try:
        rows = bench.parse(output)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        error = f"exit {code}; figures unreadable: {exc}"
    if code != 0 and error is None and bench.name != "faults":
        error = f"exit {code}"
    print(output.strip(), flush=True)
    return Outcome(bench, command, output, seconds, rows, error)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    system = f"{platform.system()} {platform.release()}"
    nproc = len(os.sched_getaffinity(0))
    return f"nproc {nproc}, {cpu}, Python {platform.python_version()}, {system}"


def render(outcomes: list[Outcome], quick: bool, started: str, total: float, ev: Path) -> str:
    mode = "`--quick` (fewer repetitions, smaller sizes)" if quick else "full (bench defaults)"
    lines = [
        "# Benchmark results",
        "",
        "Generated by `uv run --group dev python bench/run_all.py"
        + (" --quick" if quick else "")
        + "` — every number below comes from that one run; regenerate rather than edit.",
        "",
        f"- date: {started}",
        f"- machine: {machine()}",
        f"- mode: {mode}; total time {total / 60:.1f} min",
        "- each figure is next to its baseline measured in the same run; ratio = figure / "
        "baseline.",
        "- targets: start-up <= 1.15x and exit <= 500 ms after stdin closes (issues 5, 16), "
        "in-flight (job + 2 polls; within 1.3x the bare loop's time and 1.5x its CPU per task; "
        "RSS < 150 MB), download >= 0.8x of curl and conform faster "
        "than real time (issue 4), download >= 0.95x of curl + fsync with CPU <= 1.5x curl's "
        "and RSS growth < 32 MB, polls <= 0.5x seed 002's loop at no worse median latency "
        "after done (issue 16) come from the issues.",
        "- the machine is shared: other work may have run at the same time; contenders inside a "
        "bench alternate or run together, so ratios are steadier than absolute numbers.",
        "",
        "| bench | figure | value | baseline (same run) | ratio | target | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        if outcome.error:
            lines.append(f"| {outcome.bench.name} | did not produce figures | - | - | - | - | "
                         f"FAIL ({outcome.error}) |")  # fmt: skip
        for r in outcome.rows:
            verdict = "-" if r.passed is None else ("pass" if r.passed else "**FAIL**")
            lines.append(f"| {r.bench} | {r.figure} | {r.value} | {r.baseline} | {r.ratio} | "
                         f"{r.target} | {verdict} |")  # fmt: skip
    lines += [
        "",
        "How to reproduce: `uv run --group dev python bench/run_all.py"
        + (" --quick" if quick else "")
        + "` (this page; `--quick` for fewer repetitions and smaller sizes), one bench alone: "
        "`uv run --group dev python bench/bench_<name>.py --help`; the evidence suite: "
        "`uv run --group dev pytest tests/evidence` (CI part) and "
        "`uv run --group dev pytest -m slow tests/evidence` (whole fault matrix and the "
        "crash-restart tests).",
        "",
        "## Fault matrix",
        "",
        "Each cell: a fresh sandbox with one fault, one run of the program against it. *submits "
        "sent/accepted*: submit requests the provider saw / answered 200 (billed). A cell passes "
        "when the task is in the ledger, no submit was resent after an ambiguous answer, at most "
        "one was accepted, and the outcome is the expected one: a file that PyAV decodes in full, "
        "or a readable error. *n/a* faults (the provider's API has no such check) must simply "
        "complete.",
        "",
    ]
    for name in ("fault_matrix_mcp", "fault_matrix_cli"):
        table = ev / f"{name}.md"
        if table.exists():
            lines += [f"### {name.removeprefix('fault_matrix_').upper()}", "",
                      table.read_text().strip(), ""]  # fmt: skip
    lines += [REPLICAS_SECTION, ""]
    lines += ["## Raw output of each bench", ""]
    for outcome in outcomes:
        lines += [
            f"<details><summary>{outcome.bench.name}: <code>{' '.join(outcome.command[1:])}"
            f"</code> ({outcome.seconds:.0f} s)</summary>",
            "",
            "```",
            outcome.output.strip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--no-page", action="store_true", help="do not rewrite bench/README.md")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    clock = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="videogen-evidence-") as tmp:
        ev = Path(tmp)
        env = {**os.environ, "VIDEOGEN_EVIDENCE_OUT": str(ev)}
        wanted = {n for n in args.only.split(",") if n}
        chosen = [b for b in benches(ev) if not wanted or b.name in wanted]
        outcomes = [run_bench(b, args.quick, env) for b in chosen]
        page = render(outcomes, args.quick, started, time.monotonic() - clock, ev)
    if not args.no_page:
        PAGE.write_text(page + "\n", encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)}")
    failed = [o.bench.name for o in outcomes if o.error]
    failed += [r.figure for o in outcomes for r in o.rows if r.passed is False]
    print("targets missed or benches broken: " + (", ".join(failed) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
