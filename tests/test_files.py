"""The file room: one file-name rule, applied before billing and at save time, whose every
accepted name really can be saved; saved files read without following links."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anyio
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videogen.download import download
from videogen.errors import InputError, OutputError
from videogen.files import NAME_BYTES, check_name, copy_into, open_saved, safe_filename
from videogen.intake import build_request
from videogen.providers.base import DownloadSource

#: The smallest body the saver's MP4 check accepts: an ``ftyp`` box, then a ``moov`` box.
MP4 = b"\x00\x00\x00\x08ftyp\x00\x00\x00\x08moov"

#: Names the saver refused while intake let them through (so they were billed), and the other
#: names no file system or no platform takes.
REFUSED = [
    ".hidden",
    ".hidden.mp4",
    "a\x07b.mp4",
    "tab\there.mp4",
    "C:x",
    "   ",
    "\u00a0",
    " boat.mp4",
    "boat.mp4 ",
    "x" * 201,
    "\u00e9" * 99,  # 198 bytes, 202 with .mp4
    "\u202egnp.mp4",
    "boat\u2066.mp4",
    "zero\u200bwidth.mp4",
    "CON",
    "nul.mp4",
    "COM1",
    "lpt9.backup.mp4",
    "Aux .mp4",
    "a|b.mp4",
    "what?.mp4",
    "\ud800.mp4",
]


def intake(filename: str) -> str | None:
    request = build_request(prompt="a paper boat", provider="volcengine", filename=filename)
    return request.request.filename


@pytest.mark.parametrize("name", REFUSED)
def test_a_name_the_saver_cannot_use_is_refused_before_anything_is_sent(name: str) -> None:
    """Intake and the saver share one rule: what would fail at save time never gets billed."""
    with pytest.raises(InputError) as caught:
        intake(name)
    assert "plain file name such as 'boat.mp4'" in caught.value.message
    assert "\u202e" not in caught.value.message  # shown escaped, never reordering the message


@pytest.mark.parametrize("name", REFUSED)
def test_the_saver_refuses_the_same_names(name: str) -> None:
    with pytest.raises(InputError):
        safe_filename("p", "vg_1", name)


@pytest.mark.parametrize(
    ("given", "saved"),
    [
        ("boat", "boat.mp4"),
        ("boat.MP4", "boat.MP4"),
        ("千军万马", "千军万马.mp4"),
        ("my boat\u00a0v2", "my boat\u00a0v2.mp4"),
        ("con-test", "con-test.mp4"),
        ("x" * (NAME_BYTES - 4), "x" * (NAME_BYTES - 4) + ".mp4"),
    ],
)
def test_a_plain_name_is_kept_with_mp4_added(given: str, saved: str) -> None:
    assert intake(given) == saved == check_name(given)


def save(folder: Path, requested: str | None, prompt: str = "p") -> Path:
    """Save a video the way a task does: named by ``safe_filename``, written by ``download``."""
    filename = safe_filename(prompt, "vg_0123456789ab", requested)

    return anyio.run(_download_as, folder, filename)


async def _download_as(folder: Path, filename: str) -> Path:
    client = httpx2.AsyncClient(
        transport=httpx2.MockTransport(lambda request: httpx2.Response(200, content=MP4))
    )
    async with client:
        source = DownloadSource(url="https://cdn.example/video.mp4")
        return await download(
            client, source, folder, filename, max_bytes=1 << 20, deadline_seconds=10
        )


ANY_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
    max_size=60,
)
NAMES = st.one_of(
    ANY_TEXT,
    st.sampled_from(REFUSED),
    st.builds(
        lambda s, n: s * n, st.sampled_from(["x", "é", "千", "\U0001f6a3"]), st.integers(1, 70)
    ),
)
PROPERTY = settings(max_examples=300, deadline=None, database=None)


@PROPERTY
@given(name=NAMES)
def test_whatever_name_intake_accepts_the_saver_saves(name: str) -> None:
    """Arbitrary text (controls, surrogates, bidi marks, long runs of wide characters): every
    name intake lets through is written, under exactly the name intake reported."""
    try:
        accepted = intake(name)
    except InputError:
        return
    if accepted is None:  # an empty name means "not given": the default name is used
        assert name == ""
        return
    with tempfile.TemporaryDirectory() as folder:
        path = save(Path(folder), accepted)
        assert path == Path(folder) / accepted and path.read_bytes() == MP4
        assert os.listdir(folder) == [accepted]


@settings(max_examples=150, deadline=None, database=None)
@given(prompt=ANY_TEXT)
def test_a_name_made_from_any_prompt_passes_the_rule_and_is_saved(prompt: str) -> None:
    name = safe_filename(prompt, "vg_0123456789ab")
    assert check_name(name) == name
    with tempfile.TemporaryDirectory() as folder:
        assert save(Path(folder), None, prompt).name == name


def test_download_refuses_a_name_outside_the_rule(tmp_path: Path) -> None:
    """The saver checks again: a caller that skipped intake gets an OutputError, no file."""
    with pytest.raises(OutputError, match="plain file name"):
        anyio.run(_download_as, tmp_path, "nul.mp4")
    assert list(tmp_path.iterdir()) == []


def test_a_copy_takes_the_first_free_name_and_leaves_no_temporary(tmp_path: Path) -> None:
    source = tmp_path / "a.mp4"
    source.write_bytes(MP4)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "boat.mp4").write_bytes(b"someone else's")
    with source.open("rb") as f:
        made = copy_into(f, tmp_path / "out", "boat.mp4")
    assert made == tmp_path / "out" / "boat-1.mp4" and made.read_bytes() == MP4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["boat-1.mp4", "boat.mp4"]


@pytest.mark.parametrize("planted", ["file link", "folder link", "fifo"])
def test_a_saved_file_is_opened_only_as_a_regular_file_in_its_folder(
    tmp_path: Path, planted: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    video = out / "boat.mp4"
    secret = tmp_path / "secret"
    secret.write_text("not for you")
    if planted == "file link":
        video.symlink_to(secret)
    elif planted == "folder link":
        (tmp_path / "real").mkdir()
        (tmp_path / "real" / "boat.mp4").write_bytes(MP4)
        linked = tmp_path / "linked"
        linked.symlink_to(tmp_path / "real", target_is_directory=True)
        video = linked / "boat.mp4"
    elif planted == "fifo":
        os.mkfifo(video)
    with pytest.raises(OSError):
        open_saved(video)


def test_a_regular_saved_file_opens(tmp_path: Path) -> None:
    (tmp_path / "boat.mp4").write_bytes(MP4)
    with open_saved(tmp_path / "boat.mp4") as f:
        assert f.read() == MP4


@pytest.mark.anyio
async def test_a_burst_of_submits_proves_a_folder_once_and_a_failure_is_not_remembered(
    tmp_path: Path,
) -> None:
    """``ProvenFolders``: the preflight runs once per folder within ``PROVEN_SECONDS`` (a
    write-check file made and removed each time it runs), again after it, and never
    remembers a folder it could not prove."""
    from videogen.destination import PROVEN_SECONDS, ProvenFolders

    now = [100.0]
    folders = ProvenFolders(clock=lambda: now[0])
    made: list[str] = []
    real_open = os.open

    def counting_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if ".videogen-write-check-" in os.fspath(path):
            made.append(os.fspath(path))
        return real_open(path, flags, mode)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "open", counting_open)
        for _ in range(50):
            assert await folders.prepare(tmp_path / "out") == tmp_path / "out"
        assert len(made) == 1
        async with anyio.create_task_group() as group:  # all at once: one proof in flight
            now[0] += PROVEN_SECONDS
            for _ in range(50):
                group.start_soon(folders.prepare, tmp_path / "out")
        assert len(made) == 2
        now[0] += PROVEN_SECONDS
        await folders.prepare(tmp_path / "out")
        assert len(made) == 3
        (tmp_path / "file").write_text("not a folder")
        for _ in range(2):
            with pytest.raises(OutputError, match="not a folder"):
                await folders.prepare(tmp_path / "file")
