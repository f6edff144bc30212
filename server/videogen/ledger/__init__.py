"""The task ledger: one interface (``base.Ledger``), two backends.

``open_ledger(settings)`` gives the SQLite file in the data dir (the embedded default: nothing
to set up) or, when ``VIDEOGEN_DATABASE_URL`` is set, the PostgreSQL database replicas share.
psycopg is imported only then: the default starts without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from videogen.errors import ConfigError
from videogen.ledger.base import (
    UNRECORDED_ORIGIN,
    Change,
    ChangeFeed,
    Lease,
    Ledger,
    TaskRows,
    holder_is_dead,
    new_holder,
)
from videogen.ledger.sqlite import (
    LEDGER_FILENAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteLedger,
    ledger_error,
    private_dir,
)

if TYPE_CHECKING:
    from videogen.config import Settings

__all__ = [
    "LEDGER_FILENAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "UNRECORDED_ORIGIN",
    "Change",
    "ChangeFeed",
    "Lease",
    "Ledger",
    "SQLiteLedger",
    "TaskRows",
    "holder_is_dead",
    "ledger_error",
    "ledger_exists",
    "new_holder",
    "open_ledger",
    "private_dir",
]

#: What to run when ``VIDEOGEN_DATABASE_URL`` is set but psycopg is not installed.
POSTGRES_EXTRA_FIX = (
    "install the PostgreSQL support: uv tool install 'jimeng-videogen-mcp[postgres]' "
    "(or pip install 'jimeng-videogen-mcp[postgres]'), or unset VIDEOGEN_DATABASE_URL to use "
    "the SQLite ledger in VIDEOGEN_DATA_DIR"
)


def ledger_exists(settings: Settings) -> bool:
    """False only when no ledger was ever written: no SQLite file in the data dir (a database
    URL always names one), so reading commands need not create it just to find it empty."""
    return settings.database_url is not None or (settings.data_dir / LEDGER_FILENAME).is_file()


def open_ledger(settings: Settings) -> Ledger:
    """The ledger the settings name: PostgreSQL at ``settings.database_url`` when set, else the
    SQLite file in ``settings.data_dir``."""
    if settings.database_url is None:
        return SQLiteLedger.in_dir(settings.data_dir)
    try:
        from videogen.ledger.postgres import PostgresLedger
    except ImportError as exc:
        if exc.name is not None and exc.name.partition(".")[0] not in ("psycopg", "psycopg_pool"):
            raise
        missing = f"{exc.name} is not installed" if exc.name else f"psycopg cannot load ({exc})"
        raise ConfigError(
            f"VIDEOGEN_DATABASE_URL is set but {missing}: {POSTGRES_EXTRA_FIX}."
        ) from None
    return PostgresLedger(settings.database_url)
