"""Settings, read from the environment once at start (CLI run or server lifespan), never at import.

Seed 002's variables keep their meaning and defaults; the other providers and the project's own
settings follow the same style. A bad value stops the program with a message naming the
variable and the fix. With no credentials for any provider, everything runs against the
embedded sandbox and says so.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, get_args
from urllib.parse import unquote, urlsplit

from videogen.catalog import PROVIDERS, ProviderName
from videogen.errors import ConfigError, CredentialsError, remember_secrets
from videogen.spending import LIMIT_VARIABLES, Limit, Policy, Prices, parse_prices

SANDBOX_NOTICE: Final = "sandbox: offline preview, no credentials configured"
#: Shortest accepted ``VIDEOGEN_HTTP_TOKEN`` (each token): a bearer token is a password that
#: anyone who reaches the port may guess, so it must be long and random.
HTTP_TOKEN_MIN_CHARS: Final = 32
#: A task's lease runs this long past its holder's last renewal (``VIDEOGEN_LEASE_SECONDS``): a
#: holder that vanished without releasing it (killed, or on another host) is replaced after this.
LEASE_SECONDS: Final = 45.0

#: Each provider's credential variables, for messages that name the fix.
CREDENTIAL_VARIABLES: Final[dict[ProviderName, tuple[str, ...]]] = {
    "jenius": ("JENIUS_API_KEY",),
    "tokenops": ("TOKENOPS_API_KEY",),
    "volcengine": ("VOLC_ACCESSKEY", "VOLC_SECRETKEY"),
}

#: Every variable the program reads, with its default, for --help and the README.
VARIABLES: Final[dict[str, str]] = {
    "VOLC_ACCESSKEY": "Volcengine access key id",
    "VOLC_SECRETKEY": "Volcengine secret access key",
    "VOLC_SESSIONTOKEN": "Volcengine STS session token (optional)",
    "JIMENG_VIDEO_API_URL": "Volcengine endpoint (default https://visual.volcengineapi.com)",
    "JIMENG_VIDEO_API_TIMEOUT": "request timeout in seconds (default 300)",
    "JIMENG_VIDEO_POLL_INTERVAL": (
        "seconds between polls (default 5); once jobs of a kind are known: 0.6x at one's "
        "expected end, up to 6x before"
    ),
    "JIMENG_VIDEO_MAX_POLL_ATTEMPTS": "polls before the CLI stops waiting (default 120)",
    "TOKENOPS_API_KEY": "TokenOps API key",
    "TOKENOPS_BASE_URL": "TokenOps base URL (default https://api.tokenops.ai/v1)",
    "JENIUS_API_KEY": "Jenius API key",
    "JENIUS_BASE_URL": "Jenius base URL (default https://www.jenius.cn/api)",
    "VIDEOGEN_PROVIDER": "volcengine | tokenops | jenius (default: the first with credentials)",
    "VIDEOGEN_SANDBOX": "1 to use the offline sandbox even when credentials are set",
    "VIDEOGEN_SANDBOX_JOB_SECONDS": "how long a sandbox generation takes (default 8)",
    "VIDEOGEN_OUTPUT_DIR": "where videos are saved (default ~/Videos/videogen; ~/Movies/videogen "
    "on macOS)",
    "VIDEOGEN_DATA_DIR": "where the task ledger lives (default ~/.local/state/videogen)",
    "VIDEOGEN_DATABASE_URL": "postgresql://user:password@host:5432/dbname: keep the task ledger "
    "in PostgreSQL, shared by replicas (needs the postgres extra; default: none, a SQLite file in "
    "VIDEOGEN_DATA_DIR)",
    "VIDEOGEN_WAIT_SECONDS": "how long one MCP tool call waits before answering (default 45)",
    "VIDEOGEN_DEDUPE_SECONDS": "window in which an identical request returns the first task "
    "(default 600)",
    "VIDEOGEN_MAX_DOWNLOAD_MB": "largest video accepted, in MB (default 2048)",
    "VIDEOGEN_DOWNLOAD_TIMEOUT": "overall deadline for one download in seconds (default 900)",
    "VIDEOGEN_HTTP_TOKEN": "bearer token(s), comma-separated, each at least 32 characters, for "
    "the HTTP transport",
    "VIDEOGEN_INPUT_DIRS": "folders whose images HTTP clients may name by path, separated by "
    "commas or the path separator, : (; on Windows) (default none: HTTP clients pass URLs or "
    "data URLs)",
    "VIDEOGEN_LOG_LEVEL": "DEBUG, INFO, WARNING (default WARNING)",
    "VIDEOGEN_LEASE_SECONDS": "how long a task stays with a process that stopped renewing it "
    "before another process (a replica) takes it over (default 45)",
    "VIDEOGEN_STORAGE_URL": "s3://bucket/prefix of an S3-compatible store for saved videos and "
    "uploaded local inputs (default none: videos stay in the output folder, URL-only inputs "
    "must be URLs); needs the extra: pip install 'jimeng-videogen-mcp[storage]'",
    "AWS_ACCESS_KEY_ID": "the store's access key (with VIDEOGEN_STORAGE_URL)",
    "AWS_SECRET_ACCESS_KEY": "the store's secret key (with VIDEOGEN_STORAGE_URL)",
    "AWS_SESSION_TOKEN": "the store's session token (optional)",
    "AWS_REGION": "the store's region (default us-east-1; AWS_DEFAULT_REGION is read too)",
    "AWS_ENDPOINT_URL": "the store's endpoint for a non-AWS store: MinIO, Volcengine TOS, R2... "
    "(default: AWS S3)",
}

# -- spending limits (README "Spending limits"; the rules are in videogen.spending) -------------
_LIMIT_TEXT: Final = {
    "videos": "videos billed",
    "seconds": "seconds of video billed",
    "spend": "money spent (needs VIDEOGEN_PRICES)",
}
VARIABLES.update(
    {
        name: f"most {_LIMIT_TEXT[measure]} per UTC {period}"
        + (" per HTTP token" if per_owner else "")
        + " (default: no limit)"
        for name, (measure, period, per_owner) in LIMIT_VARIABLES.items()
    }
)
VARIABLES["VIDEOGEN_PRICES"] = (
    "price per second of video, e.g. volcengine:t2v_720p=0.07,tokenops:*=0.1 (default: none)"
)

# -- the account-wide queue (README "How many at a time"; the rules are in engine.queue) ------
#: Most tasks of one provider account and mode at the provider at once, for every provider
#: (``VIDEOGEN_MAX_CONCURRENT``) or one (``VIDEOGEN_MAX_CONCURRENT_<PROVIDER>``, which wins).
MAX_CONCURRENT_VARIABLE: Final = "VIDEOGEN_MAX_CONCURRENT"
VARIABLES[MAX_CONCURRENT_VARIABLE] = (
    "most tasks of one provider account and mode at the provider at once; more wait their "
    "turn (default: no limit, learned from the provider's concurrency refusals)"
)
VARIABLES.update(
    {
        f"{MAX_CONCURRENT_VARIABLE}_{name.upper()}": f"{MAX_CONCURRENT_VARIABLE} for {name} alone"
        for name in PROVIDERS
    }
)


def default_output_dir(home: Path, platform: str = sys.platform) -> Path:
    """Where videos go when ``VIDEOGEN_OUTPUT_DIR`` is unset: the platform's own videos folder
    (macOS has ``~/Movies``, not ``~/Videos``), plus ``videogen``. Created on first use."""
    return home / ("Movies" if platform == "darwin" else "Videos") / "videogen"


@dataclass(frozen=True, slots=True)
class ProviderEndpoint:
    """Where a provider is and the secrets to reach it. ``repr`` hides the secrets."""

    base_url: str
    api_key: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        remember_secrets(self.secrets())  # scrubbed from every error, ledger entry and log

    def __repr__(self) -> str:
        return f"ProviderEndpoint(base_url={self.base_url!r}, configured={self.configured})"

    @property
    def configured(self) -> bool:
        return bool(self.api_key) or bool(self.access_key and self.secret_key)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value held, for scrubbing output."""
        return tuple(s for s in (self.api_key, self.secret_key, self.session_token) if s)


