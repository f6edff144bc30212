"""The PostgreSQL ledger's change feed: every write of a task notifies ``CHANNEL`` in its own
transaction (``NOTIFY``, appended to the writing statement), and one ``LISTEN`` connection in a
thread hands what it hears to each open feed (``PostgresLedger.changes``)."""

from __future__ import annotations

import logging
import threading
from typing import Final

import psycopg

from videogen.ledger.base import Change, ChangeFeed

log = logging.getLogger("videogen.ledger.postgres")

#: The channel every task write notifies.
CHANNEL: Final = "videogen_tasks"
#: The payload is ``Change.payload``'s: the task's id, status and queue bucket. A writing
#: statement ends ``... RETURNING id, status, bucket) {NOTIFY}`` (its CTE is ``written``).
NOTIFY: Final = f"SELECT pg_notify('{CHANNEL}', concat_ws(' ', id, status, bucket)) FROM written"
#: How often the change listener looks up from its socket (to stop when the ledger closes).
LISTEN_TICK_SECONDS: Final = 0.1
LISTEN_RETRY_SECONDS: Final = 2.0


class Feed(ChangeFeed):
    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._arrived = threading.Condition()
        self._changes: set[Change] = set()

    def put(self, payload: str) -> None:
        with self._arrived:
            self._changes.add(Change.from_payload(payload))
            self._arrived.notify_all()

    def wait(self, timeout: float) -> set[Change]:
        with self._arrived:
            self._arrived.wait_for(lambda: bool(self._changes), timeout=max(timeout, 0.0))
            changes, self._changes = self._changes, set()
        return changes

    def close(self) -> None:
        self._listener.unsubscribe(self)


class Listener:
    """One ``LISTEN`` connection in a thread, fanning notifications out to the open feeds;
    reconnects after a failure (feeds miss what was sent meanwhile: polling covers it)."""

    def __init__(self, url: str, where: str, *, connect_timeout: int) -> None:
        self._url, self._where, self._connect_timeout = url, where, connect_timeout
        self._feeds: set[Feed] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self) -> Feed:
        feed = Feed(self)
        if self._stopping.is_set():
            return feed  # the ledger is closed: a feed that never fires
        with self._lock:
            self._feeds.add(feed)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="videogen-ledger-listen", daemon=True
                )
                self._thread.start()
        self._listening.wait(self._connect_timeout + 1)
        return feed

    def unsubscribe(self, feed: Feed) -> None:
        with self._lock:
            self._feeds.discard(feed)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except psycopg.Error as exc:
                log.warning(
                    "listening for task changes in %s failed (%s); retrying in %g s, polling "
                    "meanwhile",
                    self._where,
                    " ".join(str(exc).split()),
                    LISTEN_RETRY_SECONDS,
                )
            finally:
                self._listening.set()  # never keep a subscriber waiting on a failed connection
            self._stopping.wait(LISTEN_RETRY_SECONDS)

    def _listen(self) -> None:
        with psycopg.connect(
            self._url, autocommit=True, connect_timeout=self._connect_timeout
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            while not self._stopping.is_set():
                for note in conn.notifies(timeout=LISTEN_TICK_SECONDS):
                    with self._lock:
                        feeds = list(self._feeds)
                    for feed in feeds:
                        feed.put(note.payload)
