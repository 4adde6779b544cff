"""What the session does when a study it was asked to open cannot be loaded. A part of
:class:`~viewer.state.session.ViewerSession` (a mixin, like ``AnnotationCommands``). No Qt."""

from __future__ import annotations

from pathlib import Path

from viewer.io.errors import Problem


class OpeningCommands:
    """Needs the session's ``state``, ``runner``, ``discovery``, ``series_index``, ``choice``,
    ``problems_found``, ``report_error``, ``_drop_explanation``, ``_pending``,
    ``_set_prediction`` and ``_update_caution``."""

    def _got_failed(self, payload: tuple[int, str]) -> None:
        """The study ``index`` could not be loaded: nothing of the previous study stays on screen
        (image, layers, annotation, prediction), and the failure is listed in Problems with its
        reason. Choosing the study again tries again."""
        index, message = payload
        self._drop_explanation()  # the running explanation was of the study before: it ends
        for lane in ("scores", "predict"):
            self.runner.cancel(lane)
        self._pending = None
        self.series_index = -1
        self.choice = None
        self._set_prediction(None)
        self.state.close()
        self._update_caution()
        problem = self._failure_problem(index, message)
        self.problems_found.emit([problem])
        self.report_error(f"Cannot open {Path(problem.path).name}: {problem.reason}")

    def _failure_problem(self, index: int, message: str) -> Problem:
        """The failure as a Problem: the file the loader names (a ``LoadError`` says ``"<file>:
        <reason>"``), else the study's first file."""
        found = self.discovery
        paths = found.series[index].paths if found is not None and 0 <= index < len(found.series) else []
        for path in paths:
            if message.startswith(f"{path}: "):
                return Problem(path, message.removeprefix(f"{path}: "))
        return Problem(paths[0] if paths else "", message)
