"""What the product writes and prints, when its inputs are hostile or merely unusual: DICOM results
of a CR without Type 2 attributes, a stdout closed under it, file names that are not UTF-8,
escape sequences in header text and labels, formulas in CSV cells, patient identifiers in a
``--screenshot``, original UIDs in the names of anonymised results.

Each case builds its input in ``tmp_path`` from a bundled sample and runs the command line in a
subprocess (``harness.run_cli``), as a user would; the screenshot runs the real window offscreen
in a child process and reads the text it draws its corners from at the moment it is grabbed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.io.test_dicom_validity import validate
from tests.security.harness import ROOT, assert_clean, run_cli
from viewer.cli.terminal import EXIT_OUTPUT_CLOSED

SAMPLES = ROOT / "resources" / "samples" / "dicom"
CHEST = SAMPLES / "cxr_0001.dcm"
ESCAPES = "\x1b[2J\x1b]0;pwned\x07"
# Labels a spreadsheet would run as formulas (OWASP CSV injection), and one that drives a terminal.
# The second is the top prediction on the sample film (consolidation), so explain prints it.
EVIL_LABELS = ['=HYPERLINK("http://evil.example/x","ok")', "\x1b[31mred", "@SUM(A1)", "-2+3", "+1"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _uids(seed: str) -> tuple[str, str, str]:
    """Study, series and SOP Instance UIDs of a test study, made from ``seed``."""
    suffix = int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16)
    return tuple(f"1.2.826.0.1.3680043.10.1514.9.{suffix}.{k}" for k in (1, 2, 3))


def _cr(path: Path, *, seed: str = "", **header) -> Path:
    """The bundled chest CR with ``header`` set (``None`` deletes the attribute) and UIDs of its
    own (made from ``seed``, default the path)."""
    ds = pydicom.dcmread(CHEST)
    for keyword, value in header.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = _uids(seed or str(path))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _names(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*")]


def _csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# --- DICOM results of unusual sources ---------------------------------------------------------
def test_a_cr_without_type2_attributes_is_exported_and_a_library_error_fails_only_its_study(
    tmp_path, sentinel
):
    """A CR without Patient's Sex and Study Time (Type 2, often absent) gets its DICOM results,
    the input untouched; a source highdicom cannot derive from (an unknown SOP class: KeyError)
    fails that study alone, with a one-line reason naming the file and the cause."""
    bare = _cr(tmp_path / "in" / "bare.dcm", PatientSex=None, StudyTime=None)
    odd = _cr(tmp_path / "in" / "odd_class.dcm", SOPClassUID="1.2.3.4")
    before = _digest(bare)
    out = tmp_path / "out"
    outcome = run_cli(
        ["explain", str(bare.parent), "--model", "cxr_resnet18", "--methods", "gradcam", "--dicom",
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert_clean(outcome)
    assert outcome.returncode == 0, outcome.describe()
    assert _digest(bare) == before and "PatientSex" not in pydicom.dcmread(bare)
    dciodvfy = shutil.which("dciodvfy")  # .ci/run installs it; without it, the headers alone
    for name in ("gradcam.dcm", "gradcam_sc.dcm"):
        written = pydicom.dcmread(out / "bare" / name)
        assert written.PatientSex == "" and written.StudyTime == "", name  # present, empty
        if dciodvfy:
            assert validate(dciodvfy, out / "bare" / name) == [], name
    assert [row[0] for row in _csv(out / "metrics.csv")[1:]] == ["bare"]
    problems = _csv(out / "problems.csv")
    assert problems[0] == ["source", "reason"] and len(problems) == 2, problems
    source, reason = problems[1]
    assert source == "odd_class" and str(odd) in reason and "KeyError" in reason, reason
    said = [line for line in outcome.stderr.splitlines() if "odd_class" in line]
    assert len(said) == 1 and "KeyError" in said[0], outcome.describe()


def test_anonymised_results_of_pacs_cache_files_are_named_by_anonymised_uids(tmp_path, sentinel):
    """A study as the PACS cache files it (``<server>/<study>/<series>/<SOP UID>.dcm``): with
    --anonymize no name in the output tree, and no cell of metrics.csv, holds an original UID;
    without it the file's name (the SOP Instance UID) would name them, so the test can fail."""
    uids = study, series, sop = _uids("pacs")
    cached = _cr(tmp_path / "cache" / "archive" / study / series / f"{sop}.dcm", seed="pacs", PatientSex=None)
    anonymised = tmp_path / "anonymised"
    outcome = run_cli(
        ["explain", str(cached.parent), "--model", "cxr_resnet18", "--methods", "gradcam", "--dicom",
         "--anonymize", "--out", str(anonymised), "--quiet"]
    )  # fmt: skip
    assert_clean(outcome)
    assert outcome.returncode == 0, outcome.describe()
    names = _names(anonymised)
    assert "gradcam.dcm" in names and "gradcam_sc.dcm" in names, names
    assert not [n for n in names if any(uid in n for uid in uids)], names
    assert not any(uid in (anonymised / "metrics.csv").read_text() for uid in uids)
    written = pydicom.dcmread(next(anonymised.rglob("gradcam.dcm")))
    folder = next(p for p in anonymised.iterdir() if p.is_dir()).name
    referenced = written.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == folder  # the name is the UID the results carry
    from viewer.io import discover
    from viewer.io.naming import series_name

    (found,) = discover([cached]).series
    assert series_name(found) == sop  # without --anonymize the file's name (its UID) names them


