"""DICOM Segmentation objects (highdicom), matched to their source images by SOP Instance UID.

The header's Rows, Columns, Number of Frames, segments and source images are checked before
highdicom decodes a frame (``limits``): the frames, one segment's decoded masks and the masks
kept, one byte a pixel, within the ``load_bytes`` budget (:mod:`viewer.io.budgets`).
"""

from __future__ import annotations

from pathlib import Path

from viewer.io.annotation_formats import is_dicom, register
from viewer.io.annotation_formats.limits import MAX_LABELS, as_int, check_file_size, check_memory, image_size
from viewer.io.regions import Annotation, AnnotationError, Region


@register("DICOM Segmentation", is_dicom)
def read(path: Path) -> Annotation:
    import highdicom as hd
    import pydicom

    check_file_size(path)
    dataset = pydicom.dcmread(path)
    if getattr(dataset, "Modality", "") != "SEG":
        raise AnnotationError(
            path, f"not a DICOM Segmentation (Modality {getattr(dataset, 'Modality', '?')})"
        )
    _check_header(path, dataset)
    seg = hd.seg.Segmentation.from_dataset(dataset)
    uids = [uid for _, _, uid in seg.get_source_image_uids()]
    try:
        check_memory(f"one segment on its {len(uids)} source images", len(uids) * seg.Rows * seg.Columns)
    except ValueError as exc:
        raise AnnotationError(path, str(exc)) from None
    creator = str(getattr(dataset, "ContentCreatorName", "") or getattr(dataset, "Manufacturer", ""))
    regions = []
    kept = 0
    for number in seg.segment_numbers:
        label = seg.get_segment_description(number).segment_label
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            segment_numbers=[number],
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
        )
        for uid, mask in zip(uids, pixels[..., 0] > 0, strict=True):
            if mask.any():
                kept += mask.size
                try:
                    check_memory("its masks", kept)
                except ValueError as exc:
                    raise AnnotationError(path, str(exc)) from None
                regions.append(Region(label, mask=mask, sop_instance_uid=uid, reader=creator))
    return Annotation(str(path), regions)


def _check_header(path: Path, dataset) -> None:
    """Sizes the header declares, against the budgets, before any frame is decoded."""
    try:
        rows, cols = image_size(dataset.get("Rows"), dataset.get("Columns"), "its header")
        frames = as_int(dataset.get("NumberOfFrames", 1), "Number of Frames")
        if frames < 1:
            raise ValueError(f"Number of Frames is {frames}")
        check_memory(f"its {frames} frames of {rows} x {cols}", frames * rows * cols)
    except ValueError as exc:
        raise AnnotationError(path, str(exc)) from None
    segments = len(dataset.get("SegmentSequence", []))
    if segments > MAX_LABELS:
        raise AnnotationError(path, f"{segments} segments, more than the {MAX_LABELS} allowed")
