"""Annotation files built to crash the viewer or take all its memory, loaded as a user would: through
``saliency-viewer explain --annotation`` (a child process under a memory cap, its peak memory and
time measured) and in process through :func:`load_annotation` and the regions' masks.

Each case builds its own attack file. Before the fix: the 243-byte COCO polygon near 1e18 killed
the process with SIGSEGV inside pycocotools; the 228-byte COCO record declaring a 60000 x 60000
image took 7.1 GB and 37 s; the 489 KB ``.nii.gz`` declaring 2048 x 2048 x 1024 voxels 4.8 GB.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
import time
import tracemalloc
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.security.harness import HANG_S, ROOT, assert_refused, run_cli
from viewer.io import discover, isolated_decode
from viewer.io.annotation_formats.coco_rle import PolygonBatch
from viewer.io.annotation_formats.limits import REGION_AREA_FACTOR
from viewer.io.annotations import Annotation, AnnotationError, Region, load_annotation
from viewer.io.drawn_shapes import rasterize
from viewer.io.errors import Problem
from viewer.io.isolated_decode import DecoderPool, PolygonJob
from viewer.io.loader import load_series

MODEL = ROOT / "models" / "cxr_resnet18"
BUDGET = {"SALIENCY_VIEWER_LOAD_BYTES": "1G"}  # the same verdicts on any machine's memory
MAX_RSS = int(2.5 * 1024**3)


@pytest.fixture(autouse=True)
def _budget(monkeypatch):
    for name, value in BUDGET.items():
        monkeypatch.setenv(name, value)


# ---- attack files ---------------------------------------------------------------------------


def coco(images, annotations) -> str:
    return json.dumps(
        {"images": images, "categories": [{"id": 1, "name": "nodule"}], "annotations": annotations},
        separators=(",", ":"),
    )


def coco_polygon_1e18(path) -> None:
    """The 243-byte crash: a polygon whose points pycocotools converts to ``int`` unchecked."""
    text = coco(
        [{"id": 1, "file_name": "case.png", "height": 512, "width": 512}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[-1e18, -1e18, 10, 10, 50, 5, 60, 40]]}],
    )
    path.write_text(text)
    assert len(text) < 250


def coco_60000(path) -> None:
    text = coco(
        [{"id": 1, "file_name": "case.png", "height": 60000, "width": 60000}],
        [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10]]}],
    )
    path.write_text(text)
    assert len(text) < 240


def nifti1_header(dims, datatype=2, bitpix=8, offset=352.0, spacing=(1.0, 1.0, 1.0)) -> bytes:
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, *spacing, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, offset)
    struct.pack_into("<2h", header, 252, 0, 1)  # sform only
    struct.pack_into("<12f", header, 280, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0)
    header[344:348] = b"n+1\0"
    return bytes(header)


def gzip_of(head: bytes, zero_mb: int) -> bytes:
    """``head`` then ``zero_mb`` MiB of zeros, gzipped: about 1 KB per MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(
        [packer.compress(head), *(packer.compress(zeros) for _ in range(zero_mb)), packer.flush()]
    )


def nifti_bomb(path, zero_mb=480) -> None:
    """A label map declaring 2048 x 2048 x 1024 voxels (4.3 GB) in under 500 KB."""
    path.write_bytes(gzip_of(nifti1_header((2048, 2048, 1024)), zero_mb))


