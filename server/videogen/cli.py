"""The command line: ``videogen generate|check|tasks|usage|scenes|detect|serve|sandbox|skill``.

Thin over the engine (on cyclopts: the options come from the type hints and, for ``generate``,
from ``request.VideoAsk``): it parses arguments, reads the settings once, opens the app, calls one
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

import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

import anyio
from cyclopts import App as Cli
from cyclopts import CycloptsError, Parameter
from cyclopts.help import DefaultFormatter, PanelSpec
from rich.box import SIMPLE
from rich.console import Console
from rich.live import Live
from rich.text import Text

from videogen.config import VARIABLES, Settings
from videogen.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    InputError,
    VideogenError,
    scrub,
)
from videogen.report import (
    EXIT_CODES_HELP,
    exit_code_for,
    leaf_error,
    printable,
    render_markdown,
    render_subjects,
    render_usage,
    result_of,
    scenes_data,
    scenes_markdown,
    task_lines,
)
from videogen.request import VideoAsk, ask_parameters, cli_flag, pick_ask
from videogen.skill import DEFAULT_SKILL_DIR, SKILL_NAME, install_skill, skill_source

if TYPE_CHECKING:
    from videogen.app import App
    from videogen.engine import GenerationRequest, Progress, Task
    from videogen.report import SubjectReport

__all__ = ["EXIT_CODES_HELP", "exit_code_for", "install_skill", "main", "skill_source"]

log = logging.getLogger("videogen.cli")

T = TypeVar("T")

PROG: Final = "videogen"

EXIT_INTERRUPTED: Final = 130


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

# --- the command line ---------------------------------------------------------------------------

app = Cli(
    name=PROG,
    help="Turn a prompt (and images, audio or a scene) into a saved MP4 through "
    "Volcengine Jimeng/OmniHuman, TokenOps or Jenius.",
    help_epilogue=EPILOG,
    help_format="plaintext",
    help_formatter=DefaultFormatter(
        panel_spec=PanelSpec(box=SIMPLE, border_style="none", padding=0, expand=False)
    ),
    console=Console(width=120, highlight=False),
    default_parameter=Parameter(negative=()),
    print_error=False,
    exit_on_error=False,
    suppress_keyboard_interrupt=False,
    result_action="return_value",
    version_flags=[],
)
#: Subcommands show their own options; the exit codes and variables once, on ``videogen --help``.
_SUB: Final[dict[str, Any]] = {"help_epilogue": ""}

Json = Annotated[bool, Parameter(help="print only the structured result as JSON on stdout")]
Sandbox = Annotated[bool, Parameter(help="use the offline sandbox")]


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
    args = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if args[:1] == ["sandbox"]:  # the sandbox has its own parser (its options, its --help)
        return _run_guarded(partial(_sandbox, args[1:]))
    global _RUN
    _RUN = _Run(as_json="--json" in args)  # nothing carries over from an earlier command
    return _run_guarded(partial(_dispatch, args))


def _dispatch(args: list[str]) -> int:
    if not args:
        raise CycloptsError(msg="give a command (see `videogen --help`).")
    code = app(args)
    return EXIT_OK if code is None else int(code)  # None: --help was shown


def _run_guarded(run: Callable[[], int]) -> int:
    """Turn errors into one stderr line and an exit code; no traceback for expected errors.

    With ``--json`` the error is also one JSON object on stdout (``error_object``).
    """
    try:
        return run()
    except BaseException as exc:  # the one place every error becomes an exit code
        inner = leaf_error(exc)
        if isinstance(inner, VideogenError):
            return _fail(inner.kind, inner.message, inner.exit_code)
        if isinstance(inner, CycloptsError):
            return _fail("usage", str(inner).strip(), EXIT_USAGE)
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


# --- generate / check ---------------------------------------------------------------------------


def generate(
    prompt: Annotated[str, Parameter(name="PROMPT", help="text prompt")] = "",
    /,
    *,
    output: Annotated[
        str | None,
        Parameter(help="a folder to save into, or a file path ending in .mp4 (folder + file name)"),
    ] = None,
    no_wait: Annotated[
        bool,
        Parameter(
            name="--no-wait", help="submit, print the task id and exit 7; `videogen check ID` later"
        ),
    ] = False,
    wait: Annotated[
        float | None,
        Parameter(help="wait at most this long (default: poll interval x max poll attempts)"),
    ] = None,
    new: Annotated[
        bool,
        Parameter(
            help="submit again even if an identical request was submitted recently (each "
            "submit is billed)"
        ),
    ] = False,
    sandbox: Sandbox = False,
    json: Json = False,
    **ask: Any,
) -> int:
    """Generate a video and save it (billed on real providers)."""
    from videogen.engine import request_from

    asked = pick_ask({**ask, "prompt": prompt})
    settings = load_settings(sandbox=sandbox, output=output)
    wait_for = _generate_wait(no_wait, wait, settings)
    if output:
        asked = asked.model_copy(update={"filename": output_target(output)[1]})
    intake = request_from(asked, settings)
    request = intake.request
    if output:  # the task remembers its folder, so a later `check` saves there too
        request = request.model_copy(update={"output_dir": str(settings.output_dir)})
    _RUN.request, _RUN.settings, _RUN.started = request, settings, time.time()

    def submitted(task: Task) -> None:
        _RUN.task_id = task.id

    async def body(app: App, on_progress: Callable[[Progress], Awaitable[None]]) -> Task:
        return await app.engine.generate(
            request, wait_seconds=wait_for, on_progress=on_progress, new=new, on_submitted=submitted
        )

    task = _run_app(settings, partial(_with_progress, body))
    return _report(task, settings, json, notes=intake.notes)


def _cli_parameter(parameter: inspect.Parameter) -> inspect.Parameter | None:
    """A ``VideoAsk`` field as a ``generate`` option: ``--fast``, a repeatable ``--mask``,
    ``--images`` taking several. ``PROMPT`` is ``generate``'s own positional argument and the
    file name comes from ``--output``."""
    info = VideoAsk.model_fields[parameter.name]
    flag = cli_flag(parameter.name)
    hint: Any = info.annotation
    options: dict[str, Any] = {"help": info.description}
    match parameter.name:
        case "filename" | "prompt":
            return None
        case "mask":
            hint = list[str] | None
        case "images":
            options["consume_multiple"] = True
        case _:
            options["name"] = flag
    return parameter.replace(annotation=Annotated[hint, Parameter(**options)])


def _publish_ask(fn: Callable[..., Any]) -> None:
    """Give ``generate`` (whose ``**ask`` takes them) ``VideoAsk``'s fields as options."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    derived = [p for p in map(_cli_parameter, ask_parameters()) if p is not None]
    parameters = [own[0], *derived, *own[1:]]
    fn.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": int}


