"""Object storage (``VIDEOGEN_STORAGE_URL``): one S3-compatible bucket for saved videos and for
local files given where a provider only takes URLs.

Keys, all under the setting's prefix:

- ``<prefix>/videos/<task id>/<file name>``: a saved video. One key per task, so a retried or
  resumed save finds the object it made and never adds a second one.
- ``<prefix>/uploads/<task id>/<input>.<ext>``: a local portrait, audio, photo or mask uploaded
  for the provider to fetch through a presigned GET link (never public), deleted when the task
  no longer needs it. A bucket lifecycle rule expiring ``uploads/`` after a day is the safety net
  for a process killed between the two.

``obstore`` (the ``storage`` extra) is imported on first use, so a program without
``VIDEOGEN_STORAGE_URL`` never loads it. Every obstore error becomes a ``StorageError`` in
``_failure``, the one place that reads them.
"""

from __future__ import annotations

import mimetypes
import posixpath
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from videogen.config import StorageSettings
from videogen.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from obstore.store import S3Store

#: Lifetime of the link a provider fetches an uploaded input through. The providers fetch inputs
#: when a job starts: a queued job may wait minutes (Jimeng allows 1–2 jobs at once per account)
#: and generation takes 2–10 min, so an hour leaves a wide margin; the providers' own result and
#: mask links live an hour too. Short enough that a leaked link is soon worthless.
UPLOAD_LINK_SECONDS: Final = 3600
#: Lifetime of the download link a result gives for a stored video: a day, so it can be opened
#: later from the chat; checking the task again gives a fresh one.
VIDEO_LINK_SECONDS: Final = 24 * 3600
#: Written and deleted once per process before the first billed submit, to prove the store
#: takes writes and deletes.
CHECK_KEY: Final = ".videogen-check"
#: A store that does not answer within these is reported unreachable, not waited on.
CONNECT_TIMEOUT: Final = "5s"
REQUEST_TIMEOUT: Final = "300s"
RETRY_SECONDS: Final = 15
NOT_BILLED: Final = "Nothing was sent to the provider, so nothing was billed."
NOT_STORED: Final = (
    "The video is saved in the output folder; checking the task again stores it in the bucket."
)
MISSING_EXTRA: Final = (
    "VIDEOGEN_STORAGE_URL is set but the object storage support is not installed: install the "
    "storage extra (pip install 'jimeng-videogen-mcp[storage]', or uv sync --extra storage), "
    "or unset VIDEOGEN_STORAGE_URL."
)


class Storage:
    """The bucket of ``settings``: keys, uploads, presigned links, deletes and reads."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self._store: S3Store | None = None
        self._checked = False

    # -- keys ---------------------------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """An object key under the configured prefix."""
        return (
            posixpath.join(self.settings.prefix, *parts)
            if self.settings.prefix
            else "/".join(parts)
        )

    def video_key(self, task_id: str, filename: str) -> str:
        return self.key("videos", task_id, filename)

    def upload_key(self, task_id: str, filename: str) -> str:
        return self.key("uploads", task_id, filename)

    # -- operations ---------------------------------------------------------------------------

    async def check(self) -> None:
        """Prove the store takes a write and a delete (once per process; ``StorageError``)."""
        if self._checked:
            return
        import obstore

        key = self.key(CHECK_KEY)
        try:
            await obstore.put_async(self._open(), key, b"videogen can write here\n")
            await obstore.delete_async(self._open(), key)
        except Exception as exc:
            raise _failure(exc, self.settings, "could not be written to", NOT_BILLED) from None
        self._checked = True

    async def upload(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` at ``key`` and return a presigned GET link to it, valid for
        ``UPLOAD_LINK_SECONDS`` (``StorageError``: nothing was billed)."""
        import obstore

        try:
            await obstore.put_async(
                self._open(), key, data, attributes={"Content-Type": content_type}
            )
        except Exception as exc:
            raise _failure(exc, self.settings, "refused an upload", NOT_BILLED) from None
        return self.link(key, UPLOAD_LINK_SECONDS)

    async def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``key`` unless an object of the same size is already there (a save
        retried after the object was written but before it was recorded)."""
        import obstore

        size = (await anyio.Path(path).stat()).st_size
        store = self._open()
        try:
            try:
                if (await obstore.head_async(store, key))["size"] == size:
                    return
            except FileNotFoundError:
                pass
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            await obstore.put_async(store, key, path, attributes={"Content-Type": content_type})
        except Exception as exc:
            raise _failure(exc, self.settings, "refused the video", NOT_STORED) from None

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, None when there is none."""
        import obstore

        try:
            meta = await obstore.head_async(self._open(), key)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise _failure(exc, self.settings, "could not be read") from None
        return int(meta["size"])

    async def read(self, key: str, limit: int) -> bytes | int:
        """The object's bytes, streamed; its size instead when over ``limit``."""
        import obstore

        try:
            result = await obstore.get_async(self._open(), key)
            size = int(result.meta["size"])
            if size > limit:
                return size
            chunks = bytearray()
            async for chunk in result:
                chunks += memoryview(chunk)
                if len(chunks) > limit:
                    return len(chunks)
            return bytes(chunks)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise _failure(exc, self.settings, "could not be read") from None

    def link(self, key: str, seconds: int) -> str:
        """A presigned GET link to ``key``, valid ``seconds`` (signed locally: no request)."""
        import obstore

        try:
            return obstore.sign(self._open(), "GET", key, timedelta(seconds=seconds))
        except Exception as exc:
            raise _failure(exc, self.settings, "could not sign a link") from None

    async def delete(self, keys: Iterable[str]) -> None:
        """Delete the objects (missing ones are fine)."""
        import obstore

        wanted = list(keys)
        if not wanted:
            return
        try:
            await obstore.delete_async(self._open(), wanted)
        except Exception as exc:
            raise _failure(exc, self.settings, "refused a delete") from None

    def _open(self) -> S3Store:
        if self._store is None:
            self._store = _open_store(self.settings)
        return self._store


