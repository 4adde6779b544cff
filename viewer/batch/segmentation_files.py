"""What ``explain`` writes beside the maps of a segmentation model: its own masks, and how they
agree with the radiologist's annotation of the same label.

Per label, in the study's folder: ``mask_<label>.npy`` (bool on the native grid: rows x cols for a
film, slices x rows x cols for a series), ``mask_<label>.png`` for a film (0/255; for a series the
key slice) and ``mask_<label>.nii.gz`` for a series (the mask on its voxel grid, 3D Slicer or
ITK-SNAP), and ``segmentation.json``: each label's mask size and, where an annotation of the label
is on the image, the Dice and IoU of the model's mask against it (``viewer.explain.localization``).
The maps themselves are per region already: each explains one label's region (the model's mask
unless a region was given), one row per map in ``metrics.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from viewer.explain.localization import dice, iou
from viewer.io.atomic import write_bytes_new, write_new
from viewer.io.nifti_map import can_write_nifti, write_map_nifti
from viewer.io.previews import png_bytes


def write_segmentation(
    folder: Path,
    image,
    result,
    annotation_of: Callable[[str], np.ndarray],
    name: str = "",
    *,
    dicom: bool = False,
    anonymize: bool = False,
    model_name: str = "segmentation model",
) -> dict[str, dict]:
    """The model's masks of ``result`` (an ``Explanation`` with ``masks``) into ``folder``, and
    their agreement with ``annotation_of(label)`` ``(frames of the image, rows, cols)``; returns
    what ``segmentation.json`` holds, per label. With ``dicom``, on a DICOM image, the masks also
    as a DICOM SEG (``model_masks_seg.dcm``); where one cannot be made the file says why."""
    masks = result.masks  # (frames, labels, rows, cols)
    frames = list(result.frames)
    series = can_write_nifti(image)
    record: dict[str, dict] = {}
    for k, label in enumerate(result.labels):
        mask = masks[:, k]
        values = mask if image.n_frames > 1 else mask[0]
        write_new(folder / f"mask_{label}.npy", lambda f, values=values: np.save(f, values))
        key = int(np.argmax(mask.reshape(len(frames), -1).sum(axis=1)))  # the slice it covers most
        write_bytes_new(folder / f"mask_{label}.png", png_bytes(mask[key].astype(np.uint8) * 255))
        if series:
            write_map_nifti(image, mask.astype(np.float32), tuple(frames), folder / f"mask_{label}.nii.gz")
        entry: dict = {"pixels": int(mask.sum()), "key_frame": frames[key]}
        truth = np.asarray(annotation_of(label), bool)[frames]
        if truth.any():
            entry |= {"dice": round(dice(mask, truth), 4), "iou": round(iou(mask, truth), 4)}
        record[label] = entry
    document: dict = {"model_masks": record}
    if name:
        document["image"] = name
    if dicom:
        document |= _write_seg(folder, image, result, model_name, anonymize)
    write_bytes_new(folder / "segmentation.json", json.dumps(document, indent=1).encode())
    return record


def _write_seg(folder: Path, image, result, model_name: str, anonymize: bool) -> dict:
    """The model's masks as a DICOM SEG beside the maps' DICOM files, or why there is none."""
    # Imported here: highdicom costs start-up that a run without --dicom does not need.
    from viewer.io.annotation_writer import save_model_masks_seg

    path = folder / "model_masks_seg.dcm"
    try:
        save_model_masks_seg(
            result.masks, tuple(result.labels), list(result.frames), image, path, model_name, anonymize
        )
    except ValueError as exc:
        return {"dicom_seg_skipped": str(exc)}
    return {"dicom_seg": path.name}


__all__ = ["write_segmentation"]
