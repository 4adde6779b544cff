"""The code's shape: import layers, Qt- and torch-free core, lint."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else shutil.which(name) or name


def test_import_layers_are_kept():
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _imports_leave_out(modules: str, forbidden: tuple[str, ...]) -> None:
    """Import ``modules`` in a fresh interpreter and check none of ``forbidden`` came along."""
    code = (
        f"import sys, {modules}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_imports_neither_qt_nor_torch():
    _imports_leave_out("viewer.io, viewer.cli, viewer.launch", ("torch", "PySide6", "pyqtgraph"))


def test_ruff_is_clean():
    result = subprocess.run(
        [_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_window_presets_are_data_not_code():
    from viewer.io.presets import load_presets

    table = load_presets()
    ct = {p.window.name: (p.window.center, p.window.width) for p in table.presets("CT")}
    assert ct["Brain"] == (40, 80)
    assert ct["Subdural"] == (75, 215)
    assert ct["Bone"] == (600, 2800)
    assert ct["Lung"] == (-600, 1500)
    assert ct["Mediastinum"] == (50, 350)
    assert ct["Soft tissue"] == (40, 400)
    assert table.default("CT").name == "Soft tissue"
    assert table.presets("DX") == ()


def test_viewer_state_is_free_of_qt():
    _imports_leave_out(
        "viewer.state, viewer.state.tasks, viewer.state.overlay_text", ("PySide6", "pyqtgraph", "superqt")
    )


MAX_LINES = 500


def test_no_source_file_passes_500_lines():
    """A file that grows past this holds more than one idea: split it before it lands."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "viewer").rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_import_circles_are_a_contract():
    """The acyclic contract that lint-imports runs above covers the whole package."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    acyclic = [c for c in contracts if c["type"] == "acyclic_siblings"]
    assert acyclic and acyclic[0]["ancestors"] == ["viewer"]
