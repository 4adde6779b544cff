"""The Qt side of ``viewer.Viewer``: the application, its event loop and the main window, for a
window opened from a script or IPython rather than by ``saliency-viewer``.

Two ways a window lives, as in napari: in IPython with ``%gui qt`` (or a Jupyter kernel's Qt
loop) the event loop already turns between cells, so a window is live as soon as it is shown and
nothing blocks; in a plain script nothing turns it until :func:`run`, which blocks until the last
window closes. Inside IPython without a Qt loop, the loop is switched on (``%gui qt``) so the
window answers while the user types. :func:`wait_until` turns the loop by hand for a script or a
test that wants a result before going on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from PySide6.QtCore import QSettings, QThread
from PySide6.QtWidgets import QApplication

from viewer.ui import desktop_check
from viewer.ui.app import configure
from viewer.ui.main_window import MainWindow

_QT_LOOPS = ("qt", "qt5", "qt6", "qt4")


class WindowError(RuntimeError):
    """No window can open here (no display, a Qt platform library missing); the message says what
    to install or set."""


def _ipython():
    module = sys.modules.get("IPython")
    return module.get_ipython() if module is not None else None


def _ipython_loop() -> bool:
    """IPython turns a Qt event loop between cells (``%gui qt``, a kernel's Qt loop); switched on
    here when IPython runs without one, so the window stays live while the user types."""
    shell = _ipython()
    if shell is None:
        return False
    if getattr(shell, "active_eventloop", None) in _QT_LOOPS:
        return True
    try:
        shell.enable_gui("qt")
    except Exception:  # an IPython without Qt integration: run() will block instead
        return False
    return getattr(shell, "active_eventloop", None) in _QT_LOOPS


def application() -> QApplication:
    """The QApplication, made (after the desktop check) and configured as the viewer's once.
    Raises :class:`WindowError` where no window can open."""
    app = QApplication.instance()
    if app is None:
        diagnosis = desktop_check.diagnose()
        if not diagnosis.ok:
            raise WindowError(desktop_check.explain(diagnosis))
        restore = desktop_check.install_fatal_handler()
        app = QApplication([sys.argv[0] if sys.argv and sys.argv[0] else "saliency-viewer"])
        restore()
    if not isinstance(app, QApplication):
        raise WindowError("a Qt QCoreApplication without widgets runs in this process: no window can open")
    if app.property("saliency_viewer") is None:
        configure(app)
        app.setProperty("saliency_viewer", True)
    _ipython_loop()
    return app


def loop_running() -> bool:
    """Whether an event loop already turns on the GUI thread: IPython's Qt integration, or an
    ``exec()`` further up the stack (a script's own application)."""
    app = QApplication.instance()
    if app is None:
        return False
    shell = _ipython()
    return app.thread().loopLevel() > 0 or getattr(shell, "active_eventloop", None) in _QT_LOOPS


def run() -> None:
    """Turn the event loop until the last window closes, unless one already turns (then return
    at once: IPython's ``%gui qt`` keeps the windows live)."""
    app = QApplication.instance()
    if app is None or loop_running():
        return
    if not any(w.isVisible() for w in app.topLevelWidgets()):
        return
    app.exec()


def new_window(settings: QSettings | None, title: str | None) -> MainWindow:
    """A main window with ``settings`` (default: the user's own, as the desktop app's)."""
    window = MainWindow(settings or QSettings())
    if title:
        window.setWindowTitle(f"{title} - Saliency Viewer")
    return window


def present(window: MainWindow) -> None:
    """Show ``window`` in front (a notebook's window must not open behind the browser)."""
    window.show()
    if QApplication.platformName() != "offscreen":  # there is no front there
        window.raise_()
        window.activateWindow()


def wait_until(done: Callable[[], bool], timeout: float, what: str) -> None:
    """Turn the event loop until ``done()``; :class:`TimeoutError` naming ``what`` after
    ``timeout`` seconds."""
    app = application()
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not done after {timeout:g} s")
        app.processEvents()
        QThread.msleep(5)


__all__ = ["WindowError", "application", "loop_running", "new_window", "present", "run", "wait_until"]
