"""Start an MCP stdio server, list its tools and check them: the five tools, each with an icon,
the server's own icons in its serverInfo, and a list_scenes call that succeeds.

    python .ci/list_tools.py COMMAND [ARGS...]
    python .ci/list_tools.py --bundle DIR     # an unpacked MCP Bundle, started as a host would

The server inherits this environment (as a host's children do: PATH, HOME, certificates, uv
settings) without any provider variable, so it runs in its sandbox.
With --bundle the command, arguments and environment come from DIR/manifest.json's mcp_config,
with ``${__dirname}`` replaced by DIR and each ``${user_config.KEY}`` by that setting's default
(what a host passes when the user leaves the settings page as it is).
Exits 1 with the reason when a check fails.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

#: Provider settings never reach the server: it runs in its sandbox, as a fresh install would.
PROVIDER_PREFIXES = ("VOLC_", "TOKENOPS_", "JENIUS_", "JIMENG_")
EXPECTED = ["check_task", "detect_subjects", "generate_video", "list_scenes", "list_tasks"]


def from_bundle(folder: Path) -> tuple[str, list[str], dict[str, str]]:
    """The command, arguments and extra environment a host derives from the bundle's manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    defaults = {k: o.get("default", "") for k, o in manifest.get("user_config", {}).items()}

    def fill(text: str) -> str:
        text = text.replace("${__dirname}", str(folder))
        return re.sub(r"\$\{user_config\.(\w+)\}", lambda m: str(defaults[m.group(1)]), text)

    config = manifest["server"]["mcp_config"]
    env = {k: fill(v) for k, v in config.get("env", {}).items()}
    return fill(config["command"]), [fill(a) for a in config.get("args", [])], env


async def check(command: str, args: list[str], extra_env: dict[str, str]) -> str | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PROVIDER_PREFIXES)}
    env.update(extra_env)
    print(f"server: {command} {' '.join(args)}")
    params = StdioServerParameters(command=command, args=args, env=env)
    with anyio.fail_after(600):  # the first start installs the runtime dependencies
        async with Client(params, mode="legacy") as client:
            info = client.server_info
            tools = (await client.list_tools()).tools
            scenes = await client.call_tool("list_scenes", {})
    names = sorted(t.name for t in tools)
    print(f"tools/list: {' '.join(names)}")
    if names != EXPECTED:
        return f"expected the tools {EXPECTED}"
    if not info or not info.icons:
        return "serverInfo has no icons"
    bare = [t.name for t in tools if not t.icons]
    if bare:
        return f"tools without an icon: {bare}"
    first_line = next((c.text for c in scenes.content if c.type == "text"), "").split("\n")[0]
    print(f"tools/call list_scenes: {first_line}")
    if scenes.is_error:
        return "list_scenes answered an error"
    print(f"icons: serverInfo {len(info.icons)}, each tool {len(tools[0].icons or [])}")
    return None


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "--bundle":
        command, args, env = from_bundle(Path(sys.argv[2]).resolve())
    else:
        command, args, env = sys.argv[1], sys.argv[2:], {}
    problem = anyio.run(check, command, args, env)
    if problem:
        print(f"list_tools: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
