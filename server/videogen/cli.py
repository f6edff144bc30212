"""The command line: ``videogen generate|check|tasks|usage|scenes|detect|serve|sandbox|skill``.

Thin over the engine: it parses arguments, reads the settings once, opens the app, calls one
engine method and prints the result. The contract a script or an agent can rely on:

- stdout carries only the result: seed 002's markdown block, or with ``--json`` only the
  structured result (``VideoResult`` JSON). Nothing else is ever printed there. With ``--json``
  an error is one JSON object there too: ``{"error": true, "kind", "message", "task_id" (when
  a task is concerned), "exit_code"}`` (``error_object``).
- stderr carries diagnostics, the intake's notes and, on a terminal only, a progress line.
- The exit code says what happened (``EXIT_CODES_HELP``). It never prompts.
- ``--output PATH``: a path ending in ``.mp4`` names the file (its folder becomes the output
  folder, its name the requested file name); any other path is a folder. Either folder is
  created with its parents if missing, and checked *before* the (billed) submit: an unusable
  one exits 3 with nothing sent. Relative paths are taken from the current directory. An
  existing file is never overwritten: the download picks a numbered name (``boat-1.mp4``) and
  the result reports it. ``check ID --output FOLDER`` saves a not-yet-saved video there.
- ``--no-wait`` / ``check`` work in embedded sandbox mode too (no credentials, or
  ``VIDEOGEN_SANDBOX=1``): the embedded sandbox keeps its tasks in ``<data dir>/sandbox``, so a
  task submitted by one ``videogen`` process keeps "running" after it exits and a later
  ``videogen check`` (its own embedded sandbox) finishes it and saves the video.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

import anyio

from videogen import catalog
from videogen.config import VARIABLES, Settings
from videogen.errors import (
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REJECTED,
    EXIT_USAGE,
    InputError,
    OutputError,
    VideogenError,
)

if TYPE_CHECKING:
    from videogen.app import App
    from videogen.engine import Progress
    from videogen.models import GenerationRequest, Task
    from videogen.report import SubjectReport, VideoResult

log = logging.getLogger("videogen.cli")

T = TypeVar("T")

PROG: Final = "videogen"
SKILL_NAME: Final = "videogen"
DEFAULT_SKILL_DIR: Final = Path("~/.claude/skills")

EXIT_CODES_HELP: Final = f"""\
exit codes:
  {EXIT_OK}  done: the video is saved as asked (or the command did what it was asked)
  {EXIT_ERROR}  other error: provider unavailable, download or conform failed, unexpected error
  {EXIT_USAGE}  usage: bad arguments, or inputs refused before anything was billed; unknown task
  {EXIT_CONFIG}  configuration: a bad environment variable, or an unusable output path
  {EXIT_CREDENTIALS}  credentials: keys missing or rejected, or the capability is not enabled
  {EXIT_REJECTED}  rejected: the provider's content review refused the input or the output
  {EXIT_FAILED}  failed: the task failed or expired, or its submit outcome is unknown
  {EXIT_PENDING}  still running: the wait ended first; run `videogen check TASK_ID` later
