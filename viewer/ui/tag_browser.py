"""The DICOM header of the image on screen as a searchable tree."""

from __future__ import annotations

from pydicom.dataset import Dataset
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from viewer.io.dicom_header import read_dataset
from viewer.io.safe_text import printable

_MAX_VALUE_CHARS = 200


class TagBrowser(QWidget):
    """Tag, keyword, VR and value of every element, sequences as branches; the filter matches
    any of them (case-insensitive) and keeps the branches that lead to a match."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setObjectName("tag_filter")
        self.filter.setPlaceholderText("Search tags, keywords or values (Ctrl+F)")
        self.filter.setClearButtonEnabled(True)
        self.tree = QTreeWidget()
        self.tree.setObjectName("tag_tree")
        self.tree.setHeaderLabels(["Tag", "Name", "VR", "Value"])
        self.tree.setUniformRowHeights(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree)
        self.filter.textChanged.connect(self.apply_filter)
        self.source = ""
        self._shown = ""  # the file whose header the tree holds
        self.reads = 0  # headers read from disk (tests count them)

    def show_source(self, source: str) -> None:
        """Show the header of ``source`` (a file or ZIP member), read when the browser is seen:
        scrolling a CT with the browser hidden reads no header at all."""
        self.source = source
        if self.isVisible():
            self._load()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._load()

    def _load(self) -> None:
        source = self.source
        if source == self._shown:
            return
        self._shown = source
        self.tree.clear()
        if not source:
            return
        self.reads += 1
        try:
            dataset = read_dataset(source, force=True)
        except Exception as exc:  # a raster image or an unreadable file: say so in the tree
            QTreeWidgetItem(self.tree, ["", "Not a readable DICOM file", "", str(exc)])
            return
        if dataset.file_meta:
            self._add(self.tree.invisibleRootItem(), dataset.file_meta)
        self._add(self.tree.invisibleRootItem(), dataset)
        self.tree.resizeColumnToContents(0)
        self.tree.resizeColumnToContents(1)
        if self.filter.text():
            self.apply_filter(self.filter.text())

    def _add(self, parent: QTreeWidgetItem, dataset: Dataset) -> None:
        for element in dataset:
            tag = f"({element.tag.group:04X},{element.tag.element:04X})"
            if element.VR == "SQ":
                item = QTreeWidgetItem(parent, [tag, element.name, "SQ", f"{len(element.value)} item(s)"])
                for n, child in enumerate(element.value, start=1):
                    branch = QTreeWidgetItem(item, ["", f"Item {n}", "", ""])
                    self._add(branch, child)
            else:
                value = element.repval if element.VR in ("OB", "OW", "OF", "OD", "UN") else str(element.value)
                value = printable(value)  # the file's text: control characters shown, not acted on
                if len(value) > _MAX_VALUE_CHARS:
                    value = value[:_MAX_VALUE_CHARS] + "..."
                QTreeWidgetItem(parent, [tag, element.name, str(element.VR), value])

    def apply_filter(self, text: str) -> None:
        self._load()
        needle = text.strip().lower()

        def visit(item: QTreeWidgetItem) -> bool:
            children = [visit(item.child(i)) for i in range(item.childCount())]
            own = not needle or any(needle in item.text(c).lower() for c in range(4))
            shown = own or any(children)
            item.setHidden(not shown)
            if needle and any(children):
                item.setExpanded(True)
            return shown

        root = self.tree.invisibleRootItem()
        for i in range(root.childCount()):
            visit(root.child(i))

    def visible_rows(self) -> list[str]:
        """Names of the top-level elements left by the filter (for tests and status text)."""
        self._load()
        root = self.tree.invisibleRootItem()
        return [root.child(i).text(1) for i in range(root.childCount()) if not root.child(i).isHidden()]
