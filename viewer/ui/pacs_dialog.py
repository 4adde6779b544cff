"""File > Open from PACS: query a configured node, browse its studies and their series, retrieve.

A view of :class:`~viewer.state.pacs_session.PacsSession`: the queries and the retrieval run in
the background, the dialog stays usable (and may be closed) while they do, and what arrives opens
in the main window as it arrives.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.io.pacs import SeriesMatch, StudyMatch, StudyQuery
from viewer.state.pacs_session import PacsSession, RetrieveRequest

DATE_RANGES = ("Any date", "Today", "Last 7 days", "Last 30 days", "Last year", "Between")
_DAYS = {"Today": 0, "Last 7 days": 6, "Last 30 days": 29, "Last year": 364}
MODALITIES = ("", "CT", "CR", "DX", "MR", "PT", "US", "MG", "NM", "XA", "SEG", "SR")
COLUMNS = ("Patient", "Patient ID", "Date", "Description", "Modalities", "Accession", "Series", "Images")
_UID = Qt.ItemDataRole.UserRole


def _pretty_date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


class PacsDialog(QDialog):
    """Query fields above, studies (with their series as children) below, Retrieve at the foot."""

    def __init__(self, pacs: PacsSession, parent: QWidget | None = None, *, edit_nodes=None):
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.setObjectName("pacs_dialog")
        self.resize(980, 600)
        self.pacs = pacs
        self.node_name = ""  # the node the results shown came from
        self._edit_nodes = edit_nodes

        self.node = QComboBox()
        self.node.setObjectName("pacs_node")
        self.node.setMinimumWidth(220)
        self.echo = QPushButton("Test connection")
        self.nodes_button = QPushButton("Nodes...")
        self.nodes_button.setEnabled(edit_nodes is not None)
        top = QHBoxLayout()
        for widget in (QLabel("Node"), self.node, self.echo, self.nodes_button):
            top.addWidget(widget)
        top.addStretch(1)

        self.fields = {key: QLineEdit() for key in ("patient_name", "patient_id", "accession", "description")}
        for key, field in self.fields.items():
            field.setObjectName(f"pacs_{key}")
            field.setClearButtonEnabled(True)
            field.returnPressed.connect(self.search)
        self.fields["patient_name"].setPlaceholderText("e.g. DOE^J*")
        self.modality = QComboBox()
        self.modality.setObjectName("pacs_modality")
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.dates = QComboBox()
        self.dates.setObjectName("pacs_dates")
        self.dates.addItems(DATE_RANGES)
        today = QDate.currentDate()
        self.date_from, self.date_to = QDateEdit(today.addDays(-30)), QDateEdit(today)
        for edit in (self.date_from, self.date_to):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.dates.currentTextChanged.connect(
            lambda text: [e.setEnabled(text == "Between") for e in (self.date_from, self.date_to)]
        )
        between = QHBoxLayout()
        for widget in (self.dates, self.date_from, QLabel("to"), self.date_to):
            between.addWidget(widget)
        grid = QGridLayout()
        left, right = QFormLayout(), QFormLayout()
        left.addRow("Patient name", self.fields["patient_name"])
        left.addRow("Patient ID", self.fields["patient_id"])
        left.addRow("Accession", self.fields["accession"])
        right.addRow("Study date", between)
        right.addRow("Modality", self.modality)
        right.addRow("Description", self.fields["description"])
        grid.addLayout(left, 0, 0)
        grid.addLayout(right, 0, 1)
        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("pacs_search")
        self.search_button.setDefault(True)
        grid.addWidget(self.search_button, 0, 2, Qt.AlignmentFlag.AlignBottom)

        self.results = QTreeWidget()
        self.results.setObjectName("pacs_results")
        self.results.setHeaderLabels(list(COLUMNS))
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.results.setUniformRowHeights(True)
        self.results.setSortingEnabled(True)
        self.results.sortByColumn(2, Qt.SortOrder.DescendingOrder)
        self.results.setColumnWidth(0, 180)
        self.results.setColumnWidth(3, 220)

        self.status = QLabel("Choose a node and search; an empty search lists every study.")
        self.status.setObjectName("pacs_status")
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setMaximumWidth(220)
        self.bar.hide()
        self.retrieve_button = QPushButton("Retrieve and open")
        self.retrieve_button.setObjectName("pacs_retrieve")
        self.retrieve_button.setEnabled(False)
        self.cancel_button = QPushButton("Stop retrieval")
        self.cancel_button.setEnabled(False)
        close = QPushButton("Close")
        foot = QHBoxLayout()
        foot.addWidget(self.status, 1)
        for widget in (self.bar, self.cancel_button, self.retrieve_button, close):
            foot.addWidget(widget)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid)
        layout.addWidget(self.results, 1)
        layout.addLayout(foot)

        self.echo.clicked.connect(self._echo)
        self.nodes_button.clicked.connect(self._nodes)
        self.search_button.clicked.connect(self.search)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.cancel_button.clicked.connect(pacs.cancel)
        close.clicked.connect(self.close)
        self.results.itemExpanded.connect(self._expanded)
        self.results.itemDoubleClicked.connect(lambda *_: self.retrieve_selected())
        self.results.itemSelectionChanged.connect(
            lambda: self.retrieve_button.setEnabled(bool(self.results.selectedItems()))
        )
        # Disconnected when the dialog goes, so a late answer never reaches a deleted widget.
        self._links = [
            (pacs.studies_found, self._on_studies),
            (pacs.series_found, self._on_series),
            (pacs.echoed, lambda name: self._say(f"{name} answered the echo.")),
            (pacs.progress, self._on_progress),
            (pacs.retrieved, self._on_retrieved),
            (pacs.retrieve_done, self._on_retrieve_done),
            (pacs.error, self._on_error),
        ]
        for signal, slot in self._links:
            signal.connect(slot)
        links = self._links  # not through self: the wrapper may be gone when this runs
        self.destroyed.connect(lambda *_: [signal.disconnect(slot) for signal, slot in links])
        self.reload_nodes()

    # --- nodes ----------------------------------------------------------------------------------
    def reload_nodes(self) -> None:
        config = self.pacs.config()
        current = self.node.currentText()
        self.node.clear()
        names = list(config.nodes) if config is not None else []
        self.node.addItems(names)
        if current in names:
            self.node.setCurrentText(current)
        for widget in (self.search_button, self.echo):
            widget.setEnabled(bool(names))
        if not names and config is not None:
            self._say("No PACS node is configured: add one with Nodes... (or in pacs.toml).")

    def _nodes(self) -> None:
        if self._edit_nodes is not None:
            self._edit_nodes(self)
            self.reload_nodes()

    def _echo(self) -> None:
        self._say(f"Asking {self.node.currentText()}...")
        self.pacs.echo(self.node.currentText())

    # --- searching ------------------------------------------------------------------------------
    def query(self) -> StudyQuery:
        """The query the fields describe."""
        text = {key: field.text().strip() for key, field in self.fields.items()}
        low = high = None
        choice = self.dates.currentText()
        today = dt.date.today()
        if choice in _DAYS:
            low, high = today - dt.timedelta(days=_DAYS[choice]), today
        elif choice == "Between":
            low, high = self.date_from.date().toPython(), self.date_to.date().toPython()
            low, high = min(low, high), max(low, high)
        return StudyQuery(
            patient_name=text["patient_name"],
            patient_id=text["patient_id"],
            date_from=low,
            date_to=high,
            modality=self.modality.currentText().strip(),
            accession=text["accession"],
            description=text["description"],
        )

    def search(self) -> None:
        name = self.node.currentText()
        if name and self.pacs.query(name, self.query()) is not None:
            self._say(f"Searching {name}...")

    def _on_studies(self, node: str, studies: list[StudyMatch]) -> None:
        self.node_name = node
        self.results.setSortingEnabled(False)
        self.results.clear()
        for study in studies:
            item = QTreeWidgetItem(
                [
                    study.patient_name.replace("^", " ").strip(),
                    study.patient_id,
                    _pretty_date(study.study_date),
                    study.description,
                    ", ".join(study.modalities),
                    study.accession,
                    _number(study.series_count),
                    _number(study.instance_count),
                ]
            )
            item.setData(0, _UID, ("study", study.study_uid))
            item.setToolTip(0, f"Study Instance UID {study.study_uid}")
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.results.addTopLevelItem(item)
        self.results.setSortingEnabled(True)
        self._say(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {node}.")

    def _expanded(self, item: QTreeWidgetItem) -> None:
        kind, uid = item.data(0, _UID)
        if kind == "study" and item.childCount() == 0:
            self.pacs.list_series(self.node_name, uid)

    def _on_series(self, study_uid: str, series: list[SeriesMatch]) -> None:
        item = self.study_item(study_uid)
        if item is None:
            return
        item.takeChildren()
        for match in sorted(series, key=lambda s: (s.number is None, s.number or 0)):
            texts = [f"Series {_number(match.number)}", "", "", match.description, match.modality]
            child = QTreeWidgetItem([*texts, "", "", _number(match.instance_count)])
            child.setData(0, _UID, ("series", match.series_uid))
            child.setToolTip(0, f"Series Instance UID {match.series_uid}")
            item.addChild(child)
        if not series:
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)

    def study_item(self, study_uid: str) -> QTreeWidgetItem | None:
        for index in range(self.results.topLevelItemCount()):
            item = self.results.topLevelItem(index)
            if item.data(0, _UID)[1] == study_uid:
                return item
        return None

    # --- retrieving -----------------------------------------------------------------------------
    def requests(self) -> list[RetrieveRequest]:
        """What the selection asks for: a selected study whole; selected series of a study not
        itself selected, by themselves."""
        whole: list[str] = []
        some: dict[str, list[str]] = {}
        for item in self.results.selectedItems():
            kind, uid = item.data(0, _UID)
            if kind == "study":
                whole.append(uid)
            else:
                some.setdefault(item.parent().data(0, _UID)[1], []).append(uid)
        requests = [RetrieveRequest(uid) for uid in whole]
        requests += [RetrieveRequest(s, tuple(uids)) for s, uids in some.items() if s not in whole]
        return requests

    def retrieve_selected(self) -> None:
        requests = self.requests()
        if requests and self.pacs.retrieve(self.node_name, requests) is not None:
            self.bar.setValue(0)
            self.bar.show()
            self.cancel_button.setEnabled(True)
            self._say(f"Retrieving {len(requests)} stud{'y' if len(requests) == 1 else 'ies'}...")

    def _on_progress(self, step: str, fraction: float) -> None:
        self.bar.setValue(round(fraction * 1000))
        self._say(step)

    def _on_retrieved(self, series) -> None:
        got = f"{series.received} received" if series.received else "from the cache"
        match = series.series
        self._say(f"Series {_number(match.number)} {match.description}: {series.instances} images ({got}).")

    def _on_retrieve_done(self, status: str) -> None:
        self.bar.hide()
        self.cancel_button.setEnabled(False)
        if status == "done":
            self._say("Retrieved; opened in the viewer.")
        elif status == "cancelled":
            self._say("Retrieval stopped; what arrived stays in the cache and is not asked for again.")

    def _on_error(self, message: str) -> None:
        self._say(message)

    def _say(self, text: str) -> None:
        self.status.setText(text)
