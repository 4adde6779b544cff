"""``saliency-viewer evaluate`` on a real Dask cluster (worker processes on loopback): the same rows
as the in-process run, in any order, and a bad study reported, not lost."""

from __future__ import annotations

import csv
import io

import pydicom
import pytest
from pydicom.uid import generate_uid

from viewer.cli import main

distributed = pytest.importorskip("distributed")


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rows_of(out) -> list[tuple]:
    return sorted(tuple(r.values()) for r in read(out / "per_image.csv"))


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster_phantoms")
    assert main(["phantom", "cxr", "--n", "4", "--size", "256", "--seed", "21", "--out", str(folder)]) == 0
    return folder


def evaluate(films, out, *extra) -> int:
    return main(
        ["evaluate", str(films / "dicom"), "--model", "cxr_resnet18",
         "--annotation", str(films / "annotations"), "--methods", "gradcam,guided-backprop",
         "--bootstrap", "100", "--quiet", "--out", str(out), *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def in_process(films, tmp_path_factory):
    out = tmp_path_factory.mktemp("here") / "out"
    assert evaluate(films, out) == 0
    return out


def test_a_local_cluster_of_two_workers_gives_the_in_process_rows(films, in_process, tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate(films, out, "--workers", "2") == 0
    assert "2 Dask workers; dashboard http" in capsys.readouterr().err
    assert rows_of(out) == rows_of(in_process)  # bit-equal maps give equal scores, in any order
    assert read(out / "summary.csv") == read(in_process / "summary.csv")
    pictures = sorted(p.relative_to(out) for p in (out / "thumbnails").rglob("*.png"))
    assert pictures == sorted(p.relative_to(in_process) for p in (in_process / "thumbnails").rglob("*.png"))
    assert all((out / p).read_bytes() == (in_process / p).read_bytes() for p in pictures)


def test_a_running_scheduler_takes_the_studies_and_a_bad_one_is_listed(films, in_process, tmp_path):
    broken = films / "dicom" / "zz_broken.dcm"
    ds = pydicom.dcmread(next((films / "dicom").glob("*.dcm")))
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()  # a study of its own
    buffer = io.BytesIO()
    ds.save_as(buffer)
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # its pixel data cut off
    try:
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster:
            assert evaluate(films, tmp_path / "out", "--scheduler", cluster.scheduler_address) == 0
    finally:
        broken.unlink()
    assert rows_of(tmp_path / "out") == rows_of(in_process)
    problems = read(tmp_path / "out" / "problems.csv")
    assert [p["source"] for p in problems] == ["zz_broken"] and "pixel" in problems[0]["reason"]


def test_an_unreachable_scheduler_is_named(films, tmp_path, capsys):
    assert evaluate(films, tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9") == 2
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written: the same folder works once it is up
