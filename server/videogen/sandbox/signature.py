"""The sandbox's check of a Volcengine V4 signature (contracts.md §1.6).

``verify`` recomputes the signature of a received request with the same computation the client
signs with (``videogen.providers.signing.signature``) and says why it does not match, so the
sandbox answers with the gateway's own error codes.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from videogen.providers.signing import (
    ALGORITHM,
    X_DATE_FORMAT,
    Credentials,
    sha256_hex,
    signature,
)


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key: str
    scope: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Split an ``Authorization`` header; None when it is not a V4 HMAC-SHA256 header."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if sep:
            parts[name] = val
    credential = parts.get("Credential", "")
    access_key, _, scope = credential.partition("/")
    if not access_key or not scope or "SignedHeaders" not in parts or "Signature" not in parts:
        return None
    return ParsedAuthorization(
        access_key, scope, tuple(parts["SignedHeaders"].split(";")), parts["Signature"]
    )


#: Headers every signed request must sign (contracts.md §1.6, step 2).
REQUIRED_SIGNED: Final = ("host", "x-content-sha256", "x-date")


class VerifyError(Exception):
    """Why a signature was refused: ``code`` is the gateway's error ``Code`` (contracts.md §1.1)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def verify(
    secrets: Mapping[str, str],
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    max_skew_seconds: float = 900,
) -> str:
    """Check a received request's signature; return its access key or raise ``VerifyError``.

    ``secrets`` maps access keys to secret keys. ``headers`` must hold the received headers
    (any case); the signed ones are taken from the Authorization header's list, which must
    name ``host``, ``x-date``, ``x-content-sha256`` and every ``content-type`` / ``x-*`` header
    sent (contracts.md §1.6), and ``X-Content-Sha256`` must be the body's hash: a signature
    over ``x-date`` alone would let anyone on the path change the body, host or token.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    auth_value = lower.get("authorization")
    if not auth_value:
        raise VerifyError("MissingAuthenticationToken", "Request is missing Authorization header")
    parsed = parse_authorization(auth_value)
    if parsed is None:
        raise VerifyError("MissingSignature", "The Authorization header is not HMAC-SHA256")
    secret = secrets.get(parsed.access_key)
    if secret is None:
        raise VerifyError("InvalidAccessKey", "The access key you provided is invalid")
    x_date = lower.get("x-date", "")
    try:
        sent_at = datetime.strptime(x_date, X_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise VerifyError("InvalidTimestamp", "X-Date is missing or malformed") from None
    if abs((now - sent_at).total_seconds()) > max_skew_seconds:
        raise VerifyError("InvalidTimestamp", "X-Date is too far from the server's time")
    _check_signed_headers(parsed.signed_headers, lower, body)
    signed_headers = {h: lower[h] for h in parsed.signed_headers}
    date, _, rest = parsed.scope.partition("/")
    region, _, rest = rest.partition("/")
    service = rest.partition("/")[0]
    session = lower.get("x-security-token")
    creds = Credentials(parsed.access_key, secret, session)
    _, _, expected = signature(
        creds, method=method, path=path, query=query, headers=signed_headers, body=body,
        x_date=x_date, region=region, service=service,
    )  # fmt: skip
    if date != x_date[:8] or not hmac.compare_digest(expected, parsed.signature):
        raise VerifyError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    return parsed.access_key


def _check_signed_headers(signed: tuple[str, ...], sent: Mapping[str, str], body: bytes) -> None:
    """Refuse a SignedHeaders list that leaves out what must be signed, or a wrong body hash."""
    mismatch = "SignatureDoesNotMatch"
    missing = [h for h in signed if h not in sent]
    if missing:
        raise VerifyError(mismatch, f"Signed header(s) not sent: {missing}")
    signable = [h for h in sent if h in ("content-type", "host") or h.startswith("x-")]
    unsigned = sorted({*REQUIRED_SIGNED, *signable} - set(signed))
    if unsigned:
        raise VerifyError(
            mismatch,
            f"SignedHeaders must include {', '.join(unsigned)} (host, x-content-sha256, x-date "
            "and every content-type and x-* header sent)",
        )
    if not hmac.compare_digest(sent["x-content-sha256"].strip().lower(), sha256_hex(body)):
        raise VerifyError(mismatch, "X-Content-Sha256 is not the SHA-256 of the request body")
