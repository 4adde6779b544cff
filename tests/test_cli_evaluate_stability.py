"""``saliency-viewer evaluate --stability``: per image and method, how alike the maps are across the
checkpoints a manifest lists and across seeds of the random methods; the numbers recomputed from
the maps with scikit-image and scipy, in process and on a Dask cluster alike."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest
import scipy.stats
from skimage.metrics import structural_similarity

from tests.checkpoint_copies import PERTURBED, RANDOM, TRAINED, three_checkpoints
from viewer.cli import main
from viewer.explain.stability import protocol_map
from viewer.explain.stability_runs import compared_frame, one_map, top_label
from viewer.inference.catalog import resolve_model
from viewer.inference.manifest import load_manifest
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.loader import load_series
from viewer.io.naming import series_name


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stability_phantoms")
    assert main(["phantom", "cxr", "--n", "2", "--size", "256", "--seed", "5", "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return three_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def evaluate(films, model, out, methods, *extra) -> int:
    return main(
        ["evaluate", str(films / "dicom"), "--model", str(model),
         "--annotation", str(films / "annotations"), "--methods", methods,
         "--bootstrap", "50", "--quiet", "--out", str(out), *extra]
    )  # fmt: skip


def expected(model: LoadedModel, first: LoadedModel, film, method: str, seed: int = 0):
    """A checkpoint's map of ``film`` as the pass makes it: the compared frame, the first
    checkpoint's top label; its protocol map."""
    image = load_series(discover([film]).series[0])
    frame = compared_frame(image)
    target = top_label(first, image, frame)
    return protocol_map(one_map(model, image, method, target, frame, seed).frame(frame))


@pytest.fixture(scope="module")
def by_checkpoints(films, checkpoints, tmp_path_factory):
    """The output folder of one run across the three checkpoints, and what it printed."""
    out = tmp_path_factory.mktemp("evaluated") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert evaluate(films, checkpoints, out, "gradcam", "--stability", "checkpoints") == 0
    return out, printed.getvalue()


def test_checkpoint_pairs_equal_scikit_image_and_scipy_and_rank_trained_perturbed_random(
    films, checkpoints, by_checkpoints
):
    table = read(by_checkpoints[0] / "stability.csv")
    assert {r["kind"] for r in table} == {"checkpoints"} and {r["method"] for r in table} == {"gradcam"}
    films_found = sorted({r["image"] for r in table})
    assert len(films_found) == 2 and len(table) == 2 * 3  # every pair of three checkpoints per film
    manifest = load_manifest(checkpoints / "manifest.toml")
    models = {w.stem: LoadedModel(manifest.checkpoint(w)) for w in manifest.checkpoints}
    film = sorted((films / "dicom").rglob("*.dcm"))[0]
    maps = {n: expected(m, models[TRAINED], film, "gradcam") for n, m in models.items()}
    rows = [r for r in table if r["image"] == series_name(discover([film]).series[0])]
    assert len(rows) == 3
    for row in rows:
        a, b = maps[row["model_a"]], maps[row["model_b"]]
        assert float(row["ssim"]) == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-3)
        rho = scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
        assert float(row["spearman"]) == pytest.approx(rho, abs=1e-3)
    for image in films_found:
        ssim = {(r["model_a"], r["model_b"]): float(r["ssim"]) for r in table if r["image"] == image}
        assert ssim[TRAINED, PERTURBED] > ssim[TRAINED, RANDOM]


def test_summary_per_method_in_the_csv_the_report_and_the_terminal(by_checkpoints):
    out, printed = by_checkpoints
    (summary,) = read(out / "stability_summary.csv")
    assert summary["method"] == "gradcam" and summary["kind"] == "checkpoints" and summary["n"] == "6"
    mean = sum(float(r["ssim"]) for r in read(out / "stability.csv")) / 6
    assert float(summary["ssim"]) == pytest.approx(mean, abs=1e-4)  # the CSV keeps 4 decimals
    assert float(summary["ssim_low"]) <= mean <= float(summary["ssim_high"])
    line = f"gradcam across checkpoints: n=6 pairs, SSIM {mean:.3f}"
    assert line in printed
    report = (out / "report.html").read_text()
    assert "Stability of the maps" in report and line in report


@pytest.mark.slow  # ~40 s: SmoothGrad three times per film
def test_seed_pairs_only_for_the_random_methods(films, tmp_path):
    film = sorted((films / "dicom").rglob("*.dcm"))[0]  # one film: SmoothGrad is 50 passes a map
    out = tmp_path / "out"
    code = main(
        ["evaluate", str(film), "--model", "cxr_resnet18", "--annotation", str(films / "annotations"),
         "--methods", "gradcam,smoothgrad", "--stability", "seeds", "--stability-seeds", "2",
         "--bootstrap", "50", "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    (row,) = read(out / "stability.csv")
    assert row["method"] == "smoothgrad" and row["kind"] == "seeds"
    assert (row["seed_a"], row["seed_b"]) == ("0", "1")
    assert row["image"] == series_name(discover([film]).series[0])
    model = LoadedModel.from_manifest(resolve_model("cxr_resnet18"))
    a, b = (expected(model, model, film, "smoothgrad", seed) for seed in (0, 1))
    assert float(row["ssim"]) == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-3)
    assert 0 < float(row["ssim"]) < 1  # two seeds, two different maps


def test_checkpoints_of_a_single_weights_model_are_refused_before_anything_runs(films, tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate(films, "cxr_resnet18", out, "gradcam", "--stability", "checkpoints") == 2
    err = capsys.readouterr().err
    assert "names one weights file" in err and "manifest.toml" in err
    assert not out.exists()


def test_on_a_local_cluster_the_rows_equal_the_in_process_ones(films, checkpoints, by_checkpoints, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    assert evaluate(films, checkpoints, out, "gradcam", "--stability", "checkpoints", "--workers", "2") == 0

    def measured(folder):
        keep = ("image", "method", "target", "kind", "model_a", "model_b", "ssim", "spearman")
        return sorted(tuple(r[k] for k in keep) for r in read(folder / "stability.csv"))

    assert measured(out) == measured(by_checkpoints[0])
