"""Input references are checked by content and refused clearly, before any HTTP request."""

from __future__ import annotations

import base64
import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx2
import pytest

from videogen.config import ProviderEndpoint
from videogen.errors import InputError
from videogen.inputs import check_image_bytes, describe, prepare_image, prepare_inputs
from videogen.intake import build_request
from videogen.providers.base import PreparedInputs
from videogen.providers.jenius import JeniusProvider
from videogen.providers.tokenops import TokenOpsProvider
from videogen.providers.volcengine import VolcengineProvider


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def png(width: int, height: int) -> bytes:
    """A real (grey, zlib-compressed) PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int) -> bytes:
    """A real JPEG encoded by FFmpeg's mjpeg encoder (through PyAV)."""
    import av

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    packets = codec.encode(av.VideoFrame(width, height, "yuvj420p")) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


@pytest.fixture
def good_png(tmp_path: Path) -> Path:
    path = tmp_path / "first.png"
    path.write_bytes(png(640, 480))
    return path


def refusing_client() -> httpx2.AsyncClient:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise AssertionError(f"an HTTP request was sent: {request.url}")

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


async def send_through(**kwargs: Any) -> None:
    """intake -> inputs -> adapter submit, with a transport that fails the test if used."""
    request = build_request(**kwargs).request
    client = refusing_client()
    adapters = {
        "volcengine": VolcengineProvider(
            ProviderEndpoint("http://127.0.0.1:9", access_key="a", secret_key="s"), client
        ),
        "tokenops": TokenOpsProvider(ProviderEndpoint("http://127.0.0.1:9", api_key="k"), client),
        "jenius": JeniusProvider(ProviderEndpoint("http://127.0.0.1:9", api_key="k"), client),
    }
    adapter = adapters[request.provider]
    prepared = await prepare_inputs(
        request, accepts_uploaded_images=adapter.accepts_uploaded_images
    )
    await adapter.submit(request, prepared)


@pytest.mark.anyio
async def test_a_url_is_passed_through_untouched() -> None:
    image = await prepare_image("https://example.com/a.png?x=1", allow_upload=True)
    assert (image.url, image.base64) == ("https://example.com/a.png?x=1", None)


@pytest.mark.anyio
async def test_a_local_png_is_read_checked_and_base64_encoded(good_png: Path) -> None:
    image = await prepare_image(str(good_png), allow_upload=True)
    assert (image.mime, image.width, image.height) == ("image/png", 640, 480)
    assert image.base64 is not None and base64.b64decode(image.base64) == png(640, 480)
    assert image.data_url.startswith("data:image/png;base64,iVBOR")


@pytest.mark.anyio
async def test_a_real_jpeg_is_recognised_by_its_bytes_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(jpeg(640, 360))
    image = await prepare_image(str(path), allow_upload=True)
    assert (image.mime, image.width, image.height) == ("image/jpeg", 640, 360)


@pytest.mark.anyio
async def test_a_data_url_is_decoded_and_checked() -> None:
    image = await prepare_image(data_url(png(400, 400)), allow_upload=True)
    assert (image.mime, image.width, image.height) == ("image/png", 400, 400)


@pytest.mark.anyio
async def test_a_home_relative_path_is_expanded(
    good_png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(good_png.parent))
    assert (await prepare_image("~/first.png", allow_upload=True)).width == 640


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [(5000, 1000, "at most 4096"), (300, 600, "at least 320"), (1000, 320, "3× the short side")],
)
def test_image_sizes_outside_the_provider_limits_are_refused(
    width: int, height: int, words: str
) -> None:
    with pytest.raises(InputError, match=words):
        check_image_bytes(png(width, height))


def test_sizes_at_the_limits_are_accepted() -> None:
    assert check_image_bytes(png(960, 320))[1:] == (960, 320)
    assert check_image_bytes(png(4096, 4096)[:33])[1:] == (4096, 4096)


def test_a_truncated_image_is_refused_as_damaged() -> None:
    with pytest.raises(InputError, match="damaged"):
        check_image_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InputError, match="damaged"):
        check_image_bytes(jpeg(640, 360)[:20])


HOSTILE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.mark.anyio
async def test_a_private_key_named_like_a_photo_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "photo.png"
    path.write_text(HOSTILE)
    with pytest.raises(InputError, match="not a JPEG or PNG") as caught:
        await prepare_image(str(path), allow_upload=True)
    assert "PRIVATE" not in caught.value.message and "b3Bl" not in caught.value.message


