"""The sandbox's persistent memory: tasks, their input images and the request log in SQLite.

With ``SandboxOptions.state_dir`` set, every task of all three fronts is written here when it is
created and whenever it changes (cancelled, failure decided), and every poll reads it back, so
a sandbox started later — or another process's sandbox open on the same directory at the same
time (a CLI next to an MCP server) — answers for tasks an earlier one accepted. A task's status
is a function of its stored ``submitted_at`` and ``job_seconds`` on the wall clock, so a job
keeps "running" while no process is alive, like a real provider's. Video URLs are not stored:
each sandbox hands out its own (its port changes every run), and a client holding a dead link
polls again for a fresh one, exactly as for an expired one.

The file is one SQLite database in WAL mode with a busy timeout: several processes may read and
write it at once. Statements are single-row and short, so the sandbox runs them inline on its
event loop (like the engine's ledger). Old rows are pruned when a store opens: tasks after
``TASK_RETENTION_SECONDS`` (they then poll as unknown, like a provider's after its retention),
images no task has used for as long, and all but the newest ``LOG_ROWS_KEPT`` log entries.

Render specs refer to input images by digest (``render.store_image``); the image bytes are
stored here too and put back into the renderer's content store when a task is read, so a video
from an earlier process can be rendered again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from videogen.catalog import ProviderName
from videogen.errors import ConfigError
from videogen.sandbox.render import RenderSpec, image_bytes, store_image
from videogen.sandbox.state import LogEntry, SandboxTask

STORE_FILENAME: Final = "sandbox.sqlite3"
# Generous: every process of the embedded sandbox shares this file, and a loaded machine can hold
# a write lock for seconds; waiting is harmless, failing to open the store is not.
BUSY_TIMEOUT_MS: Final = 30_000
#: Providers keep tasks 12-24 h; the sandbox keeps them a week, then they poll as unknown.
TASK_RETENTION_SECONDS: Final = 7 * 24 * 3600.0
LOG_ROWS_KEPT: Final = 20_000

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    provider TEXT NOT NULL,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    req_key TEXT,
    owner TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    job_seconds REAL NOT NULL,
    render TEXT,
    failure TEXT,
    fail_early INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    extra TEXT NOT NULL,
    PRIMARY KEY (provider, task_id)
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, submitted_at);
CREATE TABLE IF NOT EXISTS images (
    ref TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    used_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    provider TEXT,
    operation TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    task_id TEXT,
    at REAL NOT NULL,
    code TEXT,
    fault TEXT
)
"""

_TASK_COLUMNS: Final = (
    "provider, task_id, kind, req_key, owner, submitted_at, job_seconds, render, failure, "
    "fail_early, cancelled, extra"
)
_LOG_COLUMNS: Final = "provider, operation, method, path, http_status, task_id, at, code, fault"


class TaskStore:
    """One sandbox state directory. Thread-safe (one connection behind a lock)."""

    def __init__(self, directory: Path, *, now: float) -> None:
        self.directory = directory
        self.path = directory / STORE_FILENAME
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            for statement in (s.strip() for s in SCHEMA.split(";")):
                if statement:
                    self._db.execute(statement)
            self.prune(now)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the sandbox's task store at {self.path}: {exc}. Set "
                "VIDEOGEN_DATA_DIR to a writable directory (the offline sandbox keeps its tasks "
                "in its 'sandbox' folder)."
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- tasks ---------------------------------------------------------------------------
    def save(self, task: SandboxTask, *, now: float) -> None:
        """Write the task as it stands (insert or replace), and the images its video shows."""
        render = task.render
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO tasks ({_TASK_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.provider,
                    task.task_id,
                    task.kind,
                    task.req_key,
                    task.owner,
                    task.submitted_at,
                    task.job_seconds,
                    None if render is None else json.dumps(asdict(render)),
                    None if task.failure is None else json.dumps(list(task.failure)),
                    int(task.fail_early),
                    int(task.cancelled),
                    json.dumps(task.extra),
                ),
            )
            for ref in _stored_refs(render):
                data = image_bytes(ref)
                if data is not None:
                    self._db.execute(
                        "INSERT INTO images (ref, data, used_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (ref) DO UPDATE SET used_at = excluded.used_at",
                        (ref, data, now),
                    )

    def load(self, provider: ProviderName, task_id: str) -> SandboxTask | None:
        """The stored task (its images back in the renderer's store), or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_TASK_COLUMNS} FROM tasks WHERE provider = ? AND task_id = ?",
                (provider, task_id),
            ).fetchone()
        if row is None:
            return None
        task = _task(row)
        self._restore_images(_stored_refs(task.render))
        return task

    def in_flight(self, owner: str, now: float) -> int:
        """Tasks of ``owner`` (not recognitions) neither cancelled nor finished at ``now``."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM tasks WHERE owner = ? AND kind != 'recognition' "
                "AND cancelled = 0 AND job_seconds > 0 AND submitted_at + job_seconds > ?",
                (owner, now),
            ).fetchone()
        return int(count)

    def _restore_images(self, refs: Iterable[str]) -> None:
        missing = [ref for ref in refs if image_bytes(ref) is None]
        for ref in missing:
            with self._lock:
                row = self._db.execute("SELECT data FROM images WHERE ref = ?", (ref,)).fetchone()
            if row is not None:
                store_image(bytes(row[0]))

    # -- the request log -----------------------------------------------------------------
    def log(self, entry: LogEntry) -> None:
        code = None if entry.code is None else json.dumps(entry.code)
        with self._lock:
            self._db.execute(
                f"INSERT INTO requests (pid, {_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    os.getpid(),
                    entry.provider,
                    entry.operation,
                    entry.method,
                    entry.path,
                    entry.http_status,
                    entry.task_id,
                    entry.at,
                    code,
                    entry.fault,
                ),
            )

    def log_entries(self) -> list[LogEntry]:
        """Every stored request of every process, oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_LOG_COLUMNS} FROM requests ORDER BY id").fetchall()
        return [
            LogEntry(
                provider=r[0],
                operation=r[1],
                method=r[2],
                path=r[3],
                http_status=r[4],
                task_id=r[5],
                at=r[6],
                code=None if r[7] is None else json.loads(r[7]),
                fault=r[8],
            )
            for r in rows
        ]

    # -- housekeeping --------------------------------------------------------------------
    def prune(self, now: float) -> None:
        cutoff = now - TASK_RETENTION_SECONDS
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE submitted_at < ?", (cutoff,))
            self._db.execute("DELETE FROM images WHERE used_at < ?", (cutoff,))
            self._db.execute(
                "DELETE FROM requests WHERE id <= (SELECT MAX(id) FROM requests) - ?",
                (LOG_ROWS_KEPT,),
            )


def _stored_refs(render: RenderSpec | None) -> list[str]:
    """The image digests a spec needs (placeholders are drawn, not stored)."""
    if render is None:
        return []
    return [ref for ref in render.images if not ref.startswith("placeholder:")]


def _task(row: tuple[Any, ...]) -> SandboxTask:
    render = None
    if row[7] is not None:
        fields = json.loads(row[7])
        fields["images"] = tuple(fields["images"])
        render = RenderSpec(**fields)
    failure = None
    if row[8] is not None:
        code, message = json.loads(row[8])
        failure = (int(code), str(message))
    return SandboxTask(
        provider=row[0],
        kind=row[2],
        task_id=row[1],
        req_key=row[3],
        owner=row[4],
        submitted_at=row[5],
        job_seconds=row[6],
        render=render,
        failure=failure,
        fail_early=bool(row[9]),
        cancelled=bool(row[10]),
        extra=json.loads(row[11]),
    )
