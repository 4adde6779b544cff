"""The question the model panel asks, once, when an image says nothing of its modality (a PNG or
JPEG): which model should explain such images. The answer is used at once and remembered (see
:mod:`viewer.state.model_chooser`)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from viewer.io.safe_text import printable
from viewer.state.model_chooser import ModelQuestion
from viewer.state.session import ViewerSession


class ModelQuestionBar(QFrame):
    """A bar in the model panel: the question, the models to choose from (what each was made for)
    and a button; hidden once answered. One row of controls, so the panel keeps its size."""

    asked = Signal()  # the question is on screen

    def __init__(self, session: ViewerSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("model_question")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#model_question { background: #213547; border: 1px solid #3d6a8f; }")
        self.session = session
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.models = QComboBox()
        self.models.setObjectName("question_models")
        # Long names ("cxr_shortcut_resnet18 (CR, DX images)") must not widen the panel.
        self.models.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.models.setMinimumContentsLength(12)
        self.use = QPushButton("Use")
        self.use.setObjectName("question_use")
        row = QHBoxLayout()
        row.addWidget(self.models, 1)
        row.addWidget(self.use)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.text)
        layout.addLayout(row)
        self.hide()
        self.use.clicked.connect(self._answer)
        session.model.model_question.connect(self.ask)

    def ask(self, question: ModelQuestion) -> None:
        kind = printable(question.kind)
        self.text.setText(
            f"This {kind} says nothing of its modality; {printable(question.used)} explains it "
            f"meanwhile. Which model should explain {kind} images?"
        )
        self.models.clear()
        for model, made_for in question.choices:
            self.models.addItem(f"{printable(model)} ({made_for})", model)
        self.models.setCurrentIndex(max(0, self.models.findData(question.used)))
        self.show()
        self.asked.emit()

    def choose(self, model: str) -> None:
        """Answer with ``model`` (what the Use button does with the one chosen in the list)."""
        self.models.setCurrentIndex(self.models.findData(model))
        self._answer()

    def _answer(self) -> None:
        model = self.models.currentData()
        if model:
            self.hide()
            self.session.model.answer_question(model)
