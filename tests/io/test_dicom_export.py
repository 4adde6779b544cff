"""Saliency exports for a PACS: the Parametric Map (float values, references, codes, window) over
sources in a frame of reference, the fractional Segmentation over radiographs, and the Secondary
Capture, with and without anonymisation, from files, series, multi-frame objects and ZIPs.
(tests/io/test_dicom_validity.py runs an independent validator on each.)"""

from __future__ import annotations

import hashlib
import shutil
import zipfile

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from viewer.io import discover, load_series
from viewer.io.dicom_export import (
    anonymized_uid,
    write_parametric_map,
    write_saliency_map,
    write_secondary_capture,
)
from viewer.resources import resource_path

CHEST = resource_path("samples", "dicom", "cxr_0001.dcm")
HEAD_CT = resource_path("samples", "dicom", "ct_0001")
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"


def open_image(path):
    return load_series(discover([path]).series[0])


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def digests(path) -> dict[str, str]:
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): digest(f) for f in files if f.is_file()}


@pytest.fixture(scope="module")
def chest():
    return open_image(CHEST)


@pytest.fixture(scope="module")
def head_ct():
    return open_image(HEAD_CT)


def saliency(shape, *, signed=False, seed=0):
    values = np.random.default_rng(seed).random(shape, dtype=np.float32)
    return values * 2 - 1 if signed else values


def pm_export(image, values, frames, out, **kwargs):
    """The map's values in the object that fits the source (Parametric Map or fractional SEG)."""
    options = {"method": "gradcam", "target": "effusion", "model_name": "cxr_resnet18"} | kwargs
    write_saliency_map(image, values, frames=frames, out=out, **options)
    return out


def seg_values(ds, uid: str, frame: int | None = None) -> np.ndarray:
    """A fractional saliency SEG's map for one source instance (or frame): for minus against."""
    seg = hd.seg.Segmentation.from_dataset(ds)
    if frame is None:
        fractions = seg.get_pixels_by_source_instance([uid], combine_segments=False, rescale_fractional=True)
    else:
        fractions = seg.get_pixels_by_source_frame(
            uid, [frame + 1], combine_segments=False, rescale_fractional=True
        )
    return fractions[..., 0] - (fractions[..., 1] if fractions.shape[-1] > 1 else 0)


def references(ds) -> list[tuple[str, int | None]]:
    """Per output frame: the referenced source SOP Instance UID and frame number."""
    out = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0]
        number = source.get("ReferencedFrameNumber")
        out.append((str(source.ReferencedSOPInstanceUID), None if number is None else int(number)))
    return out


def test_radiograph_map_is_a_fractional_segmentation_with_references_and_codes(tmp_path, chest):
    """A film has no frame of reference, which a Parametric Map requires: its map is a FRACTIONAL
    (PROBABILITY) Segmentation on the film's grid, values to 1/255."""
    before = digest(CHEST)
    values = saliency((1, chest.rows, chest.columns))
    path = pm_export(chest, values, [0], tmp_path / "map.dcm")

    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == SEGMENTATION
    assert (ds.SegmentationType, ds.SegmentationFractionalType) == ("FRACTIONAL", "PROBABILITY")
    assert ds.StudyInstanceUID == chest.identity.study_uid
    assert ds.SeriesInstanceUID != chest.identity.series_uid
    assert ds.PatientID == chest.identity.patient_id
    assert ds.SeriesDescription == "gradcam: effusion (cxr_resnet18)"
    assert ds.ContentLabel == "SALIENCY"
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert references(ds) == [(chest.frames[0].sop_instance_uid, None)]
    (segment,) = ds.SegmentSequence
    assert segment.SegmentLabel == "gradcam evidence for effusion"
    kind = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning) == (
        "130402",
        "DCM",
        "Class activation",
    )
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert "cxr_resnet18" in segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion

    read = seg_values(ds, chest.frames[0].sop_instance_uid)
    assert np.abs(read - values).max() <= 0.5 / 255 + 1e-6
    assert digest(CHEST) == before


def test_signed_radiograph_map_keeps_both_signs_and_values_beyond_one(tmp_path, chest):
    values = saliency((1, chest.rows, chest.columns), signed=True) * 1.5  # a map reaching -1.5..1.5
    ds = pydicom.dcmread(
        pm_export(
            chest, values, [0], tmp_path / "map.dcm", convention="signed", method="integrated-gradients"
        )
    )
    assert [s.SegmentLabel for s in ds.SegmentSequence] == [
        "integrated-gradients evidence for effusion",
        "integrated-gradients evidence against effusion",
    ]
    scale = float(np.abs(values).max())
    assert f"values / {scale:.6g}" in ds.ContentDescription
    read = seg_values(ds, chest.frames[0].sop_instance_uid) * scale
    assert np.abs(read - values).max() <= 0.5 / 255 * scale + 1e-5


