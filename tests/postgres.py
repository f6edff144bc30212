"""A real PostgreSQL for the tests, started from the system's server binaries.

One cluster per pytest-xdist worker (``initdb`` into a temp dir, ``postgres`` on a free loopback
port with fsync off), started the first time a test asks for it and stopped when the session
ends; each test gets a database of its own. ``bench/bench_replicas.py`` starts its cluster here
too, with settings of its own (``start_cluster(binaries, settings=...)``). Run as root (CI,
containers), ``initdb`` and ``postgres`` refuse to start: they are run as the ``postgres`` user,
owner of the temp dir.

Without the binaries the PostgreSQL tests are skipped, naming the package to install; with
``VIDEOGEN_TEST_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: The test cluster's superuser and password (loopback only, thrown away with the cluster).
USER = "videogen"
PASSWORD = "not-a-real-password-7f3a"
REQUIRE_VARIABLE = "VIDEOGEN_TEST_REQUIRE_POSTGRES"
INSTALL_HINT = "apt-get install postgresql (Debian/Ubuntu), or put pg_config on PATH"
#: Small and fast: nothing here needs to survive a crash.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "60",
    "max_wal_size": "64MB",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def server_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: ``pg_config --bindir``, else
    the newest Debian ``/usr/lib/postgresql/NN/bin``; None when there is none."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            candidates.append(Path(done.stdout.strip()))
    found = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(found, key=_major, reverse=True)]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _major(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def unavailable(reason: str) -> None:
    """Skip the test (or fail it, when ``VIDEOGEN_TEST_REQUIRE_POSTGRES=1``)."""
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1 requires PostgreSQL)", pytrace=False)
    pytest.skip(reason)


@dataclass
class Cluster:
    """A running PostgreSQL on ``127.0.0.1:port`` with its files in ``root``."""

    binaries: Path
    root: Path
    port: int
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres", *, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and remove its files (the files go even if the stop failed)."""
        try:
            _run_as_owner(self, [str(self.binaries / "pg_ctl"), "-D", str(self.data),
                                 "-m", "immediate", "stop"])  # fmt: skip
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(binaries: Path, settings: Mapping[str, str] | None = None) -> Cluster:
    """``initdb`` and start a server in a new temp dir; waits until it accepts connections.
    ``settings`` override ``SETTINGS`` (the server's ``-c`` options).

    The dir is made directly in the system's temp folder: pytest's own are private to root,
    and the server (run as ``postgres`` under root) must reach its files."""
    root = Path(tempfile.mkdtemp(prefix="videogen-pg-"))
    cluster = Cluster(binaries, root, _free_port())
    password_file = root / "password"
    password_file.write_text(PASSWORD)
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable(
                f"running as root needs a 'postgres' user to run the server: {INSTALL_HINT}"
            )
        for path in (root, password_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        root.chmod(0o700)
    options = " ".join(f"-c {k}={v}" for k, v in {**SETTINGS, **(settings or {})}.items())
    options += f" -p {cluster.port} -k {root}"
    try:
        _run_as_owner(cluster, [
            str(binaries / "initdb"), "-D", str(cluster.data), "-U", USER, "-E", "UTF8",
            "--no-locale", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
            f"--pwfile={password_file}",
        ])  # fmt: skip
        _run_as_owner(cluster, [
            str(binaries / "pg_ctl"), "-D", str(cluster.data), "-l", str(root / "log"),
            "-o", options, "-w", "-t", "60", "start",
        ])  # fmt: skip
    except BaseException:  # a failed or interrupted start leaves no server and no files
        with contextlib.suppress(RuntimeError):
            cluster.stop()
        raise
    return cluster


def _run_as_owner(cluster: Cluster, command: Sequence[str]) -> None:
    """Run a server program, as the ``postgres`` user when we are root (they refuse root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cluster.root)
    if done.returncode != 0:
        log = cluster.root / "log"
        tail = log.read_text()[-2000:] if log.is_file() else ""
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}{tail}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
