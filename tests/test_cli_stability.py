"""``saliency-viewer stability`` end to end: a manifest of three checkpoints of one architecture
(the trained demo model, a copy with small weight noise, a re-initialised network) ranked by how
alike their maps are to the trained one's, and the files the command writes."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from tests.checkpoint_copies import PERTURBED, RANDOM, TRAINED, three_checkpoints
from viewer.cli import main
from viewer.resources import resource_path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A folder with manifest.toml naming three weights files of the demo chest ResNet-18."""
    return three_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_trained_perturbed_and_random_checkpoints_rank_in_that_order(checkpoints, tmp_path, capsys):
    films = [str(resource_path("samples", "dicom", f"cxr_000{i}.dcm")) for i in (1, 2)]
    out = tmp_path / "out"
    code = main(
        ["stability", *films, "--model", str(checkpoints), "--methods", "gradcam",
         "--shift", "2,-1", "--window", "1.25", "--bootstrap", "50", "--out", str(out)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = rows(out / "stability.csv")
    name = "Chest X-ray findings (demo, ResNet-18) [{}]"
    pairs = {
        (r["image"], r["model_b"]): float(r["ssim"])
        for r in table
        if r["kind"] == "models" and r["model_a"] == name.format(TRAINED)
    }
    spearman = {
        (r["image"], r["model_b"]): float(r["spearman"])
        for r in table
        if r["kind"] == "models" and r["model_a"] == name.format(TRAINED)
    }
    for image in ("cxr_0001", "cxr_0002"):
        assert pairs[image, name.format(PERTURBED)] > pairs[image, name.format(RANDOM)]
        assert spearman[image, name.format(PERTURBED)] > spearman[image, name.format(RANDOM)]
    # 2 films x 3 pairs of models, and per film and model one shift and one window row.
    kinds = [r["kind"] for r in table]
    assert kinds.count("models") == 6 and kinds.count("shift") == 6 and kinds.count("window") == 6
    # No --target: every model explains the first model's top label of each film.
    assert all(r["method"] == "gradcam" for r in table)
    assert len({(r["image"], r["target"]) for r in table}) == 2
    maps = out / "maps" / "cxr_0001" / "gradcam"
    stack = [
        np.load(maps / f"Chest X-ray findings (demo_ ResNet-18) [{c}].npy")
        for c in (TRAINED, PERTURBED, RANDOM)
    ]
    assert stack[0].shape == (1024, 1024)
    from viewer.explain.stability import protocol_map

    scaled = np.stack([protocol_map(m) for m in stack])
    np.testing.assert_allclose(np.load(maps / "agreement.npy"), scaled.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.load(maps / "disagreement.npy"), scaled.std(0), atol=1e-5)
    summary = rows(out / "summary.csv")
    assert {(r["method"], r["kind"]) for r in summary} == {
        ("gradcam", "models"),
        ("gradcam", "shift"),
        ("gradcam", "window"),
    }
    models_row = next(r for r in summary if r["kind"] == "models")
    assert models_row["n"] == "6" and float(models_row["ssim_low"]) <= float(models_row["ssim"]) <= float(
        models_row["ssim_high"]
    )

    # A second run refuses the folder; --resume skips the films already there.
    assert (
        main(["stability", *films, "--model", str(checkpoints), "--methods", "gradcam", "--out", str(out)])
        == 2
    )
    assert "--resume" in capsys.readouterr().err
    again = [
        "stability",
        *films,
        "--model",
        str(checkpoints),
        "--methods",
        "gradcam",
        "--out",
        str(out),
        "--resume",
    ]
    assert main(again) == 0
    assert len(rows(out / "stability.csv")) == len(table)


def test_models_with_other_labels_are_refused_before_anything_is_written(tmp_path, capsys):
    film = str(resource_path("samples", "dicom", "cxr_0001.dcm"))
    out = tmp_path / "out"
    assert (
        main(["stability", film, "--model", "cxr_resnet18", "--model", "ct_resnet18", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert "same labels" in err and "Traceback" not in err
    assert not (out / "stability.csv").exists()


def test_a_missing_checkpoint_is_named(checkpoints, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(checkpoints, broken)
    (broken / f"{RANDOM}.safetensors").unlink()
    film = str(resource_path("samples", "dicom", "cxr_0001.dcm"))
    assert main(["stability", film, "--model", str(broken), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{RANDOM}.safetensors" in err and "Traceback" not in err


def test_lipschitz_rows_equal_the_library_estimate_and_are_summarised(tmp_path, capsys):
    film = resource_path("samples", "dicom", "cxr_0001.dcm")
    out = tmp_path / "out"
    code = main(
        ["stability", str(film), "--model", "cxr_resnet18", "--methods", "gradcam", "--lipschitz-std", "0.05",
         "--samples", "2", "--seed", "3", "--bootstrap", "50", "--out", str(out)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (row,) = rows(out / "stability.csv")
    assert row["kind"] == "lipschitz" and row["perturbation"] == "gaussian noise sd=0.05"
    from viewer.explain.stability_runs import compared_frame, lipschitz_estimate
    from viewer.inference.catalog import bundled_models
    from viewer.inference.model import LoadedModel
    from viewer.io import discover
    from viewer.io.loader import load_series

    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([film]).series[0])
    frame = compared_frame(image)
    library = lipschitz_estimate(model, image, "gradcam", row["target"], frame, std=0.05, samples=2, seed=3)
    assert float(row["lipschitz"]) == pytest.approx(library.lipschitz, abs=5e-5)  # 4 decimals in the CSV
    (summary,) = rows(out / "summary.csv")
    assert float(summary["lipschitz"]) == pytest.approx(library.lipschitz, abs=5e-5)
    assert "Lipschitz" in capsys.readouterr().out
