"""The session's annotation commands: load an annotation file over the image on screen, and turn
a shape the user drew into a region. A part of :class:`~viewer.state.session.ViewerSession`
(a mixin, as napari's ``ViewerModel`` takes its key and mouse bindings), kept apart so the
session's file holds one idea per section. No Qt."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.io.annotations import Annotation, AnnotationError, Region, load_annotation
from viewer.io.errors import Problem


class AnnotationCommands:
    """Needs the session's ``state``, ``matcher``, ``message``, ``problems_found`` and
    ``report_error``."""

    def load_annotation(self, path: str | Path) -> bool:
        """Show the annotation file at ``path`` over the image on screen, if it refers to it; an
        annotation whose labels match none of the model's is shown and reported."""
        image = self.state.image
        name = Path(path).name
        try:
            annotation = load_annotation(path)
        except AnnotationError as exc:
            self.report_error(str(exc))
            return False
        if image is not None and not annotation.matches(image):
            self.report_error(
                f"{name} does not refer to this image (no SOP Instance UID or file name in common)"
            )
            return False
        self.state.annotation = annotation
        self.state.show_annotation = True
        self.message.emit(f"Annotation {name}: {', '.join(annotation.labels)}", 5000)
        matcher = self.matcher
        known = image is not None and matcher is not None
        reason = matcher.unmatched_reason(annotation.labels_on(image)) if known else None
        if reason:
            self.report_error(f"{name}: {reason}")
            self.problems_found.emit([Problem(str(path), reason)])
        return True

    def drawn_region(self, mask: np.ndarray) -> Region | None:
        """A region of the target label on the slice on screen, for a shape the user drew (None
        for an empty one); an annotation to hold it is made if there is none."""
        image = self.state.image
        if image is None or not mask.any():
            return None
        if self.state.annotation is None:
            self.state.annotation = Annotation(source="drawn in the viewer")
        return Region.drawn(self.state.target or "finding", mask, image.frames[self.state.frame])
