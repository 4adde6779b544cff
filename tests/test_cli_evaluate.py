"""``saliency-viewer evaluate``: CheXlocalize's protocol over a data set, with bootstrap intervals,
the radiologists' own agreement, resumable output and a report."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy import stats

from viewer.cli import main
from viewer.explain import explain
from viewer.explain.evaluation import SUMMARY, bootstrap_mean, reader_agreement, truths
from viewer.explain.localization import iou, localization
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.annotations import load_annotation
from viewer.io.label_vocabulary import LabelMatcher
from viewer.io.loader import load_series


def evaluate_phantoms(phantoms) -> list[str]:
    """The command line that evaluates the phantom set with the demo model."""
    return [
        "evaluate",
        str(phantoms / "dicom"),
        "--model",
        "cxr_resnet18",
        "--annotation",
        str(phantoms / "annotations"),
    ]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantoms")
    assert main(["phantom", "cxr", "--n", "5", "--size", "512", "--seed", "11", "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def evaluated(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "out"
    code = main(["evaluate", str(phantoms / "dicom"), "--model", "cxr_resnet18", "--annotation",
                 str(phantoms / "annotations"), "--methods", "gradcam,guided-backprop", "--bootstrap", "300",
                 "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def test_per_image_scores_are_the_localization_of_the_same_maps(phantoms, evaluated):
    rows = read(evaluated / "per_image.csv")
    scored = [r for r in rows if r["iou"] != ""]
    assert scored and {r["method"] for r in scored} == {"gradcam", "guided-backprop"}
    row = next(r for r in scored if r["method"] == "gradcam")
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(
        next(s for s in discover([phantoms / "dicom"]).series if row["image"] in str(s.paths[0]))
    )
    annotation = load_annotation(phantoms / "annotations" / f"{row['image']}.json")
    truth = truths(image, [annotation], model.manifest.label_matcher())[row["label"]]
    smap = explain(model, image, ["gradcam"], targets=[row["label"]]).maps[0]
    expected = localization(smap.array, truth.union)
    assert float(row["iou"]) == pytest.approx(expected.iou_otsu, abs=1e-4)
    assert float(row["hit"]) == float(expected.pointing_game_strict)


def test_summary_has_intervals_per_label_and_method(evaluated):
    summary = read(evaluated / "summary.csv")
    assert tuple(summary[0]) == SUMMARY
    rows = read(evaluated / "per_image.csv")
    for line in summary:
        values = [
            float(r["iou"])
            for r in rows
            if r["label"] == line["label"] and r["method"] == line["method"] and r["iou"]
        ]
        assert int(line["n"]) == len(values)
        if len(values) > 1:
            assert float(line["miou"]) == pytest.approx(np.mean(values), abs=1e-4)
            assert float(line["miou_low"]) <= float(line["miou"]) <= float(line["miou_high"])
    report = (evaluated / "report.html").read_text()
    assert "data:image/png;base64," in report and "percentile bootstrap" in report


def test_bootstrap_interval_agrees_with_scipy():
    values = np.random.default_rng(3).beta(2, 5, size=40)
    mean, low, high = bootstrap_mean(values, n=20_000, seed=1)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=20_000, method="percentile", random_state=1)
    assert mean == pytest.approx(values.mean())
    assert low == pytest.approx(theirs.confidence_interval.low, abs=0.004)
    assert high == pytest.approx(theirs.confidence_interval.high, abs=0.004)


def test_radiologists_row_is_their_pairwise_agreement(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a1", "a2"):
        PILImage.fromarray(np.full((256, 256), 100, np.uint8)).save(images / f"{name}.png")
    (tmp_path / "annotations_train.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
        "a1,R1,Cardiomegaly,50,100,150,160\n"
        "a1,R2,Cardiomegaly,60,100,160,170\n"
        "a1,R3,Cardiomegaly,200,10,220,30\n"
        "a2,R1,Pleural effusion,10,10,60,60\n"
    )
    annotation = load_annotation(tmp_path / "annotations_train.csv")
    image = load_series(discover([images / "a1.png"]).series[0])
    matcher = LabelMatcher(("cardiomegaly", "effusion"))
    truth = truths(image, [annotation], matcher)["cardiomegaly"]
    boxes = [truth.readers[r][0] for r in ("R1", "R2", "R3")]
    expected_iou = np.mean([iou(boxes[0], boxes[1]), iou(boxes[0], boxes[2]), iou(boxes[1], boxes[2])])
    # Centroids: R1 (100, 130) lies in R2, R2 (110, 135) in R1, R3 in neither: 2 of 6 ordered pairs.
    assert reader_agreement(truth) == pytest.approx({"iou": expected_iou, "hit": 2 / 6})
    out = tmp_path / "out"
    boxes_file = str(tmp_path / "annotations_train.csv")
    args = ["evaluate", str(images), "--model", "cxr_resnet18", "--annotation", boxes_file]
    assert main([*args, "--methods", "gradcam", "--bootstrap", "50", "--quiet", "--out", str(out)]) == 0
    human = [r for r in read(out / "summary.csv") if r["method"] == "radiologists"]
    assert [(r["label"], r["n"]) for r in human] == [("cardiomegaly", "1")]
    assert float(human[0]["miou"]) == pytest.approx(expected_iou, abs=1e-4)


def test_resume_after_a_crash_neither_loses_nor_repeats_images(phantoms, tmp_path, capsys):
    out = tmp_path / "out"
    args = evaluate_phantoms(phantoms)
    args += ["--methods", "gradcam", "--bootstrap", "50", "--quiet", "--out", str(out)]
    assert main(args) == 0
    complete = read(out / "per_image.csv")
    pictures = sorted(p.relative_to(out) for p in (out / "thumbnails").rglob("*.png"))
    text = (out / "per_image.csv").read_text()
    lines = text.splitlines(keepends=True)
    last_image = complete[-1]["image"]
    kept = [ln for ln in lines if not ln.startswith(last_image + ",")]
    (out / "per_image.csv").write_text("".join(kept) + last_image + ",nodule,gradc")  # killed mid-line
    assert main(args) == 2  # not without --resume
    assert main([*args, "--resume"]) == 0
    resumed = read(out / "per_image.csv")
    assert sorted(map(tuple, (r.values() for r in resumed))) == sorted(
        map(tuple, (r.values() for r in complete))
    )
    assert sorted(p.relative_to(out) for p in (out / "thumbnails").rglob("*.png")) == pictures
    (phantoms / "dicom" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    try:
        assert main([*args[:-1], str(tmp_path / "out2")]) == 0
    finally:
        (phantoms / "dicom" / "broken.dcm").unlink()
    assert any("broken.dcm" in r["source"] for r in read(tmp_path / "out2" / "problems.csv"))


def test_split_thresholds_tune_on_validation_images_and_report_the_rest(evaluated, phantoms, tmp_path):
    from viewer.explain.evaluation import THRESHOLDS, summarise, validation_images

    rows = read(evaluated / "per_image.csv")
    scored = [r for r in rows if r["iou"]]
    assert all(len(r["iou_by_threshold"].split(";")) == len(THRESHOLDS) for r in scored)
    out = tmp_path / "split"
    args = evaluate_phantoms(phantoms)
    args += [
        "--methods",
        "gradcam",
        "--bootstrap",
        "50",
        "--quiet",
        "--split-thresholds",
        "0.4",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = read(out / "summary.csv")
    per_image = read(out / "per_image.csv")
    validation = validation_images({r["image"] for r in per_image}, 0.4)
    assert len(validation) == round(0.4 * len({r["image"] for r in per_image}))
    for line in summary:
        group = [
            r for r in per_image if (r["label"], r["method"]) == (line["label"], line["method"]) and r["iou"]
        ]
        tune = [list(map(float, r["iou_by_threshold"].split(";"))) for r in group if r["image"] in validation]
        test = [
            list(map(float, r["iou_by_threshold"].split(";"))) for r in group if r["image"] not in validation
        ]
        if not tune or not test:
            assert line["threshold"] == ""
            continue
        best = int(np.argmax(np.mean(tune, axis=0)))
        assert float(line["threshold"]) == THRESHOLDS[best]
        assert float(line["miou_tuned"]) == pytest.approx(np.mean([c[best] for c in test]), abs=1e-3)
        assert int(line["n_tuned"]) == len(test)
    assert any(line["threshold"] for line in summary)  # at least one label was tuned and tested
    assert summarise([], validation=set()) == []
    assert main([*args[:-1], str(tmp_path / "bad"), "--split-thresholds", "1.5"]) == 2


def test_report_shows_each_methods_best_and_worst_images_with_map_and_outline(evaluated):
    from viewer.io.overlay import OUTLINE_RGB

    rows = [r for r in read(evaluated / "per_image.csv") if r["method"] != "radiologists" and r["iou"]]
    report = (evaluated / "report.html").read_text()
    for label, method in {(r["label"], r["method"]) for r in rows}:
        scored = sorted(
            (float(r["iou"]), r["image"]) for r in rows if (r["label"], r["method"]) == (label, method)
        )
        folder = evaluated / "thumbnails" / label / method
        # The three best and the three worst of the images annotated with the label, each once.
        kept = {name for _, name in scored[:3] + scored[-3:]}
        assert sorted(p.stem for p in folder.glob("*.png")) == sorted(kept)
        top_iou, top = scored[-1]
        assert f"best: {top}, IoU {top_iou:.2f}" in report
        low_iou, low = scored[0]
        if len(scored) > 1:  # a label on one image only shows it once, as a best
            assert f"worst: {low}, IoU {low_iou:.2f}" in report
        picture = np.asarray(PILImage.open(folder / f"{top}.png").convert("RGB"))
        assert max(picture.shape[:2]) == 200
        assert (picture == OUTLINE_RGB).all(axis=-1).any()  # the annotation is outlined
    assert report.count("data:image/png;base64,") >= len(rows) // 2  # charts and pictures inlined


def test_gallery_keeps_the_k_best_and_worst_on_disk_and_prunes_the_rest(tmp_path):
    from viewer.batch.evaluation_gallery import Gallery

    gallery = Gallery(tmp_path, k=2)
    for n, score in enumerate([0.5, 0.9, 0.1, 0.7, 0.3, 0.95, 0.05]):
        gallery.offer("effusion", "gradcam", f"img{n}", score, lambda: b"png")
    best, worst = gallery.chosen("effusion", "gradcam")
    assert best == [(0.95, "img5"), (0.9, "img1")] and worst == [(0.05, "img6"), (0.1, "img2")]
    assert sorted(p.stem for p in (tmp_path / "effusion" / "gradcam").iterdir()) == [
        "img1",
        "img2",
        "img5",
        "img6",
    ]
    (tmp_path / "effusion" / "gradcam" / "left_by_a_crash.png").write_bytes(b"png")
    gallery.prune()
    assert len(list((tmp_path / "effusion" / "gradcam").iterdir())) == 4


@pytest.mark.slow
@pytest.mark.timeout(3600)  # about 20 minutes on 2 cores: 100 films of 1024 x 1024 explained and scored
def test_evaluate_on_50_fresh_phantoms_equals_the_saliency_report(tmp_path, monkeypatch, capsys):
    """The issue's benchmark: ``evaluate`` over 50 fresh chest phantoms with the demo model gives
    per-label intervals, and pooled over labels the numbers ``models/saliency_report.py`` gives
    for the same maps (same films: the same seed through the same phantom writer)."""
    import json
    import sys

    from models import saliency_report

    methods, seed = "gradcam,guided-backprop", 4242
    table = tmp_path / "report.json"
    argv = [
        "saliency_report.py",
        "--n",
        "50",
        "--seed",
        str(seed),
        "--methods",
        methods,
        "--json",
        str(table),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    assert saliency_report.main() == 0
    report = json.loads(table.read_text())["methods"]
    films = tmp_path / "phantoms"
    assert main(["phantom", "cxr", "--n", "50", "--seed", str(seed), "--out", str(films)]) == 0
    out = tmp_path / "out"
    args = [
        *evaluate_phantoms(films),
        "--methods",
        methods,
        "--bootstrap",
        "500",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    capsys.readouterr()
    rows = [
        r for r in read(out / "per_image.csv") if r["method"] != "radiologists" and r["false_positive"] == "0"
    ]
    for method in methods.split(","):
        ours = [r for r in rows if r["method"] == method]
        assert len(ours) == report[method]["n"]
        for column, key in (("iou", "iou_otsu"), ("energy", "energy_inside"), ("auprc", "auprc")):
            mean = np.mean([float(r[column]) for r in ours if r[column]])
            assert mean == pytest.approx(report[method][key], abs=1e-4), (method, column)
    summary = read(out / "summary.csv")
    labelled = [r for r in summary if r["method"] in methods.split(",") and int(r["n"]) >= 5]
    assert {r["label"] for r in labelled} >= {"consolidation", "effusion"}
    for r in labelled:
        assert float(r["miou_low"]) <= float(r["miou"]) <= float(r["miou_high"])
        assert float(r["miou_low"]) < float(r["miou_high"])
