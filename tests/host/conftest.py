"""Fixtures shared by the host tests (the host itself is imported lazily: without one these tests skip)."""

from __future__ import annotations

import asyncio

import pytest

from host_support import PACK_DIR


@pytest.fixture(scope="module")
def pack():
    """The pack loaded through the host's own custom-node loader; returns the host's node mapping."""
    import nodes

    assert asyncio.run(nodes.load_custom_node(str(PACK_DIR), module_parent="custom_nodes"))
    return nodes.NODE_CLASS_MAPPINGS
