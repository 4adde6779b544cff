"""Every DICOM object the viewer writes passes an independent validator: David Clunie's ``dciodvfy``
(Debian's dicom3tools, installed by .ci/run), from radiographs (CR, DX: no frame of reference) and
from CT (a patient frame of reference), phantom and real (pydicom-data), plain and anonymised.

A test fails on any "Error" line. The validator's warnings are reported as pytest warnings (the
summary at the end of the run lists them); the README's export section says which remain and why.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.system import need_program
from viewer.io import discover, load_series
from viewer.io.annotation_writer import save_annotation_seg
from viewer.io.annotations import load_annotation
from viewer.io.dicom_export import write_saliency_map, write_secondary_capture
from viewer.io.dicom_writer import StudyInfo, write_radiograph
from viewer.resources import resource_path

SAMPLES = resource_path("samples")
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


class DciodvfyWarning(UserWarning):
    """A warning line of dciodvfy about an object the viewer wrote."""


@pytest.fixture(scope="module")
def dciodvfy() -> str:
    return need_program("dciodvfy")  # Debian's dicom3tools


def validate(dciodvfy: str, path: Path) -> list[str]:
    """dciodvfy's error lines for ``path``; its warnings go to pytest's warnings summary."""
    done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    for line in lines:
        if line.startswith("Warning"):
            warnings.warn(f"dciodvfy {path.name}: {line}", DciodvfyWarning, stacklevel=2)
    return [line for line in lines if line.startswith("Error")]


def open_image(path):
    return load_series(discover([path]).series[0])


def _dx_film(folder: Path) -> Path:
    """A DX radiograph (For Presentation, Image Laterality) as the writer makes them."""
    film = np.random.default_rng(3).random((256, 200))
    return write_radiograph(
        film, folder / "dx.dcm", modality="DX", study=StudyInfo(study_description="Chest")
    )


SOURCES = {
    "phantom CR MONOCHROME1": lambda tmp: SAMPLES / "dicom" / "cxr_0002.dcm",
    "phantom CR": lambda tmp: SAMPLES / "dicom" / "cxr_0001.dcm",
    "phantom DX": _dx_film,
    "phantom head CT series": lambda tmp: SAMPLES / "dicom" / "ct_0001",
    "real chest CR (RG1, zero pixel spacing)": lambda tmp: _testdata("RG1_UNCR.dcm"),
    "real extremity CR (RG3)": lambda tmp: _testdata("RG3_UNCR.dcm"),
    "real head CT without frame of reference (CQ500)": lambda tmp: _testdata("693_UNCR.dcm"),
    "real CT": lambda tmp: _testdata("CT_small.dcm"),
}


def _testdata(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"pydicom test file {name} is missing: is pydicom-data installed?")
    return Path(path)


@pytest.mark.parametrize("anonymize", [False, True], ids=["identified", "anonymised"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_saliency_exports_pass_the_validator(tmp_path, dciodvfy, source, anonymize):
    image = open_image(SOURCES[source](tmp_path))
    frames = [min(10, image.n_frames - 1)] + ([11] if image.n_frames > 11 else [])
    rng = np.random.default_rng(0)
    shape = (len(frames), image.rows, image.columns)
    unit = rng.random(shape, dtype=np.float32)
    options = {"target": "effusion", "model_name": "cxr_resnet18", "anonymize": anonymize}
    written = {}
    written["map"] = write_saliency_map(
        image, unit, frames=frames, out=tmp_path / "map.dcm", method="gradcam", **options
    )
    signed = unit * 2 - 1
    written["signed"] = write_saliency_map(
        image,
        signed,
        frames=frames,
        out=tmp_path / "signed.dcm",
        method="integrated-gradients",
        convention="signed",
        **options,
    )
    on_grid = rng.integers(0, 256, (image.rows, image.columns, 3), dtype=np.uint8)
    write_secondary_capture(
        image, on_grid, frame=frames[0], out=tmp_path / "sc.dcm", description="Grad-CAM", anonymize=anonymize
    )
    write_secondary_capture(
        image,
        on_grid[:100, :140],
        frame=frames[0],
        out=tmp_path / "sc_screenshot.dcm",
        description="Grad-CAM",
        anonymize=anonymize,
        burned_in_annotation=False,
    )
    for path in sorted(tmp_path.glob("*.dcm")):
        if path.name == "dx.dcm":
            continue
        assert validate(dciodvfy, path) == [], path.name

    # Re-read: the object that fits the source, its references and exact (PM) or 1/255 (SEG) values.
    has_frame = image.modality == "CT"
    assert written == ({"map": "pm", "signed": "pm"} if has_frame else {"map": "seg", "signed": "seg"})
    uids = [image.frames[i].sop_instance_uid for i in frames]
    ds = pydicom.dcmread(tmp_path / "map.dcm")
    source_study = image.identity.study_uid
    assert (ds.StudyInstanceUID == source_study) != anonymize
    if anonymize:
        from viewer.io.dicom_export import anonymized_uid

        uids = [anonymized_uid(uid) for uid in uids]
        assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod
    if has_frame:
        assert ds.SOPClassUID == PARAMETRIC_MAP
        pixels = hd.pm.ParametricMap.from_dataset(ds).get_pixels_by_source_instance(uids, dtype=np.float32)
        assert np.array_equal(pixels, unit)
    else:
        assert ds.SOPClassUID == SEGMENTATION
        seg = hd.seg.Segmentation.from_dataset(ds)
        fractions = seg.get_pixels_by_source_instance(uids, combine_segments=False, rescale_fractional=True)
        assert np.abs(fractions[..., 0] - unit).max() <= 0.5 / 255 + 1e-6
        signed_seg = hd.seg.segread(tmp_path / "signed.dcm")
        both = signed_seg.get_pixels_by_source_instance(uids, combine_segments=False, rescale_fractional=True)
        assert np.abs(both[..., 0] - both[..., 1] - signed).max() <= 0.5 / 255 + 1e-6
    sc = pydicom.dcmread(tmp_path / "sc_screenshot.dcm")
    assert sc.BurnedInAnnotation == "NO"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == uids[0]


@pytest.mark.parametrize(
    ("source", "truth"),
    [("cxr_0002.dcm", "cxr_0002.json"), ("ct_0001", "ct_0001.json")],
    ids=["radiograph", "head CT"],
)
def test_drawn_annotation_seg_passes_the_validator(tmp_path, dciodvfy, source, truth):
    image = open_image(SAMPLES / "dicom" / source)
    path = save_annotation_seg(load_annotation(SAMPLES / "annotations" / truth), image, tmp_path / "seg.dcm")
    assert validate(dciodvfy, path) == []
    assert pydicom.dcmread(path).SOPClassUID == SEGMENTATION


@pytest.mark.parametrize(
    "path",
    [
        "dicom/cxr_0001.dcm",
        "dicom/cxr_0002.dcm",
        "dicom/ct_0001/CT0001.dcm",
        "dicom/ct_0001/CT0028.dcm",
        "annotations/cxr_0001_seg.dcm",
        "annotations/cxr_0002_seg.dcm",
        "annotations/ct_0001_seg.dcm",
    ],
)
def test_bundled_phantom_studies_pass_the_validator(dciodvfy, path):
    assert validate(dciodvfy, SAMPLES / path) == []


def test_phantom_writer_dx_passes_the_validator(tmp_path, dciodvfy):
    assert validate(dciodvfy, _dx_film(tmp_path)) == []


def test_the_validator_does_find_errors(tmp_path, dciodvfy):
    """The check can fail: a copy of a sample without its mandatory Study Instance UID."""
    ds = pydicom.dcmread(SAMPLES / "dicom" / "cxr_0001.dcm")
    del ds.StudyInstanceUID
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    assert any("StudyInstanceUID" in line for line in validate(dciodvfy, broken))
