"""The main window's view commands (View menu, window/level drags, corner text, progress and
problem counts in the status bar): what they change is the Qt-free state or the window's own
decorations; the window only routes menu actions and signals here."""

from __future__ import annotations

from PySide6.QtWidgets import QMainWindow

from viewer.state.overlay_text import corner_texts


class ViewCommands:
    """Needs the window's ``state``, ``session``, ``settings``, ``bindings``, ``canvas``, ``tabs``,
    ``mpr``, ``docks``, ``tags``, ``busy`` and ``say`` (a :class:`~viewer.ui.main_window.MainWindow`)."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.state = window.state

    def window_drag(self, dx: float, dy: float) -> None:
        """Window/level by dragging, as fast and in the direction the user's preferences say."""
        low, high = self.state.value_range()
        bindings = self.window.bindings
        step = (high - low) * bindings.window_sensitivity
        sign = -1.0 if bindings.level_up_when_dragging_up else 1.0
        self.state.adjust_window(d_center=sign * dy * step, d_width=dx * step)

    def reset(self) -> None:
        self.state.reset_window()
        if self.state.image is not None:
            self.state.invert = self.state.image.invert
        self.window.canvas.fit()

    def window_auto(self) -> None:
        if self.state.image is not None:
            self.state.voi = self.state.auto_window_for(self.state.image, self.state.frame)

    def toggle(self, field: str) -> None:
        setattr(self.state, field, not getattr(self.state, field))

    def toggle_fill(self) -> None:
        self.state.annotation_style = "fill" if self.state.annotation_style == "outline" else "outline"

    def toggle_compare(self) -> None:
        tabs = self.window.tabs
        tabs.setCurrentIndex(1 if tabs.currentIndex() == 0 else 0)

    def toggle_mpr(self) -> None:
        window = self.window
        window.tabs.setCurrentWidget(
            window.canvas if window.tabs.currentWidget() is window.mpr else window.mpr
        )

    def set_solo(self, solo: bool) -> None:
        self.window.settings.setValue("layers/solo", solo)
        self.window.session.layers.set_solo(solo)

    def update_corners(self, *_args) -> None:
        canvas = self.window.canvas
        canvas.corners.set_texts(corner_texts(self.state, canvas.zoom()))

    def focus_tags(self) -> None:
        self.window.docks["tags"].show()
        self.window.docks["tags"].raise_()
        self.window.tags.filter.setFocus()

    def show_progress(self, _lane: str, step: str, fraction: float) -> None:
        busy = self.window.busy
        busy.show()
        busy.setValue(round(fraction * 1000))
        self.window.say(f"{step}... {fraction:.0%}", 0)

    def show_explain_progress(self, done: int, total: int, step: str, fraction: float) -> None:
        self.window.busy.setValue(round((done + fraction) / max(total, 1) * 1000))

    def show_problem_count(self, count: int) -> None:
        """The Problems dock's title counts them; a new problem brings it to the front."""
        dock = self.window.docks["problems"]
        dock.setWindowTitle(f"Problems ({count})" if count else "Problems")
        if count:
            dock.show()
            dock.raise_()
