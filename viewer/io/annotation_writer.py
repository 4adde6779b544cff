"""Save annotations drawn in the viewer: the ground-truth JSON + PNG masks, or a DICOM SEG.

Both are read back by :func:`viewer.io.annotations.load_annotation` with the same masks. Nothing is
ever overwritten: an existing target raises :class:`FileExistsError` before anything is written,
and each file appears whole or not at all.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path

import highdicom as hd
import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from viewer import __version__
from viewer.io.annotations import Annotation, Region
from viewer.io.atomic import write_bytes_new
from viewer.io.dicom_derived import (
    MANUFACTURER,
    anonymize_header,
    complete_conditional,
    projection_measures,
    with_type2,
)
from viewer.io.dicom_header import read_dataset
from viewer.io.dicom_writer import make_uid, write_atomic
from viewer.io.drawn_shapes import bbox_of
from viewer.io.image import Image
from viewer.io.sources import FileRef

# The format :func:`viewer.io.annotations.load_annotation` reads (the phantom tool writes it too).
GROUND_TRUTH_FORMAT = "saliency-viewer-ground-truth/1"
SEG_SERIES_NUMBER = 9003

# SNOMED CT codes of the labels the bundled models and phantoms use; other labels are "Lesion".
_PROPERTY = {
    "nodule": codes.SCT.Nodule,
    "mass": codes.SCT.Mass,
    "consolidation": Code("95436008", "SCT", "Lung consolidation"),
    "effusion": codes.SCT.PleuralEffusion,
    "cardiomegaly": codes.SCT.Cardiomegaly,
    "pneumothorax": codes.SCT.Pneumothorax,
    "edema": codes.SCT.Edema,
    "fibrosis": codes.SCT.Fibrosis,
    "subdural": Code("35486000", "SCT", "Subdural hemorrhage"),
    "subarachnoid": Code("21454007", "SCT", "Subarachnoid hemorrhage"),
    "epidural": codes.SCT.Hemorrhage,
    "intraparenchymal": codes.SCT.Hemorrhage,
    "intraventricular": codes.SCT.Hemorrhage,
    "any": codes.SCT.Hemorrhage,
}


def finding_code(label: str) -> Code:
    """The SNOMED CT concept of a label (a finding, a segment's property), "Lesion" for one the
    table does not know: the code a PACS shows and searches for, whatever the label's spelling."""
    return _PROPERTY.get(label.lower(), codes.SCT.Lesion)


def _refuse_existing(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise FileExistsError(f"{path} exists; refusing to overwrite it")


def _placed_regions(annotation: Annotation, image: Image) -> list[tuple[int, Region]]:
    """The regions that lie on ``image``, with their frame index (matched as ``mask()`` does)."""
    placed = []
    for region in annotation.regions:
        index = annotation._frame_of(region, image)  # the one matching rule, shared with mask()
        if index is not None:
            placed.append((index, region))
    if not placed:
        raise ValueError("no region of the annotation lies on this image")
    return placed


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(mask.astype(np.uint8) * 255).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def _file_label(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", label).strip("-") or "region"


def _relative_source(source: str, root: Path) -> str:
    """A frame's file, relative to the annotation set's folder when it lies below it."""
    path = FileRef.parse(source).path
    try:
        relative = os.path.relpath(path, root)
    except ValueError:  # another drive (Windows)
        return source
    if relative.startswith(".."):
        return source
    return relative.replace(os.sep, "/") + source[len(path) :]


def save_annotation_json(annotation: Annotation, image: Image, path: Path) -> Path:
    """Write the regions of ``annotation`` that lie on ``image`` as ground-truth JSON, with one PNG
    mask per region next to it (``<name>_<label>_<n>.png``; ``_s<slice>`` on series).

    The JSON names masks relative to the folder above it, as the phantom sets do. Boxes are saved
    as their mask, which is what the reader uses, and keep their box as ``bbox`` with ``"shape":
    "box"``. Regions are matched to frames by SOP Instance UID, so frames must have one and, since
    the reader takes a UID's first frame, only the first frame of a multi-frame file can be
    annotated here (save a DICOM SEG for the others).
    """
    path = Path(path)
    _refuse_existing(path)
    placed = _placed_regions(annotation, image)
    for index, _ in placed:
        frame = image.frames[index]
        if not frame.sop_instance_uid:
            raise ValueError(
                f"{frame.source} has no SOP Instance UID, which the ground-truth JSON matches by"
            )
        if frame.frame_index != 0:
            raise ValueError(
                f"frame {frame.frame_index + 1} of {frame.source}: the ground-truth JSON can only place "
                "regions on the first frame of a multi-frame file; save a DICOM SEG instead"
            )

    folder, name = path.parent, path.stem
    series = image.n_frames > 1
    masks: dict[Path, bytes] = {}
    findings: dict[str, list[dict]] = {}
    counts: dict[tuple[str, int], int] = {}
    for index, region in placed:
        mask = region.raster(image.rows, image.columns)
        # Counted per file-name label: two labels may read the same once made file-safe.
        key = (_file_label(region.label), index if series else 0)
        counts[key] = counts.get(key, 0) + 1
        stem = f"{name}_{key[0]}"
        stem += f"_s{index:03d}" if series else ""
        stem += f"_{counts[key]}" if not series or counts[key] > 1 else ""
        mask_path = folder / f"{stem}.png"
        masks[mask_path] = _png(mask)
        box = region.bbox if region.mask is None else None
        findings.setdefault(region.label, []).append(
            {
                "index": index,
                "sop_instance_uid": image.frames[index].sop_instance_uid,
                "shape": "box" if box is not None else "mask",
                "bbox": [float(v) for v in box] if box is not None else bbox_of(mask),
                "area_px": int(mask.sum()),
                "mask": f"{folder.name}/{mask_path.name}",
            }
        )
    _refuse_existing(*masks)

    ident = image.identity
    root = folder.parent
    record = {
        "format": GROUND_TRUTH_FORMAT,
        "kind": "annotation",
        "name": name,
        "study_uid": ident.study_uid,
        "series_uid": ident.series_uid,
        "images": [
            {"file": _relative_source(f.source, root), "sop_instance_uid": f.sop_instance_uid}
            for f in image.frames
        ],
        "rows": image.rows,
        "columns": image.columns,
        "labels": dict.fromkeys(findings, 1),
        "findings": [{"label": label, "slices": slices} for label, slices in findings.items()],
        "marker": {"bbox": [int(v) for v in annotation.marker]} if annotation.marker else None,
        "software": f"Saliency Viewer {__version__}",
    }
    written: list[Path] = []
    try:
        for mask_path, data in masks.items():
            written.append(write_bytes_new(mask_path, data))
        # Written last: a JSON on disk always has all its masks.
        return write_bytes_new(path, (json.dumps(record, indent=1) + "\n").encode())
    except BaseException:
        for done in written:
            done.unlink(missing_ok=True)
        raise


def _segment(number: int, label: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=finding_code(label),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )


def _seg_sources(image: Image) -> tuple[list[Dataset], dict]:
    """The source headers of all the image's frames, and the geometry highdicom needs for them."""
    headers: dict[str, Dataset] = {}
    for frame in image.frames:
        if frame.source not in headers:
            headers[frame.source] = with_type2(read_dataset(frame.source))  # highdicom needs Type 2 present
    sources = list(headers.values())
    first = sources[0]
    frames_in_first = int(first.get("NumberOfFrames", 1) or 1)
    if len(sources) > 1 and frames_in_first > 1:
        raise ValueError("a series of multi-frame files cannot be referenced by one DICOM SEG")
    if frames_in_first > 1:
        if "FrameOfReferenceUID" not in first:
            raise ValueError(
                "a multi-frame image without a frame of reference cannot be segmented (highdicom)"
            )
        if [f.frame_index for f in image.frames] != list(range(frames_in_first)):
            raise ValueError("the image does not hold every frame of its multi-frame file, in order")
    if "ImagePositionPatient" in first or frames_in_first > 1:
        return sources, {}
    return sources, {"pixel_measures": projection_measures(first)}


def save_annotation_seg(annotation: Annotation, image: Image, path: Path) -> Path:
    """Write the regions of ``annotation`` that lie on ``image`` as a BINARY DICOM Segmentation:
    one segment per label (MANUAL), a new series in the image's study referencing its instances."""
    path = Path(path)
    _refuse_existing(path)
    if image.kind != "dicom":
        raise ValueError(
            "a DICOM SEG can only reference DICOM images (this one was opened from a raster file)"
        )
    placed = _placed_regions(annotation, image)
    labels = list(dict.fromkeys(region.label for _, region in placed))
    volume = np.zeros((image.n_frames, image.rows, image.columns, len(labels)), np.uint8)
    for index, region in placed:
        volume[index, ..., labels.index(region.label)] |= region.raster(image.rows, image.columns)
    sources, geometry = _seg_sources(image)
    series_uid = str(make_uid("annotation-seg-series", uuid.uuid4()))
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=volume,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_segment(i + 1, label) for i, label in enumerate(labels)],
        series_instance_uid=series_uid,
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=str(make_uid("annotation-seg", uuid.uuid4())),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="annotation",
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"Annotation: {', '.join(labels)}"[:64],
        **geometry,
    )
    complete_conditional(seg, sources[0])
    return write_atomic(seg, path)


MODEL_SEG_SERIES_NUMBER = 9005


def save_model_masks_seg(
    masks: np.ndarray,
    labels: tuple[str, ...],
    frames: list[int],
    image: Image,
    path: Path,
    model_name: str,
    anonymize: bool = False,
) -> Path:
    """Write a segmentation model's masks ``(len(frames), labels, rows, cols)`` (bool, on the
    image's own grid) as a BINARY DICOM Segmentation: one segment per label the model marked
    (AUTOMATIC, the model named as the algorithm), a new series in the image's study referencing
    its instances, so a PACS shows the model's masks beside the radiologist's. With ``anonymize``
    the headers it copies are the anonymised ones of every other export (``anonymize_header``)."""
    path = Path(path)
    _refuse_existing(path)
    if image.kind != "dicom":
        raise ValueError(
            "a DICOM SEG can only reference DICOM images (this one was opened from a raster file)"
        )
    marked = [k for k in range(len(labels)) if masks[:, k].any()]
    if not marked:
        raise ValueError("the model marks no pixel of any label: nothing to segment")
    volume = np.zeros((image.n_frames, image.rows, image.columns, len(marked)), np.uint8)
    volume[frames] = np.moveaxis(masks[:, marked], 1, -1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name[:64], family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=labels[k][:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=finding_code(labels[k]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for i, k in enumerate(marked)
    ]
    sources, geometry = _seg_sources(image)
    if anonymize:
        sources = [with_type2(anonymize_header(ds)) for ds in sources]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=volume,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=str(make_uid("model-seg-series", uuid.uuid4())),
        series_number=MODEL_SEG_SERIES_NUMBER,
        sop_instance_uid=str(make_uid("model-seg", uuid.uuid4())),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model_name[:64],
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"Model masks: {model_name}"[:64],
        **geometry,
    )
    complete_conditional(seg, sources[0])
    return write_atomic(seg, path)


__all__ = [
    "GROUND_TRUTH_FORMAT",
    "finding_code",
    "save_annotation_json",
    "save_annotation_seg",
    "save_model_masks_seg",
]
