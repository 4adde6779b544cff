"""``saliency-viewer explain`` over the bundled sample studies."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image as PILImage

from viewer.batch.explain_study import COLUMNS
from viewer.cli import main
from viewer.resources import resource_path


@pytest.fixture(scope="module")
def run_on_samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "out"
    code = main(
        [
            "explain",
            str(resource_path("samples", "dicom")),
            "--model",
            "cxr_resnet18",
            "--methods",
            # Shared-pass methods: a sampled one (integrated gradients) costs minutes on the CT's
            # 28 slices here, and has its own tests.
            "gradcam,guided-backprop,deconvnet",
            "--annotation",
            str(resource_path("samples", "annotations")),
            "--steps",
            "4",
            "--sanity",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    return code, out


def test_writes_maps_predictions_and_metrics_for_every_study(run_on_samples):
    code, out = run_on_samples
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["ct_0001", "cxr_0001", "cxr_0002", "metrics.csv"]
    cxr = np.load(out / "cxr_0001" / "gradcam.npy")
    assert cxr.shape == (1024, 1024) and cxr.dtype == np.float32
    ct = np.load(out / "ct_0001" / "gradcam.npy")
    assert ct.shape == (28, 512, 512)  # a series: one map per slice
    overlay = np.asarray(PILImage.open(out / "cxr_0001" / "gradcam.png"))
    assert overlay.shape == (1024, 1024, 3)
    predictions = json.loads((out / "cxr_0001" / "predictions.json").read_text())
    assert set(predictions["probability"]) == {
        "nodule",
        "consolidation",
        "effusion",
        "cardiomegaly",
        "pneumothorax",
    }
    assert predictions["probability"]["consolidation"] > 0.9
    assert len(json.loads((out / "ct_0001" / "predictions.json").read_text())["per_frame"]["nodule"]) == 28


def test_a_series_map_is_also_nifti_on_the_series_own_voxel_grid(run_on_samples):
    """Read back with SimpleITK, the map's grid is the one SimpleITK itself reads from the CT's
    DICOM files (size, spacing, origin, direction), and its voxels are the .npy's."""
    import SimpleITK as sitk

    _, out = run_on_samples
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(resource_path("samples", "dicom", "ct_0001"))))
    ct = reader.Execute()
    for method in ("gradcam", "guided-backprop", "deconvnet"):
        nifti = sitk.ReadImage(str(out / "ct_0001" / f"{method}.nii.gz"))
        assert nifti.GetSize() == ct.GetSize() == (512, 512, 28)
        np.testing.assert_allclose(nifti.GetSpacing(), ct.GetSpacing(), rtol=1e-5)
        np.testing.assert_allclose(nifti.GetOrigin(), ct.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(nifti.GetDirection(), ct.GetDirection(), atol=1e-6)
        corner = (511, 0, 27)
        np.testing.assert_allclose(
            nifti.TransformIndexToPhysicalPoint(corner), ct.TransformIndexToPhysicalPoint(corner), atol=1e-3
        )
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(nifti), np.load(out / "ct_0001" / f"{method}.npy")
        )
    assert not list((out / "cxr_0001").glob("*.nii.gz"))  # a radiograph has no voxel grid