#: An S3 bucket name as every S3-compatible store accepts it.
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
STORAGE_URL_FORM: Final = "s3://bucket/prefix, e.g. s3://team-videos/videogen"


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The object store of ``VIDEOGEN_STORAGE_URL`` and the ``AWS_*`` variables that reach it.
    ``repr`` hides the secrets. ``prefix`` has no leading or trailing slash ("" for none)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        remember_secrets((self.secret_access_key, self.session_token))

    @property
    def url(self) -> str:
        """The store as the setting names it, for messages."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret_access_key, self.session_token) if s)


@dataclass(frozen=True, slots=True)
class Settings:
    volcengine: ProviderEndpoint
    tokenops: ProviderEndpoint
    jenius: ProviderEndpoint
    provider: ProviderName
    sandbox: bool
    sandbox_job_seconds: float = 8.0
    request_timeout: float = 300.0
    poll_interval: float = 5.0
    max_poll_attempts: int = 120
    output_dir: Path = field(default_factory=lambda: default_output_dir(Path.home()))
    data_dir: Path = Path.home() / ".local" / "state" / "videogen"
    wait_seconds: float = 45.0
    dedupe_seconds: float = 600.0
    max_download_bytes: int = 2048 * 1024 * 1024
    download_timeout: float = 900.0
    http_tokens: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "WARNING"
    #: Folders whose images clients over HTTP may name by local path (``VIDEOGEN_INPUT_DIRS``).
    input_dirs: tuple[Path, ...] = ()
    #: True in a server for clients over HTTP: they are not on this machine, so their local
    #: paths are read only inside ``input_dirs``. The CLI and stdio read any path.
    remote_clients: bool = False
    #: How long a task's lease outlives its holder's last renewal (``VIDEOGEN_LEASE_SECONDS``).
    lease_seconds: float = LEASE_SECONDS
    #: Spending limits and prices (``VIDEOGEN_LIMIT_*``, ``VIDEOGEN_PRICES``); none by default.
    spending: Policy = field(default_factory=Policy)
    #: Most tasks of one account and mode at each provider at once (``VIDEOGEN_MAX_CONCURRENT*``);
    #: a provider missing here has no configured limit (see ``engine.queue``).
    max_concurrent: tuple[tuple[ProviderName, int], ...] = ()
    #: ``VIDEOGEN_DATABASE_URL``: the PostgreSQL ledger's URL (it may hold a password), or None
    #: for the SQLite file in ``data_dir``.
    database_url: str | None = field(default=None, repr=False)
    #: The object store for saved videos and uploaded inputs (``VIDEOGEN_STORAGE_URL``).
    storage: StorageSettings | None = None

    def __post_init__(self) -> None:
        remember_secrets(self.http_tokens)  # the endpoints and the store remember their own

    @property
    def notice(self) -> str | None:
        """The line every result starts with when nothing real is called."""
        return SANDBOX_NOTICE if self.sandbox else None

    def endpoint(self, provider: ProviderName) -> ProviderEndpoint:
        endpoint: ProviderEndpoint = getattr(self, provider)
        return endpoint

    def require_credentials(self, provider: ProviderName) -> ProviderEndpoint:
        """The provider's endpoint, or a ``CredentialsError`` naming the variables to set."""
        endpoint = self.endpoint(provider)
        if not endpoint.configured:
            names = " and ".join(CREDENTIAL_VARIABLES[provider])
            raise CredentialsError(
                f"No credentials for {provider}: set {names} in the environment "
                f"(or unset VIDEOGEN_PROVIDER / set VIDEOGEN_SANDBOX=1 to try the offline sandbox)."
            )
        return endpoint

    def concurrency_limit(self, provider: ProviderName) -> int | None:
        """The configured most tasks at ``provider`` at once (per account and mode), or None."""
        return dict(self.max_concurrent).get(provider)

    def path_folders(self) -> tuple[Path, ...] | None:
        """Where local image paths may point: None for anywhere (the user's own machine), else
        only inside these folders (none at all when empty)."""
        return self.input_dirs if self.remote_clients else None

    def secrets(self) -> tuple[str, ...]:
        values = [s for p in PROVIDERS for s in self.endpoint(p).secrets()]
        stored = self.storage.secrets() if self.storage else ()
        return (*values, *self.http_tokens, *stored)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting; raise ``ConfigError`` naming the variable for a bad value."""
        env = os.environ if env is None else env
        read = _Reader(env)
        volcengine, tokenops, jenius = _endpoints(read)
        endpoints = {"volcengine": volcengine, "tokenops": tokenops, "jenius": jenius}
        chosen = read.choice("VIDEOGEN_PROVIDER", PROVIDERS)
        forced_sandbox = read.flag("VIDEOGEN_SANDBOX")
        any_configured = [
            p for p in ("volcengine", "tokenops", "jenius") if endpoints[p].configured
        ]
        sandbox = forced_sandbox or not any_configured
        provider: ProviderName = chosen or (any_configured[0] if any_configured else "volcengine")  # type: ignore[assignment]
        home = Path(env.get("HOME") or Path.home())
        state = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else home / ".local/state"
        return cls(
            volcengine=volcengine,
            tokenops=tokenops,
            jenius=jenius,
            provider=provider,
            sandbox=sandbox,
            sandbox_job_seconds=read.number("VIDEOGEN_SANDBOX_JOB_SECONDS", 8.0, 0.0, 3600.0),
            request_timeout=read.number("JIMENG_VIDEO_API_TIMEOUT", 300.0, 1.0, 3600.0),
            poll_interval=read.number("JIMENG_VIDEO_POLL_INTERVAL", 5.0, 0.05, 600.0),
            max_poll_attempts=int(read.number("JIMENG_VIDEO_MAX_POLL_ATTEMPTS", 120, 1, 100_000)),
            output_dir=read.path("VIDEOGEN_OUTPUT_DIR", default_output_dir(home)),
            data_dir=read.path("VIDEOGEN_DATA_DIR", state / "videogen"),
            wait_seconds=read.number("VIDEOGEN_WAIT_SECONDS", 45.0, 0.0, 3600.0),
            dedupe_seconds=read.number("VIDEOGEN_DEDUPE_SECONDS", 600.0, 0.0, 86_400.0),
            max_download_bytes=int(read.number("VIDEOGEN_MAX_DOWNLOAD_MB", 2048, 1, 1 << 20))
            * 1024
            * 1024,
            download_timeout=read.number("VIDEOGEN_DOWNLOAD_TIMEOUT", 900.0, 1.0, 86_400.0),
            http_tokens=read.tokens("VIDEOGEN_HTTP_TOKEN"),
            log_level=read.choice("VIDEOGEN_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"))
            or "WARNING",
            input_dirs=read.folders("VIDEOGEN_INPUT_DIRS"),
            lease_seconds=read.number("VIDEOGEN_LEASE_SECONDS", LEASE_SECONDS, 1.0, 3600.0),
            spending=_spending(read),
            max_concurrent=_max_concurrent(read),
            database_url=read.database_url("VIDEOGEN_DATABASE_URL"),
            storage=_storage(read),
        )


def _endpoints(read: _Reader) -> tuple[ProviderEndpoint, ProviderEndpoint, ProviderEndpoint]:
    """Volcengine's, TokenOps' and Jenius' endpoints and credentials (in that order)."""
    volcengine = ProviderEndpoint(
        base_url=read.url("JIMENG_VIDEO_API_URL", "https://visual.volcengineapi.com"),
        access_key=read.text("VOLC_ACCESSKEY"),
        secret_key=read.text("VOLC_SECRETKEY"),
        session_token=read.text("VOLC_SESSIONTOKEN"),
    )
    tokenops = ProviderEndpoint(
        base_url=read.url("TOKENOPS_BASE_URL", "https://api.tokenops.ai/v1"),
        api_key=read.text("TOKENOPS_API_KEY"),
    )
    jenius = ProviderEndpoint(
        base_url=read.url("JENIUS_BASE_URL", "https://www.jenius.cn/api"),
        api_key=read.text("JENIUS_API_KEY"),
    )
    if bool(volcengine.access_key) != bool(volcengine.secret_key):
        missing = "VOLC_SECRETKEY" if volcengine.access_key else "VOLC_ACCESSKEY"
        raise ConfigError(f"{missing} is not set: Volcengine needs both VOLC_ACCESSKEY and "
                          "VOLC_SECRETKEY.")  # fmt: skip
    return volcengine, tokenops, jenius