def test_parametric_map_refuses_a_projection_radiograph(tmp_path, chest):
    with pytest.raises(ValueError, match="frame of reference"):
        write_parametric_map(
            chest,
            saliency((1, chest.rows, chest.columns)),
            frames=[0],
            out=tmp_path / "pm.dcm",
            method="gradcam",
            target="effusion",
            model_name="cxr_resnet18",
        )
    assert list(tmp_path.iterdir()) == []


def test_ct_map_of_some_slices_lands_on_those_slices(tmp_path, head_ct):
    before = digests(HEAD_CT)
    frames = [3, 10, 11]
    values = saliency((3, head_ct.rows, head_ct.columns), signed=True)
    path = pm_export(
        head_ct, values, frames, tmp_path / "map.dcm", method="integrated-gradients", convention="signed"
    )

    ds = pydicom.dcmread(path)
    uids = [head_ct.frames[i].sop_instance_uid for i in frames]
    assert sorted(references(ds)) == sorted((uid, None) for uid in uids)
    assert ds.FrameOfReferenceUID == pydicom.dcmread(head_ct.frames[0].source).FrameOfReferenceUID
    # Each output frame sits where its source slice is.
    position_of = {f.sop_instance_uid: f.position for f in head_ct.frames}
    for item, (uid, _) in zip(ds.PerFrameFunctionalGroupsSequence, references(ds), strict=True):
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert position == pytest.approx(position_of[uid])
    mapping = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == "130404"
    voi = ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    assert (float(voi.WindowCenter), float(voi.WindowWidth)) == (0.0, 2.0)
    # Grey: a palette indexes integer values, and these are float (the SC carries the colours).
    assert ds.PixelPresentation == "MONOCHROME"
    assert "RedPaletteColorLookupTableData" not in ds
    mapping = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.LUTLabel == "SALIENCY"
    assert all(
        word in mapping.LUTExplanation for word in ("integrated-gradients", "effusion", "cxr_resnet18")
    )
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "1"
    assert mapping.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"

    pixels = hd.pm.ParametricMap.from_dataset(ds).get_pixels_by_source_instance(uids, dtype=np.float32)
    assert np.array_equal(pixels, values)
    assert digests(HEAD_CT) == before


@pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent the intended person name")
@pytest.mark.parametrize(("name", "frame"), [("eCT_Supplemental.dcm", 1), ("examples_ybr_color.dcm", 5)])
def test_multiframe_source_references_the_exported_frame(tmp_path, testdata, name, frame):
    """An enhanced CT (with geometry) and a multi-frame ultrasound (without): the map references
    the right frame of the one source instance."""
    image = open_image(testdata(name))
    values = saliency((1, image.rows, image.columns))
    ds = pydicom.dcmread(pm_export(image, values, [frame], tmp_path / "map.dcm"))
    uid = image.frames[frame].sop_instance_uid
    assert references(ds) == [(uid, frame + 1)]
    if ds.SOPClassUID == PARAMETRIC_MAP:  # the CT, in its frame of reference
        pm = hd.pm.ParametricMap.from_dataset(ds)
        pixels = pm.get_pixels_by_source_frame(uid, [frame + 1], dtype=np.float32)
        assert np.array_equal(pixels, values)
    else:  # the ultrasound clip has no frame of reference
        assert ds.SOPClassUID == SEGMENTATION and name == "examples_ybr_color.dcm"
        assert np.abs(seg_values(ds, uid, frame) - values).max() <= 0.5 / 255 + 1e-6


def test_zip_member_source(tmp_path):
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(CHEST, "images/cxr_0001.dcm")
    before = digest(archive)
    image = open_image(archive)
    assert image.frames[0].source == f"{archive}!/images/cxr_0001.dcm"
    values = saliency((1, image.rows, image.columns))

    ds = pydicom.dcmread(pm_export(image, values, [0], tmp_path / "map.dcm"))
    assert references(ds) == [(image.frames[0].sop_instance_uid, None)]
    sc = pydicom.dcmread(
        write_secondary_capture(
            image, np.zeros((64, 80, 3), np.uint8), frame=0, out=tmp_path / "sc.dcm", description="x"
        )
    )
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == image.frames[0].sop_instance_uid
    assert digest(archive) == before


def test_secondary_capture_of_a_screenshot(tmp_path, chest, testdata):
    before = digest(CHEST)
    rgb = np.random.default_rng(1).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    ds = pydicom.dcmread(
        write_secondary_capture(chest, rgb, frame=0, out=tmp_path / "sc.dcm", description="Grad-CAM: nodule")
    )
    assert ds.SOPClassUID == SECONDARY_CAPTURE
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.BurnedInAnnotation == "YES"
    assert ds.StudyInstanceUID == chest.identity.study_uid
    assert ds.SeriesInstanceUID != chest.identity.series_uid
    assert ds.SeriesDescription == "Grad-CAM: nodule"
    assert ds.PhotometricInterpretation == "RGB"
    assert np.array_equal(ds.pixel_array, rgb)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == chest.frames[0].sop_instance_uid
    # A screenshot of another size is not on the image's grid: no spacing, orientation unknown.
    assert "PixelSpacing" not in ds
    assert not ds.PatientOrientation
    assert digest(CHEST) == before

    # On the grid of an axial CT slice: spacing and orientation carry over.
    ct = open_image(testdata("CT_small.dcm"))
    on_grid = np.zeros((ct.rows, ct.columns, 3), np.uint8)
    ds = pydicom.dcmread(
        write_secondary_capture(ct, on_grid, frame=0, out=tmp_path / "ct.dcm", description="x")
    )
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx(
        [ct.geometry.row_spacing, ct.geometry.col_spacing]
    )
    assert list(ds.PatientOrientation) == ["L", "P"]


