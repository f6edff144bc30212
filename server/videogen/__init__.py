"""videogen: turn a chat request into a saved video."""

from __future__ import annotations

from functools import cache

#: Reported when no installed distribution contains this package (e.g. run from a bare checkout).
UNKNOWN_VERSION = "0+unknown"


@cache
def package_version() -> str:
    """The version of the installed distribution that contains this package.

    Looked up by the import name, not by the distribution's name, so a renamed distribution
    still reports its own version.
    """
    from importlib import metadata

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