"""

PENDING_STATUSES: Final = frozenset({"submitting", "queued", "running"})


def _variables_help() -> str:
    width = max(len(name) for name in VARIABLES)
    lines = [f"  {name.ljust(width)}  {text}" for name, text in VARIABLES.items()]
    return "environment variables:\n" + "\n".join(lines) + "\n"


EPILOG: Final = (
    EXIT_CODES_HELP
    + "\n"
    + _variables_help()
    + "\nWith no credentials set, everything runs against the embedded offline sandbox and every"
    "\nresult says so on its first line."
)


# --- argument parsing -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse's parser; with ``--json`` a usage error is also a JSON object on stdout."""

    def error(self, message: str) -> typing.NoReturn:
        if _RUN.as_json:
            _print_error_object("usage", message, EXIT_USAGE)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line. Usage errors exit with status 2 (argparse's own)."""
    parser = _Parser(
        prog=PROG,
        description="Turn a prompt (and images, audio or a scene) into a saved MP4 through "
        "Volcengine Jimeng/OmniHuman, TokenOps or Jenius.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate(sub)
    _add_check(sub)
    _add_tasks(sub)
    _add_usage(sub)
    _add_scenes(sub)
    _add_detect(sub)
    _add_serve(sub)
    # `videogen sandbox ...` is handed to the sandbox's own parser (see main); listed for --help.
    sub.add_parser(
        "sandbox",
        help="run the offline sandbox of all three provider APIs (see `videogen sandbox --help`)",
        add_help=False,
    )
    _add_skill(sub)
    return parser


def _subparser(sub: Any, name: str, help_text: str, **kwargs: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print only the structured result as JSON on stdout"
    )


def _add_generate(sub: Any) -> None:
    p = _subparser(sub, "generate", "generate a video and save it (billed on real providers)")
    p.add_argument("prompt", nargs="?", default="", metavar="PROMPT", help="text prompt")
    p.add_argument(
        "--mode",
        choices=catalog.MODES,
        metavar="MODE",
        help="generation mode (default t2v_720p; inferred from the inputs when omitted): "
        + ", ".join(catalog.MODES),
    )
    p.add_argument("--provider", choices=catalog.PROVIDERS, help="provider to use")
    p.add_argument(
        "--duration",
        type=int,
        choices=catalog.DURATIONS,
        default=catalog.DEFAULT_DURATION,
        metavar="SECS",
        help="video duration: 4, 5, 6, 8, 10 (default: 5)",
    )
    p.add_argument(
        "--fps",
        type=int,
        choices=catalog.FPS_CHOICES,
        default=catalog.DEFAULT_FPS,
        metavar="FPS",
        help="frames per second: 24, 25, 30 (default: 24)",
    )
    p.add_argument(
        "--image",
        metavar="URL|PATH",
        help=f"first-frame image or omnihuman portrait: {catalog.image_help()}",
    )
    p.add_argument(
        "--tail-image", metavar="URL|PATH", help=f"last-frame image: {catalog.ANY_IMAGE_FORM}"
    )
    p.add_argument(
        "--images",
        action="extend",
        nargs="+",
        default=[],
        metavar="URL|PATH",
        help="several images, in order (scene photos, or first and last frame); give PROMPT "
        "before this option; same forms as --image",
    )
    p.add_argument("--audio", metavar="URL", help="speech audio for omnihuman (under 60 s)")
    p.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="URL",
        help="omnihuman: mask of the subject who speaks (from `videogen detect`); repeatable",
    )
    p.add_argument(
        "--scene",
        metavar="NAME",
        help="Jenius scene (see `videogen scenes`; another name is sent to Jenius as given)",
    )
    p.add_argument("--aspect-ratio", choices=catalog.ASPECT_RATIOS, help="text-to-video only")
    p.add_argument(
        "--camera",
        choices=catalog.CAMERA_MOVES,
        metavar="MOVE",
        help="i2v_recamera_720p camera move (see `videogen scenes`)",
    )
    p.add_argument("--camera-strength", choices=catalog.CAMERA_STRENGTHS)
    p.add_argument("--resolution", type=int, choices=(720, 1080), help="omnihuman output")
    p.add_argument("--fast", action="store_true", help="omnihuman fast mode")
    p.add_argument("--seed", type=int, default=-1, help="random seed (default: -1, random)")
    p.add_argument(
        "--output",
        metavar="PATH",
        help="a folder to save into, or a file path ending in .mp4 (folder + file name)",
    )
    wait = p.add_mutually_exclusive_group()
    wait.add_argument(
        "--no-wait",
        action="store_true",
        help="submit, print the task id and exit 7; `videogen check ID` later",
    )
    wait.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait at most this long (default: poll interval x max poll attempts)",
    )
    p.add_argument(
        "--new",
        action="store_true",
        help="submit again even if an identical "
        "request was submitted recently (each submit is billed)",
    )
    p.add_argument("--sandbox", action="store_true", help="use the offline sandbox")
    _add_json(p)
    p.set_defaults(handler=_generate)


