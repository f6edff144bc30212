"""Volcengine V4 request signing (HMAC-SHA256).

The algorithm is contracts.md §1.6. ``sign`` returns the headers to send; ``signature`` is the
one computation both it and the sandbox's verifier (``videogen.sandbox.signature``) use.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "HMAC-SHA256"
SERVICE = "cv"
REGION = "cn-north-1"
X_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str | None = None

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"Credentials(access_key={self.access_key[:4]}…)"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_query(params: Mapping[str, str]) -> str:
    """Keys sorted by byte order; keys and values percent-encoded (RFC 3986 unreserved kept)."""
    items = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in items)


def canonical_host(host: str, scheme: str = "https") -> str:
    """``host[:port]`` with the scheme's default port dropped."""
    if host.endswith(":443") and scheme == "https":
        return host[:-4]
    if host.endswith(":80") and scheme == "http":
        return host[:-3]
    return host


def _signed(headers: Mapping[str, str]) -> dict[str, str]:
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    return {
        k: lower[k] for k in sorted(lower) if k in ("content-type", "host") or k.startswith("x-")
    }


def signature(
    credentials: Credentials,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    x_date: str,
    region: str = REGION,
    service: str = SERVICE,
) -> tuple[str, str, str]:
    """Return ``(signed_header_list, scope, signature_hex)`` for a request."""
    signed = _signed(headers)
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in signed.items())
    signed_list = ";".join(signed)
    canonical_request = "\n".join(
        [method.upper(), path or "/", canonical_query(query), canonical_headers, signed_list,
         sha256_hex(body)]
    )  # fmt: skip
    date = x_date[:8]
    scope = f"{date}/{region}/{service}/request"
    string_to_sign = "\n".join([ALGORITHM, x_date, scope, sha256_hex(canonical_request.encode())])
    key = _hmac(
        _hmac(_hmac(_hmac(credentials.secret_key.encode(), date), region), service), "request"
    )
    return signed_list, scope, hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    credentials: Credentials,
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
    scheme: str = "https",
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers a signed Volcengine request carries (``Authorization`` included)."""
    x_date = (now or datetime.now(UTC)).astimezone(UTC).strftime(X_DATE_FORMAT)
    headers = {
        "Host": canonical_host(host, scheme),
        "Content-Type": content_type,
        "X-Date": x_date,
        "X-Content-Sha256": sha256_hex(body),
    }
    if credentials.session_token:
        headers["X-Security-Token"] = credentials.session_token
    signed_list, scope, sig = signature(
        credentials, method=method, path=path, query=query, headers=headers, body=body,
        x_date=x_date,
    )  # fmt: skip
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_list}, Signature={sig}"
    )
    return headers
