"""Where a task lives: its *origin*, a hash of provider, endpoint (or "the embedded sandbox")
and credential identity (a hash of the access key / API key, never the key).

A session whose settings give another origin never polls or downloads the task — another
account or endpoint would answer "not found" and the billed task would be marked ``expired``
for good — it returns the task as it stands with a note. With a matching origin a provider's
"not found" is final (a provider that was given the task really forgot it). Tasks recorded
before origins were kept carry ``ledger.UNRECORDED_ORIGIN`` (set by the ledger's migration),
which matches no session: they are left as they are.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from videogen.catalog import ProviderName
from videogen.config import Settings
from videogen.models import Task

FOREIGN_MESSAGE: Final = (
    "This task was submitted to {where} ({side}) with another endpoint or other credentials "
    "than this session has for {provider}, or before videogen recorded where tasks were sent, "
    "so it is not polled from here (that provider may not know it). It is left as it is: check "
    "it from a session with the same credentials and endpoint it was submitted with."
)


def origin_of(settings: Settings, provider: ProviderName) -> tuple[str, str]:
    """Where a task for ``provider`` goes under ``settings``: (fingerprint, endpoint in words).

    The fingerprint hashes the provider, the sandbox flag, the base URL (the embedded sandbox's
    port changes every run, so it counts as one place) and a hash of the credential identity
    (Volcengine's access key id, the API key otherwise). It never holds a key.
    """
    endpoint = settings.endpoint(provider)
    where = "the embedded sandbox" if settings.sandbox else endpoint.base_url
    identity = endpoint.access_key or endpoint.api_key or ""
    blob = json.dumps(
        [provider, settings.sandbox, where, hashlib.sha256(identity.encode()).hexdigest()]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32], where


def foreign(settings: Settings, task: Task) -> str | None:
    """Why a session with ``settings`` must not poll ``task`` (it was sent elsewhere), or None."""
    if task.origin == origin_of(settings, task.provider)[0]:
        return None
    where = task.endpoint or ("the embedded sandbox" if task.sandbox else "a real endpoint")
    side = "sandbox" if task.sandbox else "real provider"
    return FOREIGN_MESSAGE.format(where=where, side=side, provider=task.provider)
