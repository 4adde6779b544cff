"""DICOM Segmentation objects (highdicom), matched to their source images by SOP Instance UID."""

from __future__ import annotations

from pathlib import Path

from viewer.io.annotation_formats import is_dicom, register
from viewer.io.regions import Annotation, AnnotationError, Region


@register("DICOM Segmentation", is_dicom)
def read(path: Path) -> Annotation:
    import highdicom as hd
    import pydicom

    dataset = pydicom.dcmread(path)
    if getattr(dataset, "Modality", "") != "SEG":
        raise AnnotationError(
            path, f"not a DICOM Segmentation (Modality {getattr(dataset, 'Modality', '?')})"
        )
    seg = hd.seg.Segmentation.from_dataset(dataset)
    uids = [uid for _, _, uid in seg.get_source_image_uids()]
    creator = str(getattr(dataset, "ContentCreatorName", "") or getattr(dataset, "Manufacturer", ""))
    regions = []
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
                regions.append(Region(label, mask=mask, sop_instance_uid=uid, reader=creator))
    return Annotation(str(path), regions)
