"""Mutated annotation files of every format, loaded in process and drawn on the images they name:
each case either loads (and its masks draw) or is refused with an :class:`AnnotationError` whose
reason is one non-empty line; never another exception, a crash, a hang or a contained crash of a
native decoder (pycocotools runs in the decoder worker, so its crash would not take pytest down,
but it would mean a check let a bad polygon through, and fails here).

Mutations, from a fixed seed: numbers replaced by huge, negative, NaN, infinite or fractional
values; truncation; byte flips; duplicated and deleted chunks; for binary formats also header
fields overwritten with extreme integers. A few hundred cases per format, each test ~15 s at most.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pycocotools import mask as coco
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from viewer.io import discover
from viewer.io.annotations import AnnotationError, load_annotation
from viewer.io.loader import load_series
from viewer.resources import resource_path

SEED = 20240611
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's, on every mutated header
NUMBERS = (
    "1e18", "-1e18", "NaN", "Infinity", "-Infinity", "1e999", "-1", "0", "-0.0", "0.5", "65536",
    "2147483648", "4294967296", "18446744073709551617", "9" * 40, "1e-300", "true", "null", '"7"', "[]",
)  # fmt: skip
# The catch-all's wording for an exception no reader meant to raise (a missing check).
UNEXPECTED = re.compile(
    r"\((TypeError|KeyError|IndexError|AttributeError|OverflowError|RecursionError|MemoryError)"
)
_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")
MAX_CASE_SECONDS = 3.0


def mutate(data: bytes, rng: np.random.Generator, header: int | None = None) -> bytes:
    """One mutation of ``data``; binary files (``header`` = the bytes that hold their sizes) get
    header fields overwritten with extreme integers too."""
    kind = int(rng.integers(7 if header else 6))
    numbers = list(_NUMBER.finditer(data)) if header is None else []
    if kind <= 1 and numbers:
        out = data
        for match in sorted(rng.choice(numbers, min(len(numbers), int(rng.integers(1, 4))), replace=False),
                            key=lambda m: -m.start()):  # fmt: skip
            out = (
                out[: match.start()] + NUMBERS[int(rng.integers(len(NUMBERS)))].encode() + out[match.end() :]
            )
        return out
    if kind == 2:
        return data[: int(rng.integers(len(data)))]
    if kind == 3:
        out = bytearray(data)
        span = header or len(out)
        for _ in range(int(rng.integers(1, 6))):
            out[int(rng.integers(min(span, len(out))))] ^= 1 << int(rng.integers(8))
        return bytes(out)
    a, b = sorted(int(v) for v in rng.integers(0, len(data), 2))
    if kind == 4:
        at = int(rng.integers(len(data)))
        return data[:at] + data[a : b + 1] * int(rng.integers(1, 4)) + data[at:]
    if kind == 5:
        return data[:a] + data[b:]
    width = int(rng.choice([2, 4, 8]))
    at = int(rng.integers(0, max(1, min(header, len(data)) - width)))
    extremes = (0, 1, 2 ** (width * 4) - 1, 2 ** (width * 8 - 1), 2 ** (width * 8) - 1)
    value = extremes[int(rng.integers(len(extremes)))]
    return data[:at] + value.to_bytes(width, "little") + data[at + width :]


def film(path: Path, rows: int, cols: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.arange(rows * cols).reshape(rows, cols) % 251).astype(np.uint8)).save(path)
    return load_series(discover([path]).series[0])


def run_cases(path: Path, valid: bytes, images, cases: int, *, header=None, strict=True) -> Counter:
    """Write ``cases`` mutations of ``valid`` to ``path``, load each and draw it on ``images``."""
    rng = np.random.default_rng(SEED)
    outcomes: Counter = Counter()
    for n in range(cases):
        data = mutate(valid, rng, header)
        path.write_bytes(data)
        start = time.monotonic()
        try:
            annotation = load_annotation(path)
            for image in images:
                annotation.mask(image)
            outcomes["drawn"] += 1
        except AnnotationError as exc:
            message = str(exc)
            assert exc.reason and "\n" not in message and str(path) in message, (n, message)
            assert "crashed" not in message, (n, message, data[:300])
            if strict:
                assert not UNEXPECTED.search(message), (n, message, data[:300])
            outcomes["refused"] += 1
        seconds = time.monotonic() - start
        assert seconds < MAX_CASE_SECONDS, (n, seconds, data[:300])
    assert outcomes["drawn"] and outcomes["refused"], outcomes  # the mutations reach both ends
    return outcomes


# ---- text formats ---------------------------------------------------------------------------


def _coco_file() -> bytes:
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 30:50] = 1
    rle = coco.encode(np.asfortranarray(mask))  # valid input: pycocotools in process is safe here
    data = {
        "images": [
            {"id": 1, "file_name": "case.png", "height": 64, "width": 80},
            {"id": 2, "file_name": "other.png", "height": 32, "width": 32},
        ],
        "categories": [{"id": 1, "name": "nodule"}, {"id": 2, "name": "mass"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 40.5, 5, 40, 30, 5, 30]]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [64, 80], "counts": rle["counts"].decode()}},
            {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [32, 32], "counts": [100, 20, 904]}},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [2, 3, 10.5, 12]},
        ],
    }  # fmt: skip
    return json.dumps(data).encode()


def _chexlocalize_file(segmentation: bool) -> bytes:
    image_id = "patient1_study1_view1_frontal"
    if segmentation:
        mask = np.zeros((64, 80), np.uint8)
        mask[10:50, 5:30] = 1
        counts = coco.encode(np.asfortranarray(mask))["counts"].decode()
        return json.dumps({image_id: {"Edema": {"size": [64, 80], "counts": counts}}}).encode()
    polygon = [[5, 5], [60.5, 8], [70, 50], [10, 60]]
    return json.dumps(
        {image_id: {"img_size": [64, 80], "Edema": [polygon], "Atelectasis": [[[1, 1], [9, 1], [5, 9]]]}}
    ).encode()


TEXT_FORMATS = {
    "coco": ("instances.json", _coco_file, ("case.png", 64, 80), ("other.png", 32, 32)),
    "chexlocalize-polygons": (
        "gt_annotations_val.json", lambda: _chexlocalize_file(False),
        ("patient1/study1/view1_frontal.png", 64, 80),
    ),
    "chexlocalize-rle": (
        "gt_segmentations_val.json", lambda: _chexlocalize_file(True),
        ("patient1/study1/view1_frontal.png", 64, 80),
    ),
    "nih": (
        "BBox_List_2017.csv",
        lambda: (
            b"Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
            b"case.png,Mass,10.5,12,20,15,,,\ncase.png,Nodule,1,2,3,4,,,\n"
        ),
        ("case.png", 64, 80),
    ),
    "rsna": (
        "stage_2_train_labels.csv",
        lambda: b"patientId,x,y,width,height,Target\ncase,10,12,20.5,15,1\nnone,,,,,0\ncase,30,40,5,5,1\n",
        ("case.png", 64, 80),
    ),
    "vindr": (
        "annotations_train.csv",
        lambda: (
            b"image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n"
            b"case,R1,Mass,10,12,30.5,27\ncase,R2,No finding,,,,\n"
        ),
        ("case.png", 64, 80),
    ),
    "siim": (
        "train-rle.csv",
        lambda: b"ImageId,EncodedPixels\ncase,100 20 44 30 600 12\ncase,1 5 10 5\nnone,-1\n",
        ("case.png", 64, 80),
    ),
}  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", TEXT_FORMATS)
def test_fuzz_text_formats(tmp_path, name):
    file_name, make, *shapes = TEXT_FORMATS[name]
    images = [film(tmp_path / "images" / image, rows, cols) for image, rows, cols in shapes]
    valid = make()
    assert load_annotation(_write(tmp_path / file_name, valid)).regions  # the seed file is sound
    outcomes = run_cases(tmp_path / file_name, valid, images, 600)
    print(name, dict(outcomes))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_fuzz_phantom_ground_truth(tmp_path):
    sample = resource_path("samples", "annotations")
    root = tmp_path / "set"
    shutil.copytree(sample, root / "annotations", ignore=shutil.ignore_patterns("ct_*", "*.dcm"))
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    valid = (root / "annotations" / "cxr_0001.json").read_bytes()
    run_cases(root / "annotations" / "cxr_0001.json", valid, [image], 250)


# ---- binary formats -------------------------------------------------------------------------


def test_fuzz_png_mask(tmp_path):
    image = film(tmp_path / "case.png", 64, 80)
    mask = np.zeros((64, 80), np.uint8)
    mask[10:30, 20:60] = 255
    PILImage.fromarray(mask).save(tmp_path / "case_nodule.png")
    valid = (tmp_path / "case_nodule.png").read_bytes()
    run_cases(tmp_path / "case_nodule.png", valid, [image], 300, header=33, strict=False)


@pytest.fixture(scope="module")
def ct():
    """The sample CT's first 8 slices at every 8th pixel (8 x 64 x 64): its geometry, at a size
    where placing a label map or contours on it costs milliseconds a case."""
    full = load_series(discover([resource_path("samples", "dicom", "ct_0001")]).series[0])
    spacing = full.geometry.spacing
    geometry = dataclasses.replace(full.geometry, spacing=(spacing[0], spacing[1] * 8, spacing[2] * 8))
    return dataclasses.replace(
        full, pixels=full.pixels[:8, ::8, ::8].copy(), geometry=geometry, frames=full.frames[:8]
    )


def test_fuzz_nifti_label_map(tmp_path, ct):
    import SimpleITK as sitk

    labels = np.zeros((4, 16, 16), np.uint8)
    labels[1:3, 4:10, 6:12] = 1
    labels[3, 1:3, 1:3] = 2
    image = sitk.GetImageFromArray(labels)
    slice_mm, row_mm, col_mm = ct.geometry.spacing
    image.SetSpacing([col_mm * ct.columns / 16, row_mm * ct.rows / 16, slice_mm * ct.n_frames / 4])
    image.SetOrigin(ct.geometry.origin)
    image.SetDirection(ct.geometry.direction)
    sitk.WriteImage(image, str(tmp_path / "map_bleed.nii"))  # uncompressed: mutations reach the header
    valid = (tmp_path / "map_bleed.nii").read_bytes()
    assert load_annotation(tmp_path / "map_bleed.nii").matches(ct)
    run_cases(tmp_path / "map_bleed.nii", valid, [ct], 500, header=352, strict=False)


def _rtstruct(path: Path, first) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    roi, contours = Dataset(), Dataset()
    roi.ROINumber, roi.ROIName = 1, "Bleed"
    contours.ReferencedROINumber = 1
    position = np.asarray(first.ImagePositionPatient, float)
    square = [np.add(position, (c, r, 0)) for c, r in ((40, 40), (190, 40), (190, 180), (40, 180))]  # mm
    item = Dataset()
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = 4
    item.ContourData = [round(float(v), 2) for p in square for v in p]
    reference = Dataset()
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    item.ContourImageSequence = Sequence([reference])
    contours.ContourSequence = Sequence([item])
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence([roi]), Sequence([contours])
    ds.save_as(path, enforce_file_format=True)


def test_fuzz_rtstruct(tmp_path, ct):
    first = pydicom.dcmread(
        resource_path("samples", "dicom", "ct_0001", "CT0001.dcm"), stop_before_pixels=True
    )
    _rtstruct(tmp_path / "rs.dcm", first)
    valid = (tmp_path / "rs.dcm").read_bytes()
    assert load_annotation(tmp_path / "rs.dcm").matches(ct)
    run_cases(tmp_path / "rs.dcm", valid, [ct], 400, header=len(valid), strict=False)


def test_fuzz_dicom_seg(tmp_path):
    source = resource_path("samples", "annotations", "cxr_0001_seg.dcm")
    image = load_series(discover([resource_path("samples", "dicom", "cxr_0001.dcm")]).series[0])
    header = _pixel_offset(source.read_bytes())
    assert 0 < header < source.stat().st_size
    for name, value, words in (
        ("Rows", 0, "no pixels"),
        ("NumberOfFrames", 10**6, "beyond the budget"),
    ):  # the sizes a header may claim, each on its own
        dataset = pydicom.dcmread(source)
        setattr(dataset, name, value)
        dataset.save_as(tmp_path / f"{name}.dcm")
        with pytest.raises(AnnotationError, match=words):
            load_annotation(tmp_path / f"{name}.dcm")
    run_cases(tmp_path / "seg.dcm", source.read_bytes(), [image], 120, header=header, strict=False)


def _pixel_offset(data: bytes) -> int:
    """Where the Pixel Data element starts: mutations of the header are the ones that matter."""
    at = data.rfind(struct.pack("<HH", 0x7FE0, 0x0010))
    return at if at > 0 else len(data)
