"""The provider registry: a literal mapping, alphabetical, imported lazily.

Adding a provider: write ``providers/<name>.py`` with a class that implements
``videogen.providers.base.Provider`` and takes ``(endpoint, client)``; add its name to
``catalog.ProviderName`` and one line here; add its credential variables to
``config.CREDENTIAL_VARIABLES``; teach the sandbox its API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from videogen.catalog import ProviderName

if TYPE_CHECKING:
    import httpx2

    from videogen.config import ProviderEndpoint
    from videogen.providers.base import Provider

REGISTRY: Final[dict[ProviderName, str]] = {
    "jenius": "videogen.providers.jenius:JeniusProvider",
    "tokenops": "videogen.providers.tokenops:TokenOpsProvider",
    "volcengine": "videogen.providers.volcengine:VolcengineProvider",
}


def create(name: ProviderName, endpoint: ProviderEndpoint, client: httpx2.AsyncClient) -> Provider:
    """Import the adapter on first use (keeps start-up fast) and build it."""
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    provider: Provider = cls(endpoint, client)
    return provider
