"""Previews written on a second thread while the next film is computed: a study is committed only
once its writes are done, and one whose writes fail is left out with the reason, as in line."""

from __future__ import annotations

import csv
import threading

import pytest

import viewer.batch.explain_study as explain_study
from viewer.batch.background_writes import BackgroundWrites
from viewer.cli import main
from viewer.resources import resource_path


def test_wait_raises_the_first_failure_only_after_every_write_of_the_folder_finished(tmp_path):
    finished, release = [], threading.Event()

    def slow(name):
        release.wait(10)
        finished.append(name)

    def broken():
        raise OSError("disk full")

    with BackgroundWrites() as writes:
        writes.submit(tmp_path / "a", broken)
        writes.submit(tmp_path / "a", slow, "a")
        writes.submit(tmp_path / "b", slow, "b")
        release.set()
        with pytest.raises(OSError, match="disk full"):
            writes.wait(tmp_path / "a")
        assert "a" in finished  # the folder's other write was not left running
        writes.wait(tmp_path / "b")
        assert sorted(finished) == ["a", "b"]
        writes.submit(tmp_path / "c", broken)
        writes.discard(tmp_path / "c")  # a failed study's writes: waited for, errors dropped
        writes.wait(tmp_path / "c")  # nothing left for it


def test_a_study_whose_preview_fails_is_left_out_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    films = tmp_path / "films"
    films.mkdir()
    data = resource_path("samples", "dicom", "cxr_0001.dcm").read_bytes()
    for name in ("a_first", "b_broken", "c_last"):
        (films / f"{name}.dcm").write_bytes(data)
    write_preview = explain_study._write_preview
    writer_threads = set()

    def failing_for_b(painter, saliency, convention, path, encode):
        writer_threads.add(threading.current_thread().name)
        if path.parent.name.startswith("b_broken"):
            raise OSError(28, "No space left on device")
        write_preview(painter, saliency, convention, path, encode)

    monkeypatch.setattr(explain_study, "_write_preview", failing_for_b)
    out = tmp_path / "out"
    args = ["explain", str(films), "--model", "cxr_resnet18", "--methods", "gradcam,gradient", "--steps", "0"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    assert writer_threads and all(t.startswith("study-files") for t in writer_threads)
    err = capsys.readouterr().err
    assert "b_broken" in err and "No space left on device" in err and "Traceback" not in err
    with open(out / "metrics.csv", newline="") as f:
        assert sorted({row["image"] for row in csv.DictReader(f)}) == ["a_first", "c_last"]
    assert sorted(p.name for p in out.iterdir()) == ["a_first", "c_last", "metrics.csv", "problems.csv"]
    for study in ("a_first", "c_last"):
        assert sorted(p.name for p in (out / study).glob("*.png")) == ["gradcam.png", "gradient.png"]
    with open(out / "problems.csv", newline="") as f:
        (problem,) = list(csv.DictReader(f))
    assert problem["source"] == "b_broken" and "No space left on device" in problem["reason"]