def _add_check(sub: Any) -> None:
    p = _subparser(
        sub,
        "check",
        "check a task, optionally waiting for it; saves the video when it is ready (not billed)",
    )
    p.add_argument("task_id", metavar="TASK_ID")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait at most this long for it to finish (default: 0, one look)",
    )
    p.add_argument(
        "--output",
        metavar="FOLDER",
        help="save the video in this folder instead (e.g. after a save failed; created if missing)",
    )
    p.add_argument("--sandbox", action="store_true", help="use the offline sandbox")
    _add_json(p)
    p.set_defaults(handler=_check)


def _add_tasks(sub: Any) -> None:
    p = _subparser(sub, "tasks", "list recent tasks, newest first")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")
    _add_json(p)
    p.set_defaults(handler=_tasks)


def _add_usage(sub: Any) -> None:
    p = _subparser(sub, "usage", "show what was billed by UTC day, provider, mode and owner")
    p.add_argument("--days", type=int, default=30, metavar="N", help="the last N days (default 30)")
    _add_json(p)
    p.set_defaults(handler=_usage)


def _add_scenes(sub: Any) -> None:
    p = _subparser(sub, "scenes", "list the Jenius scenes and the camera moves")
    _add_json(p)
    p.set_defaults(handler=_scenes)


def _add_detect(sub: Any) -> None:
    p = _subparser(
        sub,
        "detect",
        "find the subjects in a portrait (OmniHuman); prints masks to pass to `generate --mask`",
    )
    p.add_argument("image", metavar="URL", help=f"the portrait: {catalog.URL_IMAGE_FORM}")
    p.add_argument("--provider", choices=("volcengine", "tokenops"))
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for recognition (default 30)",
    )
    p.add_argument("--sandbox", action="store_true", help="use the offline sandbox")
    _add_json(p)
    p.set_defaults(handler=_detect)


def _add_serve(sub: Any) -> None:
    p = _subparser(sub, "serve", "run the MCP server (stdio by default)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="HTTP bind address (default 127.0.0.1; anything else requires VIDEOGEN_HTTP_TOKEN)",
    )
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.set_defaults(handler=_serve)


def _add_skill(sub: Any) -> None:
    p = _subparser(sub, "skill", "manage the agent skill")
    skill_sub = p.add_subparsers(dest="skill_command", required=True, metavar="COMMAND")
    install = _subparser(skill_sub, "install", "copy the agent skill into DIR/videogen/")
    install.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_SKILL_DIR,
        help=f"skills folder (default {DEFAULT_SKILL_DIR})",
    )
    install.add_argument("--force", action="store_true", help="replace a different copy")
    install.set_defaults(handler=_skill_install)


# --- entry point --------------------------------------------------------------------------------


EXIT_INTERRUPTED: Final = 130


@dataclass
class _Run:
    """What this one command has done so far, for its error report."""

    as_json: bool = False
    #: The task this command is about: ``check``'s, or ``generate``'s once submitted.
    task_id: str | None = None
    #: ``generate``'s request and when it was made, to find its task if interrupted mid-submit.
    request: GenerationRequest | None = None
    started: float = 0.0
    settings: Settings | None = None


