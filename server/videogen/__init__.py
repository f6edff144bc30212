"""videogen: turn a chat request into a saved video."""

from __future__ import annotations

from functools import cache

#: Reported when no installed distribution contains this package (e.g. run from a bare checkout).
UNKNOWN_VERSION = "0+unknown"


#: The distribution this package ships in (pyproject's ``name``).
DISTRIBUTION = "jimeng-videogen-mcp"


@cache
def package_version() -> str:
    """The version of the installed distribution that contains this package.

    Asked of ``DISTRIBUTION`` first: a lookup by the import name reads every installed
    distribution's file list (about 45 ms, at every start of the server). Only when no
    distribution has that name (a renamed one) is the package looked up by its import name.
    """
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    for name in metadata.packages_distributions().get(__name__, []):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return UNKNOWN_VERSION


def __getattr__(name: str) -> str:
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