def _open_store(settings: StorageSettings) -> S3Store:
    """The obstore client for ``settings``: its values, not obstore's own reading of the
    environment, so the settings read at start are the ones used."""
    try:
        from obstore.store import S3Store
    except ImportError:
        raise ConfigError(MISSING_EXTRA) from None
    config: dict[str, str] = {"region": settings.region}
    if settings.endpoint:
        config["endpoint"] = settings.endpoint
    if settings.access_key_id and settings.secret_access_key:
        config["access_key_id"] = settings.access_key_id
        config["secret_access_key"] = settings.secret_access_key
    if settings.session_token:
        config["session_token"] = settings.session_token
    http = bool(settings.endpoint and settings.endpoint.startswith("http://"))
    try:
        return S3Store(
            settings.bucket,
            config=config,  # type: ignore[arg-type]
            client_options={
                "allow_http": http,
                "connect_timeout": CONNECT_TIMEOUT,
                "timeout": REQUEST_TIMEOUT,
            },
            retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=RETRY_SECONDS)},
        )
    except Exception as exc:
        raise ConfigError(
            f"The store of VIDEOGEN_STORAGE_URL ({settings.url}) cannot be configured: {exc}. "
            "Check VIDEOGEN_STORAGE_URL, AWS_ENDPOINT_URL and AWS_REGION."
        ) from None


def _failure(exc: Exception, settings: StorageSettings, what: str, after: str = "") -> StorageError:
    """The one translation of an obstore error: what failed, the fix (naming the variables),
    and ``after``: what it means for the task."""
    from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

    where = settings.url + (f" at {settings.endpoint}" if settings.endpoint else "")
    detail = str(exc).split("\n", 1)[0][:300]
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        fix = (
            "the store denied access: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and "
            "that they may read, write and delete objects under that prefix"
        )
    elif isinstance(exc, FileNotFoundError) and "NoSuchBucket" in str(exc):
        fix = (
            f"the bucket {settings.bucket!r} does not exist: create it or fix VIDEOGEN_STORAGE_URL"
        )
    elif "error sending request" in str(exc) or "timed out" in str(exc).lower():
        fix = (
            "the store could not be reached: check AWS_ENDPOINT_URL (unset for AWS S3), "
            "AWS_REGION and the network"
        )
    else:
        fix = f"check VIDEOGEN_STORAGE_URL, AWS_ENDPOINT_URL and the credentials ({detail})"
    return StorageError(f"The object store {where} {what}: {fix}. {after}".rstrip())