def _max_concurrent(read: _Reader) -> tuple[tuple[ProviderName, int], ...]:
    """``VIDEOGEN_MAX_CONCURRENT`` for every provider, ``..._<PROVIDER>`` for one (it wins)."""
    every = read.whole(MAX_CONCURRENT_VARIABLE, 1, 10_000)
    limits: list[tuple[ProviderName, int]] = []
    for provider in PROVIDERS:
        own = read.whole(f"{MAX_CONCURRENT_VARIABLE}_{provider.upper()}", 1, 10_000)
        limit = every if own is None else own
        if limit is not None:
            limits.append((provider, limit))
    return tuple(limits)


def _spending(read: _Reader) -> Policy:
    """The ``VIDEOGEN_LIMIT_*`` and ``VIDEOGEN_PRICES`` settings."""
    limits = []
    for name, (measure, period, per_owner) in LIMIT_VARIABLES.items():
        if read.text(name) is not None:
            value = read.number(name, 0, 0, 1e12)
            limits.append(Limit(measure, period, per_owner, value))
    raw = read.text("VIDEOGEN_PRICES")
    prices: Prices | None = None
    if raw is not None:
        try:
            prices = parse_prices(raw)
        except ValueError as exc:
            example = "e.g. volcengine:t2v_720p=0.07"
            raise ConfigError(f"VIDEOGEN_PRICES: {exc}; {example}.") from None
    spend = [lim.variable for lim in limits if lim.measure == "spend"]
    if spend and prices is None:
        raise ConfigError(
            f"{spend[0]} is set but VIDEOGEN_PRICES is not: set the price per second of each "
            "provider and mode, or unset the spend limit."
        )
    return Policy(tuple(limits), prices)


