"""Annotations in the GUI: loading and saving them, and drawing regions with undo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu

from viewer.io.drawn_shapes import rasterize
from viewer.state.session import ViewerSession
from viewer.ui.actions import check_only, drawing_tools
from viewer.ui.annotation_commands import AddRegion
from viewer.ui.canvas import ImageViewBox

ANNOTATION_FILTER = "Annotations (*.json *.dcm *.csv *.png *.nii *.nii.gz);;All files (*)"


class AnnotationTools:
    """The Edit menu's undo/redo and drawing tools, and File's annotation load/save dialogs."""

    def __init__(
        self,
        window: QMainWindow,
        session: ViewerSession,
        view: ImageViewBox,
        folder: Callable[[], str],
        say: Callable[[str, int], None],
    ) -> None:
        self.window, self.session, self.view = window, session, view
        self.folder, self.say = folder, say
        self.undo = QUndoStack(window)
        self._commands: list[AddRegion] = []
        self.tools: dict[str, QAction] = {}
        view.shape_finished.connect(self._on_shape)
        session.opening.opened.connect(lambda *_: self._forget())

    def install(self, edit: QMenu) -> None:
        """Undo/redo first in the Edit menu, the drawing tools last."""
        undo = self.undo.createUndoAction(self.window, "Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo.createRedoAction(self.window, "Redo")
        redo.setShortcut(QKeySequence.StandardKey.Redo)
        first = edit.actions()[0] if edit.actions() else None  # the separator above Preferences
        edit.insertActions(first, [undo, redo])
        self.window.addActions([undo, redo])
        self.tools = drawing_tools(self.window, edit, lambda tool, on: self.set_tool(tool if on else ""))

    @property
    def tool(self) -> str:
        return self.view.tool

    def set_tool(self, tool: str) -> None:
        self.view.tool = tool
        check_only(self.tools, tool)
        if tool:
            target = self.session.state.target or "finding"
            self.say(f"Drawing {tool}s of '{target}': drag with the left button; Esc stops", 0)

    def _forget(self) -> None:
        """A new image: its annotation is not the one the undo history edited."""
        self.undo.clear()
        self._commands.clear()

    def _on_shape(self, tool: str, points) -> None:
        image = self.session.state.image
        if image is None or tool not in self.tools:  # a measuring tool's shape is not a region
            return
        try:
            mask = rasterize(tool, points, image.rows, image.columns)
        except ValueError as exc:
            self.say(str(exc), 5000)
            return
        region = self.session.annotation.drawn_region(mask)
        if region is None:
            return
        command = AddRegion(self.session.state, region, f"draw {tool}")
        # Keep the Python object alive as long as the stack may call its undo/redo overrides.
        self._commands.append(command)
        self.undo.push(command)

    def ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Load annotation", self.folder(), ANNOTATION_FILTER
        )
        if path:
            self.session.annotation.load(path)

    def ask_save(self, kind: str) -> None:
        from viewer.io import annotation_writer

        state = self.session.state
        image, annotation = state.image, state.annotation
        if image is None or annotation is None or not annotation.regions:
            self.say("Nothing to save: load or draw an annotation first", 5000)
            return
        suffix = ".json" if kind == "json" else ".dcm"
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save annotation", str(Path(self.folder()) / f"annotation{suffix}")
        )
        if not path:
            return
        writer = (
            annotation_writer.save_annotation_json
            if kind == "json"
            else annotation_writer.save_annotation_seg
        )
        try:
            writer(annotation, image, Path(path))
        except (OSError, ValueError) as exc:
            self.session.reports.report_error(f"Cannot save {path}: {exc}")
            return
        self.say(f"Saved {path}", 5000)
