"""A saliency map of a projection radiograph as a FRACTIONAL DICOM Segmentation.

A Parametric Map cannot be made valid over a CR/DX film: its IOD (PS3.3 A.75) makes the Frame of
Reference module and the Plane Position / Plane Orientation (Patient) functional groups mandatory,
and a projection has no patient coordinates to put there (inventing a frame of reference would
claim a geometry the film does not have). The Segmentation IOD (A.51) needs neither, and a
FRACTIONAL segmentation of type PROBABILITY holds a map with values in [0, 1] per pixel: 8 bits,
so each value is kept to 1/255 of the map's scale (the exact float32 map is the CLI's ``.npy``;
over a CT slice the Parametric Map keeps it exactly).

One segment per sign: "evidence for" the target (the ``unit`` and ``absolute`` maps, and the
positive part of a ``signed`` map) and, for signed maps, "evidence against" (the magnitude of the
negative part). A map whose largest magnitude exceeds 1 is divided by it, and the segment's
description says by how much, so no value is clipped.
"""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from viewer import __version__
from viewer.io.dicom_derived import (
    MANUFACTURER,
    NOT_FOR_DIAGNOSIS,
    MapExport,
    complete_conditional,
    is_class_activation,
    is_multiframe,
    lo,
    new_series,
    projection_measures,
)
from viewer.io.dicom_writer import write_atomic

SALIENCY_SEG_SERIES_NUMBER = 9004
_LEVELS = 255  # Maximum Fractional Value: the 8-bit fractions FRACTIONAL segmentations store


def _single_frame_stand_in(ds: Dataset, frame_number: int) -> Dataset:
    """One frame of a multi-frame source without a frame of reference, as highdicom accepts only a
    single frame there; the reference to the real frame number is restored afterwards."""
    out = copy.deepcopy(ds)
    out.NumberOfFrames = 1
    if "PerFrameFunctionalGroupsSequence" in out:
        out.PerFrameFunctionalGroupsSequence = [out.PerFrameFunctionalGroupsSequence[frame_number]]
    if "SharedFunctionalGroupsSequence" not in out:
        # highdicom reads a multi-frame source's pixel measures from its shared functional groups.
        shared = Dataset()
        shared.PixelMeasuresSequence = projection_measures(ds)
        out.SharedFunctionalGroupsSequence = [shared]
    return out


def _set_frame_number(dataset: Dataset, number: int) -> None:
    """Reference source frame ``number + 1`` (0-based ``number``) from the one output frame of a
    multi-frame stand-in."""
    for item in dataset.PerFrameFunctionalGroupsSequence:
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                source.ReferencedFrameNumber = number + 1


def _segments(method: str, target: str, model_name: str, signed: bool, scale: float):
    quantity = codes.DCM.ClassActivation if is_class_activation(method) else codes.DCM.Saliency
    scaled = f", values / {scale:.6g}" if scale != 1.0 else ""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=lo(f"{MANUFACTURER} {method}"),
        version=lo(f"{__version__} ({model_name})"),
        family=codes.cid7162.ArtificialIntelligence,
    )
    names = ("evidence for", "evidence against") if signed else ("evidence for",)
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=lo(f"{method} {name} {target}"),
            segmented_property_category=codes.SCT.SpatialAndRelationalConcept,
            segmented_property_type=quantity,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, name in enumerate(names, start=1)
    ], scaled


def segmentation(export: MapExport) -> Path:
    """Write a map prepared by :func:`viewer.io.dicom_derived.prepare_map` over an image without a
    frame of reference as a FRACTIONAL (PROBABILITY) Segmentation: a new series in the image's
    study, referencing the source frames (:func:`viewer.io.dicom_export.write_saliency_map`
    chooses it)."""
    values, sources, numbers = export.values, export.sources, export.numbers
    method, target, model_name = export.method, export.target, export.model_name
    stand_in = len(sources) == 1 and is_multiframe(sources[0])
    if stand_in:
        if len(numbers) != 1:
            raise ValueError(
                "a multi-frame source without a frame of reference is exported one frame at a time"
            )
        sources = [_single_frame_stand_in(sources[0], numbers[0])]
    elif any(is_multiframe(s) for s in sources):
        raise ValueError("frames from several multi-frame files cannot be referenced by one object")

    signed = export.convention == "signed"
    scale = max(1.0, float(np.abs(values).max()))
    parts = [np.clip(values, 0, None)] + ([np.clip(-values, 0, None)] if signed else [])
    fractions = np.stack([part / scale for part in parts], axis=-1).astype(np.float32)
    segments, scaled = _segments(method, target, model_name, signed, scale)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=fractions,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=_LEVELS,
        segment_descriptions=segments,
        **new_series("saliency-seg", SALIENCY_SEG_SERIES_NUMBER, model_name),
        series_description=lo(f"{method}: {target} ({model_name})"),
        content_description=lo(f"{method} map{scaled}; {NOT_FOR_DIAGNOSIS}"),
        content_label="SALIENCY",
        pixel_measures=projection_measures(sources[0]),
        omit_empty_frames=False,  # a frame without evidence is a result too
    )
    if stand_in:
        _set_frame_number(seg, numbers[0])
    complete_conditional(seg, sources[0])
    return write_atomic(seg, export.out)


__all__ = ["SALIENCY_SEG_SERIES_NUMBER", "segmentation"]
