"""The annotation: ``session.annotation``, a part of :class:`~viewer.state.session.ViewerSession`.
It loads an annotation file (kept for every image it names until unloaded), reads the annotation
files an opening found beside its images, and turns a shape the user drew into a region. No Qt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from viewer.io.annotations import AnnotationError, Region, load_annotation
from viewer.io.errors import Problem
from viewer.io.image import Image
from viewer.io.series import Discovery
from viewer.state.annotation_book import AnnotationBook, AnnotationFile
from viewer.state.model_in_use import ModelInUse
from viewer.state.reports import Reports
from viewer.state.runner import Job, Runner, route
from viewer.state.viewer_state import ViewerState


class Annotating:
    """The loaded annotation files and each image's annotation (``book``); the image on screen's
    is put in ``state.annotation``. ``found`` tells which series the current opening found (an
    annotation file naming none of them is refused)."""

    def __init__(
        self,
        state: ViewerState,
        runner: Runner,
        reports: Reports,
        model: ModelInUse,
        found: Callable[[], Discovery | None],
    ) -> None:
        self.state, self.runner, self.reports, self.model = state, runner, reports, model
        self.book = AnnotationBook()
        self._found = found
        self._on_event = route(
            "annotation", {"annotation_file": self._keep, "annotation_failed": self._got_failed}
        )

    def load(self, path: str | Path) -> bool:
        """Load the annotation file at ``path`` and keep it, for the image on screen and every
        other image it names, until it is unloaded. A file that names neither the image on screen
        nor any other opened image is refused; labels that match none of the model's are reported."""
        try:
            annotation = load_annotation(path)
        except AnnotationError as exc:
            self.reports.report_error(str(exc))
            return False
        file = AnnotationFile.index(path, annotation)
        image = self.state.image
        if image is not None and not file.regions_on(image) and not self._names_opened(file):
            self.reports.report_error(
                f"{file.name} does not refer to this image nor to any other opened image "
                "(no SOP Instance UID or file name in common)"
            )
            return False
        self._keep(file)
        return True

    def unload(self) -> None:
        """Unload every loaded annotation file; the regions drawn on each image stay with it."""
        gone = self.book.remove()
        if gone:
            self.show_on(self.state.image)
            self.reports.message.emit(f"Unloaded {', '.join(f.name for f in gone)}", 5000)

    def show_on(self, image: Image | None) -> None:
        """Put the annotation of ``image`` (the one on screen) in the state: the loaded files'
        regions on it and those drawn on it."""
        annotation = self.book.for_image(image) if image is not None else None
        if self.state.annotation is annotation:  # the same object, changed in place: say so
            self.state.events.annotation.emit(annotation)
        else:
            self.state.annotation = annotation

    def _names_opened(self, file: AnnotationFile) -> bool:
        found = self._found()
        return found is not None and any(file.names(series) for series in found.series)

    def _keep(self, file: AnnotationFile) -> None:
        self.book.add(file)
        image = self.state.image
        self.show_on(image)
        self.state.show_annotation = True
        annotation = file.annotation
        on_image = annotation.labels_on(image) if image is not None else ()
        count = f"{len(annotation.regions)} regions on {file.images() or 'its'} images"
        here = f"{', '.join(on_image)} on this image" if on_image else "none on this image"
        self.reports.message.emit(f"Annotation {file.name}: {count}; {here}", 8000)
        matcher = self.model.matcher
        reason = matcher.unmatched_reason(on_image) if on_image and matcher is not None else None
        if reason:
            self.reports.report_error(f"{file.name}: {reason}")
            self.reports.problems_found.emit([Problem(str(file.path), reason)])

    # --- annotation files found beside the images ----------------------------------------------
    def offer(self, found: Discovery, opens: Callable[[], bool]) -> None:
        """Load, in the background, the annotation files an opening found beside its images."""
        paths = list(found.annotations)
        if not paths:
            return
        self.runner.submit(
            Job(
                "annotation",
                lambda job: _read_files(job, paths),
                "Reading annotations",
                on_event=lambda kind, payload: opens() and self._on_event(kind, payload),
            )
        )

    def _got_failed(self, problem: Problem) -> None:
        self.reports.problems_found.emit([problem])

    def drawn_region(self, mask: np.ndarray) -> Region | None:
        """A region of the target label on the slice on screen, for a shape the user drew (None
        for an empty one); the image's annotation holds it (made if there is none)."""
        image = self.state.image
        if image is None or not mask.any():
            return None
        annotation = self.book.for_image(image, create=True)
        if self.state.annotation is not annotation:
            self.state.annotation = annotation
        return Region.drawn(self.state.target or "finding", mask, image.frames[self.state.frame])


def _read_files(job, paths: list[str]) -> None:
    """Emits ``annotation_file`` (an indexed AnnotationFile) per file read, ``annotation_failed``
    (a Problem) per file that cannot be."""
    for path in paths:
        job.check()
        try:
            annotation = load_annotation(path)
        except AnnotationError as exc:
            job.emit("annotation_failed", Problem(str(path), f"annotation file: {exc.reason}"))
            continue
        job.emit("annotation_file", AnnotationFile.index(path, annotation))
