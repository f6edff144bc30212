"""MCP Apps: the video player that hosts with Apps show where ``generate_video`` was called.

``generate_video`` and ``check_task`` carry ``_meta.ui.resourceUri`` (and the flat
``ui/resourceUri`` key some hosts still read) pointing at ``ui://videogen/player.html``, one
self-contained HTML file (``assets/player.html``, built from ``ui/`` at the repository root;
installing the package needs no Node). The host renders it in a sandboxed iframe and hands it
the tool's result; the player then follows the task with ``check_task`` and plays the saved MP4
read through ``videogen://videos/{task_id}``, both proxied by the host. It never calls a billed
tool.

Nothing here changes a result: hosts without Apps get the same text, poster and link as before.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Final

from mcp.server.apps import APP_MIME_TYPE, Apps
from mcp.server.mcpserver.resources import FunctionResource

PLAYER_URI: Final = "ui://videogen/player.html"
#: The built player, inside the package.
PLAYER_ASSET: Final = "assets/player.html"


def player_tool_meta() -> dict[str, Any]:
    """The ``_meta`` of a tool whose result the player shows: the nested key of the Apps
    specification and the flat one older hosts read."""
    return {"ui": {"resourceUri": PLAYER_URI}, "ui/resourceUri": PLAYER_URI}


def player_html() -> str:
    """The player's HTML, read when a host asks for it (not at start-up)."""
    return files("videogen").joinpath(PLAYER_ASSET).read_text(encoding="utf-8")


def apps_extension() -> Apps:
    """The Apps extension for ``MCPServer(extensions=[...])``: advertises
    ``io.modelcontextprotocol/ui`` and serves the player resource."""
    apps = Apps()
    apps.add_resource(
        FunctionResource(
            uri=PLAYER_URI,
            name="player",
            title="Video player",
            description="Shows a video task as it runs, then plays the saved video "
            "(MCP Apps view of generate_video and check_task).",
            mime_type=APP_MIME_TYPE,
            meta={"ui": {"prefersBorder": True}},
            fn=player_html,
        )
    )
    return apps
