"""Undoable edits of the annotation (Qt's undo stack)."""

from __future__ import annotations

from PySide6.QtGui import QUndoCommand

from viewer.io.annotations import Region
from viewer.state import ViewerState


class AddRegion(QUndoCommand):
    """Add one drawn region to the state's annotation; undo removes it again."""

    def __init__(self, state: ViewerState, region: Region, text: str):
        super().__init__(text)
        self.state = state
        self.annotation = state.annotation
        self.region = region

    def redo(self) -> None:
        self.annotation.regions.append(self.region)
        self._changed()

    def undo(self) -> None:
        # By identity: regions hold arrays, which == cannot compare.
        regions = self.annotation.regions
        del regions[next(i for i, r in enumerate(regions) if r is self.region)]
        self._changed()

    def _changed(self) -> None:
        # The annotation object is edited in place, which no field event sees: announce it.
        if self.state.annotation is self.annotation:
            self.state.events.annotation.emit(self.annotation)
