"""Issue 7, bad input: property-based calls of every tool through the in-memory MCP client.

Every call ends in a result or an error result with a readable message (never a bare internal
error), and an input that could be refused locally reaches no provider: the sandbox (standing in
for the providers, outside the server) sees no submit and no detect for it. Hostile values:
a PEM private key given as an image, a huge sparse file, ``..`` paths, symlinks, NUL bytes, very
long prompts, wrong types. One server serves every example (a blocking portal holds it open).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from videogen.catalog import CAMERA_MOVES, MODES, PROVIDERS, SCENES
from videogen.sandbox import RunningSandbox, SandboxOptions, serve

from .evidence_helpers import settings_env, struct_png

PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7evidence\n"
    "-----END PRIVATE KEY-----\n"
)
HOSTILE_NAMES = ["../../evil.mp4", "a/b.mp4", "x\x00.mp4", "x" * 300, ".", "..", "/etc/passwd"]
HOSTILE_NAMES += ["ok.mp4", "con.mp4", " .mp4"]
HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Rig:
    portal: BlockingPortal
    client: Any
    sandbox: RunningSandbox
    files: dict[str, str]

    def call(self, tool: str, arguments: dict[str, Any]) -> tuple[bool, str, Any]:
        from mcp_types import TextContent

        result = self.portal.call(self.client.call_tool, tool, arguments)
        text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
        return result.is_error, text, result.structured_content

    def provider_calls(self) -> int:
        return sum(self.sandbox.log.count(operation=op) for op in ("submit", "detect"))


def _hostile_files(root: Path) -> dict[str, str]:
    root.mkdir()
    key = root / "photo.png"
    key.write_text(PEM)
    huge = root / "huge.png"
    with huge.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(6 * 1024**3)  # sparse: 6 GB on paper, nothing on disk
    good = root / "good.png"
    good.write_bytes(struct_png(640, 480))
    tiny = root / "tiny.png"
    tiny.write_bytes(struct_png(16, 16))
    link = root / "link.png"
    link.symlink_to(key)
    loop = root / "loop.png"
    loop.symlink_to(loop)
    (root / "folder.png").mkdir()
    fifo = root / "fifo.png"
    os.mkfifo(fifo)
    return {
        "key": str(key),
        "huge": str(huge),
        "good": str(good),
        "tiny": str(tiny),
        "link": str(link),
        "loop": str(loop),
        "dir": str(root / "folder.png"),
        "fifo": str(fifo),
        "dotdot": str(root / ".." / root.name / "photo.png"),
        "missing": str(root / "missing.png"),
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    from mcp import Client

    from videogen.config import Settings
    from videogen.mcp_server import create_server

    root = tmp_path_factory.mktemp("bad-input")
    files = _hostile_files(root / "files")
    # Long jobs: nothing accepted here is ever downloaded or rendered while the test runs.
    options = SandboxOptions(job_seconds=600)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(options)) as sandbox,
    ):
        settings = Settings.from_env({**settings_env(root), **sandbox.env()})
        server = create_server(settings, warm_up_after=None)
        with portal.wrap_async_context_manager(Client(server)) as client:
            yield Rig(portal, client, sandbox, files)


def _refs(files: dict[str, str]) -> st.SearchStrategy[str]:
    """Strings a model might pass as an image or audio reference: mostly hostile."""
    hostile = [
        *files.values(),
        "photo.png\x00.jpg",
        "../../../../etc/passwd",
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "data:image/png;base64,!!!!",
        "data:text/plain,hello",
        "",
        " ",
        "~/" + "x" * 5000,
    ]
    return st.one_of(
        st.sampled_from(hostile), st.just("https://example.com/ok.png"), st.text(max_size=40)
    )


def _generate_args(files: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """Well-typed arguments (the schema lets them through) with hostile values: what reaches
    intake and the input checks. Wrong types have their own test."""
    refs = _refs(files)
    optional = {
        "prompt": st.one_of(
            st.text(max_size=60),
            st.just("x" * 5000),
            st.just("boat\x00boat"),
            st.just("\U0001f6a3" * 900),
        ),
        "mode": st.sampled_from(MODES),
        "provider": st.sampled_from(PROVIDERS),
        "image": refs,
        "tail_image": refs,
        "images": st.lists(refs, max_size=11),
        "audio": refs,
        "mask": st.one_of(refs, st.lists(refs, max_size=3)),
        "duration": st.sampled_from([4, 5, 6, 8, 10]),
        "fps": st.sampled_from([24, 25, 30]),
        "aspect_ratio": st.sampled_from(["16:9", "1:1", "9:16", "21:9"]),
        "seed": st.integers(min_value=-(2**70), max_value=2**70),
        "camera": st.sampled_from(list(CAMERA_MOVES)),
        "camera_strength": st.sampled_from(["weak", "medium", "strong"]),
        "resolution": st.sampled_from([720, 1080]),
        "fast_mode": st.booleans(),
        "scene": st.one_of(st.sampled_from(list(SCENES)), st.text(max_size=20)),
        "filename": st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=30)),
        "new": st.booleans(),
    }
    return st.fixed_dictionaries({"wait_seconds": st.just(0)}, optional=optional)


def _wrong_types() -> st.SearchStrategy[dict[str, Any]]:
    """A valid request with one field of the wrong type (or an unknown field)."""
    junk = st.one_of(
        st.integers(),
        st.floats(allow_nan=True),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.text(max_size=10),
    )
    fields = ["prompt", "mode", "provider", "image", "images", "duration", "fps", "seed"]
    fields += ["aspect_ratio", "wait_seconds", "new", "fast_mode", "resolution", "surprise"]
    return st.builds(
        lambda name, value: {"prompt": "a boat", "wait_seconds": 0, name: value},
        st.sampled_from(fields),
        junk,
    )


def _check_answer(rig: Rig, tool: str, args: dict[str, Any], before: int) -> None:
    is_error, text, data = rig.call(tool, args)
    after = rig.provider_calls()
    assert "-----BEGIN" not in text and "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in text
    if is_error:
        message = text.removeprefix(f"Error executing tool {tool}: ")
        event("refused by the schema" if "validation error" in text else "refused by intake")
        assert len(message) >= 20, f"bare error for {args!r}: {text!r}"
        assert "failed inside videogen" not in text, f"internal error for {args!r}: {text}"
        assert after == before, f"refused {args!r} only after asking the provider: {text}"
    else:
        event("accepted")
        assert isinstance(data, dict), text


def test_generate_video_answers_every_argument_mix_without_bothering_the_provider(
    rig: Rig,
) -> None:
    @HYPOTHESIS
    @given(args=_generate_args(rig.files))
    def run(args: dict[str, Any]) -> None:
        _check_answer(rig, "generate_video", args, rig.provider_calls())

    run()


def test_wrong_types_are_refused_by_the_schema_with_the_field_named(rig: Rig) -> None:
    @HYPOTHESIS
    @given(args=_wrong_types())
    def run(args: dict[str, Any]) -> None:
        _check_answer(rig, "generate_video", args, rig.provider_calls())

    run()


def test_check_task_and_list_tasks_refuse_junk_with_a_message(rig: Rig) -> None:
    junk = st.one_of(st.text(max_size=80), st.integers(), st.none(), st.just("vg_\x00" + "a" * 99))

    @HYPOTHESIS
    @given(task_id=junk, limit=st.one_of(st.integers(), st.text(max_size=5)), extra=st.booleans())
    def run(task_id: Any, limit: Any, extra: bool) -> None:
        args = {"task_id": task_id, "wait_seconds": 0, **({"junk": 1} if extra else {})}
        _check_answer(rig, "check_task", args, rig.provider_calls())
        _check_answer(rig, "list_tasks", {"limit": limit}, rig.provider_calls())

    run()


def test_detect_subjects_refuses_hostile_images_before_any_provider_call(rig: Rig) -> None:
    @HYPOTHESIS
    @given(
        image=st.one_of(_refs(rig.files), st.integers(), st.none()),
        provider=st.one_of(st.sampled_from(PROVIDERS), st.none()),
    )
    def run(image: Any, provider: Any) -> None:
        if image == "https://example.com/ok.png" or image == rig.files["good"]:
            return  # a usable portrait: detection is the provider's job (and is tested elsewhere)
        args = {"image": image, **({"provider": provider} if provider else {})}
        _check_answer(rig, "detect_subjects", args, rig.provider_calls())

    run()


@pytest.mark.parametrize(
    "name", ["key", "huge", "link", "loop", "dir", "fifo", "dotdot", "missing"]
)
def test_each_hostile_file_is_refused_as_an_image_with_a_reason(rig: Rig, name: str) -> None:
    """The named hostile cases, each once, so a regression names the case."""
    before = rig.provider_calls()
    is_error, text, _ = rig.call(
        "generate_video",
        {"prompt": "x", "image": rig.files[name], "provider": "volcengine", "wait_seconds": 0},
    )
    assert is_error and rig.provider_calls() == before
    assert "failed inside videogen" not in text and "-----BEGIN" not in text
    assert len(text) > len("Error executing tool generate_video: ") + 20