def png_bomb(path, side=30000) -> None:
    """A valid 1-bit PNG of ``side`` x ``side`` zeros: 110 KB on disk, 900 Mpx once inflated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def film(path, rows=256, cols=256):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray((np.arange(rows * cols).reshape(rows, cols) % 251).astype(np.uint8)).save(path)
    return load_series(discover([path]).series[0])


def refused(path, *words) -> str:
    """Loading ``path`` raises an AnnotationError naming it and ``words``, on one line."""
    with pytest.raises(AnnotationError) as caught:
        load_annotation(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    assert all(w.lower() in message.lower() for w in words), message
    return message


# ---- through the command line ---------------------------------------------------------------


def test_explain_refuses_each_attack_file_by_name_within_budget(tmp_path, sentinel):
    folder = tmp_path / "annotations"
    folder.mkdir()
    coco_polygon_1e18(folder / "coco_polygon.json")
    coco_60000(folder / "coco_60000.json")
    nifti_bomb(folder / "labels_bomb.nii.gz")
    png_bomb(folder / "mask_bomb.png")
    (folder / "nested.json").write_text(
        '{"annotations": [], "images": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    assert (folder / "labels_bomb.nii.gz").stat().st_size < 500_000
    images = tmp_path / "images"
    images.mkdir()
    env = {**os.environ, **BUDGET}
    outcome = run_cli(
        [
            "explain",
            str(images),
            "--model",
            str(MODEL),
            "--annotation",
            str(folder),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=sentinel,
        env=env,
    )
    words = {
        "coco_polygon.json": ("far outside",),
        "coco_60000.json": ("60000 x 60000", "beyond the budget"),
        "labels_bomb.nii.gz": ("2048 x 2048 x 1024", "beyond the budget"),
        "mask_bomb.png": ("30000 x 30000", "beyond the budget"),
        "nested.json": ("nested too deeply",),
    }
    for name, said in words.items():
        assert_refused(outcome, "skipped", name, *said, max_seconds=60, max_rss=MAX_RSS)
    assert outcome.peak_rss_bytes < MAX_RSS


# ---- in process -----------------------------------------------------------------------------


def test_coco_polygon_near_1e18_is_refused_before_pycocotools(tmp_path):
    coco_polygon_1e18(tmp_path / "crash.json")
    start = time.monotonic()
    refused(tmp_path / "crash.json", "annotation 0", "far outside the 512 x 512 image")
    for bad in ("NaN", "Infinity", "1e999"):  # NaN and Infinity are not JSON; 1e999 parses to inf
        (tmp_path / "bad.json").write_text(
            coco(
                [{"id": 1, "file_name": "case.png", "height": 64, "width": 64}],
                [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 5, 9]]}],
            ).replace("[[1,1,9", f"[[{bad},1,9")
        )
        refused(tmp_path / "bad.json", "not a")
    assert time.monotonic() - start < HANG_S


def test_coco_declared_60000_image_is_refused_before_any_allocation(tmp_path):
    coco_60000(tmp_path / "big.json")
    tracemalloc.start()
    try:
        refused(tmp_path / "big.json", "60000 x 60000", "beyond the budget", "SALIENCY_VIEWER_LOAD_BYTES")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_coco_rle_is_checked_against_its_image(tmp_path):
    case = film(tmp_path / "case.png", 64, 80)
    image = [{"id": 1, "file_name": "case.png", "height": 64, "width": 80}]

    def rle(size, counts, n=1):
        return {
            "id": n,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": size, "counts": counts},
        }

    good = rle([64, 80], [100, 50, 64 * 80 - 150])
    past = rle([64, 80], [100, 2**40, 5], 2)  # runs past the image: pycocotools wrote them out of bounds
    negative = rle([64, 80], [100, -50, 64 * 80 - 50], 3)
    other = rle([32, 80], [100, 50, 32 * 80 - 150], 4)
    truncated = rle([64, 80], "0P", 5)  # a compressed string that ends inside a number
    (tmp_path / "rle.json").write_text(coco(image, [good, past, negative, other, truncated]))
    annotation = load_annotation(tmp_path / "rle.json")
    assert len(annotation.regions) == 1 and len(annotation.problems) == 4
    assert "longer than the 64 x 80 image" in annotation.problems[0]
    assert "negative run" in annotation.problems[1]
    assert "its RLE is 32 x 80, its image 'case.png' 64 x 80" in annotation.problems[2]
    assert "end inside a number" in annotation.problems[3]
    assert annotation.mask(case).sum() == 50
    # The same file's masks on an image of another size: refused, naming the file, never decoded.
    other_case = film(tmp_path / "other" / "case.png", 100, 80)
    with pytest.raises(
        AnnotationError, match=r"rle\.json: nodule: its RLE is for a 64 x 80 image, not a 100 x 80"
    ):
        annotation.mask(other_case)


def test_thousands_of_full_image_polygons_cost_a_bounded_multiple_of_the_image(tmp_path):
    case = film(tmp_path / "case.png", 256, 256)
    square = [0, 0, 256, 0, 256, 256, 0, 256]
    items = [{"id": n, "image_id": 1, "category_id": 1, "segmentation": [square]} for n in range(5000)]
    (tmp_path / "many.json").write_text(
        coco([{"id": 1, "file_name": "case.png", "height": 256, "width": 256}], items)
    )
    start = time.monotonic()
    annotation = load_annotation(tmp_path / "many.json")
    assert len(annotation.regions) == REGION_AREA_FACTOR  # each covers the whole image
    assert all("32 times its pixels" in p for p in annotation.problems)
    tracemalloc.start()
    try:
        assert annotation.mask(case).all()  # one worker job fills them all
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (REGION_AREA_FACTOR + 8) * 256 * 256
    assert time.monotonic() - start < HANG_S


def test_a_pycocotools_crash_costs_the_polygons_not_the_process(tmp_path, monkeypatch):
    """pycocotools' C code given the 1e18 polygon with the checks taken out on both sides: the
    worker dies of SIGSEGV, the caller gets the reason, the file's masks say so when drawn."""
    unchecked = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a crash, not a swap storm\n"
        "import viewer.io.decode_worker as worker\n"
        "from pycocotools import mask as coco\n"
        "def fill(request):\n"
        "    coco.frPyObjects(request['items'][0], request['rows'], request['cols'])\n"
        "    return {'polygons': [{'error': 'pycocotools did not crash'}]}, []\n"
        "worker.fill_polygons = fill\n"
        "worker.main()\n"
    )
    monkeypatch.setattr(isolated_decode, "worker_command", lambda: [sys.executable, "-c", unchecked])
    pool = DecoderPool(workers=1)
    monkeypatch.setattr(isolated_decode, "shared_pool", lambda: pool)
    crash = [-1e18, -1e18, 10, 10, 50, 5, 60, 40]
    try:
        outcome = pool.decode_one(PolygonJob(str(tmp_path / "crash.json"), 512, 512, [[crash]]))
        assert isinstance(outcome, Problem) and outcome.path.endswith("crash.json")
        assert "pycocotools crashed (SIGSEGV)" in outcome.reason
        case = film(tmp_path / "case.png", 512, 512)
        batch = PolygonBatch(str(tmp_path / "crash.json"), 512, 512)
        region = Region("nodule", file="case", decode=batch.add([np.reshape(crash, (-1, 2))]))
        annotation = Annotation(str(tmp_path / "crash.json"), [region])
        with pytest.raises(AnnotationError, match=r"crash\.json: nodule: pycocotools crashed \(SIGSEGV\)"):
            annotation.mask(case)
    finally:
        pool.shutdown()