def leaks(ds, secrets: set[str]) -> list[tuple[str, str]]:
    """Text attributes anywhere in ``ds`` (sequences included) that contain one of ``secrets``."""
    found = []

    def visit(_, element):
        if element.VR not in ("SQ", "OB", "OW", "OF", "OD"):
            found.extend((element.keyword, s) for s in secrets if s in str(element.value))

    ds.walk(visit)
    return found


def test_anonymized_exports_hide_the_patient_and_the_original_uids(tmp_path, testdata):
    source_path = testdata("CT_small.dcm")
    before = digest(source_path)
    source = pydicom.dcmread(source_path)
    image = open_image(source_path)
    pm_path = pm_export(image, saliency((1, 128, 128)), [0], tmp_path / "map.dcm", anonymize=True)
    sc_path = write_secondary_capture(
        image,
        np.zeros((128, 128, 3), np.uint8),
        frame=0,
        out=tmp_path / "sc.dcm",
        description="x",
        anonymize=True,
    )
    secrets = {
        str(source.PatientName),
        source.PatientID,
        source.InstitutionName,
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        source.SOPInstanceUID,
        source.FrameOfReferenceUID,
    }
    studies = set()
    for path in (pm_path, sc_path):
        ds = pydicom.dcmread(path)
        assert leaks(ds, secrets) == []
        assert str(ds.PatientName) == "ANONYMOUS^"
        assert ds.PatientID == "ANONYMOUS"
        assert not ds.PatientBirthDate and not ds.AccessionNumber
        assert "InstitutionName" not in ds
        studies.add(ds.StudyInstanceUID)
    # Consistent replacement: both exports form one study and reference the renamed source.
    assert studies == {anonymized_uid(source.StudyInstanceUID)}
    assert references(pydicom.dcmread(pm_path)) == [(anonymized_uid(source.SOPInstanceUID), None)]
    assert digest(source_path) == before

    plain = pydicom.dcmread(pm_export(image, saliency((1, 128, 128)), [0], tmp_path / "plain.dcm"))
    assert plain.PatientName == source.PatientName and plain.StudyInstanceUID == source.StudyInstanceUID
    assert leaks(plain, secrets)  # the check does see them where they are


def test_never_overwrites(tmp_path, chest):
    values = saliency((1, chest.rows, chest.columns))
    path = pm_export(chest, values, [0], tmp_path / "map.dcm")
    written = digest(path)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        pm_export(chest, values, [0], path)
    rgb = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_secondary_capture(chest, rgb, frame=0, out=path, description="x")
    assert digest(path) == written

    # Not even onto the source file itself.
    copy = shutil.copy(CHEST, tmp_path / "source.dcm")
    before = digest(copy)
    image = open_image(copy)
    with pytest.raises(FileExistsError):
        pm_export(image, values, [0], copy)
    assert digest(copy) == before


def test_rejects_bad_input_without_writing(tmp_path, chest):
    out = tmp_path / "map.dcm"
    with pytest.raises(ValueError, match="expected"):
        pm_export(chest, np.zeros((1, 10, 10), np.float32), [0], out)
    with pytest.raises(ValueError, match="NaN"):
        pm_export(chest, np.full((1, chest.rows, chest.columns), np.nan, np.float32), [0], out)
    with pytest.raises(ValueError, match="outside"):
        pm_export(chest, np.zeros((1, chest.rows, chest.columns), np.float32), [3], out)
    with pytest.raises(ValueError, match="convention"):
        pm_export(chest, np.zeros((1, chest.rows, chest.columns), np.float32), [0], out, convention="x")
    with pytest.raises(ValueError, match="uint8"):
        write_secondary_capture(chest, np.zeros((10, 10, 3), np.float32), frame=0, out=out, description="x")
    assert list(tmp_path.iterdir()) == []


def test_raster_images_are_refused(tmp_path):
    png = tmp_path / "film.png"
    PILImage.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    image = open_image(png)
    with pytest.raises(ValueError, match="only DICOM"):
        pm_export(image, np.zeros((1, 40, 50), np.float32), [0], tmp_path / "map.dcm")
    with pytest.raises(ValueError, match="only DICOM"):
        write_secondary_capture(
            image, np.zeros((40, 50, 3), np.uint8), frame=0, out=tmp_path / "sc.dcm", description="x"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.png"]
