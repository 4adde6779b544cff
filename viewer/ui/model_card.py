"""The model card of the model in use, one click from the caution banner or **Model > Model card**."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from viewer.inference.manifest import ModelManifest


def card_text(manifest: ModelManifest) -> str:
    """The card's Markdown, or what the manifest itself says when the model has no card."""
    if manifest.card is not None and manifest.card.is_file():
        return manifest.card.read_text(encoding="utf-8", errors="replace")
    lines = [f"# {manifest.name}", "", "This model has no model card (manifest key `card`)."]
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
    dialog = QDialog(parent)
    dialog.setObjectName("model_card")
    dialog.setWindowTitle(f"Model card: {manifest.name}")
    text = QTextBrowser()
    text.setMarkdown(card_text(manifest))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    dialog.resize(720, 640)
    dialog.show()
    return dialog
