"""A model held in memory in the session: listed, stored and used, never looked for on disk."""

from __future__ import annotations

import numpy as np
import pytest

from tests.api.networks import chest_net
from viewer.api.sources import array_image
from viewer.inference.in_memory import is_in_memory, model_from_network
from viewer.io.formats import reader
from viewer.io.formats.memory import memory_series
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession
from viewer.state.tasks import ModelStore


def held_session(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    session = ViewerSession(InlineRunner())
    name = session.model.catalog.in_memory_name("ChestNet")
    model = model_from_network(chest_net().eval(), input_shape=(3, 32, 32), name=name)
    return session, model, session.model.hold(model)


def test_held_model_is_listed_used_and_kept_apart_from_user_models(tmp_path, monkeypatch):
    session, model, name = held_session(tmp_path, monkeypatch)
    assert name == "ChestNet (in memory)" and session.state.model == name
    assert is_in_memory(session.model.manifest_path) and session.model.catalog.user == {}
    assert session.model.manifest() is model.manifest
    monkeypatch.chdir(tmp_path.parent)  # a notebook changes folder: the store still finds it
    assert session.model.store.get(session.model.manifest_path) is model
    assert session.model.catalog.in_memory_name("ChestNet") == "ChestNet (in memory, 2)"


def test_an_unknown_in_memory_model_is_never_read_from_a_file(tmp_path):
    (tmp_path / "<in-memory Ghost>").write_text("not a manifest")  # a file of that very name
    with pytest.raises(LookupError, match="holds no such in-memory model"):
        ModelStore().get("<in-memory Ghost>")


def test_memory_series_loads_the_same_image_object():
    image = array_image(np.zeros((8, 6), np.float32))
    series = memory_series(image, "array 1")
    assert reader(series.kind).load(series) is image
    assert reader(series.kind).sniff(b"\x89PNG\r\n\x1a\n" + bytes(124)) == 0
    assert (series.rows, series.columns, series.n_frames) == (8, 6, 1)
