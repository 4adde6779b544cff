"""Preferences: what each mouse button does, the level-drag direction, the seed, the curves' steps,
and the PACS nodes (edited in their own dialog, ``ui/pacs_nodes.py``)."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QPushButton,
    QSpinBox,
)

from viewer.ui.canvas import MouseBindings

ACTIONS = {"window": "Window (width / level)", "pan": "Pan", "zoom": "Zoom"}


def load_bindings(settings: QSettings) -> MouseBindings:
    defaults = MouseBindings()

    def action(key: str, default: str) -> str:
        value = str(settings.value(f"mouse/{key}", default))
        return value if value in ACTIONS else default

    return MouseBindings(
        left=action("left", defaults.left),
        middle=action("middle", defaults.middle),
        right=action("right", defaults.right),
        level_up_when_dragging_up=settings.value(
            "mouse/level_up", defaults.level_up_when_dragging_up, type=bool
        ),
    )


class PreferencesDialog(QDialog):
    """Edits ``bindings`` in place and stores them (and the other choices) in ``settings``."""

    def __init__(self, bindings: MouseBindings, settings: QSettings, parent=None, *, edit_nodes=None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.bindings, self.settings = bindings, settings
        self.buttons = {}
        form = QFormLayout(self)
        for button in ("left", "middle", "right"):
            combo = QComboBox()
            combo.setObjectName(f"pref_{button}")
            for key, text in ACTIONS.items():
                combo.addItem(text, key)
            combo.setCurrentIndex(list(ACTIONS).index(getattr(bindings, button)))
            form.addRow(f"{button.capitalize()} button drag", combo)
            self.buttons[button] = combo
        self.level_up = QCheckBox("Dragging up raises the level (Weasis); off: lowers it (OHIF)")
        self.level_up.setObjectName("pref_level_up")
        self.level_up.setChecked(bindings.level_up_when_dragging_up)
        form.addRow("Level drag", self.level_up)
        self.seed = QSpinBox()
        self.seed.setObjectName("pref_seed")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(settings.value("methods/seed", 0, type=int))
        self.seed.setToolTip("Seed of LIME, RISE and SmoothGrad: the same seed gives the same map")
        form.addRow("Random seed", self.seed)
        self.steps = QSpinBox()
        self.steps.setObjectName("pref_steps")
        self.steps.setRange(0, 500)
        self.steps.setValue(settings.value("compare/steps", 50, type=int))
        self.steps.setToolTip("Steps of the deletion / insertion curves in the comparison panel (0: skip)")
        form.addRow("Deletion/insertion steps", self.steps)
        if edit_nodes is not None:
            nodes = QPushButton("PACS nodes...")
            nodes.setObjectName("pref_pacs_nodes")
            nodes.setToolTip("The PACS servers to query, retrieve from and send results to")
            nodes.clicked.connect(lambda: edit_nodes(self))
            form.addRow("PACS", nodes)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        form.addRow(box)

    def accept(self) -> None:
        for button, combo in self.buttons.items():
            setattr(self.bindings, button, combo.currentData())
            self.settings.setValue(f"mouse/{button}", combo.currentData())
        self.bindings.level_up_when_dragging_up = self.level_up.isChecked()
        self.settings.setValue("mouse/level_up", self.level_up.isChecked())
        self.settings.setValue("methods/seed", self.seed.value())
        self.settings.setValue("compare/steps", self.steps.value())
        super().accept()
