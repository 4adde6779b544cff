"""Fixtures of the Qt-free session tests."""

from __future__ import annotations

import pytest

from tests.api.networks import chest_net
from viewer.inference.in_memory import model_from_network
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession


@pytest.fixture
def chest_session(tmp_path, monkeypatch) -> ViewerSession:
    """A session with a held chest network (three labels, 32 x 32 input) and nothing open; work
    runs inline, in the calling thread."""
    monkeypatch.chdir(tmp_path)
    session = ViewerSession(InlineRunner())
    name = session.model.catalog.in_memory_name("ChestNet")
    session.model.hold(model_from_network(chest_net().eval(), input_shape=(3, 32, 32), name=name))
    return session