# --- the terminal: a closed stdout, escape sequences ------------------------------------------
def _closed_stdout(args: list[str]) -> tuple[int, str]:
    """``saliency-viewer ARGS`` writing into a pipe whose reader closed before the first byte:
    every write meets EPIPE, as ``| head`` does once it has its lines. Returns (status, stderr)."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", "QT_QPA_PLATFORM": "offscreen"}
    try:
        process = subprocess.run(
            [sys.executable, "-m", "viewer", *args],
            stdin=subprocess.DEVNULL, stdout=write, stderr=subprocess.PIPE, env=env, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
    return process.returncode, process.stderr.decode("utf-8", "replace")


def test_a_closed_stdout_ends_every_command_quietly(tmp_path, sentinel):
    """``info --json | head`` and ``explain ... | head``: status 141 (128 + SIGPIPE), nothing on
    stderr (no traceback, no "Broken pipe", no "Exception ignored"); explain's study that was done
    is kept."""
    for args in (["info", "--json", str(SAMPLES)], ["info", str(SAMPLES)]):
        status, stderr = _closed_stdout(args)
        assert (status, stderr) == (EXIT_OUTPUT_CLOSED, ""), (args, status, stderr)
    out = tmp_path / "out"
    args = ["explain", str(CHEST), "--model", "cxr_resnet18", "--methods", "gradcam", "--out", str(out)]
    status, stderr = _closed_stdout([*args, "--quiet"])
    assert status == EXIT_OUTPUT_CLOSED and "Traceback" not in stderr and "pipe" not in stderr.lower(), stderr
    assert len(_csv(out / "metrics.csv")) == 2  # the header and the study's row, committed


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One explain run over hostile inputs, and ``info`` over them: a CR whose patient name and
    study description hold escape sequences, a CR and a junk file named with bytes that are not
    UTF-8, and a model whose labels are formulas and escape sequences (its manifest copied from
    models/cxr_resnet18)."""
    root = tmp_path_factory.mktemp("hostile")
    inputs = root / "in"
    _cr(inputs / "evil.dcm", PatientName="Evil^" + ESCAPES, StudyDescription="Chest \x1b[31mred\x9b6n")
    folder = os.fsencode(inputs)
    shutil.copyfile(CHEST, folder + b"/\xff\xfe.dcm")
    with open(folder + b"/\xfe\xfd.dcm", "wb") as junk:
        junk.write(b"not a DICOM file")
    model = root / "model"
    shutil.copytree(ROOT / "models" / "cxr_resnet18", model)
    manifest = (model / "manifest.toml").read_text()
    labels = ", ".join(json.dumps(label) for label in EVIL_LABELS)  # JSON strings are TOML strings
    manifest = re.sub(r"^labels = .*$", lambda _: f"labels = [{labels}]", manifest, flags=re.M)
    (model / "manifest.toml").write_text(manifest.replace('name = "', 'name = "\\u001b]0;pwned\\u0007'))
    out = root / "out"
    targets = [f"--target={label}" for label in EVIL_LABELS]
    explain = run_cli(
        ["explain", str(inputs), "--model", str(model / "manifest.toml"), "--methods", "gradcam",
         *targets, "--out", str(out), "--quiet"]
    )  # fmt: skip
    info = run_cli(["info", str(inputs)])
    info_json = run_cli(["info", "--json", str(inputs)])
    return {"explain": explain, "info": info, "info_json": info_json, "out": out}


def test_no_control_character_reaches_the_terminal(hostile, sentinel):
    for key in ("explain", "info", "info_json"):
        outcome = hostile[key]
        assert_clean(outcome)
        assert outcome.returncode == 0, outcome.describe()
        raw = [c for c in outcome.output if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F]
        assert not raw, (key, raw, outcome.describe())
    assert "Evil^\\x1b[2J\\x1b]0;pwned\\x07" in hostile["info"].stdout  # shown, not acted on
    assert "Chest \\x1b[31mred\\x9b6n" in hostile["info"].stdout
    assert "evil: \\x1b[31mred 1.000" in hostile["explain"].stdout