def test_label_map_bomb_and_trailing_gzip_are_bounded(tmp_path):
    # Refused from the header, before SimpleITK (native code, whose memory the CLI case measures)
    # allocates what it declares.
    nifti_bomb(tmp_path / "bomb_hemorrhage.nii.gz", zero_mb=32)
    refused(tmp_path / "bomb_hemorrhage.nii.gz", "2048 x 2048 x 1024", "beyond the budget")
    # A small declared map followed by 300 MB of zeros reads as the small map it declares.
    (tmp_path / "trailing_x.nii.gz").write_bytes(gzip_of(nifti1_header((32, 32, 8)), 300))
    refused(tmp_path / "trailing_x.nii.gz", "empty")
    for name, header, words in (
        ("offset.nii", nifti1_header((8, 8, 8), offset=1e12), ("voxels start at byte",)),
        ("spacing.nii", nifti1_header((8, 8, 8), spacing=(math.inf, 1, 1)), ("not finite",)),
        ("vector.nii", nifti1_header((8, 8, 8), datatype=128, bitpix=24), ("voxel type 128",)),
        ("dims.nii", nifti1_header((8, -1, 8)), ("dimensions",)),
    ):
        (tmp_path / name).write_bytes(header + bytes(8 * 8 * 8 * 3))
        refused(tmp_path / name, *words)