_publish_ask(generate)


async def _with_progress(
    body: Callable[[App, Callable[[Progress], Awaitable[None]]], Awaitable[T]], app: App
) -> T:
    progress = ProgressLine(sys.stderr)
    try:
        return await body(app, progress.update)
    finally:
        progress.close()


def _generate_wait(no_wait: bool, wait: float | None, settings: Settings) -> float:
    """Seconds to wait: 0 for --no-wait, --wait, else poll interval x max attempts (seed 002)."""
    if no_wait and wait is not None:
        raise CycloptsError(msg="--no-wait and --wait cannot be given together: choose one.")
    if no_wait:
        return 0.0
    if wait is not None:
        if wait < 0:
            raise InputError("--wait must be 0 or more seconds.")
        return float(wait)
    return settings.poll_interval * settings.max_poll_attempts


def check(
    task_id: Annotated[str, Parameter(name="TASK_ID")],
    /,
    *,
    wait: Annotated[
        float, Parameter(help="wait at most this long for it to finish (default: 0, one look)")
    ] = 0.0,
    output: Annotated[
        str | None,
        Parameter(
            help="save the video in this folder instead (e.g. after a save failed; created if "
            "missing)"
        ),
    ] = None,
    sandbox: Sandbox = False,
    json: Json = False,
) -> int:
    """Check a task, optionally waiting for it; saves the video when it is ready (not billed)."""
    if wait < 0:
        raise InputError("--wait must be 0 or more seconds.")
    _RUN.task_id = task_id
    settings = load_settings(sandbox=sandbox)
    folder = check_folder(output)

    async def body(app: App, on_progress: Callable[[Progress], Awaitable[None]]) -> Task:
        return await app.engine.check(
            task_id, wait_seconds=wait, on_progress=on_progress, output_dir=folder
        )

    task = _run_app(settings, partial(_with_progress, body))
    return _report(task, settings, json)


def _report(task: Task, settings: Settings, as_json: bool, notes: Sequence[str] = ()) -> int:
    result = result_of(task, notice=settings.notice, notes=notes, interface="cli")
    print(result.model_dump_json(indent=2) if as_json else render_markdown(result))
    return exit_code_for(task)


# --- tasks / scenes / detect --------------------------------------------------------------------


def tasks(
    *,
    limit: Annotated[int, Parameter(help="at most N (default 20)")] = 20,
    json: Json = False,
) -> int:
    """List recent tasks, newest first."""
    from videogen.app import read_tasks

    if limit < 1:
        raise InputError("--limit must be 1 or more.")
    found = read_tasks(load_settings(), limit)
    if json:
        items = [result_of(t, notice=None, interface="cli").model_dump(mode="json") for t in found]
        print(_json_text(items))
        return EXIT_OK
    print(task_lines(found, getattr(found, "skipped", [])))
    return EXIT_OK


def usage(
    *,
    days: Annotated[int, Parameter(help="the last N days (default 30)")] = 30,
    json: Json = False,
) -> int:
    """Show what was billed by UTC day, provider, mode and owner."""
    from videogen.app import read_usage

    if not 1 <= days <= 3660:
        raise InputError("--days must be between 1 and 3660.")
    report = read_usage(load_settings(), days=days)
    print(report.model_dump_json(indent=2) if json else render_usage(report))
    return EXIT_OK


