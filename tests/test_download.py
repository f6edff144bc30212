"""Downloads are resumable, verified, confined, atomic and never leave a partial file behind.

The tests talk over real loopback HTTP to a tiny ASGI file server defined here (served by
uvicorn in a thread) that can truncate bodies, ignore ``Range``, expire URLs, fail with 503 and
redirect to another host name (``localhost`` vs ``127.0.0.1``).
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import pytest
import uvicorn

from videogen.download import check_mp4, download
from videogen.errors import DownloadError, InputError, OutputError
from videogen.files import hold_lock, safe_filename
from videogen.media import probe
from videogen.providers.base import DownloadSource, origin
from videogen.sandbox import SANDBOX_TOKENOPS_KEY, ManualClock, SandboxOptions, serve

MiB = 1 << 20


def fake_mp4(size: int, seed: int = 0) -> bytes:
    """A body whose top-level boxes are those of an MP4: ftyp, moov, mdat filling ``size``."""
    ftyp = (24).to_bytes(4, "big") + b"ftypisom" + b"\0\0\2\0" + b"isomiso2"
    moov = (16).to_bytes(4, "big") + b"moov" + b"\0" * 8
    rest = size - len(ftyp) - len(moov)
    payload = random.Random(seed).randbytes(rest - 8)
    return ftyp + moov + rest.to_bytes(4, "big") + b"mdat" + payload


@dataclass
class Seen:
    path: str
    query: str
    host: str
    headers: dict[str, str]
    #: The client's port: one per connection.
    client_port: int = 0


@dataclass
class FileServer:
    """Serves ``bodies[name]`` at ``/f/<name>``; ``?b=`` picks a misbehaviour.

    Behaviours (comma-separated): ``truncate`` (first answer cut after half the body, connection
    dropped), ``norange`` (ignores Range), ``expire`` (403 unless ``sig=fresh``), ``503`` (the
    first answer is a 503), ``chunked`` (no Content-Length), ``slow`` (trickles), ``stall`` (the
    first answer stops sending after half the body, connection kept open), ``redirect``
    (302 to the same file on ``localhost``), ``loop`` (redirects forever).
    """

    port: int = 0
    bodies: dict[str, bytes] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def url(self, name: str, behaviours: str = "", host: str = "127.0.0.1", **extra: str) -> str:
        query = "&".join([f"b={behaviours}", *(f"{k}={v}" for k, v in extra.items())])
        return f"http://{host}:{self.port}/f/{name}?{query}"

    def count(self, name: str) -> int:
        return sum(1 for s in self.seen if s.path == f"/f/{name}")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope["query_string"].decode()
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        client_port = scope["client"][1] if scope.get("client") else 0
        seen = Seen(scope["path"], query, headers.get("host", ""), headers, client_port)
        self.seen.append(seen)
        attempt = self.count(scope["path"].removeprefix("/f/"))
        await self._answer(seen, params, attempt, send)

    async def _answer(self, seen: Seen, params: dict[str, str], attempt: int, send: Any) -> None:
        name = seen.path.removeprefix("/f/")
        behaviours = set(params.get("b", "").split(","))
        if "loop" in behaviours:
            return await _plain(
                send, 302, b"", ((b"location", f"{seen.path}?{seen.query}".encode()),)
            )
        if "redirect" in behaviours and seen.host.startswith("127.0.0.1"):
            to = f"http://localhost:{self.port}/f/{name}"
            return await _plain(send, 302, b"", ((b"location", to.encode()),))
        if "expire" in behaviours and params.get("sig") != "fresh":
            return await _plain(send, 403, b"Request has expired")
        if "503" in behaviours and attempt == 1:
            return await _plain(send, 503, b"busy", ((b"retry-after", b"0"),))
        if name not in self.bodies:
            return await _plain(send, 404, b"no such file")
        body = self.bodies[name]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", seen.headers.get("range", ""))
        status = 200
        if match and "norange" not in behaviours:
            start, status = int(match.group(1)), 206
        part = body[start:]
        head = [(b"content-type", b"video/mp4")]
        if "chunked" not in behaviours:
            head.append((b"content-length", str(len(part)).encode()))
        if status == 206:
            head.append((b"content-range", f"bytes {start}-{len(body) - 1}/{len(body)}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": head})
        if "truncate" in behaviours and attempt == 1:
            await send(
                {"type": "http.response.body", "body": part[: len(part) // 2], "more_body": True}
            )
            raise ConnectionAbortedError("dropping the connection on purpose")
        if "stall" in behaviours and attempt == 1:
            await send(
                {"type": "http.response.body", "body": part[: len(part) // 2], "more_body": True}
            )
            await anyio.sleep(60)  # longer than the tests wait: only the client's timeout ends it
            raise ConnectionAbortedError("giving up on a stalled answer")
        step = 4096 if "slow" in behaviours else len(part)
        for offset in range(0, len(part), step):
            if "slow" in behaviours:
                await anyio.sleep(0.05)
            chunk = part[offset : offset + step]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _plain(
    send: Any, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    head = [(b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    app = FileServer()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app.port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="critical", ws="none")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        threading.Event().wait(0.01)
    yield app
    srv.should_exit = srv.force_exit = True  # do not wait for the slow handlers
    thread.join(5)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def body(server: FileServer, request: pytest.FixtureRequest) -> tuple[str, bytes]:
    name = re.sub(r"\W", "_", request.node.name)
    data = fake_mp4(3 * MiB + 12345, seed=len(name))
    server.bodies[name] = data
    return name, data


@pytest.fixture(params=["long", "short"])
def any_body(server: FileServer, request: pytest.FixtureRequest) -> tuple[str, bytes]:
    """A body read straight off the socket (``long``), or one under ``SOCKET_BODY_MIN_BYTES``
    read through the client's reader (``short``)."""
    name = re.sub(r"\W", "_", request.node.name)
    size = 3 * MiB + 12345 if request.param == "long" else 300 * 1024 + 7
    server.bodies[name] = data = fake_mp4(size, seed=len(name))
    return name, data