def test_file_names_that_are_not_utf8_are_written_and_named(hostile, sentinel):
    """The CR named b'\\xff\\xfe.dcm' is explained (its results named ``_xff_xfe``), the junk file
    named b'\\xfe\\xfd.dcm' is in problems.csv as ``\\xfe\\xfd``, and info's JSON is valid UTF-8
    naming both."""
    out = hostile["out"]
    images = {row[0] for row in _csv(out / "metrics.csv")[1:]}
    assert images == {"evil", "_xff_xfe"}, images
    assert (out / "_xff_xfe" / "predictions.json").is_file()
    problems = _csv(out / "problems.csv")
    assert len(problems) == 2 and problems[1][0].endswith("/\\xfe\\xfd.dcm"), problems
    document = json.loads(hostile["info_json"].stdout)
    paths = [s["path"] for s in document["series"]] + [s["path"] for s in document["skipped"]]
    assert sorted(Path(p).name for p in paths) == ["\\xfe\\xfd.dcm", "\\xff\\xfe.dcm", "evil.dcm"], paths


def test_csv_cells_are_never_formulas_and_numbers_stay_numbers(hostile, sentinel):
    rows = _csv(hostile["out"] / "metrics.csv")
    header, body = rows[0], rows[1:]
    targets = {row[header.index("target")] for row in body}
    assert targets == {
        '\'=HYPERLINK("http://evil.example/x","ok")',
        "'+1",
        "'@SUM(A1)",
        "'-2+3",
        "\\x1b[31mred",
    }, targets
    for row in body:
        for cell in row:
            assert not cell.startswith(FORMULA_START), (cell, row)
        assert 0 <= float(row[header.index("probability")]) <= 1
    from viewer.batch.row_files import rows_text
    from viewer.io.safe_text import csv_cell, csv_value

    table = rows_text([{"a": "-0.5000", "b": -0.5, "c": "-1e-05;0.2500", "d": "-x"}], ("a", "b", "c", "d"))
    assert table.decode().splitlines()[1] == "-0.5000,-0.5000,-1e-05;0.2500,'-x"
    for text in ("=1+1", "'=1+1", "-0.5", "plain"):
        assert csv_value(csv_cell(text)) == text


# --- the screenshot is an export --------------------------------------------------------------
_SCREENSHOT = """
import json, sys
from PySide6.QtWidgets import QLabel, QListWidget, QTableWidget
from viewer.ui import app
from viewer.ui.main_window import MainWindow

seen = []
grab = MainWindow.grab

def spy(window, *args):
    seen.extend(label.text() for label in window.findChildren(QLabel) if label.isVisible())
    for widget in window.findChildren(QListWidget):
        seen.extend(widget.item(i).text() for i in range(widget.count()))
    for table in window.findChildren(QTableWidget):
        seen.extend(
            table.item(r, c).text()
            for r in range(table.rowCount())
            for c in range(table.columnCount())
            if table.item(r, c) is not None
        )
    return grab(window, *args)

MainWindow.grab = spy
status = app.main(sys.argv[2:])
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"status": status, "seen": seen}, out)
"""


def _screenshot_texts(argv: list[str], out: Path) -> tuple[int, list[str]]:
    """Run ``saliency-viewer ARGV --screenshot`` offscreen in a child process (the app quits its
    QApplication when done) and return its status and every text the window shows (corner
    labels, list and table cells) when it is grabbed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-c", _SCREENSHOT, str(out), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.is_file(), result.stderr[-3000:]
    found = json.loads(out.read_text(encoding="utf-8"))
    return found["status"], found["seen"]


def test_the_screenshot_hides_patient_identifiers_unless_asked(tmp_path):
    study = _cr(
        tmp_path / "study.dcm",
        PatientName="Doe^Jane" + ESCAPES,
        PatientID="MRN-7741",
        PatientBirthDate="19610203",
        InstitutionName="St Elsewhere Clinic",
    )
    identifiers = ("Jane", "MRN-7741", "1961", "St Elsewhere")
    args = [str(study), "--model", "cxr_resnet18", "--methods", "gradcam", "--size", "1000x700"]
    status, texts = _screenshot_texts(
        [*args, "--screenshot", str(tmp_path / "hidden.png")], tmp_path / "a.json"
    )
    assert status == 0 and (tmp_path / "hidden.png").stat().st_size > 0
    shown = "\n".join(texts)
    assert "W " in shown and "Zoom" in shown, shown  # the corners were drawn, without identifiers
    assert not [word for word in identifiers if word in shown], shown
    status, texts = _screenshot_texts(
        [*args, "--show-phi", "--screenshot", str(tmp_path / "shown.png")], tmp_path / "b.json"
    )
    shown = "\n".join(texts)
    assert status == 0 and all(word in shown for word in identifiers), shown
    assert "\x1b" not in shown and "Jane\\x1b[2J" in shown
