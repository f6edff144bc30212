"""The interfaces stay thin: what they may import from the package is listed here, once."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import videogen

PACKAGE: Final = Path(videogen.__file__).parent
#: The interfaces: the command line, the agent skill and the MCP server's modules.
INTERFACES: Final = ("cli", "skill", *sorted(p.stem for p in PACKAGE.glob("mcp_*.py")))
#: What every interface may import besides the other interfaces: the engine, the composition
#: root, the settings, and below the engine only the request model, the report and the errors.
ALLOWED: Final = frozenset(
    {"videogen", "videogen.engine", "videogen.app", "videogen.config"}
    | {"videogen.request", "videogen.report", "videogen.errors"}
    | {f"videogen.{name}" for name in INTERFACES}
)
#: One exception each, with its reason: ``videogen sandbox`` runs the sandbox, a program of its
#: own (its parser, its --help), from the command line's entry point.
EXCEPTIONS: Final = {"cli": frozenset({"videogen.sandbox"})}


def imported_modules(source: str) -> set[str]:
    """Every ``videogen`` module ``source`` imports, at module level or inside a function,
    ``TYPE_CHECKING`` included (``from videogen import x`` names the submodule ``x`` if any)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            # The interfaces are modules of the package itself: ``.x`` is ``videogen.x``.
            module = ".".join(filter(None, ["videogen" if node.level else "", node.module]))
            found.add(module)
            if module == "videogen":
                found |= {f"videogen.{a.name}" for a in node.names if _is_module(a.name)}
    return {name for name in found if name == "videogen" or name.startswith("videogen.")}


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def test_interfaces_import_nothing_below_the_engine_but_the_request_the_report_and_the_errors() -> (
    None
):
    """cli, skill and mcp_*: only the engine, app, config, request, report, errors, each other."""
    forbidden = {
        name: sorted(imported - ALLOWED - EXCEPTIONS.get(name, frozenset()))
        for name in INTERFACES
        if (imported := imported_modules((PACKAGE / f"{name}.py").read_text()))
    }
    assert {name: found for name, found in forbidden.items() if found} == {}


def test_the_import_rule_sees_every_form_of_import() -> None:
    """The walk catches plain, from-, package-relative and function-local imports."""
    source = (
        "import videogen.ledger\nfrom videogen import catalog, package_version\n"
        "from .spending import ledger_usage\nfrom . import intake\n"
        "def f():\n    from videogen.files import open_saved\n"
    )
    assert imported_modules(source) == {
        "videogen",
        "videogen.catalog",
        "videogen.files",
        "videogen.intake",
        "videogen.ledger",
        "videogen.spending",
    }
