"""The user's explicit trust, the only way a graph file that runs more than pure tensor operators
loads: asked for once in the viewer (the safe answer the default), recorded by the file's digest
outside the model's folder, and void when the file changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.inference.layouts import write_manifest
from tests.security.harness import ROOT
from viewer.inference.trust import TrustRequest, is_trusted, store_path, trust
from viewer.state.runner import InlineRunner
from viewer.state.session import ViewerSession

FILM = ROOT / "resources" / "samples" / "dicom" / "cxr_0001.dcm"

# A network whose forward prints: harmless, but print is not a tensor operator, so it is refused
# until trusted (a stand-in for a file that really writes, which test_model_files runs).
_CHATTY = """
import sys, torch
from torch import nn

class Chatty(nn.Module):
    def forward(self, x):
        print("forward")
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)[:, :2]

torch.jit.script(Chatty()).save(sys.argv[1])
"""


@pytest.fixture
def chatty_model(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trust.json"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "make.py").write_text(_CHATTY)
    made = subprocess.run(
        [sys.executable, str(folder / "make.py"), str(folder / "model.pt")], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr[-2000:]
    return write_manifest(folder, "torchscript", "model.pt", labels=["a", "b"])


def test_the_session_asks_before_loading_an_untrusted_graph_and_loads_it_once_trusted(chatty_model):
    session = ViewerSession(InlineRunner())
    asked: list[TrustRequest] = []
    session.model.trust_needed.connect(asked.append)
    assert session.model.add(chatty_model)
    session.open_paths([FILM])
    assert len(asked) == 1 and session.model.prediction is None and not session.reports.errors
    request = asked[0]
    assert request.operators == ("print()",) and "print()" in request.what
    assert request.weights == chatty_model.parent / "model.pt"

    session.model.trust(request)
    assert session.model.prediction is not None and session.model.prediction.labels == ("a", "b")
    assert len(asked) == 1 and not session.reports.errors
    assert is_trusted(request.weights)


def test_trust_is_kept_by_digest_outside_the_model_folder_and_void_for_a_changed_file(chatty_model):
    weights = chatty_model.parent / "model.pt"
    trust(weights, ["print()"])
    stored = json.loads(store_path().read_text())
    assert not store_path().is_relative_to(chatty_model.parent)
    (entry,) = stored.values()
    assert entry["operators"] == ["print()"] and entry["path"] == str(weights.resolve())
    assert is_trusted(weights)
    weights.write_bytes(weights.read_bytes() + b"\0")  # any change is a new file
    assert not is_trusted(weights)


def _answer(button_text: str | None, seen: list[str]) -> None:
    """Click ``button_text`` in the trust question once it is shown (None: press Enter, the default)."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, click)
            return
        seen.append(box.text())
        if button_text is None:
            box.defaultButton().click()
            return
        next(b for b in box.buttons() if b.text() == button_text).click()

    QTimer.singleShot(0, click)


@pytest.mark.parametrize(("button", "trusted"), [("Trust and load", True), (None, False)])
def test_the_trust_question_names_the_file_and_defaults_to_not_loading(qtbot, button, trusted):
    from viewer.ui.model_card import ask_trust

    request = TrustRequest(
        Path("m/manifest.toml"),
        Path("m/model.pt"),
        "model.pt runs operators that are not pure tensor operators: aten::from_file (x.py:3)",
        ("aten::from_file",),
    )
    seen: list[str] = []
    _answer(button, seen)
    assert ask_trust(None, request) is trusted
    assert "aten::from_file" in seen[0] and "run code" in seen[0]