def _json_text(data: object) -> str:
    import json

    return json.dumps(data, indent=2, ensure_ascii=False)


def scenes(*, json: Json = False) -> int:
    """List the Jenius scenes and the camera moves."""
    if json:
        print(_json_text(scenes_data()))
    else:
        print(scenes_markdown())
    return EXIT_OK


def detect(
    image: Annotated[str, Parameter(name="URL", help="the portrait: a public http(s) URL only")],
    /,
    *,
    provider: Annotated[Literal["volcengine", "tokenops"] | None, Parameter()] = None,
    wait: Annotated[float, Parameter(help="how long to wait for recognition (default 30)")] = 30.0,
    sandbox: Sandbox = False,
    json: Json = False,
) -> int:
    """Find the subjects in a portrait (OmniHuman); prints masks to pass to `generate --mask`."""
    if wait < 0:
        raise InputError("--wait must be 0 or more seconds.")
    settings = load_settings(sandbox=sandbox)

    async def body(app: App) -> SubjectReport:
        return await app.engine.detect_subjects(image, provider=provider, wait_seconds=wait)

    report = _run_app(settings, body)
    if json:
        print(report.model_dump_json(indent=2))
        return EXIT_OK
    lines = [settings.notice] if settings.notice else []
    lines.append(render_subjects(report))
    if report.mask_urls:
        lines.append("- Pass one mask to `videogen generate --mask URL` to choose who speaks.")
    print("\n".join(lines))
    return EXIT_OK


# --- serve / sandbox / skill --------------------------------------------------------------------


def serve(
    *,
    http: Annotated[bool, Parameter(help="serve streamable HTTP instead of stdio")] = False,
    host: Annotated[
        str,
        Parameter(
            help="HTTP bind address (default 127.0.0.1; anything else requires VIDEOGEN_HTTP_TOKEN)"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, Parameter(help="HTTP port (default 8000)")] = 8000,
) -> int:
    """Run the MCP server (stdio by default)."""
    from videogen import mcp_server

    if http:
        mcp_server.serve(transport="streamable-http", host=host, port=port)
    else:
        mcp_server.serve(transport="stdio")
    return EXIT_OK


def sandbox(*args: str) -> int:
    """Run the offline sandbox of all three provider APIs (see `videogen sandbox --help`)."""
    return _sandbox(args)


def _sandbox(argv: Sequence[str]) -> int:
    from videogen import sandbox

    code = sandbox.main(list(argv))
    return int(code or 0)


def install(
    *,
    dir: Annotated[Path, Parameter(help=f"skills folder (default {DEFAULT_SKILL_DIR})")] = (
        DEFAULT_SKILL_DIR
    ),
    force: Annotated[bool, Parameter(help="replace a different copy")] = False,
) -> int:
    """Copy the agent skill into DIR/videogen/."""
    dest = install_skill(dir, force=force)
    print(f"Installed the {SKILL_NAME} skill in {dest}")
    return EXIT_OK


for _command in (generate, check, tasks, usage, scenes, detect, serve, sandbox):
    app.command(_command, **_SUB)
skill = Cli(name="skill", help="Manage the agent skill.", **_SUB)
skill.command(install, **_SUB)
app.command(skill)


# --- what every command shares ------------------------------------------------------------------


def error_object(kind: str, message: str, exit_code: int, task_id: str | None) -> dict[str, Any]:
    """What ``--json`` prints on stdout for an error (``task_id`` only when a task is concerned)."""
    data: dict[str, Any] = {"error": True, "kind": kind, "message": message}
    if task_id is not None:
        data["task_id"] = task_id
    data["exit_code"] = exit_code
    return data


def _print_error_object(kind: str, message: str, exit_code: int) -> None:
    data = error_object(kind, scrub(message), exit_code, _RUN.task_id or _submitted_task())
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
    from videogen.app import read_tasks

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


def _error(message: str) -> None:
    print(f"{PROG}: error: {printable(scrub(message))}", file=sys.stderr)


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
    if output is not None:
        folder = output_target(output)[0]
        settings = replace(settings, output_dir=folder)
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


def check_folder(raw: str | None) -> str | None:
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


class ProgressLine:
    """The status and elapsed time of a waiting command, on one line of a terminal redrawn in
    place (rich's ``Live``, refreshed every second); nothing at all when stderr is not a
    terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.started = time.monotonic()
        self.status, self.message = "submitting", ""
        console = Console(file=stream, highlight=False)
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(
                self, console=console, refresh_per_second=1, redirect_stdout=False,
                redirect_stderr=False,
            )  # fmt: skip
            self.live.start()

    async def update(self, progress: Progress) -> None:
        self.status, self.message = progress.status, progress.message
        if self.live is not None:
            self.live.refresh()

    def __rich__(self) -> Text:
        text = f"{self.status} — {time.monotonic() - self.started:.0f} s elapsed"
        if self.message:
            text += f" — {self.message}"
        return Text(printable(text)[:100], no_wrap=True, overflow="ellipsis")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


if __name__ == "__main__":
    sys.exit(main())
