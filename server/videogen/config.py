"""Settings, read from the environment once at start (CLI run or server lifespan), never at import.

Every variable is declared once, as a field of ``Environment``: its name, type, default, bounds
and meaning. ``VARIABLES`` (``--help``, the README table, server.json) is written from those
declarations, and ``Settings.from_env`` validates the environment against them before it builds
the frozen ``Settings`` the program passes around. Seed 002's variables keep their meaning and
defaults. A bad value stops the program with a message naming the variable and the fix. With no
credentials for any provider, everything runs against the embedded sandbox and says so.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin
from urllib.parse import unquote, urlsplit

from annotated_types import Ge, Le
from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, create_model
from pydantic import field_validator as check
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

#: Each provider's credential variables, for messages that name the fix.
CREDENTIAL_VARIABLES: Final[dict[ProviderName, tuple[str, ...]]] = {
    "jenius": ("JENIUS_API_KEY",),
    "tokenops": ("TOKENOPS_API_KEY",),
    "volcengine": ("VOLC_ACCESSKEY", "VOLC_SECRETKEY"),
}
#: Which provider serves requests when ``VIDEOGEN_PROVIDER`` is unset: the first with credentials.
_PREFERENCE: Final[tuple[ProviderName, ...]] = ("volcengine", "tokenops", "jenius")
#: An S3 bucket name as every S3-compatible store accepts it.
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
STORAGE_URL_FORM: Final = "s3://bucket/prefix, e.g. s3://team-videos/videogen"
#: Most tasks of one provider account and mode at the provider at once, for every provider
#: (``VIDEOGEN_MAX_CONCURRENT``) or one (``VIDEOGEN_MAX_CONCURRENT_<PROVIDER>``, which wins).
MAX_CONCURRENT_VARIABLE: Final = "VIDEOGEN_MAX_CONCURRENT"
_MEGABYTE: Final = 1024 * 1024


def default_output_dir(home: Path, platform: str = sys.platform) -> Path:
    """Where videos go when ``VIDEOGEN_OUTPUT_DIR`` is unset: the platform's own videos folder
    (macOS has ``~/Movies``, not ``~/Videos``), plus ``videogen``. Created on first use."""
    return home / ("Movies" if platform == "darwin" else "Videos") / "videogen"


def _var(name: str | AliasChoices, default: Any = None, *, unit: str = "seconds",
         secret: bool = False, **checks: Any) -> Any:  # fmt: skip
    """One environment variable: its name, default, ``checks`` (its ``description``; bounds
    ``ge``, ``le``) and, for a number, its unit. A secret's value never appears in a repr or a
    message."""
    unit_of: dict[str, Any] = {"unit": unit}
    return Field(
        default, validation_alias=name, repr=not secret, json_schema_extra=unit_of, **checks
    )


class _Declared(BaseSettings):
    """Every variable the program reads, but the families (``VIDEOGEN_LIMIT_*``,
    ``VIDEOGEN_MAX_CONCURRENT*``) that ``Environment`` adds. A field's default is the setting's
    default; for None (unset), its description says what that means."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", validate_by_name=False, validate_default=False
    )

    volc_access_key: str | None = _var("VOLC_ACCESSKEY", description="Volcengine access key id")
    volc_secret_key: str | None = _var(
        "VOLC_SECRETKEY", secret=True, description="Volcengine secret access key"
    )
    volc_session_token: str | None = _var(
        "VOLC_SESSIONTOKEN", secret=True, description="Volcengine STS session token (optional)"
    )
    volcengine_url: str = _var(
        "JIMENG_VIDEO_API_URL",
        "https://visual.volcengineapi.com",
        description="Volcengine endpoint",
    )
    request_timeout: float = _var(
        "JIMENG_VIDEO_API_TIMEOUT", 300.0, ge=1, le=3600, description="request timeout in seconds"
    )
    poll_interval: float = _var(
        "JIMENG_VIDEO_POLL_INTERVAL", 5.0, ge=0.05, le=600,
        description="seconds between polls; once jobs of a kind are known: 0.6x at one's expected "
        "end, up to 6x before",
    )  # fmt: skip
    max_poll_attempts: int = _var(
        "JIMENG_VIDEO_MAX_POLL_ATTEMPTS", 120, ge=1, le=100_000, unit="polls",
        description="polls before the CLI stops waiting",
    )  # fmt: skip
    tokenops_api_key: str | None = _var(
        "TOKENOPS_API_KEY", secret=True, description="TokenOps API key"
    )
    tokenops_url: str = _var(
        "TOKENOPS_BASE_URL", "https://api.tokenops.ai/v1", description="TokenOps base URL"
    )
    jenius_api_key: str | None = _var("JENIUS_API_KEY", secret=True, description="Jenius API key")
    jenius_url: str = _var(
        "JENIUS_BASE_URL", "https://www.jenius.cn/api", description="Jenius base URL"
    )
    provider: ProviderName | None = _var(
        "VIDEOGEN_PROVIDER", description="(default: the first with credentials)"
    )
    sandbox: bool = _var(
        "VIDEOGEN_SANDBOX", False,
        description="1 to use the offline sandbox even when credentials are set",
    )  # fmt: skip
    sandbox_job_seconds: float = _var(
        "VIDEOGEN_SANDBOX_JOB_SECONDS", 8.0, ge=0, le=3600,
        description="how long a sandbox generation takes",
    )  # fmt: skip
    output_dir: Path | None = _var(
        "VIDEOGEN_OUTPUT_DIR",
        description="where videos are saved (default ~/Videos/videogen; ~/Movies/videogen on "
        "macOS)",
    )
    data_dir: Path | None = _var(
        "VIDEOGEN_DATA_DIR",
        description="where the task ledger lives (default ~/.local/state/videogen)",
    )
    database_url: str | None = _var(
        "VIDEOGEN_DATABASE_URL", secret=True,
        description="postgresql://user:password@host:5432/dbname: keep the task ledger in "
        "PostgreSQL, shared by replicas (needs the postgres extra; default: none, a SQLite file "
        "in VIDEOGEN_DATA_DIR)",
    )  # fmt: skip
    wait_seconds: float = _var(
        "VIDEOGEN_WAIT_SECONDS", 45.0, ge=0, le=3600,
        description="how long one MCP tool call waits before answering",
    )  # fmt: skip
    dedupe_seconds: float = _var(
        "VIDEOGEN_DEDUPE_SECONDS", 600.0, ge=0, le=86_400,
        description="window in which an identical request returns the first task",
    )  # fmt: skip
    max_download_mb: int = _var(
        "VIDEOGEN_MAX_DOWNLOAD_MB", 2048, ge=1, le=1 << 20, unit="MB",
        description="largest video accepted, in MB",
    )  # fmt: skip
    download_timeout: float = _var(
        "VIDEOGEN_DOWNLOAD_TIMEOUT", 900.0, ge=1, le=86_400,
        description="overall deadline for one download in seconds",
    )  # fmt: skip
    http_tokens: tuple[str, ...] = _var(
        "VIDEOGEN_HTTP_TOKEN", (), secret=True,
        description=f"bearer token(s), comma-separated, each at least {HTTP_TOKEN_MIN_CHARS} "
        "characters, for the HTTP transport",
    )  # fmt: skip
    input_dirs: tuple[Path, ...] = _var(
        "VIDEOGEN_INPUT_DIRS", (),
        description="folders whose images HTTP clients may name by path, separated by commas or "
        "the path separator, : (; on Windows) (default none: HTTP clients pass URLs or data URLs)",
    )  # fmt: skip
    log_level: LogLevel = _var("VIDEOGEN_LOG_LEVEL", "WARNING")
    lease_seconds: float = _var(
        "VIDEOGEN_LEASE_SECONDS", LEASE_SECONDS, ge=1, le=3600,
        description="how long a task stays with a process that stopped renewing it before "
        "another process (a replica) takes it over",
    )  # fmt: skip
    storage: tuple[str, str] | None = _var(  # (bucket, prefix)
        "VIDEOGEN_STORAGE_URL",
        description="s3://bucket/prefix of an S3-compatible store for saved videos and uploaded "
        "local inputs (default none: videos stay in the output folder, URL-only inputs must be "
        "URLs); needs the extra: pip install 'jimeng-videogen-mcp[storage]'",
    )
    aws_access_key_id: str | None = _var(
        "AWS_ACCESS_KEY_ID", description="the store's access key (with VIDEOGEN_STORAGE_URL)"
    )
    aws_secret_access_key: str | None = _var(
        "AWS_SECRET_ACCESS_KEY", secret=True,
        description="the store's secret key (with VIDEOGEN_STORAGE_URL)",
    )  # fmt: skip
    aws_session_token: str | None = _var(
        "AWS_SESSION_TOKEN", secret=True, description="the store's session token (optional)"
    )
    aws_region: str = _var(
        AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"), "us-east-1",
        description="the store's region, else AWS_DEFAULT_REGION's",
    )  # fmt: skip
    aws_endpoint_url: str | None = _var(
        "AWS_ENDPOINT_URL",
        description="the store's endpoint for a non-AWS store: MinIO, Volcengine TOS, R2... "
        "(default: AWS S3)",
    )
    prices: Prices | None = _var(
        "VIDEOGEN_PRICES",
        description="price per second of video, e.g. volcengine:t2v_720p=0.07,tokenops:*=0.1 "
        "(default: none)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values ``_read_environment`` hands over (from the mapping it is given): not
        ``os.environ`` behind its back, no ``.env`` file, no secrets folder."""
        return (init_settings,)

    @check("provider", "log_level", mode="before")
    @classmethod
    def _any_case(cls, raw: str, info: ValidationInfo) -> str:
        """``TokenOps`` is ``tokenops``, ``debug`` is ``DEBUG``."""
        return next((c for c in _choices(info.field_name) if c.lower() == raw.lower()), raw)

    @check("volcengine_url", "tokenops_url", "jenius_url", "aws_endpoint_url", mode="before")
    @classmethod
    def _url(cls, raw: str, info: ValidationInfo) -> str:
        if not raw.startswith(("http://", "https://")):
            raise ValueError(
                f"{_name(info)}={raw!r} is not a URL: give it as http(s)://host[:port]/path."
            )
        return raw.rstrip("/")

    @check("output_dir", "data_dir", mode="before")
    @classmethod
    def _path(cls, raw: str, info: ValidationInfo) -> Path:
        if "\x00" in raw:
            raise ValueError(f"{_name(info)} contains a NUL byte: give a plain directory path.")
        try:
            return Path(raw).expanduser()
        except RuntimeError:  # ~name of an unknown user
            raise ValueError(f"{_name(info)}={raw!r} starts with the home folder of an unknown "
                             "user: give the folder's full path.") from None  # fmt: skip

    @check("input_dirs", mode="before")
    @classmethod
    def _folders(cls, raw: str, info: ValidationInfo) -> tuple[Path, ...]:
        """Absolute folders separated by ``os.pathsep`` or commas (``~`` expanded)."""
        if "\x00" in raw:
            raise ValueError(f"{_name(info)} contains a NUL byte: give plain folder paths.")
        folders = []
        for part in filter(None, (p.strip() for p in raw.replace(os.pathsep, ",").split(","))):
            try:
                folder = Path(part).expanduser()
            except RuntimeError:
                folder = Path(part)  # ~name of an unknown user: not absolute, refused
            if not folder.is_absolute():
                raise ValueError(
                    f"{_name(info)} names {part!r}, which is not an absolute path: give each "
                    f"folder's full path, separated by {os.pathsep!r} or ','."
                )
            folders.append(folder)
        return tuple(folders)

    @check("http_tokens", mode="before")
    @classmethod
    def _tokens(cls, raw: str, info: ValidationInfo) -> tuple[str, ...]:
        """Comma-separated secrets, each at least ``HTTP_TOKEN_MIN_CHARS`` long."""
        tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
        short = [t for t in tokens if len(t) < HTTP_TOKEN_MIN_CHARS]
        if short:
            raise ValueError(
                f"{_name(info)} holds a token of {len(short[0])} characters: each token must have "
                f"at least {HTTP_TOKEN_MIN_CHARS}, or anyone who reaches the server could guess "
                'it. Make one with: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
        return tokens

    @check("database_url", mode="before")
    @classmethod
    def _database_url(cls, raw: str, info: ValidationInfo) -> str:
        if urlsplit(raw).scheme not in ("postgresql", "postgres"):
            raise ValueError(
                f"{_name(info)} is not a PostgreSQL URL: give it as "
                "postgresql://user:password@host:5432/dbname, or unset it to keep the ledger in "
                "VIDEOGEN_DATA_DIR."
            )
        return raw

    @check("storage", mode="before")
    @classmethod
    def _storage(cls, raw: str, info: ValidationInfo) -> tuple[str, str]:
        scheme, _, rest = raw.partition("://")
        bucket, _, prefix = rest.partition("/")
        steps = [part for part in prefix.split("/") if part]
        if scheme.lower() != "s3" or not _BUCKET.fullmatch(bucket) or ".." in steps:
            raise ValueError(
                f"{_name(info)}={raw!r} is not an S3 location: give it as {STORAGE_URL_FORM} (a "
                "bucket name of 3 to 63 lower-case letters, digits, dots or hyphens), or unset it "
                "to keep videos in the output folder only."
            )
        return bucket, "/".join(steps)

    @check("prices", mode="plain")
    @classmethod
    def _prices(cls, raw: str, info: ValidationInfo) -> Prices:
        try:
            return parse_prices(raw)
        except ValueError as exc:
            raise ValueError(f"{_name(info)}: {exc}; e.g. volcengine:t2v_720p=0.07.") from None


# -- the families: spending limits (README "Spending limits"; the rules are in videogen.spending)
#    and the account-wide queue (README "How many at a time"; the rules are in engine.queue) -----
_LIMITED: Final = {  # what each measure counts, and its unit
    "videos": ("videos billed", "videos"),
    "seconds": ("seconds of video billed", "seconds"),
    "spend": ("money spent (needs VIDEOGEN_PRICES)", "money units"),
}


def _families() -> dict[str, Any]:
    """The fields of the spending limits and of the account-wide queue."""
    fields: dict[str, Any] = {}
    for name, (measure, period, per_owner) in LIMIT_VARIABLES.items():
        counted, unit = _LIMITED[measure]
        who = " per HTTP token" if per_owner else ""
        text = f"most {counted} per UTC {period}{who} (default: no limit)"
        fields[name.lower()] = float | None, _var(name, ge=0, le=1e12, unit=unit, description=text)
    queue = partial(_var, ge=1, le=10_000, unit="tasks at once")
    text = (
        "most tasks of one provider account and mode at the provider at once; more wait their "
        "turn (default: no limit, learned from the provider's concurrency refusals)"
    )
    fields["max_concurrent"] = int | None, queue(MAX_CONCURRENT_VARIABLE, description=text)
    for provider in PROVIDERS:
        own = queue(f"{MAX_CONCURRENT_VARIABLE}_{provider.upper()}",
                    description=f"{MAX_CONCURRENT_VARIABLE} for {provider} alone")  # fmt: skip
        fields[f"max_concurrent_{provider}"] = int | None, own
    return fields


Environment = create_model(
    "Environment",
    __base__=_Declared,
    __doc__="Every variable the program reads, each declared once, in --help's order.",
    **_families(),
)


def _names(declared: FieldInfo) -> tuple[str, ...]:
    """A field's variable, and those read in its place when it is unset."""
    alias = declared.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (str(alias),)


#: Each variable's field and its name (the fallbacks too: ``AWS_DEFAULT_REGION``).
_FIELDS: Final = {
    name: (field_name, declared)
    for field_name, declared in Environment.model_fields.items()
    for name in _names(declared)
}


def _name(info: ValidationInfo) -> str:
    return _names(Environment.model_fields[str(info.field_name)])[0]


def _choices(field_name: str | None) -> tuple[str, ...]:
    """The values a ``Literal`` field (or an optional one) accepts; () for other fields."""
    annotation = Environment.model_fields[str(field_name)].annotation
    kinds = (annotation, *get_args(annotation))
    literal = next((kind for kind in kinds if get_origin(kind) is Literal), None)
    return tuple(str(choice) for choice in get_args(literal))


def _text(field_name: str) -> str:
    """What ``--help`` and the README say of a variable: the values it takes when they are few,
    its meaning, and its default when that is a number or a word (when it is None, the meaning
    says what unset means)."""
    declared = Environment.model_fields[field_name]
    words = [" | ".join(_choices(field_name)), " ".join((declared.description or "").split())]
    default = declared.default
    if isinstance(default, (int, float, str)) and not isinstance(default, bool):
        words.append(
            f"(default {default:g})" if isinstance(default, float) else f"(default {default})"
        )
    return " ".join(word for word in words if word)


#: Every variable the program reads, with its meaning and default, for --help and the README.
VARIABLES: Final[dict[str, str]] = {
    _names(declared)[0]: _text(field_name)
    for field_name, declared in Environment.model_fields.items()
}
#: A settings object built without the environment: the defaults of ``Settings`` below.
_DEFAULT: Final = Environment.model_construct()


def _read_environment(env: Mapping[str, str]) -> _Declared:
    """Every declared variable in ``env`` (a blank value is unset), validated; ``ConfigError``
    naming each bad one."""
    found: dict[str, Any] = {n: v for n in _FIELDS if (v := env.get(n, "").strip())}
    try:
        return Environment(**found)
    except ValidationError as exc:
        raise ConfigError(" ".join(_problem(error) for error in exc.errors())) from None


def _problem(error: ErrorDetails) -> str:
    """One refused value as a sentence: the variable, what is wrong, and the fix."""
    name = str(error["loc"][0]) if error["loc"] else ""
    kind, raw, ctx = error["type"], error["input"], error.get("ctx", {})
    if kind == "value_error":  # a check of this module: its message names the variable
        return str(ctx["error"])
    if name not in _FIELDS:  # not one variable's fault (no such check today)
        return f"{error['msg']}."
    field_name, declared = _FIELDS[name]
    if not declared.repr:  # a secret: say which, never what
        return f"{name} is not valid ({error['msg']}): check its value."
    if kind.startswith("bool"):
        return f"{name}={raw!r} is not a yes/no value: use 1 or 0."
    if kind == "literal_error":
        return f"{name}={raw!r} is not one of: {', '.join(_choices(field_name))}."
    low = next((m.ge for m in declared.metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in declared.metadata if isinstance(m, Le)), None)
    extra = declared.json_schema_extra
    unit = extra.get("unit", "units") if isinstance(extra, dict) else "units"
    if low is None or high is None:  # not a number: no other check can fail
        return f"{name}={raw!r} is not valid ({error['msg']}): correct it, or unset it."
    default = declared.default
    unset = "for no limit" if default is None else f"for the default ({default:g})"
    if declared.annotation in (int, int | None):
        return (
            f"{name}={raw!r} is not a whole number between {low} and {high}: set it to a number "
            f"of {unit}, or unset it {unset}."
        )
    if kind.startswith(("float", "finite")):
        return (
            f"{name}={raw!r} is not a number: set it to a number of {unit} between {low:g} and "
            f"{high:g}, or unset it."
        )
    return (
        f"{name}={raw} is out of range: use a value between {low:g} and {high:g}, or unset it "
        f"{unset}."
    )


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


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """The object store of ``VIDEOGEN_STORAGE_URL`` and the ``AWS_*`` variables that reach it.
    ``repr`` hides the secrets. ``prefix`` has no leading or trailing slash ("" for none)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str = _DEFAULT.aws_region
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
    """What the program runs with. ``from_env`` reads it; the defaults here are those declared
    on ``Environment`` (tests build one directly)."""

    volcengine: ProviderEndpoint
    tokenops: ProviderEndpoint
    jenius: ProviderEndpoint
    provider: ProviderName
    sandbox: bool
    sandbox_job_seconds: float = _DEFAULT.sandbox_job_seconds
    request_timeout: float = _DEFAULT.request_timeout
    poll_interval: float = _DEFAULT.poll_interval
    max_poll_attempts: int = _DEFAULT.max_poll_attempts
    output_dir: Path = field(default_factory=lambda: default_output_dir(Path.home()))
    data_dir: Path = Path.home() / ".local" / "state" / "videogen"
    wait_seconds: float = _DEFAULT.wait_seconds
    dedupe_seconds: float = _DEFAULT.dedupe_seconds
    max_download_bytes: int = _DEFAULT.max_download_mb * _MEGABYTE
    download_timeout: float = _DEFAULT.download_timeout
    http_tokens: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = _DEFAULT.log_level
    #: Folders whose images clients over HTTP may name by local path (``VIDEOGEN_INPUT_DIRS``).
    input_dirs: tuple[Path, ...] = ()
    #: True in a server for clients over HTTP: they are not on this machine, so their local
    #: paths are read only inside ``input_dirs``. The CLI and stdio read any path.
    remote_clients: bool = False
    #: How long a task's lease outlives its holder's last renewal (``VIDEOGEN_LEASE_SECONDS``).
    lease_seconds: float = _DEFAULT.lease_seconds
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
        # The endpoints and the store remember their own secrets.
        password = urlsplit(self.database_url).password if self.database_url else None
        remember_secrets([*self.http_tokens, password, unquote(password or "")])

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
        """Read every setting from ``env`` (the process environment when None); raise
        ``ConfigError`` naming the variable for a bad value."""
        env = os.environ if env is None else env
        values = _read_environment(env)
        volcengine, tokenops, jenius = _endpoints(values)
        endpoints = {"volcengine": volcengine, "tokenops": tokenops, "jenius": jenius}
        configured = [p for p in _PREFERENCE if endpoints[p].configured]
        home = Path(env.get("HOME") or Path.home())
        state = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else home / ".local/state"
        return cls(
            volcengine=volcengine,
            tokenops=tokenops,
            jenius=jenius,
            provider=values.provider or (configured[0] if configured else _PREFERENCE[0]),
            sandbox=values.sandbox or not configured,
            sandbox_job_seconds=values.sandbox_job_seconds,
            request_timeout=values.request_timeout,
            poll_interval=values.poll_interval,
            max_poll_attempts=values.max_poll_attempts,
            output_dir=values.output_dir or default_output_dir(home),
            data_dir=values.data_dir or state / "videogen",
            wait_seconds=values.wait_seconds,
            dedupe_seconds=values.dedupe_seconds,
            max_download_bytes=values.max_download_mb * _MEGABYTE,
            download_timeout=values.download_timeout,
            http_tokens=values.http_tokens,
            log_level=values.log_level,
            input_dirs=values.input_dirs,
            lease_seconds=values.lease_seconds,
            spending=_spending(values),
            max_concurrent=_max_concurrent(values),
            database_url=values.database_url,
            storage=_storage(values),
        )


def _endpoints(values: _Declared) -> tuple[ProviderEndpoint, ProviderEndpoint, ProviderEndpoint]:
    """Volcengine's, TokenOps' and Jenius' endpoints and credentials (in that order)."""
    if bool(values.volc_access_key) != bool(values.volc_secret_key):
        missing = "VOLC_SECRETKEY" if values.volc_access_key else "VOLC_ACCESSKEY"
        raise ConfigError(f"{missing} is not set: Volcengine needs both VOLC_ACCESSKEY and "
                          "VOLC_SECRETKEY.")  # fmt: skip
    return (
        ProviderEndpoint(
            base_url=values.volcengine_url,
            access_key=values.volc_access_key,
            secret_key=values.volc_secret_key,
            session_token=values.volc_session_token,
        ),
        ProviderEndpoint(values.tokenops_url, api_key=values.tokenops_api_key),
        ProviderEndpoint(values.jenius_url, api_key=values.jenius_api_key),
    )


def _max_concurrent(values: _Declared) -> tuple[tuple[ProviderName, int], ...]:
    """``VIDEOGEN_MAX_CONCURRENT`` for every provider, ``..._<PROVIDER>`` for one (it wins)."""
    every: int | None = getattr(values, "max_concurrent")  # noqa: B009 (a family field)
    limits: list[tuple[ProviderName, int]] = []
    for provider in PROVIDERS:
        own: int | None = getattr(values, f"max_concurrent_{provider}")
        limit = every if own is None else own
        if limit is not None:
            limits.append((provider, limit))
    return tuple(limits)


def _spending(values: _Declared) -> Policy:
    """The ``VIDEOGEN_LIMIT_*`` and ``VIDEOGEN_PRICES`` settings."""
    limits = [
        Limit(measure, period, per_owner, value)
        for name, (measure, period, per_owner) in LIMIT_VARIABLES.items()
        if (value := getattr(values, name.lower())) is not None
    ]
    prices = values.prices
    spend = [lim.variable for lim in limits if lim.measure == "spend"]
    if spend and prices is None:
        raise ConfigError(
            f"{spend[0]} is set but VIDEOGEN_PRICES is not: set the price per second of each "
            "provider and mode, or unset the spend limit."
        )
    return Policy(tuple(limits), prices)


def _storage(values: _Declared) -> StorageSettings | None:
    """``VIDEOGEN_STORAGE_URL`` and the store's usual ``AWS_*`` variables; None when unset."""
    if values.storage is None:
        return None
    access_key, secret_key = values.aws_access_key_id, values.aws_secret_access_key
    if bool(access_key) != bool(secret_key):
        missing = "AWS_SECRET_ACCESS_KEY" if access_key else "AWS_ACCESS_KEY_ID"
        raise ConfigError(f"{missing} is not set: the store of VIDEOGEN_STORAGE_URL needs both "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")  # fmt: skip
    bucket, prefix = values.storage
    return StorageSettings(
        bucket=bucket,
        prefix=prefix,
        endpoint=values.aws_endpoint_url,
        region=values.aws_region,
        access_key_id=access_key,
        secret_access_key=secret_key,
        session_token=values.aws_session_token,
    )


assert set(CREDENTIAL_VARIABLES) == set(get_args(ProviderName))
