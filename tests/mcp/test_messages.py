"""What the server says of itself and of bad calls: its version, argument errors, descriptions."""

from __future__ import annotations

from importlib import metadata

import pytest
from mcp import Client

pytestmark = pytest.mark.anyio


async def test_the_server_reports_the_installed_package_version(client: Client) -> None:
    info = client.server_info
    assert info is not None
    assert info.version == metadata.version("videogen-mcp")
