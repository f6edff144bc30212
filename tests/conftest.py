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

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_buckets = itertools.count(1)


@dataclass
class Bucket:
    """A bucket on the loopback S3 server, the environment that points videogen at it, and a
    client to look inside it."""

    endpoint: str
    name: str
    prefix: str
    client: Any  # boto3's S3 client

    def env(self) -> dict[str, str]:
        """``VIDEOGEN_STORAGE_URL`` and the ``AWS_*`` variables for this bucket."""
        return {
            "VIDEOGEN_STORAGE_URL": f"s3://{self.name}/{self.prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            **FAKE_CREDENTIALS,
        }

    def keys(self, under: str = "") -> list[str]:
        """Every object key under the prefix (and ``under`` below it), sorted."""
        listed = self.client.list_objects_v2(Bucket=self.name, Prefix=f"{self.prefix}/{under}")
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def deny_everything(self) -> None:
        """A bucket policy that refuses every request (what a wrong or read-only key meets)."""
        arn = f"arn:aws:s3:::{self.name}"
        statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                     "Resource": [arn, f"{arn}/*"]}  # fmt: skip
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        self.client.put_bucket_policy(Bucket=self.name, Policy=json.dumps(policy))


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
    name = f"videogen-test-{next(_buckets)}"
    client.create_bucket(Bucket=name)
    return Bucket(endpoint=s3_endpoint, name=name, prefix="team", client=client)
