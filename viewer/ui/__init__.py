"""The desktop viewer (PySide6 + pyqtgraph): the only package that imports Qt.

Widgets are views of :class:`viewer.state.ViewerState`; background work runs on one QThread
(:mod:`viewer.ui.worker`) through the Qt-free task functions of :mod:`viewer.state.tasks`.
"""