def _storage(read: _Reader) -> StorageSettings | None:
    """``VIDEOGEN_STORAGE_URL`` and the store's usual ``AWS_*`` variables; None when unset."""
    raw = read.text("VIDEOGEN_STORAGE_URL")
    if raw is None:
        return None
    scheme, _, rest = raw.partition("://")
    bucket, _, prefix = rest.partition("/")
    steps = [part for part in prefix.split("/") if part]
    if scheme.lower() != "s3" or not _BUCKET.fullmatch(bucket) or ".." in steps:
        raise ConfigError(
            f"VIDEOGEN_STORAGE_URL={raw!r} is not an S3 location: give it as {STORAGE_URL_FORM} "
            "(a bucket name of 3 to 63 lower-case letters, digits, dots or hyphens), or unset it "
            "to keep videos in the output folder only."
        )
    endpoint = read.text("AWS_ENDPOINT_URL")
    if endpoint is not None:
        endpoint = read.url("AWS_ENDPOINT_URL", endpoint)
    access_key, secret_key = read.text("AWS_ACCESS_KEY_ID"), read.text("AWS_SECRET_ACCESS_KEY")
    if bool(access_key) != bool(secret_key):
        missing = "AWS_SECRET_ACCESS_KEY" if access_key else "AWS_ACCESS_KEY_ID"
        raise ConfigError(f"{missing} is not set: the store of VIDEOGEN_STORAGE_URL needs both "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")  # fmt: skip
    return StorageSettings(
        bucket=bucket,
        prefix="/".join(steps),
        endpoint=endpoint,
        region=read.text("AWS_REGION") or read.text("AWS_DEFAULT_REGION") or "us-east-1",
        access_key_id=access_key,
        secret_access_key=secret_key,
        session_token=read.text("AWS_SESSION_TOKEN"),
    )


@dataclass(frozen=True, slots=True)
class _Reader:
    env: Mapping[str, str]

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def url(self, name: str, default: str) -> str:
        value = self.text(name) or default
        if not value.startswith(("http://", "https://")):
            raise ConfigError(
                f"{name}={value!r} is not a URL: give it as http(s)://host[:port]/path."
            )
        return value.rstrip("/")

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return float(default)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number: set it to a number of "
                              f"{'seconds' if 'SECONDS' in name or 'TIMEOUT' in name else 'units'} "
                              f"between {low:g} and {high:g}, or unset it.") from None  # fmt: skip
        if not low <= value <= high:
            raise ConfigError(f"{name}={raw} is out of range: use a value between {low:g} and "
                              f"{high:g}, or unset it for the default ({default:g}).")  # fmt: skip
        return value

    def whole(self, name: str, low: int, high: int) -> int | None:
        """A whole number between ``low`` and ``high``, or None when unset."""
        raw = self.text(name)
        if raw is None:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ConfigError(f"{name}={raw!r} is not a whole number between {low} and {high}: "
                              "set it to how many tasks may run at once, or unset it for no "
                              "limit.")  # fmt: skip
        return int(raw)

    def tokens(self, name: str) -> tuple[str, ...]:
        """Comma-separated secrets, each at least ``HTTP_TOKEN_MIN_CHARS`` long."""
        tokens = tuple(t.strip() for t in (self.text(name) or "").split(",") if t.strip())
        short = [t for t in tokens if len(t) < HTTP_TOKEN_MIN_CHARS]
        if short:
            raise ConfigError(
                f"{name} holds a token of {len(short[0])} characters: each token must have at "
                f"least {HTTP_TOKEN_MIN_CHARS}, or anyone who reaches the server could guess "
                'it. Make one with: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
        return tokens

    def database_url(self, name: str) -> str | None:
        """A ``postgresql://`` URL; its password is scrubbed from every message from now on."""
        raw = self.text(name)
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                f"{name} is not a PostgreSQL URL: give it as "
                "postgresql://user:password@host:5432/dbname, or unset it to keep the ledger in "
                "VIDEOGEN_DATA_DIR."
            )
        remember_secrets([parts.password, unquote(parts.password or "")])
        return raw

    def flag(self, name: str) -> bool:
        raw = (self.text(name) or "0").lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a yes/no value: use 1 or 0.")

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise ConfigError(f"{name}={raw!r} is not one of: {', '.join(choices)}.")

    def folders(self, name: str) -> tuple[Path, ...]:
        """Absolute folders separated by ``os.pathsep`` or commas (``~`` expanded)."""
        raw = self.text(name) or ""
        if "\x00" in raw:
            raise ConfigError(f"{name} contains a NUL byte: give plain folder paths.")
        folders = []
        for part in raw.replace(os.pathsep, ",").split(","):
            if not part.strip():
                continue
            try:
                folder = Path(part.strip()).expanduser()
            except RuntimeError:
                folder = Path(part.strip())  # ~name of an unknown user: not absolute, refused
            if not folder.is_absolute():
                raise ConfigError(
                    f"{name} names {part.strip()!r}, which is not an absolute path: give each "
                    f"folder's full path, separated by {os.pathsep!r} or ','."
                )
            folders.append(folder)
        return tuple(folders)

    def path(self, name: str, default: Path) -> Path:
        raw = self.text(name)
        if raw is not None and "\x00" in raw:
            raise ConfigError(f"{name} contains a NUL byte: give a plain directory path.")
        return Path(raw).expanduser() if raw else default


assert set(CREDENTIAL_VARIABLES) == set(get_args(ProviderName))