_RUN = _Run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (the console script does ``sys.exit(main())``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if args_list[:1] == ["sandbox"]:
        return _run_guarded(partial(_sandbox, args_list[1:]))
    global _RUN
    _RUN = _Run(as_json="--json" in args_list)  # nothing carries over from an earlier command
    args = build_parser().parse_args(args_list)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return _run_guarded(partial(handler, args))


def _run_guarded(run: Callable[[], int]) -> int:
    """Turn errors into one stderr line and an exit code; no traceback for expected errors.

    With ``--json`` the error is also one JSON object on stdout (``error_object``).
    """
    try:
        return run()
    except BaseException as exc:  # the one place every error becomes an exit code
        inner = _single_leaf(exc)
        if isinstance(inner, VideogenError):
            return _fail(inner.kind, inner.message, inner.exit_code)
        if isinstance(inner, BrokenPipeError):
            # The reader of stdout went away (e.g. `| head`): nothing to say, and nowhere to say it.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_ERROR
        if isinstance(inner, KeyboardInterrupt):
            return _fail("interrupted", _interrupted_message(), EXIT_INTERRUPTED)
        if isinstance(inner, SystemExit):
            raise inner from None
        log.debug("unexpected error", exc_info=exc)
        return _fail(
            "unexpected",
            f"unexpected {type(inner).__name__}: {inner}. "
            "Run with VIDEOGEN_LOG_LEVEL=DEBUG for details.",
            EXIT_ERROR,
        )


def _fail(kind: str, message: str, exit_code: int) -> int:
    _error(message)
    if _RUN.as_json:
        _print_error_object(kind, message, exit_code)
    return exit_code


def error_object(kind: str, message: str, exit_code: int, task_id: str | None) -> dict[str, Any]:
    """What ``--json`` prints on stdout for an error (``task_id`` only when a task is concerned)."""
    data: dict[str, Any] = {"error": True, "kind": kind, "message": message}
    if task_id is not None:
        data["task_id"] = task_id
    data["exit_code"] = exit_code
    return data


def _print_error_object(kind: str, message: str, exit_code: int) -> None:
    data = error_object(kind, _scrub(message), exit_code, _RUN.task_id or _submitted_task())
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _interrupted_message() -> str:
    task_id = _RUN.task_id or _submitted_task()
    if task_id is None:
        return "interrupted. A submitted task keeps running: `videogen tasks` lists it."
    return (
        f"interrupted. Task {task_id} keeps running and is not billed again: "
        f"`videogen check {task_id}` follows it and saves the video."
    )


def _submitted_task() -> str | None:
    """The task ``generate`` submitted when it was stopped before the submit returned its id:
    the newest task in the ledger with this run's request, made since this run started."""
    if _RUN.request is None or _RUN.settings is None:
        return None
    key = _RUN.request.dedupe_key()
    try:
        recent = read_tasks(_RUN.settings, 20)
    except Exception:  # an error report must not fail on the ledger
        log.debug("could not read the ledger", exc_info=True)
        return None
    for task in recent:
        if task.created_at >= _RUN.started - 1 and task.request.dedupe_key() == key:
            return task.id
    return None


def _single_leaf(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (task groups wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if isinstance(e, VideogenError)]
        if leaves:
            return leaves[0]
    return exc


_SECRETS: list[str] = []


def _scrub(message: str) -> str:
    for secret in _SECRETS:
        message = message.replace(secret, "***")
    return message


def _error(message: str) -> None:
    from videogen.report import printable

    print(f"{PROG}: error: {printable(_scrub(message))}", file=sys.stderr)


def _note(message: str) -> None:
    from videogen.report import printable

    print(f"{PROG}: {printable(message)}", file=sys.stderr)


def _configure_logging() -> None:
    level = os.environ.get("VIDEOGEN_LOG_LEVEL", "WARNING").strip().upper() or "WARNING"
    logging.basicConfig(
        stream=sys.stderr,
        level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "WARNING",
        format="%(levelname)s %(name)s: %(message)s",
    )


def load_settings(*, sandbox: bool = False, output: str | None = None) -> Settings:
    """Settings from the environment (``ConfigError`` -> exit 3), with command-line overrides."""
    env = dict(os.environ)
    if sandbox:
        env["VIDEOGEN_SANDBOX"] = "1"
    settings = Settings.from_env(env)
    _SECRETS[:] = [s for s in settings.secrets() if len(s) >= 4]
    if output is not None:
        folder = output_target(output)[0]
        settings = dataclasses.replace(settings, output_dir=folder)
    return settings


def output_target(raw: str) -> tuple[Path, str | None]:
    """``--output``: a path ending in ``.mp4`` is a file (folder, name); anything else a folder."""
    if not raw.strip() or "\x00" in raw:
        raise InputError("--output is empty or not a path: give a folder or a file ending in .mp4.")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if path.suffix.lower() == ".mp4" and not path.is_dir():
        return path.parent, path.name
    return path, None


def _run_app(settings: Settings, body: Callable[[App], Awaitable[T]]) -> T:
    """Open the app (the embedded sandbox too, when configured), run ``body``, close it."""

    async def run() -> T:
        from videogen.app import open_app

        async with open_app(settings, track=False) as app:
            return await body(app)

    return anyio.run(run)


# --- generate / check ---------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    from videogen.intake import build_request, choose_provider

    settings = load_settings(sandbox=args.sandbox, output=args.output)
    provider = choose_provider(
        explicit=args.provider, mode=args.mode, scene=args.scene, default=settings.provider
    )
    intake = build_request(
        prompt=args.prompt,
        provider=provider,
        mode=args.mode,
        image=args.image,
        tail_image=args.tail_image,
        images=args.images,
        audio=args.audio,
        mask=args.mask or None,
        duration=args.duration,
        fps=args.fps,
        aspect_ratio=args.aspect_ratio,
        seed=args.seed,
        camera=args.camera,
        camera_strength=args.camera_strength,
        resolution=args.resolution,
        fast_mode=args.fast,
        scene=args.scene,
        filename=output_target(args.output)[1] if args.output else None,
    )
    wait = _generate_wait(args, settings)
    request = intake.request
    if args.output:  # the task remembers its folder, so a later `check` saves there too
        request = request.model_copy(update={"output_dir": str(settings.output_dir)})

    _RUN.request, _RUN.settings, _RUN.started = request, settings, time.time()

    async def body(app: App) -> Task:
        progress = ProgressLine(sys.stderr)
        try:
            return await progress.run(
                partial(_submit_and_wait, app, request, wait, args.new, progress)
            )
        finally:
            progress.close()

    task = _run_app(settings, body)
    return _report(task, settings, args.json, notes=intake.notes)


async def _submit_and_wait(
    app: App, request: GenerationRequest, wait: float, new: bool, progress: ProgressLine
) -> Task:
    """``Engine.generate``, noting the task id once it is submitted (an interrupted wait
    names it)."""

    def submitted(task: Task) -> None:
        _RUN.task_id = task.id

    return await app.engine.generate(
        request, wait_seconds=wait, on_progress=progress.update, new=new, on_submitted=submitted
    )


def _generate_wait(args: argparse.Namespace, settings: Settings) -> float:
    """Seconds to wait: 0 for --no-wait, --wait, else poll interval x max attempts (seed 002)."""
    if args.no_wait:
        return 0.0
    if args.wait is not None:
        if args.wait < 0:
            raise InputError("--wait must be 0 or more seconds.")
        return float(args.wait)
    return settings.poll_interval * settings.max_poll_attempts


def _check(args: argparse.Namespace) -> int:
    if args.wait < 0:
        raise InputError("--wait must be 0 or more seconds.")
    _RUN.task_id = args.task_id
    settings = load_settings(sandbox=args.sandbox)
    folder = _check_folder(args.output)

    async def body(app: App) -> Task:
        progress = ProgressLine(sys.stderr)
        try:
            return await progress.run(
                partial(
                    app.engine.check,
                    args.task_id,
                    wait_seconds=args.wait,
                    on_progress=progress.update,
                    output_dir=folder,
                )
            )
        finally:
            progress.close()

    task = _run_app(settings, body)
    return _report(task, settings, args.json)


def _check_folder(raw: str | None) -> str | None:
    """``check --output``: a folder (the file name was chosen when the task was generated)."""
    if raw is None:
        return None
    folder, name = output_target(raw)
    if name is not None:
        raise InputError(
            f"check --output takes a folder, not a file ({name}): the file name was chosen "
            "when the task was generated. Give the folder to save into."
        )
    return str(folder)


def _report(task: Task, settings: Settings, as_json: bool, notes: Sequence[str] = ()) -> int:
    from videogen.report import result_of

    result = result_of(task, notice=settings.notice, notes=notes, interface="cli")
    _print_result(result, as_json)
    return exit_code_for(task)


def _print_result(result: VideoResult, as_json: bool) -> None:
    from videogen.report import render_markdown

    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        print(render_markdown(result))


def exit_code_for(task: Task) -> int:
    """The exit code a task's state means (see ``EXIT_CODES_HELP``)."""
    if task.status == "completed" and task.error is None:
        return EXIT_OK
    if task.status in PENDING_STATUSES or (task.status == "ready" and task.error is None):
        return EXIT_PENDING
    kind = task.error.kind if task.error else "failed"
    if kind == "output":  # the output folder or file name cannot be used (OutputError)
        return EXIT_CONFIG
    if task.status in ("ready", "completed"):  # not saved yet, or not made as asked
        return EXIT_ERROR
    if kind == "rejected":
        return EXIT_REJECTED
    if kind in ("credentials", "not_enabled"):
        return EXIT_CREDENTIALS
    return EXIT_FAILED


class ProgressLine:
    """One ``\\r``-updated line on a terminal (elapsed time + status); silent when piped."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.active = stream.isatty()
        self.started = time.monotonic()
        self.status = "submitting"
        self.message = ""
        self.width = 0

    async def update(self, progress: Progress) -> None:
        self.status, self.message = progress.status, progress.message
        self.draw()

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call`` while redrawing the elapsed time every second (terminal only)."""
        if not self.active:
            return await call()
        result: list[T] = []
        async with anyio.create_task_group() as tg:

            async def ticker() -> None:
                while True:
                    self.draw()
                    await anyio.sleep(1)

            tg.start_soon(ticker)
            result.append(await call())
            tg.cancel_scope.cancel()
        return result[0]

    def draw(self) -> None:
        from videogen.report import printable

        if not self.active:
            return
        elapsed = time.monotonic() - self.started
        text = f"{self.status} — {elapsed:.0f} s elapsed"
        if self.message:
            text += f" — {self.message}"
        text = printable(text)[:100]
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.active and self.width:
            self.stream.write("\n")
            self.stream.flush()


# --- tasks / scenes / detect --------------------------------------------------------------------


def _tasks(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InputError("--limit must be 1 or more.")
    tasks = read_tasks(load_settings(), args.limit)
    if args.json:
        from videogen.report import result_of

        items = [result_of(t, notice=None, interface="cli").model_dump(mode="json") for t in tasks]
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return EXIT_OK
    skipped = getattr(tasks, "skipped", [])
    if not tasks and not skipped:
        print("No tasks yet. Start one with `videogen generate PROMPT`.")
    for task in tasks:
        print(_task_line(task))
    if skipped:
        print(f"{len(skipped)} task(s) recorded by a newer videogen cannot be read by this one "
              f"and are not listed: {', '.join(skipped)}.")  # fmt: skip
    return EXIT_OK


def _usage(args: argparse.Namespace) -> int:
    from videogen.ledger import LEDGER_FILENAME, Ledger
    from videogen.spending import ledger_usage, render_usage

    if not 1 <= args.days <= 3660:
        raise InputError("--days must be between 1 and 3660.")
    settings = load_settings()
    exists = (settings.data_dir / LEDGER_FILENAME).is_file()
    ledger = Ledger.in_dir(settings.data_dir) if exists else None
    try:
        report = ledger_usage(ledger, settings.spending, now=time.time(), days=args.days,
                              sandbox=settings.sandbox)  # fmt: skip
    finally:
        if ledger is not None:
            ledger.close()
    print(report.model_dump_json(indent=2) if args.json else render_usage(report))
    return EXIT_OK


def read_tasks(settings: Settings, limit: int) -> list[Task]:
    """The newest tasks, read from the ledger alone: listing starts no sandbox, no HTTP client
    and no engine (none of which it needs, and any of which could fail)."""
    from videogen.ledger import LEDGER_FILENAME, Ledger

    if not (settings.data_dir / LEDGER_FILENAME).is_file():
        return []  # nothing was ever submitted here: do not create a ledger just to say so
    ledger = Ledger.in_dir(settings.data_dir)
    try:
        return ledger.recent(limit=limit)
    finally:
        ledger.close()


def _task_line(task: Task) -> str:
    from videogen.report import printable

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(task.created_at))
    prompt = task.request.prompt if len(task.request.prompt) <= 40 else task.request.prompt[:39]
    prompt = prompt + ("…" if prompt != task.request.prompt else "")
    where = task.local_path or (task.error.message if task.error else "")
    provider = f"{task.provider} (sandbox)" if task.sandbox else task.provider
    return printable(
        f"{task.id}  {task.status:<9}  {when}  {provider:<20}  "
        f'{task.request.mode_label:<20}  "{prompt}"  {where}'
    ).rstrip()


def _scenes(args: argparse.Namespace) -> int:
    scenes = [dataclasses.asdict(s) for s in catalog.SCENES.values()]
    if args.json:
        data = {
            "scenes": scenes,
            "camera_moves": list(catalog.CAMERA_MOVES),
            "camera_strengths": list(catalog.CAMERA_STRENGTHS),
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return EXIT_OK
    lines = ["**Jenius scenes** (`videogen generate --scene NAME --images ...`):"]
    for s in catalog.SCENES.values():
        count = (
            str(s.min_images) if s.min_images == s.max_images else f"{s.min_images}-{s.max_images}"
        )
        lines.append(f"- {s.name}: {s.title}. {s.summary} Images: {count}. {s.photo_advice}")
    lines.append("")
    lines.append("**Camera moves** (`--mode i2v_recamera_720p --camera MOVE --camera-strength S`):")
    lines.append("- " + ", ".join(catalog.CAMERA_MOVES))
    lines.append("- strengths: " + ", ".join(catalog.CAMERA_STRENGTHS))
    print("\n".join(lines))
    return EXIT_OK


def _detect(args: argparse.Namespace) -> int:
    from videogen.report import render_subjects

    if args.wait < 0:
        raise InputError("--wait must be 0 or more seconds.")
    settings = load_settings(sandbox=args.sandbox)

    async def body(app: App) -> SubjectReport:
        return await app.engine.detect_subjects(
            args.image, provider=args.provider, wait_seconds=args.wait
        )

    report = _run_app(settings, body)
    if args.json:
        print(report.model_dump_json(indent=2))
        return EXIT_OK
    lines = [settings.notice] if settings.notice else []
    lines.append(render_subjects(report))
    if report.mask_urls:
        lines.append("- Pass one mask to `videogen generate --mask URL` to choose who speaks.")
    print("\n".join(lines))
    return EXIT_OK


# --- serve / sandbox ------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from videogen import mcp_server

    if args.http:
        mcp_server.serve(transport="streamable-http", host=args.host, port=args.port)
    else:
        mcp_server.serve(transport="stdio")
    return EXIT_OK


def _sandbox(argv: Sequence[str]) -> int:
    from videogen import sandbox

    code = sandbox.main(list(argv))
    return int(code or 0)


# --- skill install --------------------------------------------------------------------------------


def skill_source() -> Path:
    """The skill folder: ``videogen/_skill`` in a wheel, or ``skill/`` in a checkout."""
    packaged = Path(__file__).resolve().parent / "_skill"
    checkout = Path(__file__).resolve().parents[2] / "skill"
    for candidate in (packaged, checkout):
        if (candidate / "SKILL.md").is_file():
            return candidate
    raise OutputError(
        "The skill files are missing from this installation (looked in "
        f"{packaged} and {checkout}): reinstall jimeng-videogen-mcp."
    )


def _skill_install(args: argparse.Namespace) -> int:
    dest = install_skill(args.dir, force=args.force)
    print(f"Installed the {SKILL_NAME} skill in {dest}")
    return EXIT_OK


def install_skill(skills_dir: Path, *, force: bool = False) -> Path:
    """Copy the skill into ``skills_dir/<name>/`` (the folder name must equal the skill name).

    An identical copy is left as is; a different one is replaced only with ``force``. The new
    copy is assembled next to the target and moved into place, so a failure leaves no half copy.
    """
    source = skill_source()
    dest = skills_dir.expanduser().resolve() / SKILL_NAME
    if dest.exists() or dest.is_symlink():
        if dest.is_dir() and not dest.is_symlink() and _same_tree(source, dest):
            return dest
        if not force:
            raise OutputError(
                f"{dest} already exists and differs from this version's skill: "
                "add --force to replace it."
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SKILL_NAME}-", dir=dest.parent))
    try:
        shutil.copytree(source, staging / SKILL_NAME, ignore=_IGNORED)
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        (staging / SKILL_NAME).rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".DS_Store")


def _same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        }

    names = files(a)
    if names != files(b):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


if __name__ == "__main__":
    sys.exit(main())
