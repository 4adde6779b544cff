"""The PACS node editor (Preferences > PACS nodes..., or Nodes... in Open from PACS).

Edits ``pacs.toml`` (``viewer.io.pacs.nodes``): a DICOMweb node (base URL, optional separate
QIDO/WADO/STOW roots, basic or bearer authentication) or a DIMSE node (host, port, AE titles, the
storage SCP port for C-MOVE, DICOM TLS with its certificate files). A password typed here goes to
the OS keyring, never into the file; where there is no keyring, the node names an environment
variable instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from viewer.io.pacs import ConfigError, DicomWebNode, DimseNode, PacsConfig, PacsNode, load_config
from viewer.io.pacs.nodes import DEFAULT_CALLING_AE, LIMIT_KEYS, config_path, save_config, store_secret

AUTH = (("None", None), ("HTTP basic", "basic"), ("Bearer token", "bearer"))


def _line(name: str, placeholder: str = "") -> QLineEdit:
    edit = QLineEdit()
    edit.setObjectName(f"node_{name}")
    edit.setPlaceholderText(placeholder)
    return edit


def _port(name: str, minimum: int = 1) -> QSpinBox:
    spin = QSpinBox()
    spin.setObjectName(f"node_{name}")
    spin.setRange(minimum, 65535)
    return spin


class NodeEditor(QDialog):
    """Nodes listed on the left, the chosen one's fields on the right; Save writes the file."""

    def __init__(self, parent: QWidget | None = None, path: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("PACS nodes")
        self.setObjectName("pacs_nodes")
        self.path = path or config_path()
        self.secrets: dict[str, str] = {}  # typed passwords, for the keyring on save
        try:
            self.config = load_config(self.path)
        except ConfigError as exc:
            self.config = PacsConfig()
            self.problem = str(exc)
        else:
            self.problem = ""
        self.nodes: dict[str, PacsNode] = dict(self.config.nodes)
        self.current = ""

        self.list = QListWidget()
        self.list.setObjectName("node_list")
        self.list.setMaximumWidth(200)
        add, remove = QPushButton("Add"), QPushButton("Remove")
        side = QVBoxLayout()
        side.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        side.addLayout(buttons)

        self.name = _line("name", "letters, digits, . _ -")
        self.kind = QComboBox()
        self.kind.setObjectName("node_kind")
        self.kind.addItems(["DICOMweb", "DIMSE"])
        self.url = _line("url", "https://pacs.example.org/dicom-web")
        self.prefixes = {k: _line(k, "optional") for k in ("qido_prefix", "wado_prefix", "stow_prefix")}
        self.auth = QComboBox()
        self.auth.setObjectName("node_auth")
        for text, value in AUTH:
            self.auth.addItem(text, value)
        self.username = _line("username")
        self.password_env = _line("password_env", "an environment variable, or leave empty")
        self.password = _line("password", "stored in the OS keyring on Save")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        web = QWidget()
        web_form = QFormLayout(web)
        web_form.addRow("Base URL", self.url)
        for key, edit in self.prefixes.items():
            web_form.addRow(f"{key.split('_')[0].upper()} root", edit)
        web_form.addRow("Authentication", self.auth)
        web_form.addRow("User name", self.username)
        web_form.addRow("Password variable", self.password_env)
        web_form.addRow("Password or token", self.password)
        self.host = _line("host", "pacs.example.org")
        self.port = _port("port")
        self.port.setValue(104)
        self.called = _line("called_ae", "the PACS's AE title")
        self.calling = _line("calling_ae", DEFAULT_CALLING_AE)
        self.scp_port = _port("scp_port", minimum=0)
        self.scp_port.setSpecialValueText("none: retrieve by C-GET")
        self.tls = QCheckBox("DICOM TLS (the server's certificate is checked)")
        self.tls.setObjectName("node_tls")
        self.tls_files = {
            "tls_ca": _line("tls_ca", "trusted CA file (PEM); empty: the system's"),
            "tls_cert": _line("tls_cert", "the viewer's certificate (PEM), if the server asks"),
            "tls_key": _line("tls_key", "its private key (PEM)"),
        }
        for edit in self.tls_files.values():
            edit.setEnabled(False)
        self.tls.toggled.connect(lambda on: [e.setEnabled(on) for e in self.tls_files.values()])
        dimse = QWidget()
        dimse_form = QFormLayout(dimse)
        dimse_form.addRow("Host", self.host)
        dimse_form.addRow("Port", self.port)
        dimse_form.addRow("Called AE title", self.called)
        dimse_form.addRow("Calling AE title", self.calling)
        dimse_form.addRow("C-MOVE storage port", self.scp_port)
        dimse_form.addRow("Security", self.tls)
        for key, text in (("tls_ca", "CA certificates"), ("tls_cert", "Certificate"), ("tls_key", "Key")):
            dimse_form.addRow(text, self.tls_files[key])
        self.pages = QStackedWidget()
        self.pages.addWidget(web)
        self.pages.addWidget(dimse)
        self.kind.currentIndexChanged.connect(self.pages.setCurrentIndex)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Protocol", self.kind)
        self.message = QLabel(self.problem or f"Saved in {self.path}")
        self.message.setObjectName("node_message")
        self.message.setWordWrap(True)
        right = QVBoxLayout()
        right.addLayout(form)
        right.addWidget(self.pages)
        right.addWidget(self.message)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        right.addWidget(box)
        layout = QHBoxLayout(self)
        layout.addLayout(side)
        layout.addLayout(right, 1)

        add.clicked.connect(self.add_node)
        remove.clicked.connect(self.remove_node)
        self.list.currentTextChanged.connect(self._choose)
        box.accepted.connect(self.save)
        box.rejected.connect(self.reject)
        self.list.addItems(list(self.nodes))
        if self.nodes:
            self.list.setCurrentRow(0)
        else:
            self.add_node()

    # --- the list --------------------------------------------------------------------------------
    def add_node(self) -> None:
        if not self._keep():
            return
        number = 1
        while f"node{number}" in self.nodes:
            number += 1
        name = f"node{number}"
        self.nodes[name] = DicomWebNode(name, "http://localhost:8042/dicom-web")
        self.list.addItem(name)
        self.list.setCurrentRow(self.list.count() - 1)

    def remove_node(self) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        name = self.list.item(row).text()
        self.nodes.pop(name, None)
        self.current = ""
        self.list.takeItem(row)

    def _choose(self, name: str) -> None:
        if self.current and self.current != name and self.current in self.nodes and not self._keep():
            return
        self.current = name
        node = self.nodes.get(name)
        if node is not None:
            self.show_node(node)

    # --- fields ----------------------------------------------------------------------------------
    def show_node(self, node: PacsNode) -> None:
        self.name.setText(node.name)
        self.password.clear()
        if isinstance(node, DicomWebNode):
            self.kind.setCurrentIndex(0)
            self.url.setText(node.dicomweb)
            for key, edit in self.prefixes.items():
                edit.setText(getattr(node, key) or "")
            self.auth.setCurrentIndex([value for _, value in AUTH].index(node.auth))
            self.username.setText(node.username or "")
            self.password_env.setText(node.password_env or "")
        else:
            self.kind.setCurrentIndex(1)
            self.host.setText(node.host)
            self.port.setValue(node.port)
            self.called.setText(node.called_ae)
            self.calling.setText(node.calling_ae)
            self.scp_port.setValue(node.scp_port or 0)
            self.tls.setChecked(node.tls)
            for key, edit in self.tls_files.items():
                edit.setText(getattr(node, key) or "")

    def edited_node(self) -> PacsNode:
        """The node the fields describe; ``ConfigError`` saying what is wrong with it."""
        name = self.name.text().strip()
        if not name:
            raise ConfigError("a node needs a name")
        old = self.nodes.get(self.current)
        # What the dialog has no field for (timeout, deadline, byte budgets) stays as pacs.toml set it.
        limits = {key: getattr(old, key) for key in LIMIT_KEYS} if old is not None else {}
        if self.kind.currentIndex() == 0:
            node: PacsNode = DicomWebNode(
                name,
                self.url.text().strip(),
                **{k: e.text().strip() or None for k, e in self.prefixes.items()},
                auth=self.auth.currentData(),
                username=self.username.text().strip() or None,
                password_env=self.password_env.text().strip() or None,
                **limits,
            )
        else:
            node = DimseNode(
                name,
                self.host.text().strip(),
                self.port.value(),
                self.called.text().strip(),
                self.calling.text().strip() or DEFAULT_CALLING_AE,
                scp_port=self.scp_port.value() or None,
                tls=self.tls.isChecked(),
                **self._tls_files(),
                **limits,
            )
        PacsConfig().with_node(node)  # the same checks as the file's
        return node

    def _tls_files(self) -> dict[str, str | None]:
        on = self.tls.isChecked()
        return {key: (edit.text().strip() or None) if on else None for key, edit in self.tls_files.items()}

    def _keep(self) -> bool:
        """Take the fields into the node being edited; False (and why, said) if they are wrong."""
        if not self.current or self.current not in self.nodes:
            return True
        try:
            node = self.edited_node()
        except ConfigError as exc:
            self.message.setText(str(exc))
            return False
        if node.name != self.current and node.name in self.nodes:
            self.message.setText(f"there is a node {node.name} already")
            return False
        if self.password.text():
            self.secrets[node.name] = self.password.text()
        self.nodes = {(node.name if k == self.current else k): (node if k == self.current else v)
                      for k, v in self.nodes.items()}  # fmt: skip
        self.list.blockSignals(True)
        for found in self.list.findItems(self.current, Qt.MatchFlag.MatchExactly):
            found.setText(node.name)
        self.list.blockSignals(False)
        self.current = node.name
        return True

    def save(self) -> None:
        if not self._keep():
            return
        try:
            for name, value in self.secrets.items():
                store_secret(name, value)
            save_config(replace(self.config, nodes=dict(self.nodes)), self.path)
        except (ConfigError, OSError) as exc:
            self.message.setText(str(exc))
            return
        self.accept()
