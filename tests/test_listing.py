"""The files that list and install the server agree with the package: the MCP Registry entry
(server.json), the Claude Code plugin and marketplace, and the README's install instructions.

Offline: server.json is checked against the registry's 2025-12-11 rules restated in
``tests/listing/registry-rules.schema.json`` (the registry checks the full schema at publish).
"""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from videogen.config import CREDENTIAL_VARIABLES, VARIABLES

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "tests" / "listing" / "registry-rules.schema.json"
#: Secrets besides the providers' credentials: an STS session token and the HTTP bearer tokens.
OTHER_SECRETS = {
    "VOLC_SESSIONTOKEN",
    "VIDEOGEN_HTTP_TOKEN",
    "VIDEOGEN_DATABASE_URL",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}


def load(name: str) -> Any:
    return json.loads((REPO / name).read_text())


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return data


def registry_errors(entry: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(
        json.loads(RULES.read_text()), format_checker=jsonschema.FormatChecker()
    )
    return [
        "/".join(map(str, error.absolute_path)) + ": " + error.message
        for error in validator.iter_errors(entry)
    ]


def test_uvx_with_the_distribution_name_starts_the_mcp_server() -> None:
    """`uvx NAME` runs the console script named like the distribution: the MCP server."""
    meta = project()
    assert meta["scripts"][meta["name"]] == "videogen.mcp_server:main"
    assert meta["scripts"]["videogen"] == "videogen.cli:main"
    # videogen-mcp is another project's on PyPI: neither our distribution nor our command.
    assert "videogen-mcp" not in (meta["name"], *meta["scripts"])


def test_server_json_follows_the_registry_rules() -> None:
    assert registry_errors(load("server.json")) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda e: e.update(description="x" * 101), "description: "),
        (lambda e: e.update(name="jimeng-videogen-mcp"), "name: "),
        (lambda e: e["packages"][0].update(version="latest"), "packages/0/version: "),
        (lambda e: e["packages"][0].update(version=">=0.1"), "packages/0/version: "),
        (lambda e: e["packages"][0].update(registryType="npm"), "packages/0/registryType: "),
        (lambda e: e["packages"][0].pop("transport"), "packages/0: 'transport' is a required"),
        (lambda e: e["packages"][1]["transport"].update(url="x/mcp"), "packages/1/transport: "),
        (
            lambda e: e["packages"][0]["environmentVariables"][0].pop("name"),
            "packages/0/environmentVariables/0: 'name' is a required",
        ),
    ],
)
def test_the_registry_rules_refuse_a_broken_entry(change: Any, path: str) -> None:
    """The restated rules are not vacuous: each of these mistakes is refused where it is."""
    entry = load("server.json")
    change(entry)
    errors = registry_errors(entry)
    assert any(error.startswith(path) for error in errors), errors


def test_server_json_names_this_package_version_and_the_readmes_owner_line() -> None:
    entry, meta = load("server.json"), project()
    assert entry["version"] == meta["version"]
    packages = entry["packages"]
    assert {p["transport"]["type"] for p in packages} == {"stdio", "streamable-http"}
    for package in packages:
        assert package["registryType"] == "pypi"
        assert (package["identifier"], package["version"]) == (meta["name"], meta["version"])
        assert package["runtimeHint"] == "uvx"
    # The registry checks ownership of the PyPI package by this line in its README.
    assert f"<!-- mcp-name: {entry['name']} -->" in (REPO / "README.md").read_text()
    assert entry["name"].endswith("/" + meta["name"])
    # One repository everywhere.
    url = entry["repository"]["url"]
    assert load("manifest.json")["repository"]["url"] == url
    assert load(".claude-plugin/plugin.json")["repository"] == url


def test_server_json_lists_every_variable_and_marks_the_secrets() -> None:
    secrets = {v for names in CREDENTIAL_VARIABLES.values() for v in names} | OTHER_SECRETS
    for package in load("server.json")["packages"]:
        listed = package["environmentVariables"]
        assert [v["name"] for v in listed] == list(VARIABLES)
        for variable in listed:
            name = variable["name"]
            assert variable["description"] == VARIABLES[name], name
            assert variable.get("isSecret", False) is (name in secrets), name


def test_server_json_http_package_serves_where_its_url_says() -> None:
    (http,) = [p for p in load("server.json")["packages"] if p["transport"]["type"] != "stdio"]
    args = http["packageArguments"]
    assert {"type": "positional", "value": "--http"}.items() <= args[0].items()
    port = next(a for a in args if a.get("name") == "--port")
    assert http["transport"]["url"] == "http://127.0.0.1:{--port}/mcp"
    assert port["default"] == "8000"


def test_the_plugin_ships_the_skill_and_runs_the_server_from_its_own_copy() -> None:
    plugin, meta = load(".claude-plugin/plugin.json"), project()
    assert plugin["version"] == meta["version"]
    (skill,) = plugin["skills"]
    assert (REPO / skill / "SKILL.md").is_file()
    assert (REPO / plugin["icon"]).is_file()
    assert plugin["mcpServers"] == {
        "videogen": {
            "command": "uvx",
            "args": ["--from", "${CLAUDE_PLUGIN_ROOT}", meta["name"]],
        }
    }
    market = load(".claude-plugin/marketplace.json")
    (listed,) = market["plugins"]
    assert (listed["name"], listed["source"], listed["version"]) == (
        plugin["name"],
        "./",
        plugin["version"],
    )
    readme = (REPO / "README.md").read_text()
    assert f"/plugin install {plugin['name']}@{market['name']}" in readme


def test_the_readmes_install_commands_name_the_distribution() -> None:
    readme, name = (REPO / "README.md").read_text(), project()["name"]
    block = readme.split("**Claude Desktop, by hand**", 1)[1].split("```json\n", 1)[1]
    config = json.loads(block.split("```", 1)[0])
    server = config["mcpServers"]["videogen"]
    assert (server["command"], server["args"]) == ("uvx", [name])
    assert set(server["env"]) <= set(VARIABLES)
    assert f"-- uvx {name}\n" in readme  # claude mcp add
    assert f"uvx {name} --http --port 8000" in readme
    wheel = re.sub(r"[-_.]+", "_", name) + f"-{project()['version']}-py3-none-any.whl"
    assert f"dist/{wheel}" in readme
    assert "uvx --from /path/to/checkout " + name in readme


def test_the_version_is_found_under_another_distribution_name_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``package_version`` asks the distribution by name (cheap); a renamed distribution is
    still found by the import name."""
    import videogen

    expected = metadata.version(videogen.DISTRIBUTION)
    monkeypatch.setattr(videogen, "DISTRIBUTION", "no-such-distribution")
    videogen.package_version.cache_clear()
    try:
        assert videogen.package_version() == expected
    finally:
        videogen.package_version.cache_clear()
