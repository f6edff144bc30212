"""Fixtures every test folder may use: the task ledger on each backend, and an S3-compatible
store on loopback.

``ledger`` (and ``open_ledger_here``, which opens more ledgers on the same store) run a test
once on the SQLite file and once on a PostgreSQL database of its own (``tests/postgres.py``
starts the server). Tests about SQLite files (modes, damage, WAL) open ``Ledger.in_dir``
themselves and run once.

``moto`` in server mode is a real S3 API over HTTP on 127.0.0.1 (one server per pytest-xdist
worker, started when a test first asks for it); each test gets a bucket of its own. It accepts
any credentials: the tests use the obviously fake ``testing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buckets import Bucket, next_bucket_name
from postgres import INSTALL_HINT, Cluster, server_binaries, start_cluster, unavailable
from videogen.ledger import Ledger

BACKENDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """This worker's PostgreSQL server, started on first use and stopped at the end."""
    binaries = server_binaries()
    if binaries is None:
        unavailable(f"PostgreSQL server binaries (initdb, postgres) not found: {INSTALL_HINT}")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: uv sync --group dev")
    assert binaries is not None
    cluster = start_cluster(binaries)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """The URL of a new, empty database for this test."""
    return postgres_cluster.new_database()


@pytest.fixture(params=BACKENDS)
def ledger_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.fixture
def open_ledger_here(
    request: pytest.FixtureRequest, ledger_backend: str, tmp_path: Path
) -> Iterator[Callable[[], Ledger]]:
    """Opens a ledger on this test's store (the same file or database at every call); every
    ledger opened is closed when the test ends."""
    if ledger_backend == "postgres":
        from videogen.ledger.postgres import PostgresLedger

        url: str = request.getfixturevalue("postgres_url")

        def make() -> Ledger:
            return PostgresLedger(url)
    else:

        def make() -> Ledger:
            return Ledger.in_dir(tmp_path)

    opened: list[Ledger] = []

    def open_one() -> Ledger:
        opened.append(make())
        return opened[-1]

    yield open_one
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(open_ledger_here: Callable[[], Ledger]) -> Ledger:
    return open_ledger_here()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free loopback port, for this worker's whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> Bucket:
    """A new, empty bucket for this test."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = next_bucket_name()
    client.create_bucket(Bucket=name)
    return Bucket(endpoint=s3_endpoint, name=name, prefix="team", client=client)
