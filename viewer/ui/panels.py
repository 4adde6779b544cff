"""Panels beyond the built-in ones: a registry the main window reads when it is built.

A panel is a Qt widget made from the session (:class:`~viewer.state.session.ViewerSession`, the
Qt-free state every view binds to); the window puts it in a dock of its own, with a toggle in
the View menu. The built-in panels (studies, model, layers, problems, tags, measurements) are
made by the window itself; this registry is for additions, in the order they were registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PySide6.QtWidgets import QWidget

from viewer.state.session import ViewerSession

__all__ = ["PANELS", "Panel", "register_panel"]

Area = Literal["left", "right", "bottom"]


@dataclass(frozen=True)
class Panel:
    """``make(session)`` builds the widget; ``title`` names its dock; ``area`` places it."""

    id: str
    title: str
    make: Callable[[ViewerSession], QWidget]
    area: Area = "right"
    visible: bool = True  # shown when the window first opens (later: as the user left it)


PANELS: dict[str, Panel] = {}


def register_panel(panel: Panel) -> Panel:
    """Add ``panel`` to every main window built from now on; one of the same id is replaced."""
    if panel.area not in ("left", "right", "bottom"):
        raise ValueError(f"panel {panel.id!r}: area must be left, right or bottom, not {panel.area!r}")
    PANELS[panel.id] = panel
    return panel