def test_png_mask_bomb_is_refused_from_its_header(tmp_path):
    png_bomb(tmp_path / "case_nodule.png")  # refused from its header, before Pillow inflates it
    refused(tmp_path / "case_nodule.png", "30000 x 30000", "beyond the budget")


def test_box_csvs_refuse_numbers_that_are_not_coordinates_and_clip_boxes_partly_outside(tmp_path):
    case = film(tmp_path / "case.png", 100, 100)
    (tmp_path / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "case.png,Mass,1e18,1,5,5,,,\n"
        "case.png,Mass,nan,1,5,5,,,\n"
        "case.png,Mass,1,inf,5,5,,,\n"
        "case.png,Mass,90,-10,50,30,,,\n"  # partly outside: clipped
    )
    annotation = load_annotation(tmp_path / "BBox_List_2017.csv")
    assert [p.split(":")[0] for p in annotation.problems] == ["line 2", "line 3", "line 4"]
    assert all("not four finite numbers" in p for p in annotation.problems)
    expected = np.zeros((100, 100), bool)
    expected[0:20, 90:100] = True
    assert np.array_equal(annotation.mask(case)[0], expected)
    (tmp_path / "vindr.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\ncase,R1,Mass,-inf,0,5,5\n"
    )
    refused(tmp_path / "vindr.csv", "line 2", "not four finite numbers")
    (tmp_path / "long.csv").write_text(
        "patientId,x,y,width,height,Target\ncase," + "9" * 200_000 + ",1,1,1,1\n"
    )
    refused(tmp_path / "long.csv", "line 2", "not CSV")


def test_siim_runs_that_overflow_or_pass_the_image(tmp_path):
    case = film(tmp_path / "case.png", 32, 32)
    (tmp_path / "train-rle.csv").write_text(
        "ImageId,EncodedPixels\n"
        f"case,1 {2**64}\n"  # past int64: pycocotools-free, but numpy raised OverflowError
        f"case,1 {2**62} 1 {2**62}\n"  # sums past int64
        "case,1 5 10 5\n"
    )
    annotation = load_annotation(tmp_path / "train-rle.csv")
    assert len(annotation.regions) == 1 and len(annotation.problems) == 2
    assert all("beyond" in p for p in annotation.problems)
    assert annotation.mask(case).sum() == 10
    small = film(tmp_path / "small" / "case.png", 2, 2)
    with pytest.raises(AnnotationError, match=r"train-rle\.csv: pneumothorax: runs reach past a 2 x 2 image"):
        annotation.mask(small)


def test_chexlocalize_contours_of_millions_of_points_and_absurd_sizes(tmp_path):
    image_id = "patient1_study1_view1_frontal"
    ring = np.stack([50 + 40 * np.cos(t := np.linspace(0, 6.28, 300_000)), 50 + 40 * np.sin(t)], 1)
    (tmp_path / "gt.json").write_text(
        json.dumps(
            {
                image_id: {
                    "img_size": [100, 100],
                    "Edema": [ring.round(2).tolist()],
                    "Cardiomegaly": [[[10, 10], [90, 10], [90, 1e300]]],
                    "Consolidation": [[[10, 10], [30, 10], [30, 30]]],
                },
                "patient2_study1_view1_frontal": {
                    "img_size": [60000, 60000],
                    "Edema": [[[1, 1], [5, 1], [5, 5]]],
                },
            }
        )
    )
    start = time.monotonic()
    annotation = load_annotation(tmp_path / "gt.json")
    assert annotation.labels == ("Consolidation",)
    problems = " | ".join(annotation.problems)
    assert "Edema: a polygon with 300000 points" in problems
    assert "Cardiomegaly: a polygon outside the 100 x 100 image" in problems
    assert "60000 x 60000" in problems
    assert time.monotonic() - start < HANG_S


def test_deeply_nested_and_oversized_json(tmp_path, monkeypatch):
    (tmp_path / "deep.json").write_text('{"annotations": [], "images": ' + "[" * 50_000 + "]" * 50_000 + "}")
    refused(tmp_path / "deep.json", "nested too deeply")
    monkeypatch.setenv("SALIENCY_VIEWER_LOAD_BYTES", "64M")
    (tmp_path / "lists.json").write_text(
        '{"annotations": [], "images": [' + ",".join(["[]"] * 2_000_000) + "]}"
    )
    refused(tmp_path / "lists.json", "the objects of its", "beyond the budget")


