"""The main window's Model menu: add a model (a manifest, or a weights file the viewer writes one
for), trust a model file that runs more than tensor operators, the model card, the model doctor
and a data-set evaluation. Each opens a window of its own, kept here while it is open."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMainWindow

from viewer.ui.model_setup import ModelSetupDialog

# What Add model... opens: a manifest, or a weights file the viewer writes one for.
MODEL_FILES = (
    "Models (*.toml *.pt *.pth *.bin *.safetensors *.pt2 *.onnx *.ts *.torchscript);;"
    "Model manifest (*.toml);;All files (*)"
)


class ModelCommands:
    """Needs the window's ``session``, ``runner``, ``say`` and ``last_folder``."""

    def __init__(self, window: QMainWindow) -> None:
        self.window = window
        self.session = window.session
        self.setup: ModelSetupDialog | None = None  # Add model... on a weights file
        self.card = None
        self.doctor = None  # the model doctor's report
        self.evaluation = None

    def ask_add(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Add model", self.window.last_folder(), MODEL_FILES
        )
        if path:
            self.add_file(Path(path))

    def add_file(self, path: Path) -> None:
        """A manifest is added as it is; a weights file gets one written beside it first (the
        labels asked for), then the model doctor's report."""
        if path.suffix.lower() == ".toml":
            self.session.model.add(path)
            return
        self.setup = ModelSetupDialog(self.window, self.window.runner, path)
        self.setup.written.connect(self._add_written)
        self.setup.show()

    def _add_written(self, manifest: Path) -> None:
        if self.session.model.add(manifest):
            self._show_check(manifest)

    def ask_trust(self, request) -> None:
        """A model file that can run more than tensor arithmetic loads only if the user says so."""
        from viewer.ui.model_card import ask_trust

        if ask_trust(self.window, request):
            self.session.model.trust(request)
        else:
            self.window.say(f"Not loaded: {request.what}", 15000)

    def show_card(self) -> None:
        from viewer.ui.model_card import show_model_card

        manifest = self.session.model.manifest()
        if manifest is not None:
            self.card = show_model_card(self.window, manifest)

    def evaluate_folder(self) -> None:
        """A data-set evaluation with the model in use and the ticked methods, in the background."""
        from viewer.ui.evaluate_dialog import EvaluateDialog

        manifest = self.session.model.manifest_path
        if manifest is not None:
            session = self.session
            self.evaluation = EvaluateDialog(
                self.window,
                self.window.runner,
                session.model.store,
                str(manifest),
                session.explanation.methods,
            )
            self.evaluation.show()

    def check(self) -> None:
        """The model doctor's report on the model in use, run on the image on screen."""
        if self.session.model.manifest_path is not None:
            self._show_check(self.session.model.manifest_path)

    def _show_check(self, manifest) -> None:
        from viewer.ui.model_doctor import show_model_check

        self.doctor = show_model_check(
            self.window, self.window.runner, str(manifest), self.session.state.image
        )
