"""Who may call over HTTP and where it is served: bearer tokens (``StaticTokenVerifier``), the
caller's owner id, and the HTTP plan (refusing to serve off loopback without a token)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings

from videogen.config import Settings
from videogen.errors import ConfigError, InputError
from videogen.request import IMAGE_MAX_BYTES

DEFAULT_HTTP_PORT: Final = 8000
#: Most images one call may upload: a first and a tail frame (scenes and portraits take URLs).
UPLOADED_IMAGES_MAX: Final = 2
#: Largest HTTP request body: a generate_video call whose images are data URLs at the documented
#: limit (4.7 MB each, 4/3 of that as base64, a little more if a client escapes '/' in JSON),
#: plus 1 MiB for the rest of the JSON-RPC message. The SDK's default (4 MiB) answered 413 to a
#: single image near the limit, so the documented limit and the transport's must be one.
HTTP_MAX_BODY_BYTES: Final = UPLOADED_IMAGES_MAX * (IMAGE_MAX_BYTES * 4 // 3) * 102 // 100 + (
    1 << 20
)
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})


# --- who is calling ----------------------------------------------------------------------------


class StaticTokenVerifier:
    """Accepts the configured bearer tokens. The caller's identity is a hash of its token, so
    tasks can be owned per token without the token itself being stored anywhere."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._digests = tuple(_digest(t) for t in tokens if t)

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = _digest(token)
        # Compare against every token so the time taken does not say which one nearly matched.
        matched = [hmac.compare_digest(digest, known) for known in self._digests]
        if not any(matched):
            return None
        return AccessToken(token=token, client_id=owner_of(token), scopes=[])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_of(token: str) -> str:
    """The owner id recorded on tasks made with ``token`` (a hash, never the token)."""
    return "token:" + _digest(token)[:16]


def caller() -> str | None:
    """The calling token's owner id on an authenticated HTTP request; None otherwise."""
    access = get_access_token()
    return access.client_id if access is not None else None


# --- transports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpPlan:
    """How the HTTP transport will be served, decided before anything starts."""

    host: str
    port: int
    tokens: tuple[str, ...]
    security: TransportSecuritySettings | None


def plan_http(settings: Settings, host: str, port: int) -> HttpPlan:
    """Refuse (``ConfigError``) to serve off loopback without a token, or with an input folder
    that is not a folder; keep Host/Origin checks on for loopback binds."""
    for folder in settings.input_dirs:
        if not folder.is_dir():
            raise ConfigError(
                f"VIDEOGEN_INPUT_DIRS names {str(folder)!r}, which is not a folder: create it, "
                "or remove it from the list."
            )
    loopback = _is_loopback(host)
    if not loopback and not settings.http_tokens:
        raise ConfigError(
            f"Refusing to serve MCP over HTTP on {host} without a token: anyone who can reach "
            "it could generate billed videos. Set VIDEOGEN_HTTP_TOKEN to one or more "
            "comma-separated secrets (clients send 'Authorization: Bearer <token>'), or bind "
            "127.0.0.1."
        )
    security = None
    if loopback and host not in LOOPBACK_NAMES:  # e.g. 127.0.0.2: the SDK only knows 3 names
        security = TransportSecuritySettings(
            allowed_hosts=[f"{host}:*", "127.0.0.1:*", "localhost:*"],
            allowed_origins=[f"http://{host}:*", "http://127.0.0.1:*", "http://localhost:*"],
        )
    return HttpPlan(host, port, settings.http_tokens, security)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), or ``InputError`` naming
    the option to change: never a traceback for a port that cannot be had."""
    if not 0 <= port <= 65535:
        raise InputError(
            f"Port {port} is not a TCP port: give --port 1-65535, or 0 for any free port."
        )
    # As uvicorn binds: IPv6 for an address with a colon, else IPv4 (a name is resolved).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen()  # connections wait in the backlog until the server accepts them
    except (OSError, UnicodeError) as error:
        listener.close()
        reason = getattr(error, "strerror", None) or error
        raise InputError(
            f"Cannot listen on {host} port {port} ({reason}): give --host an address of this "
            "machine (e.g. 127.0.0.1) and a free --port (0 picks one)."
        ) from None
    return listener


def listening_url(listener: socket.socket) -> str:
    """The MCP endpoint a bound listener serves, with the port it really got."""
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/mcp"