@pytest.mark.anyio
async def test_a_huge_sparse_file_is_refused_from_its_size_without_reading_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as file:
        file.truncate(50 * 1024**3)
    with pytest.raises(InputError, match=r"at most 4\.7 MB"):
        await prepare_image(str(path), allow_upload=True)


@pytest.mark.anyio
async def test_a_just_too_large_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(png(640, 480) + b"\0" * 4_700_000)
    with pytest.raises(InputError, match="MB"):
        await prepare_image(str(path), allow_upload=True)


@pytest.mark.anyio
async def test_dev_zero_is_refused_at_once() -> None:
    with pytest.raises(InputError, match="device, pipe or socket"):
        await prepare_image("/dev/zero", allow_upload=True)


@pytest.mark.anyio
async def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="device, pipe or socket"):
        await prepare_image(str(fifo), allow_upload=True)


@pytest.mark.anyio
async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        await prepare_image(str(tmp_path), allow_upload=True)


@pytest.mark.anyio
async def test_a_symlink_is_judged_by_what_it_points_at(tmp_path: Path, good_png: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.symlink_to("/dev/zero")
    with pytest.raises(InputError, match="device"):
        await prepare_image(str(bad), allow_upload=True)
    good = tmp_path / "good.png"
    good.symlink_to(good_png)
    assert (await prepare_image(str(good), allow_upload=True)).width == 640
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(InputError, match="cannot be opened"):
        await prepare_image(str(loop), allow_upload=True)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("/tmp/a\x00b.png", "NUL"),
        ("../secrets/photo.png", "'..'"),
        ("images/../../etc/passwd", "'..'"),
        ("/definitely/not/here.png", "does not exist"),
        ("", "empty"),
        ("file:///etc/passwd", "unsupported scheme"),
        ("data:image/png,notbase64", "base64 data URL"),
        ("data:image/png;base64,!!!!", "valid base64"),
        ("data:image/png;base64," + "A" * 6_400_000, "MB"),
        (data_url(HOSTILE.encode(), "image/png"), "not a JPEG or PNG"),
    ],
)
async def test_hostile_references_are_clear_input_errors(ref: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        await prepare_image(ref, allow_upload=True)


@pytest.mark.anyio
async def test_uploads_are_refused_where_only_urls_are_taken(good_png: Path) -> None:
    with pytest.raises(InputError, match="public http\\(s\\) URL"):
        await prepare_image(str(good_png), allow_upload=False)


@pytest.mark.anyio
async def test_tail_frames_must_share_the_first_frames_aspect_ratio(tmp_path: Path) -> None:
    first, tail, near = tmp_path / "f.png", tmp_path / "t.png", tmp_path / "n.png"
    first.write_bytes(png(640, 480))
    tail.write_bytes(png(640, 360))
    near.write_bytes(png(1280, 954))  # 0.6% off 4:3
    ok = build_request(provider="volcengine", prompt="p", image=str(first), tail_image=str(near))
    prepared = await prepare_inputs(ok.request, accepts_uploaded_images=True)
    assert [i.width for i in prepared.images] == [640, 1280]
    bad = build_request(provider="volcengine", prompt="p", image=str(first), tail_image=str(tail))
    with pytest.raises(InputError, match="same aspect ratio"):
        await prepare_inputs(bad.request, accepts_uploaded_images=True)


@pytest.mark.anyio
async def test_prepare_inputs_keeps_urls_audio_and_masks() -> None:
    request = build_request(
        provider="tokenops",
        image="https://a/p.png",
        audio="https://a/s.mp3",
        mask=["https://a/m.png"],
    ).request
    prepared = await prepare_inputs(request, accepts_uploaded_images=True)
    assert prepared.images[0].url == "https://a/p.png"
    assert (prepared.audio_url, prepared.mask_urls) == ("https://a/s.mp3", ("https://a/m.png",))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"provider": "jenius", "scene": "celebrity", "image": "{png}"}, "public http"),
        ({"provider": "volcengine", "image": "{png}", "audio": "https://a/s.mp3"}, "public http"),
        ({"provider": "tokenops", "image": "{png}", "audio": "https://a/s.mp3"}, "public http"),
        ({"provider": "volcengine", "image": "https://a/p.png", "audio": "{png}"}, "audio"),
        (
            {
                "provider": "tokenops",
                "image": "https://a/p.png",
                "audio": "https://a/s.mp3",
                "mask": "{png}",
            },
            "mask 1",
        ),
        ({"provider": "volcengine", "prompt": "p", "image": "/dev/zero"}, "device"),
        ({"provider": "tokenops", "prompt": "p", "image": "{small}"}, "at least 320"),
        (
            {"provider": "volcengine", "prompt": "p", "image": "{png}", "tail_image": "{wide}"},
            "same aspect ratio",
        ),
        ({"provider": "tokenops", "prompt": "p", "image": "{key}"}, "not a JPEG or PNG"),
        ({"provider": "volcengine", "prompt": "p", "image": "../x.png"}, "'..'"),
    ],
)
async def test_every_refusal_happens_before_any_http_request(
    tmp_path: Path, good_png: Path, kwargs: dict[str, Any], words: str
) -> None:
    small, wide, key = tmp_path / "small.png", tmp_path / "wide.png", tmp_path / "key.png"
    small.write_bytes(png(300, 300))
    wide.write_bytes(png(960, 320))
    key.write_text(HOSTILE)
    files = {"{png}": good_png, "{small}": small, "{wide}": wide, "{key}": key}
    resolved = {k: str(files.get(v, v)) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(InputError, match=words):
        await send_through(**resolved)


@pytest.mark.anyio
async def test_the_refusing_client_really_fails_a_test_that_sends() -> None:
    """Guard for the test above: a valid request does reach the transport (and trips it)."""
    with pytest.raises(AssertionError, match="HTTP request was sent"):
        await send_through(provider="volcengine", prompt="p")


def test_prepared_inputs_default_is_empty() -> None:
    assert PreparedInputs() == PreparedInputs((), None, ())


# -- whose files: clients over HTTP (issue 14 item 9) -------------------------------------------


@pytest.mark.anyio
async def test_a_home_path_of_an_unknown_user_is_a_clear_input_error() -> None:
    with pytest.raises(InputError, match="no user 'nosuchuser-vg'") as refused:
        await prepare_image("~nosuchuser-vg/x.png", allow_upload=True)
    assert "full path" in refused.value.message


@pytest.mark.anyio
async def test_clients_over_http_without_input_folders_cannot_name_server_files(
    good_png: Path,
) -> None:
    """No file is opened: the refusal is the same for an image, a directory or nothing."""
    messages = []
    for ref in (str(good_png), str(good_png.parent), str(good_png) + ".missing", "~root/a.png"):
        with pytest.raises(InputError) as refused:
            await prepare_image(ref, allow_upload=True, folders=())
        messages.append(refused.value.message.replace(describe(ref), "<ref>"))
    assert len(set(messages)) == 1, messages
    assert "https URL or a data: URL" in messages[0] and "VIDEOGEN_INPUT_DIRS" in messages[0]
    # URLs and data URLs still work for them
    assert (await prepare_image(data_url(png(400, 400)), allow_upload=True, folders=())).width


@pytest.mark.anyio
async def test_input_folders_confine_paths_after_resolving_symlinks(tmp_path: Path) -> None:
    """Inside the folder: read. Outside — directly, through a symlink inside the folder, via
    ``~``, existing or not, an image or not — one neutral refusal that reveals nothing."""
    inside, outside = tmp_path / "inputs", tmp_path / "private"
    inside.mkdir()
    outside.mkdir()
    (inside / "ok.png").write_bytes(png(640, 480))
    (outside / "secret.png").write_bytes(png(500, 500))
    (outside / "notes.txt").write_text("not an image")
    (inside / "link.png").symlink_to(outside / "secret.png")
    (inside / "dirlink").symlink_to(outside)
    folders = (inside,)

    image = await prepare_image(str(inside / "ok.png"), allow_upload=True, folders=folders)
    assert image.width == 640
    messages = []
    for ref in (
        str(outside / "secret.png"),
        str(outside / "missing.png"),
        str(outside / "notes.txt"),
        str(outside),
        str(inside / "link.png"),
        str(inside / "dirlink" / "secret.png"),
        str(inside / "dirlink" / "missing.png"),
        "~nosuchuser-vg/x.png",
        "/etc/passwd",
    ):
        with pytest.raises(InputError) as refused:
            await prepare_image(ref, allow_upload=True, folders=folders)
        messages.append(refused.value.message.replace(describe(ref), "<ref>"))
    assert len(set(messages)) == 1, messages
    assert str(inside) in messages[0] and "data: URL" in messages[0]


@pytest.mark.anyio
async def test_the_cli_and_stdio_still_read_any_local_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "anywhere" / "photo.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(png(640, 480))
    (tmp_path / "link.png").symlink_to(elsewhere)
    for ref in (str(elsewhere), str(tmp_path / "link.png")):
        assert (await prepare_image(ref, allow_upload=True, folders=None)).width == 640
