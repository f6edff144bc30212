"""The engine: the only place that submits, polls, waits and finishes a task.

``submit`` writes the task to the ledger *before* the request leaves, sends it once and records
the answer (``submitting``). From then on one watcher per task polls it until it is done
(``tracking``, ``polling``) and then finishes it: download, conform, probe, poster
(``finishing``). Callers never poll: ``generate`` and ``check`` wait on the task's watcher with
their own budget and return the task as it stands when the budget ends. Several processes share
the ledger through leases (``leases``); a session only works on tasks sent from its own origin
(``origins``). Every write goes through the task book (``book``), which wakes the task's waiters
in the same call; what one answer has to say (its notes) is put on the returned task by the
facade only (``facade``), never stored.

Errors: ``submit`` raises what refused the request (``InputError``, ``OutputError``,
``CredentialsError``, ``ProviderError``...) after recording it; everything later is recorded on
the task and returned with it (``failed``, ``expired``, ``unknown``, or ``ready`` with the
download error).

Modules, lowest first: ``context`` (settings, timings, shared conversions), ``book`` (the
task book and watchers), ``origins``, ``polling``, ``finishing``, ``leases``, ``tracking``,
``delivering`` (lost files, copies for repeated requests), ``preparing`` (inputs checked,
re-read and uploaded), ``submitting``, ``subjects``,
``cancelling``, ``saved`` (a saved video or poster read back for serving), and ``facade``
(``Engine``, and ``request_from``: intake behind the engine).

The interfaces name ``Task`` and ``GenerationRequest`` from here, not from the models below.
"""

from __future__ import annotations

from videogen.intake import Intake
from videogen.models import GenerationRequest, Task

from .context import Conform, Progress, ProgressCallback
from .facade import Engine, request_from
from .origins import origin_of
from .saved import read_poster

__all__ = [
    "Conform",
    "Engine",
    "GenerationRequest",
    "Intake",
    "Progress",
    "ProgressCallback",
    "Task",
    "origin_of",
    "read_poster",
    "request_from",
]
