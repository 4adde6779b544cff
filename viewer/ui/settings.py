"""What the viewer remembers between runs (QSettings): models, methods, preferences, window layout
and recent studies. The session holds the values while the viewer runs; this module reads them at
start and writes them back at close. No secrets are ever stored here."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from viewer.explain.registry import METHODS
from viewer.state.session import ViewerSession

MAX_RECENT = 10


def user_models(settings: QSettings) -> list[str]:
    return list(settings.value("models/user", [], type=list) or [])


def restore_session(settings: QSettings, session: ViewerSession) -> None:
    """The model in use (and the one for images without a modality), the ticked methods, "run on
    open", the seed and "solo" from last time."""
    current = str(settings.value("models/current", ""))
    if current in session.model.catalog.models:
        session.state.model = current
    raster = str(settings.value("models/raster", ""))
    if raster in session.model.catalog.models:
        session.model.chooser.answer(raster)  # asked before: the model for images without a modality
    methods = settings.value("methods/checked", None, type=list)
    if methods:
        session.explanation.methods = [m for m in methods if m in METHODS]
    session.explanation.run_on_open = settings.value("methods/run_on_open", False, type=bool)
    session.explanation.seed = int(settings.value("methods/seed", 0, type=int))
    session.layers.solo = settings.value("layers/solo", True, type=bool)


def save_session(settings: QSettings, session: ViewerSession) -> None:
    """Models held in memory (a notebook's network) are never written: they die with their
    Python session, and the next run must not look for them."""
    settings.setValue("methods/run_on_open", session.explanation.run_on_open)
    settings.setValue("methods/checked", list(session.explanation.methods))
    in_memory = session.model.catalog.in_memory
    if session.state.model not in in_memory:
        settings.setValue("models/current", session.state.model)
    if session.model.chooser.raster_model not in in_memory:
        settings.setValue("models/raster", session.model.chooser.raster_model or "")
    settings.setValue("models/user", [str(p) for p in session.model.catalog.user.values()])
    settings.setValue("layers/solo", session.layers.solo)


def recent(settings: QSettings) -> list[str]:
    return list(settings.value("recent", [], type=list) or [])


def remember_recent(settings: QSettings, paths: list[str]) -> list[str]:
    """Put ``paths`` first in the recent list (at most ``MAX_RECENT``); the new list."""
    items = recent(settings)
    for path in reversed(paths):
        if path in items:
            items.remove(path)
        items.insert(0, path)
    settings.setValue("recent", items[:MAX_RECENT])
    return items[:MAX_RECENT]


def last_folder(settings: QSettings) -> str:
    """Where file dialogs start: beside the study opened last, else the home folder."""
    items = recent(settings)
    return str(Path(items[0]).parent) if items else str(Path.home())
