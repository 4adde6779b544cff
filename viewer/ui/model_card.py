"""The model card of the model in use, one click from the caution banner or **Model > Model card**;
and the question asked before a model file that may run code is loaded."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMessageBox, QTextBrowser, QVBoxLayout, QWidget

from viewer.inference.in_memory import is_in_memory
from viewer.inference.manifest import ModelManifest
from viewer.inference.trust import TrustRequest
from viewer.io.safe_text import printable


def card_text(manifest: ModelManifest) -> str:
    """The card's Markdown, or what the manifest itself says when the model has no card."""
    if manifest.card is not None and manifest.card.is_file():
        return manifest.card.read_text(encoding="utf-8", errors="replace")
    origin = (
        "This model came from memory: a network handed to the viewer by the Python session that "
        "opened this window (a notebook or a script). It has no file, manifest or model card."
        if is_in_memory(manifest.path)
        else "This model has no model card (manifest key `card`)."
    )
    lines = [f"# {manifest.name}", "", origin]
    for title, value in (
        ("Domain", manifest.domain),
        ("Trained on", manifest.trained_on),
        ("Intended use", manifest.intended_use),
        ("Description", manifest.description),
    ):
        if value:
            lines.append(f"- **{title}**: {value}")
    return "\n".join(lines)


def show_model_card(parent: QWidget, manifest: ModelManifest) -> QDialog:
    """A non-modal window with the card, rendered from Markdown."""
    return _markdown_window(parent, "model_card", f"Model card: {manifest.name}", card_text(manifest))


def show_markdown(parent: QWidget, title: str, path: Path) -> QDialog:
    """A non-modal window with the Markdown file at ``path`` (the getting-started page)."""
    name = title.lower().replace(" ", "_")
    return _markdown_window(parent, name, title, path.read_text(encoding="utf-8", errors="replace"))


def _markdown_window(parent: QWidget, name: str, title: str, markdown: str) -> QDialog:
    dialog = QDialog(parent)
    dialog.setObjectName(name)
    dialog.setWindowTitle(title)
    text = QTextBrowser()
    text.setOpenExternalLinks(True)
    text.setMarkdown(markdown)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.resize(720, 640)
    dialog.show()
    return dialog


def ask_trust(parent: QWidget, request: TrustRequest) -> bool:
    """Ask, once per file, whether to load a model file that can run more than tensor arithmetic
    (see :mod:`viewer.inference.trust`); the safe answer is the default."""
    box = QMessageBox(parent)
    box.setObjectName("trust_model")
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Trust this model file?")
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(
        f"{printable(request.what)}.\n\nSuch a file can read or write files or run code on this "
        "computer. Load it only if you trust where it came from."
    )
    box.setDetailedText(
        f"File: {printable(request.weights)}\nModel: {printable(request.manifest)}\n"
        "Operators beyond pure tensor arithmetic:\n"
        + "\n".join(f"  {printable(op)}" for op in request.operators)
    )
    trust = box.addButton("Trust and load", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.exec()
    return box.clickedButton() is trust