def files_in(path: Path) -> list[str]:
    return sorted(os.listdir(path))


async def fetch(url: str, dest: Path, name: str = "out.mp4", **kw: Any) -> Path:
    kw.setdefault("max_bytes", 64 * MiB)
    kw.setdefault("deadline_seconds", 20)
    async with httpx2.AsyncClient() as client:
        return await download(client, DownloadSource(url=url), dest, name, **kw)


@pytest.mark.anyio
async def test_a_download_saves_the_exact_bytes_under_the_name_and_nothing_else(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """The whole body lands under the requested name; no temporary file remains."""
    name, data = body
    path = await fetch(server.url(name), tmp_path)
    assert path.name == "out.mp4" and path.parent.samefile(tmp_path)
    assert path.read_bytes() == data
    assert files_in(tmp_path) == ["out.mp4"]


@pytest.mark.anyio
async def test_a_short_body_leaves_its_connection_to_the_next_download_a_long_one_does_not(
    server: FileServer, tmp_path: Path
) -> None:
    """Bodies under ``SOCKET_BODY_MIN_BYTES`` are read through the client, so many small
    downloads share one connection; a longer body is read off the connection itself, which
    then cannot serve another request."""
    from videogen.download import SOCKET_BODY_MIN_BYTES

    short, long = fake_mp4(64 * 1024), fake_mp4(SOCKET_BODY_MIN_BYTES)
    server.bodies |= {"reuse-short": short, "reuse-long": long}
    async with httpx2.AsyncClient() as client:
        for n, name in enumerate(["reuse-short"] * 3 + ["reuse-long"] * 2 + ["reuse-short"]):
            source = DownloadSource(url=server.url(name))
            path = await download(
                client, source, tmp_path, f"{n}.mp4", max_bytes=64 * MiB, deadline_seconds=20
            )
            assert path.read_bytes() == (short if name == "reuse-short" else long)
    ports = [s.client_port for s in server.seen if s.path.startswith("/f/reuse-")]
    assert len(ports) == 6
    assert ports[0] == ports[1] == ports[2] == ports[3]  # the first long one reuses it too ...
    assert len({ports[3], ports[4], ports[5]}) == 3  # ... and ends it; so does the second


@pytest.mark.anyio
async def test_blocks_are_written_from_the_event_loop_until_writes_are_slow(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block goes to the page cache from the event loop's thread (no thread hop); after
    SLOW_WRITES writes in a row slower than SLOW_WRITE_SECONDS (here: every write) the rest of
    the download is written from worker threads, and the file is the same."""
    import videogen.download as dl

    threads: list[bool] = []
    write_blocks = dl._PartFile.write_blocks

    def recording(self: Any, blocks: list[bytes]) -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        write_blocks(self, blocks)

    monkeypatch.setattr(dl._PartFile, "write_blocks", recording)
    monkeypatch.setattr(dl, "SLOW_WRITE_SECONDS", -1.0)
    monkeypatch.setattr(dl, "WRITE_BLOCK", 256 * 1024)
    name, data = body
    path = await fetch(server.url(name), tmp_path)
    assert path.read_bytes() == data
    inline = dl.SLOW_WRITES
    assert len(threads) > inline and all(threads[:inline]) and not any(threads[inline:])


@pytest.mark.anyio
async def test_a_truncated_download_resumes_with_range_and_is_byte_identical(
    server: FileServer, any_body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A connection dropped half way is resumed from where it stopped, not restarted."""
    name, data = any_body
    path = await fetch(server.url(name, "truncate"), tmp_path)
    assert path.read_bytes() == data
    ranges = [s.headers.get("range") for s in server.seen if s.path == f"/f/{name}"]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(data) // 2}-"  # every byte that arrived was kept


@pytest.mark.anyio
async def test_a_server_that_ignores_range_makes_the_download_restart_from_zero(
    server: FileServer, any_body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A 200 answer to a Range request replaces what was received, so nothing is doubled."""
    name, data = any_body
    path = await fetch(server.url(name, "truncate,norange"), tmp_path)
    assert path.read_bytes() == data
    assert server.count(name) == 2


@pytest.mark.anyio
async def test_a_503_is_retried(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A transient server error is retried and the download succeeds."""
    name, data = body
    path = await fetch(server.url(name, "503"), tmp_path)
    assert path.read_bytes() == data
    assert server.count(name) == 2


@pytest.mark.anyio
async def test_an_expired_url_is_refreshed_and_the_download_continues(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A 403 asks ``refresh()`` for a fresh source, which is then used."""
    name, data = body
    calls: list[int] = []

    async def refresh() -> DownloadSource:
        calls.append(1)
        return DownloadSource(url=server.url(name, "expire", sig="fresh"))

    path = await fetch(server.url(name, "expire"), tmp_path, refresh=refresh)
    assert path.read_bytes() == data
    assert calls == [1]


@pytest.mark.anyio
async def test_an_expired_url_without_refresh_fails_and_leaves_nothing(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """Without a way to refresh, an expired URL is a DownloadError that says what to do."""
    name, _ = body
    with pytest.raises(DownloadError, match="expired"):
        await fetch(server.url(name, "expire"), tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
async def test_refreshes_are_bounded(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A refresh that keeps handing out dead URLs ends in a DownloadError, not a loop."""
    name, _ = body
    calls: list[int] = []

    async def refresh() -> DownloadSource:
        calls.append(1)
        return DownloadSource(url=server.url(name, "expire"))

    with pytest.raises(DownloadError, match="expired"):
        await fetch(server.url(name, "expire"), tmp_path, refresh=refresh)
    assert len(calls) == 3
    assert files_in(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("behaviour", ["", "chunked"])
async def test_a_body_over_the_size_cap_fails_and_leaves_no_partial_file(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path, behaviour: str
) -> None:
    """The cap holds from Content-Length up front and, without it, while streaming."""
    name, _ = body
    with pytest.raises(DownloadError, match="limit"):
        await fetch(server.url(name, behaviour), tmp_path, max_bytes=MiB)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
async def test_a_body_that_is_not_an_mp4_is_refused(server: FileServer, tmp_path: Path) -> None:
    """An HTML error page served with 200 is not saved as a video."""
    server.bodies["page"] = b"<html>" + b"x" * 5000 + b"</html>"
    with pytest.raises(DownloadError, match="not a valid MP4"):
        await fetch(server.url("page"), tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
async def test_a_missing_file_is_a_download_error(server: FileServer, tmp_path: Path) -> None:
    """A 404 is reported as a DownloadError and nothing is written."""
    with pytest.raises(DownloadError, match="404"):
        await fetch(server.url("absent"), tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("size", "how"),
    [
        (3 * MiB + 12345, "stall"),  # straight off the socket: the stall watch
        (512 * 1024 + 7, "stall"),  # short, through the client's reader: its read timeout
        (3 * MiB + 12345, "stall,chunked"),  # length unknown: the client's reader too
    ],
)
async def test_a_stalled_body_times_out_on_the_clients_read_timeout_and_resumes(
    server: FileServer, tmp_path: Path, size: int, how: str
) -> None:
    """The body's bytes come off the connection with the client's read timeout: a server that
    stops sending mid-body is given up on after it, and the rest is fetched with Range."""
    name = f"stalled_{size}_{how.replace(',', '_')}"
    data = server.bodies[name] = fake_mp4(size, seed=size % 251)
    with anyio.fail_after(10):
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(5, read=0.3)) as client:
            path = await download(
                client,
                DownloadSource(url=server.url(name, how)),
                tmp_path,
                "out.mp4",
                max_bytes=64 * MiB,
                deadline_seconds=30,
            )
    assert path.read_bytes() == data
    assert [s.headers.get("range") for s in server.seen if s.path == f"/f/{name}"] == [
        None,
        f"bytes={len(data) // 2}-",
    ]


@pytest.mark.anyio
async def test_the_deadline_stops_a_slow_download_and_leaves_nothing(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A trickling server cannot hold the caller past ``deadline_seconds``."""
    name, _ = body
    with anyio.fail_after(10):
        with pytest.raises(DownloadError, match=r"did not finish within 0\.5 s"):
            await fetch(server.url(name, "slow"), tmp_path, deadline_seconds=0.5)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
async def test_credentials_go_to_the_api_host_only_and_are_dropped_on_redirect(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """``source.headers`` reach ``credential_origin`` and never the host a redirect points to."""
    name, data = body
    source = DownloadSource(
        url=server.url(name, "redirect"),
        headers={"Authorization": "Bearer test-not-a-secret"},
        credential_origin=origin(server.url(name, "redirect")),
    )
    async with httpx2.AsyncClient(headers={"X-Api-Key": "client-default"}) as client:
        path = await download(
            client, source, tmp_path, "c.mp4", max_bytes=64 * MiB, deadline_seconds=20
        )
    assert path.read_bytes() == data
    first, second = (s for s in server.seen if s.path == f"/f/{name}")
    assert first.host.startswith("127.0.0.1") and first.headers["authorization"].endswith("secret")
    assert second.host.startswith("localhost")
    assert "authorization" not in second.headers and "x-api-key" not in second.headers


@pytest.mark.anyio
async def test_endless_redirects_are_refused(server: FileServer, tmp_path: Path) -> None:
    """Redirects are followed at most five times."""
    with pytest.raises(DownloadError, match="redirected more than 5"):
        await fetch(server.url("x", "loop"), tmp_path)
    assert files_in(tmp_path) == []


@pytest.mark.anyio
async def test_an_existing_file_is_never_overwritten(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A taken name gets ``-1``, ``-2``...; the old file keeps its bytes."""
    name, data = body
    (tmp_path / "out.mp4").write_bytes(b"precious")
    first = await fetch(server.url(name), tmp_path)
    second = await fetch(server.url(name), tmp_path)
    assert (first.name, second.name) == ("out-1.mp4", "out-2.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == b"precious"
    assert first.read_bytes() == data == second.read_bytes()


@pytest.mark.anyio
async def test_a_symlink_planted_at_the_target_is_not_followed(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A symlink named like the target is left alone, and so is the file it points to."""
    name, data = body
    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    out = tmp_path / "out"
    out.mkdir()
    (out / "out.mp4").symlink_to(victim)
    path = await fetch(server.url(name), out)
    assert path.name == "out-1.mp4" and not path.is_symlink()
    assert path.read_bytes() == data
    assert victim.read_bytes() == b"do not touch"
    assert (out / "out.mp4").is_symlink()


@pytest.mark.anyio
async def test_a_missing_output_directory_is_created_when_its_parent_exists(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """The last path component is created silently."""
    name, data = body
    path = await fetch(server.url(name), tmp_path / "new")
    assert path.read_bytes() == data


@pytest.mark.anyio
async def test_an_output_folder_whose_parents_are_missing_is_made(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """The one folder rule (``destination.open_folder``) holds at save time as before billing:
    a missing folder is made with its parents."""
    name, data = body
    saved = await fetch(server.url(name), tmp_path / "a" / "b")
    assert saved == (tmp_path / "a" / "b" / "out.mp4").resolve()
    assert saved.read_bytes() == data


@pytest.mark.anyio
async def test_an_output_path_that_is_a_file_is_an_output_error(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A regular file where the directory should be is refused."""
    name, _ = body
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"not a folder.*VIDEOGEN_OUTPUT_DIR"):
        await fetch(server.url(name), tmp_path / "file")


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write in: mode 0500, or for root (who ignores modes) immutable."""
    path = tmp_path / "locked"
    path.mkdir(mode=0o500)
    if os.geteuid() != 0:
        yield path
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root and chattr +i is not available here")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.anyio
@pytest.mark.parametrize("size", [3 * MiB + 12345, 300 * 1024])
async def test_an_unwritable_output_directory_is_an_output_error(
    server: FileServer, locked: Path, size: int
) -> None:
    """A directory without write permission is refused before any byte is fetched."""
    name = f"unwritable_{size}"
    server.bodies[name] = fake_mp4(size, seed=3)
    with pytest.raises(OutputError, match=r"Cannot write in .*VIDEOGEN_OUTPUT_DIR"):
        await fetch(server.url(name), locked)
    assert server.count(name) == 0
    assert files_in(locked) == []


@pytest.mark.anyio
@pytest.mark.parametrize("bad", ["../x.mp4", "a/b.mp4", "a\\b.mp4", "..", "", "nul\0.mp4"])
async def test_a_file_name_with_a_path_in_it_is_refused_by_download(
    server: FileServer, tmp_path: Path, bad: str
) -> None:
    """``download`` itself accepts only a bare name, whatever the caller passes."""
    with pytest.raises(OutputError):
        await fetch(server.url("x"), tmp_path / "d", name=bad)
    assert files_in(tmp_path) == []


FULL_DISK = textwrap.dedent(
    """
    import os, resource, signal, sys, anyio, httpx2
    from pathlib import Path
    from videogen.download import download
    from videogen.errors import OutputError
    from videogen.providers.base import DownloadSource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG back instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    body = (24).to_bytes(4, "big") + b"ftypisom" + bytes(16) + b"\\0\\0\\0\\0mdat" + bytes(4 << 20)

    async def main() -> None:
        transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=body))
        async with httpx2.AsyncClient(transport=transport) as client:
            try:
                await download(client, DownloadSource(url="http://cdn.test/v.mp4"),
                               Path(sys.argv[1]), "v.mp4", max_bytes=1 << 30, deadline_seconds=30)
            except OutputError as exc:
                print("OutputError:", exc)
                return
        print("no error")

    anyio.run(main)
    """
)


def test_a_full_disk_is_an_output_error_and_the_temporary_file_is_removed(tmp_path: Path) -> None:
    """Writing past the space available (RLIMIT_FSIZE in a child process) leaves nothing."""
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OutputError:") and "is full" in done.stdout
    assert files_in(tmp_path) == []


def test_the_mp4_check_accepts_tiled_boxes_and_refuses_cut_ones(tmp_path: Path) -> None:
    """Box sizes must tile the file exactly, with ftyp first and moov present."""
    good = tmp_path / "good.mp4"
    good.write_bytes(fake_mp4(10_000))
    check_mp4(good)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fake_mp4(10_000)[:9_000])
    with pytest.raises(DownloadError, match="past the end"):
        check_mp4(cut)
    no_moov = tmp_path / "nomoov.mp4"
    no_moov.write_bytes(fake_mp4(10_000).replace(b"moov", b"free", 1))
    with pytest.raises(DownloadError, match="no 'moov'"):
        check_mp4(no_moov)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("A paper boat on a pond!", "a-paper-boat-on-a-pond_vg_1.mp4"),
        ("Crème brûlée at dawn", "creme-brulee-at-dawn_vg_1.mp4"),
        ("千军万马", "千军万马_vg_1.mp4"),
        ("../../etc/passwd", "etc-passwd_vg_1.mp4"),
        ("\0\n\t...", "video_vg_1.mp4"),
        ("", "video_vg_1.mp4"),
    ],
)
def test_a_prompt_becomes_a_safe_slug_followed_by_the_task_id(prompt: str, expected: str) -> None:
    """Slugs are folded, lower case, and free of separators, control characters and dots."""
    assert safe_filename(prompt, "vg_1") == expected


def test_a_long_prompt_gives_a_bounded_name() -> None:
    """The slug is cut so the name stays short whatever the prompt."""
    name = safe_filename("word " * 200, "vg_abc")
    assert len(name) <= 48 + len("_vg_abc.mp4") and name.endswith("_vg_abc.mp4")


def test_a_requested_bare_name_is_kept_and_gets_mp4() -> None:
    """A bare name is used as given, with ``.mp4`` added when missing."""
    assert safe_filename("p", "vg_1", "boat.mp4") == "boat.mp4"
    assert safe_filename("p", "vg_1", "boat") == "boat.mp4"


@pytest.mark.parametrize(
    "requested",
    ["../boat.mp4", "a/b.mp4", "a\\b.mp4", "/etc/x.mp4", "C:x.mp4", "nul\0", ".hidden", ""],
)
def test_a_requested_name_with_a_path_is_refused_with_advice(requested: str) -> None:
    """Separators, ``..``, NUL, absolute paths and hidden names ask for a bare file name."""
    with pytest.raises(InputError, match="plain file name"):
        safe_filename("p", "vg_1", requested)


class _BreaksAtEnd(httpx2.AsyncByteStream):
    """Yields the whole body, then fails as if the connection dropped before the end marker."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx2.ReadError("connection reset")


@pytest.mark.anyio
async def test_a_416_after_every_byte_arrived_completes_the_download(tmp_path: Path) -> None:
    """If the drop came after the last byte, ``Range: bytes=N-`` gets 416 ``*/N``: done."""
    data = fake_mp4(300_000)
    seen: list[str | None] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("range"))
        if request.headers.get("range"):
            return httpx2.Response(416, headers={"content-range": f"bytes */{len(data)}"})
        headers = {"content-length": str(len(data))}
        return httpx2.Response(200, headers=headers, stream=_BreaksAtEnd(data))

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as client:
        source = DownloadSource(url="http://cdn.test/v.mp4")
        path = await download(client, source, tmp_path, "v.mp4", max_bytes=MiB, deadline_seconds=9)
    assert path.read_bytes() == data
    assert seen == [None, f"bytes={len(data)}-"]


@pytest.mark.anyio
async def test_a_206_from_the_wrong_offset_restarts_from_zero(tmp_path: Path) -> None:
    """A Content-Range that does not start where we stopped is not appended."""
    data = fake_mp4(300_000)
    seen: list[str | None] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.headers.get("range"))
        if len(seen) == 1:
            headers = {"content-length": str(len(data))}
            return httpx2.Response(200, headers=headers, stream=_Cut(data[:1000]))
        if request.headers.get("range"):
            wrong = {"content-range": f"bytes 0-{len(data) - 1}/{len(data)}"}
            return httpx2.Response(206, headers=wrong, content=data)
        return httpx2.Response(200, content=data)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as client:
        source = DownloadSource(url="http://cdn.test/v.mp4")
        path = await download(client, source, tmp_path, "v.mp4", max_bytes=MiB, deadline_seconds=9)
    assert path.read_bytes() == data
    assert seen == [None, "bytes=1000-", None]


class _Cut(httpx2.AsyncByteStream):
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        raise httpx2.RemoteProtocolError("peer closed connection without sending complete body")


@pytest.mark.anyio
async def test_a_body_without_content_length_is_saved(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """Chunked transfer (no length announced) still yields the exact file."""
    name, data = body
    path = await fetch(server.url(name, "chunked"), tmp_path)
    assert path.read_bytes() == data


@pytest.mark.anyio
async def test_a_cancelled_download_leaves_no_partial_file(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """Cancelling the caller (a tool call dropped) removes the temporary file."""
    name, _ = body
    with anyio.move_on_after(0.3) as scope:
        await fetch(server.url(name, "slow"), tmp_path)
    assert scope.cancelled_caught
    assert files_in(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["bytes", "redirect"])
async def test_a_sandbox_video_survives_truncation_and_expiry_and_probes_as_rendered(
    tmp_path: Path, mode: Literal["bytes", "redirect"]
) -> None:
    """Against the real sandbox: a cut transfer resumes, an expired link is refreshed, and the
    saved file is the sandbox's 121-frame clip (TokenOps ``/content``, bytes or redirect)."""
    clock = ManualClock()
    options = SandboxOptions(job_seconds=1, tokenops_content=mode)
    auth = {"Authorization": f"Bearer {SANDBOX_TOKENOPS_KEY}"}
    body = {"model": "jimeng-video-3.0-720P", "req_key": "jimeng_t2v_v30", "prompt": "a boat"}
    async with serve(options, clock=clock) as sb, httpx2.AsyncClient(timeout=30) as client:
        created = await client.post(f"{sb.tokenops_url}/videos", json=body, headers=auth)
        clock.advance(1.01)
        source = DownloadSource(
            url=f"{sb.tokenops_url}/videos/{created.json()['id']}/content",
            headers=auth,
            credential_origin=origin(sb.tokenops_url),
        )
        faults = ["truncate_download:1"] + (["expired_urls"] if mode == "redirect" else [])
        sb.set_faults(*faults)

        async def refresh() -> DownloadSource:
            sb.set_faults()  # a new poll would hand out a fresh link: here the old one revives
            return source

        path = await download(
            client,
            source,
            tmp_path,
            "s.mp4",
            max_bytes=64 * MiB,
            deadline_seconds=60,
            refresh=refresh if mode == "redirect" else None,
        )
        downloads = sb.log.count("tokenops", "download")
    info = await probe(path)
    assert (info.frames, info.fps, info.width, info.height) == (121, 24.0, 1280, 720)
    assert files_in(tmp_path) == ["s.mp4"]
    assert downloads >= 2


@pytest.mark.anyio
async def test_credentials_are_not_sent_after_a_redirect_from_https_to_http(
    tmp_path: Path,
) -> None:
    """Same host but a downgrade to plain HTTP: the credentials stay behind."""
    data = fake_mp4(50_000)
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        if request.url.scheme == "https":
            return httpx2.Response(302, headers={"location": "http://api.test/plain.mp4"})
        return httpx2.Response(200, content=data)

    source = DownloadSource(
        url="https://api.test/v.mp4",
        headers={"Authorization": "Bearer t"},
        credential_origin=origin("https://api.test/v1"),
    )
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as client:
        await download(client, source, tmp_path, "v.mp4", max_bytes=MiB, deadline_seconds=9)
    assert seen == [("https://api.test/v.mp4", "Bearer t"), ("http://api.test/plain.mp4", None)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "elsewhere", ["http://api.test:9000/steal.mp4", "https://api.test:8443/steal.mp4"]
)
async def test_credentials_are_not_sent_to_another_port_of_the_api_host(
    tmp_path: Path, elsewhere: str
) -> None:
    """A redirect to the API's host on another port (or scheme) gets no credentials: they
    belong to the configured API's exact origin."""
    data = fake_mp4(50_000)
    seen: list[tuple[str, str | None]] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        if request.url.port == 8000:
            return httpx2.Response(302, headers={"location": elsewhere})
        return httpx2.Response(200, content=data)

    source = DownloadSource(
        url="http://api.test:8000/v1/videos/t/content",
        headers={"Authorization": "Bearer t"},
        credential_origin=origin("http://api.test:8000/v1"),
    )
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as client:
        await download(client, source, tmp_path, "v.mp4", max_bytes=MiB, deadline_seconds=9)
    assert seen == [(source.url, "Bearer t"), (elsewhere, None)]


def test_an_origin_names_scheme_host_and_effective_port() -> None:
    assert origin("https://api.test/v1") == origin("https://API.test:443/other")
    assert origin("http://api.test/v1") == "http://api.test:80"
    assert origin("http://api.test:8000/v1") != origin("http://api.test:8001/v1")
    assert origin("http://api.test/v1") != origin("https://api.test/v1")


@pytest.mark.anyio
async def test_orphaned_temporary_files_are_swept_and_live_ones_are_not(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """A ``.part``/``.conform`` file nobody holds is removed by the next download; one whose
    writer is alive (it holds the lock) and unrelated hidden files are left alone."""
    name, _ = body
    orphan = tmp_path / ".old.mp4.part-0123abcd"
    orphan_conform = tmp_path / ".old.mp4.conform-89abcdef.mp4"
    live = tmp_path / ".busy.mp4.part-deadbeef"
    for path in (orphan, orphan_conform, live, tmp_path / ".keep"):
        path.write_bytes(b"x")
    fd = os.open(live, os.O_RDONLY)
    hold_lock(fd)
    try:
        await fetch(server.url(name), tmp_path)
    finally:
        os.close(fd)
    assert files_in(tmp_path) == [".busy.mp4.part-deadbeef", ".keep", "out.mp4"]


KILLED = textwrap.dedent(
    """
    import sys, anyio, httpx2
    from pathlib import Path
    from videogen.download import download
    from videogen.providers.base import DownloadSource

    async def main() -> None:
        async with httpx2.AsyncClient() as client:
            await download(client, DownloadSource(url=sys.argv[1]), Path(sys.argv[2]), "k.mp4",
                           max_bytes=1 << 30, deadline_seconds=60)

    anyio.run(main)
    """
)


def test_a_download_killed_mid_way_leaves_a_part_file_the_next_download_removes(
    server: FileServer, body: tuple[str, bytes], tmp_path: Path
) -> None:
    """SIGKILL runs no cleanup; the next download into the folder sweeps the orphan."""
    name, data = body
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, server.url(name, "slow"), str(tmp_path)]
    )
    try:
        deadline = time.monotonic() + 30
        while not [f for f in files_in(tmp_path) if ".part-" in f]:  # another process: poll
            assert time.monotonic() < deadline, "the child never started its download"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    assert len(files_in(tmp_path)) == 1
    path = anyio.run(fetch, server.url(name), tmp_path)
    assert path.read_bytes() == data
    assert files_in(tmp_path) == ["out.mp4"]


def test_a_sweep_between_creating_and_locking_a_temp_file_never_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With many downloads at once, a sweep does land between a temp file's creation and its
    lock: the file must not be visible under its temporary name until it is locked."""
    from videogen import files

    lock = files.hold_lock

    def sweep_first(fd: int) -> None:
        files.sweep_orphans(tmp_path)  # the worst moment for a concurrent sweep
        lock(fd)

    monkeypatch.setattr(files, "hold_lock", sweep_first)
    target = tmp_path / ".clip.mp4.part-0123abcd"
    fd = files.create_locked(target)
    try:
        assert target.exists()
        monkeypatch.setattr(files, "hold_lock", lock)
        files.sweep_orphans(tmp_path)  # and a sweep after: it is locked, so it stays
        assert target.exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    finally:
        os.close(fd)
    files.sweep_orphans(tmp_path)  # once its writer lets go, it is an orphan
    assert not target.exists()


def test_a_busy_folder_is_swept_for_orphans_at_most_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing the folder before each of hundreds of downloads would be quadratic: a process
    sweeps one folder at most every ORPHAN_SWEEP_SECONDS, and sweeps it again after that."""
    from videogen import files as module

    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    orphan = tmp_path / ".a.mp4.part-0123abcd"
    orphan.write_bytes(b"x")
    module.sweep_orphans_now_and_then(tmp_path)
    assert not orphan.exists()
    orphan.write_bytes(b"x")
    now[0] += module.ORPHAN_SWEEP_SECONDS - 1
    module.sweep_orphans_now_and_then(tmp_path)
    assert orphan.exists()
    now[0] += 1
    module.sweep_orphans_now_and_then(tmp_path)
    assert not orphan.exists()