def _dicom(path, modality: str, sop_class: str, **elements) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)


def test_seg_header_declaring_huge_frames_is_refused_before_decoding(tmp_path):
    _dicom(
        tmp_path / "seg.dcm", "SEG", "1.2.840.10008.5.1.4.1.1.66.4",
        Rows=8192, Columns=8192, NumberOfFrames=1000, BitsAllocated=1, PixelData=bytes(64),
    )  # fmt: skip
    refused(tmp_path / "seg.dcm", "1000 frames of 8192 x 8192", "beyond the budget")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the NaN and the 64 KB value it writes
def test_rtstruct_contours_far_away_not_numbers_or_of_millions_of_points(tmp_path):
    def item(points):
        contour = Dataset()
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = len(points) // 3
        contour.ContourData = points
        return contour

    roi, contours = Dataset(), Dataset()
    roi.ROINumber, roi.ROIName = 1, "Bleed"
    contours.ReferencedROINumber = 1
    contours.ContourSequence = Sequence(
        [
            item(["1e18", "0", "0", "1", "1", "0", "0", "1", "0"]),
            item(["nan", "0", "0", "1", "1", "0", "0", "1", "0"]),
            item(["1"] * 3 * 120_000),
            item(["0", "0", "0", "10", "0", "0", "10", "10", "0"]),
        ]
    )
    _dicom(
        tmp_path / "rs.dcm", "RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3",
        StructureSetROISequence=Sequence([roi]), ROIContourSequence=Sequence([contours]),
    )  # fmt: skip
    start = time.monotonic()
    annotation = load_annotation(tmp_path / "rs.dcm")
    assert annotation.labels == ("Bleed",) and len(annotation.problems) == 3
    assert "contour 1: a point 1e+18 mm from the origin" in annotation.problems[0]
    assert "contour 2: ContourData holds a coordinate that is not a finite number" in annotation.problems[1]
    assert "contour 3: more than 100000 points" in annotation.problems[2]
    assert time.monotonic() - start < HANG_S
    assert pydicom.dcmread(tmp_path / "rs.dcm").Modality == "RTSTRUCT"


def test_phantom_masks_stay_in_their_set_and_are_read_once(tmp_path):
    root = tmp_path / "set"
    (root / "annotations").mkdir(parents=True)
    PILImage.fromarray(np.full((64, 64), 255, np.uint8)).save(root / "annotations" / "m.png")

    def truth(mask_names) -> dict:
        slices = [{"sop_instance_uid": f"1.2.{n}", "mask": name} for n, name in enumerate(mask_names)]
        return {
            "format": "saliency-viewer-ground-truth/1",
            "findings": [{"label": "nodule", "slices": slices}],
        }

    path = root / "annotations" / "case.json"
    path.write_text(json.dumps(truth(["../../../../../../etc/hostname"])))
    refused(path, "lies outside the set's folder")
    os.mkfifo(root / "annotations" / "fifo.png")  # reading it would block forever
    path.write_text(json.dumps(truth(["annotations/fifo.png"])))
    refused(path, "is not a file")
    path.write_text(json.dumps(truth(["annotations/m.png"] * 20_000)))
    start = time.monotonic()
    annotation = load_annotation(path)
    assert len(annotation.regions) == 20_000 and time.monotonic() - start < HANG_S
    assert len({id(r.mask) for r in annotation.regions}) == 1  # one decoded mask, shared


def test_drawn_shapes_refuse_points_that_are_not_coordinates():
    for points, words in (
        ([(0, 0), (1e18, 0), (0, 1e18)], "far outside"),
        ([(0, 0), (float("nan"), 1), (3, 3)], "not a finite number"),
        ([(0, 0)] * 200_000, "more than"),
    ):
        with pytest.raises(ValueError, match=words):
            rasterize("polygon", points, 64, 64)
    assert rasterize("rectangle", [(-1e6, -1e6), (2, 3)], 8, 8).sum() == 6  # clipped to the image
