"""The model chooser keeps to its dock whatever the model's name: the manifest's ``name`` is the
chooser's text, and sized to it a long one pushed Run and Cancel out of the column (seen on a real
X display with the bundled segmenter chosen at start, "Chest X-ray findings segmenter (demo,
MONAI UNet)")."""

from __future__ import annotations

from viewer.ui.model_panel import ModelPanel

LONG = "Chest X-ray findings segmenter (demo, MONAI UNet), fine-tuned on our own site's films"


def test_a_long_model_name_leaves_run_and_cancel_in_the_dock(qtbot, window):
    panel = ModelPanel(window.session)  # as at start: the name is there before the first show
    qtbot.addWidget(panel)
    panel.models.addItem(LONG, "/nowhere/manifest.toml")
    panel.models.setCurrentIndex(panel.models.count() - 1)
    panel.resize(300, 700)  # the right-hand column's width
    panel.show()
    qtbot.waitExposed(panel)
    assert panel.models.minimumSizeHint().width() < panel.fontMetrics().horizontalAdvance(LONG)
    assert panel.minimumSizeHint().width() <= 300
    right = panel.cancel_button.mapTo(panel, panel.cancel_button.rect().topRight()).x()
    assert right <= panel.width()  # the button ends inside the panel, not past its edge