def test_metrics_csv_has_one_row_per_image_and_method(run_on_samples):
    _, out = run_on_samples
    with (out / "metrics.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert len(rows) == 3 * 3
    by = {(r["image"], r["method"]): r for r in rows}
    chest = by["cxr_0001", "gradcam"]
    assert chest["target"] == "consolidation"
    assert chest["pointing_game"] == "1"  # Grad-CAM's peak is in the consolidation
    assert 0 < float(chest["iou_otsu"]) <= 1 and 0 < float(chest["energy_in_mask"]) <= 1
    assert float(chest["deletion_auc"]) < float(chest["insertion_auc"])
    assert chest["sanity_verdict"] == "model-sensitive"
    assert by["cxr_0001", "guided-backprop"]["sanity_verdict"] == "insensitive to the model"
    assert chest["pointing_game_marker"] in ("0", "1")  # the sample film has an "R" marker
    # The chest model on the head CT: its target has no annotation there, so no localization.
    ct = by["ct_0001", "gradcam"]
    assert ct["pointing_game"] == "" and ct["deletion_auc"] != ""


def test_refuses_to_overwrite_results_and_names_bad_arguments(run_on_samples, capsys, tmp_path):
    _, out = run_on_samples
    sample = str(resource_path("samples", "dicom", "cxr_0001.dcm"))
    assert main(["explain", sample, "--model", "cxr_resnet18", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        main(
            [
                "explain",
                sample,
                "--model",
                "cxr_resnet18",
                "--methods",
                "gradcam,nope",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err
    assert main(["explain", sample, "--model", "no_such_model", "--out", str(tmp_path)]) == 2
    assert "cxr_resnet18" in capsys.readouterr().err  # lists the bundled models
    assert (
        main(["explain", sample, "--model", "cxr_resnet18", "--target", "fracture", "--out", str(tmp_path)])
        == 2
    )
    assert "fracture" in capsys.readouterr().err


def test_two_targets_and_a_user_manifest_path(tmp_path):
    model_dir = tmp_path / "my_model"
    shutil.copytree(_bundled("cxr_resnet18"), model_dir)
    out = tmp_path / "out"
    sample = str(resource_path("samples", "dicom", "cxr_0002.dcm"))
    args = ["explain", sample, "--model", str(model_dir / "manifest.toml"), "--methods", "gradcam"]
    assert (
        main(
            [
                *args,
                "--target",
                "cardiomegaly",
                "--target",
                "effusion",
                "--steps",
                "0",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "cxr_0002").glob("*.npy")) == [
        "gradcam_cardiomegaly.npy",
        "gradcam_effusion.npy",
    ]


def _bundled(name):
    from viewer.inference.catalog import bundled_models

    return bundled_models()[name].parent


def test_dicom_results_for_a_pacs_beside_the_maps(tmp_path, capsys):
    """--dicom --anonymize: per map a Parametric Map over the CT series (all 28 slices, exact
    values), a fractional SEG over the film, a Secondary Capture of the PNG; de-identified; a PNG
    film gets a message and its ordinary results."""
    import highdicom as hd
    import pydicom

    png = tmp_path / "film.png"
    PILImage.fromarray(np.full((256, 256), 128, np.uint8)).save(png)
    out = tmp_path / "out"
    inputs = [str(resource_path("samples", "dicom", name)) for name in ("cxr_0001.dcm", "ct_0001")]
    code = main(
        [
            "explain",
            *inputs,
            str(png),
            "--model",
            "cxr_resnet18",
            "--methods",
            "gradcam",
            "--steps",
            "0",
            "--quiet",
            "--dicom",
            "--anonymize",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "film: no DICOM results for Grad-CAM: only DICOM images" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "film").iterdir()) == [
        "gradcam.npy",
        "gradcam.png",
        "predictions.json",
    ]

    ct = pydicom.dcmread(out / "ct_0001" / "gradcam.dcm")
    assert ct.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and ct.NumberOfFrames == 28
    assert str(ct.PatientName) == "ANONYMOUS^" and ct.PatientIdentityRemoved == "YES"
    values = np.load(out / "ct_0001" / "gradcam.npy")
    pm = hd.pm.ParametricMap.from_dataset(ct)
    from viewer.io import discover, load_series
    from viewer.io.dicom_export import anonymized_uid

    slices = load_series(discover([inputs[1]]).series[0]).frames  # the .npy's order
    uids = [anonymized_uid(frame.sop_instance_uid) for frame in slices]
    assert np.array_equal(pm.get_pixels_by_source_instance(uids, dtype=np.float32), values)

    film = pydicom.dcmread(out / "cxr_0001" / "gradcam.dcm")
    assert film.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and film.SegmentationType == "FRACTIONAL"
    assert film.SegmentSequence[0].SegmentLabel == "Grad-CAM evidence for consolidation"
    sc = pydicom.dcmread(out / "cxr_0001" / "gradcam_sc.dcm")
    assert np.array_equal(sc.pixel_array, np.asarray(PILImage.open(out / "cxr_0001" / "gradcam.png")))
    assert sc.BurnedInAnnotation == "NO" and str(sc.PatientName) == "ANONYMOUS^"
    assert film.StudyInstanceUID == sc.StudyInstanceUID != pydicom.dcmread(inputs[0]).StudyInstanceUID
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy:  # tests/io/test_dicom_validity.py fails where CI lacks it
        import subprocess

        for path in sorted(out.rglob("*.dcm")):
            report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
            errors = [line for line in report.stderr.splitlines() if line.startswith("Error")]
            assert errors == [], path


def test_anonymize_needs_dicom(tmp_path, capsys):
    sample = str(resource_path("samples", "dicom", "cxr_0001.dcm"))
    assert main(["explain", sample, "--model", "cxr_resnet18", "--anonymize", "--out", str(tmp_path)]) == 2
    assert "--dicom" in capsys.readouterr().err


def test_annotation_labels_are_matched_to_the_models_and_named_when_not(tmp_path, capsys):
    sample = resource_path("samples", "dicom", "cxr_0002.dcm")
    boxes = tmp_path / "BBox_List_2017.csv"
    boxes.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "cxr_0002.png,Cardiomegaly,300.0,500.0,420.0,260.0,,,\n"
        "cxr_0002.png,Infiltrate,100.0,200.0,50.0,60.0,,,\n"
        "00099999_000.png,Mass,1,2,3,4,,,\n"
    )
    out = tmp_path / "out"
    code = main(["explain", str(sample), "--model", "cxr_resnet18", "--methods", "gradcam",
                 "--target", "cardiomegaly", "--annotation", str(boxes), "--steps", "0", "--quiet",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "labels Infiltrate match none of the model's labels" in err
    with (out / "metrics.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["annotation_label"] == "Cardiomegaly" and row["pointing_game"] != ""


def test_a_study_that_cannot_be_read_is_named_and_the_run_goes_on(tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    data = resource_path("samples", "dicom", "cxr_0001.dcm").read_bytes()
    (films / "a_cut_short.dcm").write_bytes(data[: len(data) // 3])  # header intact, pixels cut off
    (films / "b_whole.dcm").write_bytes(data)
    out = tmp_path / "out"
    args = ["explain", str(films), "--model", "cxr_resnet18", "--methods", "gradcam", "--steps", "0"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("a_cut_short.dcm") == 1 and "Traceback" not in err  # named once
    with open(out / "metrics.csv", newline="") as f:
        assert [row["image"] for row in csv.DictReader(f)] == ["b_whole"]
    assert sorted(p.name for p in out.iterdir()) == ["b_whole", "metrics.csv", "problems.csv"]
    with open(out / "problems.csv", newline="") as f:
        (problem,) = list(csv.DictReader(f))
    assert problem["source"] == "a_cut_short" and "a_cut_short.dcm" in problem["reason"]


def test_files_discovery_cannot_read_are_named_and_the_run_goes_on(tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    (films / "film.dcm").write_bytes(resource_path("samples", "dicom", "cxr_0001.dcm").read_bytes())
    (films / "junk.dcm").write_bytes(b"DICM" * 10)  # not DICOM whatever its name says
    out = tmp_path / "out"
    args = ["explain", str(films), "--model", "cxr_resnet18", "--methods", "gradcam", "--steps", "0"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    assert "junk.dcm" in capsys.readouterr().err
    with open(out / "problems.csv", newline="") as f:
        (problem,) = list(csv.DictReader(f))
    assert "junk.dcm" in problem["source"] and "not a DICOM file" in problem["reason"]
    with open(out / "metrics.csv", newline="") as f:
        assert [row["image"] for row in csv.DictReader(f)] == ["film"]


def test_resume_redoes_only_what_a_killed_run_left_unfinished(tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    for name in ("cxr_0001", "cxr_0002"):
        shutil.copy(resource_path("samples", "dicom", f"{name}.dcm"), films / f"{name}.dcm")
    out = tmp_path / "out"
    args = ["explain", str(films), "--model", "cxr_resnet18", "--methods", "gradcam", "--steps", "2"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    whole = (out / "metrics.csv").read_text()
    first = (out / "cxr_0001" / "gradcam.npy").read_bytes()
    # As a run killed while committing the second study leaves it: its folder moved in, its rows
    # half-written, another study's files still in staging.
    lines = whole.splitlines(keepends=True)
    (out / "metrics.csv").write_text("".join(lines[:2]) + lines[2][:10])
    (out / ".partial" / "cxr_0002-dead").mkdir(parents=True)
    assert main([*args, "--quiet", "--out", str(out)]) == 2  # results there: --resume, or a new folder
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--quiet", "--resume", "--out", str(out)]) == 0
    assert "1 studies were done already" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["cxr_0001", "cxr_0002", "metrics.csv"]
    assert (out / "cxr_0001" / "gradcam.npy").read_bytes() == first  # not redone

    def cells(text):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(text.splitlines())]

    assert cells((out / "metrics.csv").read_text()) == cells(whole)


def test_faithfulness_curves_are_opt_in_with_steps_adapted_to_the_input(tmp_path):
    from viewer.explain import explain
    from viewer.explain.comparison import score_map
    from viewer.explain.faithfulness import adaptive_steps
    from viewer.inference.catalog import bundled_models
    from viewer.inference.model import LoadedModel
    from viewer.io import discover
    from viewer.io.loader import load_series

    assert (adaptive_steps(224, 224), adaptive_steps(64, 64), adaptive_steps(1024, 1024)) == (49, 10, 50)
    film = resource_path("samples", "dicom", "cxr_0001.dcm")
    args = ["explain", str(film), "--model", "cxr_resnet18", "--methods", "gradcam", "--quiet"]

    def row(*extra):
        out = tmp_path / "-".join(extra or ("plain",))
        assert main([*args, *extra, "--out", str(out)]) == 0
        with open(out / "metrics.csv", newline="") as f:
            (only,) = list(csv.DictReader(f))
        return only

    plain = row()
    assert plain["deletion_auc"] == plain["insertion_auc"] == ""  # no extra forwards unless asked
    asked = row("--faithfulness")
    model = LoadedModel.from_manifest(bundled_models()["cxr_resnet18"])
    image = load_series(discover([film]).series[0])
    smap = explain(model, image, ["gradcam"]).maps[0]
    expected = score_map(model, image, smap, 0, steps=adaptive_steps(*model.manifest.input.size))
    assert float(asked["deletion_auc"]) == pytest.approx(expected.deletion_auc, abs=1e-4)
    assert float(asked["insertion_auc"]) == pytest.approx(expected.insertion_auc, abs=1e-4)
    assert row("--steps", "3")["deletion_auc"] != asked["deletion_auc"]  # --steps N still sets them
