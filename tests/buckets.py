"""An S3 bucket on the loopback moto server (``conftest.bucket``), for tests that look inside it."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_buckets = itertools.count(1)


def next_bucket_name() -> str:
    """A bucket name unused in this process (lower-case, as S3 wants)."""
    return f"videogen-test-{next(_buckets)}"


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
