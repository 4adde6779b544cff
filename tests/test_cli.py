"""The headless command line: ``saliency-viewer info``."""

import json
import subprocess
import sys

import numpy as np

from tests.synthetic import head_volume
from viewer.cli import main
from viewer.io.dicom_writer import write_ct_series, write_radiograph


def _study(tmp_path):
    write_ct_series(head_volume(6, 64), tmp_path / "ct", spacing=(5.0, 0.5, 0.5))
    write_radiograph(
        np.random.default_rng(0).random((80, 64)), tmp_path / "cxr.dcm", photometric="MONOCHROME1"
    )
    (tmp_path / "junk.txt").write_text("hello")
    return tmp_path


def test_info_json_lists_series_and_skipped(tmp_path, capsys):
    folder = _study(tmp_path)
    assert main(["info", "--json", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    by_modality = {s["modality"]: s for s in report["series"]}
    ct, dx = by_modality["CT"], by_modality["DX"]
    assert ct["slices"] == 6
    assert len(ct["paths"]) == 6
    assert (ct["rows"], ct["columns"]) == (64, 64)
    assert ct["photometric"] == "MONOCHROME2"
    assert ct["slice_spacing"] == 5.0
    assert ct["window"] == {"center": 40.0, "width": 80.0, "function": "LINEAR"}
    assert dx["frames"] == 1
    assert dx["photometric"] == "MONOCHROME1"
    assert dx["path"].endswith("cxr.dcm")
    assert dx["transfer_syntax"] == "Explicit VR Little Endian"
    assert report["skipped"] == [
        {
            "path": str(folder / "junk.txt"),
            "reason": "not a DICOM file or a supported image (PNG, JPEG, TIFF)",
        }
    ]


def test_info_text_names_series_and_skipped_files(tmp_path, capsys):
    folder = _study(tmp_path)
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "CT Head CT: 64 x 64, 6 slices" in out
    assert "5 mm apart" in out
    assert "junk.txt: not a DICOM file" in out
    assert out.strip().endswith("2 series from 8 file(s); 1 skipped")


def test_info_on_nothing_useful_fails(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert main(["info", str(tmp_path / "a.txt"), str(tmp_path / "missing")]) == 1
    out = capsys.readouterr().out
    assert "missing: no such file or folder" in out


def test_info_without_a_path_lists_the_bundled_samples(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "3 series from 30 file(s); 0 skipped" in out and "ct_0001" in out


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "viewer", "info", "--json", str(_study(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["series"]) == 2


def test_no_arguments_shows_the_bundled_samples(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.count("Chest PA:") == 2
    assert "28 slices" in out
    assert out.strip().endswith("3 series from 30 file(s); 0 skipped")
