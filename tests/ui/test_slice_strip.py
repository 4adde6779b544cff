"""The slice strip on the real window: after "Run methods on every slice" on the bundled head CT
it shows the model's probability and the map's strength per slice, both peaking on the slices
the radiologist's subdural masks cover; a click goes to a slice."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt

from tests.ui.helpers import open_and_wait
from viewer.resources import resource_path

HEAD_CT = resource_path("samples", "dicom", "ct_0001")
TRUTH = resource_path("samples", "annotations", "ct_0001_seg.dcm")


def test_the_strip_peaks_where_the_haemorrhage_is_and_takes_the_user_there(qtbot, window):
    image = open_and_wait(qtbot, window, [HEAD_CT])
    strip = window.strip
    assert strip.isVisible()
    window.state.target = "subdural"
    window.session.explanation.methods = ["gradcam"]
    with qtbot.waitSignal(window.session.explanation.series_explained, timeout=300_000):
        window.explain_series()
    qtbot.waitUntil(lambda: strip.profile.strength is not None and np.isfinite(strip.profile.strength).all())
    assert window.session.annotation.load(TRUTH)
    annotated = window.state.annotation.mask(image, "subdural").any(axis=(1, 2))
    column = window.session.model.prediction.labels.index("subdural")
    np.testing.assert_array_equal(
        strip.profile.probability, window.session.model.prediction.probabilities[:, column]
    )
    for values in (strip.profile.probability, strip.profile.strength):
        assert annotated[int(np.argmax(values))]  # the strongest slice is one the radiologist marked
        assert values[annotated].mean() > values[~annotated].mean()
    # A click on the strip goes to that slice.
    x = round((20 + 0.5) * strip.width() / image.n_frames)
    qtbot.mouseClick(strip, Qt.MouseButton.LeftButton, pos=QPoint(x, strip.height() // 2))
    assert window.state.frame == 20
    open_and_wait(qtbot, window, [resource_path("samples", "dicom", "cxr_0001.dcm")])
    assert not strip.isVisible()  # a single film has no slices to show
