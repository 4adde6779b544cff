"""Exports of saliency results that can go back to a PACS: the map's values, and a screenshot.

Which object holds the values depends on the source (:func:`write_saliency_map` chooses):

- a source in a patient frame of reference (CT, MR; PS3.3 A.75 requires one): a **Parametric
  Map**, float32 values exactly as computed on the image's own grid, so a viewer that knows the
  object (OHIF, Slicer, Slim) can fuse, window and measure it;
- a projection radiograph (CR, DX: no frame of reference, so no valid Parametric Map): a
  **FRACTIONAL Segmentation** (:mod:`viewer.io.saliency_seg`), values to 1/255.

A **Secondary Capture** is the universal companion: an RGB screenshot with the overlay burned in.
Each is a new series in the image's study, referencing the source instances, and passes David
Clunie's ``dciodvfy`` without errors (the tests run it). Sources are only read, never written;
outputs are written atomically and never overwrite anything. Anonymisation: see
:mod:`viewer.io.dicom_derived`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from highdicom.utils import get_plane_positions_of_image
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from viewer.io.dicom_derived import (
    MANUFACTURER,
    NOT_FOR_DIAGNOSIS,
    MapExport,
    anonymize_header,
    anonymized_uid,
    check_frame,
    complete_conditional,
    has_frame_of_reference,
    is_class_activation,
    is_multiframe,
    lo,
    new_series,
    new_uid,
    patient_orientation,
    prepare_map,
    require_dicom,
    with_type2,
)
from viewer.io.dicom_header import read_dataset
from viewer.io.dicom_writer import write_atomic
from viewer.io.image import Image
from viewer.io.saliency_seg import segmentation

PM_SERIES_NUMBER = 9001
SC_SERIES_NUMBER = 9002


def _plane_positions(sources: list[Dataset], numbers: list[int]) -> dict:
    """highdicom arguments that reference exactly the exported frames of the sources."""
    if len(sources) > 1:
        if any(is_multiframe(s) for s in sources):
            raise ValueError("frames from several multi-frame files cannot be referenced by one object")
        return {}
    if not is_multiframe(sources[0]):
        return {}
    # Explicit positions of the chosen frames: highdicom matches them to source frame numbers.
    positions = get_plane_positions_of_image(sources[0])
    return {"plane_positions": [positions[k] for k in numbers]}


def write_parametric_map(
    image: Image,
    values: np.ndarray,
    *,
    frames: Sequence[int],
    out: Path,
    method: str,
    target: str,
    model_name: str,
    convention: str = "unit",
    anonymize: bool = False,
) -> Path:
    """Write a saliency map as a DICOM Parametric Map (float32) referencing the source frames, which
    must lie in a patient frame of reference (CT, MR; a radiograph raises ValueError).

    ``values`` is float32 ``(len(frames), rows, cols)`` on the image's native grid (a 2-D map for a
    single frame will do): [0, 1] for the ``unit`` and ``absolute`` conventions, [-1, 1] for
    ``signed``; the window and palette stretch to cover values beyond that.

    The object is a new series in the image's study: quantity DCM 130402 "Class activation" for
    CAM-family methods, else DCM 130404 "Saliency", no units (UCUM "1"); a Real World Value Mapping
    labelled ``SALIENCY`` that names the method, target and model; a VOI window over the value
    range. Grey (Pixel Presentation MONOCHROME): the Palette Color LUT indexes integer stored
    values, so dciodvfy rejects one on float pixel data (and highdicom refuses it); the Secondary
    Capture carries the colours. ``method`` is used as given in the descriptions ("Grad-CAM:
    effusion (cxr_resnet18)" for the title, or the id). Refuses to overwrite ``out``; see
    :mod:`viewer.io.dicom_derived` for ``anonymize``.
    """
    return _parametric_map(
        prepare_map(image, values, frames=frames, out=out, method=method, target=target,
                    model_name=model_name, convention=convention, anonymize=anonymize)
    )  # fmt: skip


def _parametric_map(export: MapExport) -> Path:
    values, sources, numbers = export.values, export.sources, export.numbers
    method, target, model_name = export.method, export.target, export.model_name
    if not has_frame_of_reference(sources[0]):
        raise ValueError(
            "a Parametric Map needs a patient frame of reference, which this image (a projection) "
            "has not; write_saliency_map writes a fractional Segmentation instead"
        )
    geometry = _plane_positions(sources, numbers)

    signed = export.convention == "signed"
    low = min(-1.0 if signed else 0.0, float(values.min()))
    high = max(1.0, float(values.max()))
    quantity = codes.DCM.ClassActivation if is_class_activation(method) else codes.DCM.Saliency
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="SALIENCY",
        lut_explanation=lo(f"{method} for {target}, model {model_name}"),
        unit=codes.UCUM.NoUnits,
        value_range=(low, high),
        slope=1.0,
        intercept=0.0,
        quantity_definition=quantity,
    )
    pm = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=values,
        **new_series("parametric-map", PM_SERIES_NUMBER, model_name),
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        # LINEAR_EXACT: the plain LINEAR function is undefined for windows narrower than 1.
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=(low + high) / 2,
                window_width=high - low,
                window_explanation="SALIENCY",
                voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT,
            )
        ],
        content_label="SALIENCY",
        content_description=lo(f"{method} map; {NOT_FOR_DIAGNOSIS}"),
        series_description=lo(f"{method}: {target} ({model_name})"),
        **geometry,
    )
    complete_conditional(pm, sources[0])
    return write_atomic(pm, export.out)


def write_secondary_capture(
    image: Image,
    rgb: np.ndarray,
    *,
    frame: int,
    out: Path,
    description: str,
    anonymize: bool = False,
    burned_in_annotation: bool = True,
) -> Path:
    """Write an RGB screenshot (``(rows, cols, 3)`` uint8, overlay burned in) as a Secondary Capture.

    A new series (DERIVED\\SECONDARY, BurnedInAnnotation YES) in the study of ``frame``'s source,
    referencing that frame. ``rgb`` may have any size: a screenshot of the same size as the image is
    taken to be on its grid (pixel spacing and orientation copied); any other size has neither,
    since a screenshot's zoom and margins are unknown. ``burned_in_annotation``: whether the pixels
    show text that identifies the patient (Burned In Annotation YES or NO). Refuses to overwrite
    ``out``.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite it")
    require_dicom(image)
    check_frame(image, frame)
    rgb = np.asarray(rgb)
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        rgb = rgb[..., :3]  # RGBA grabs: a Secondary Capture has no alpha
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 (rows, cols, 3); got {rgb.dtype} {rgb.shape}")
    rgb = np.ascontiguousarray(rgb)

    info = image.frames[frame]
    source = read_dataset(info.source)
    source = with_type2(anonymize_header(source) if anonymize else source)
    on_grid = rgb.shape[:2] == (image.rows, image.columns)
    orientation = patient_orientation(source) if on_grid else None
    spacing = None
    if on_grid and image.geometry.spacing_source == "PixelSpacing":
        spacing = (image.geometry.row_spacing, image.geometry.col_spacing)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=new_uid("secondary-capture-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=new_uid("secondary-capture"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        pixel_spacing=spacing,
        # highdicom requires an orientation for patient images; emptied below when unknown.
        patient_orientation=("L", "F"),
        series_description=lo(description),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    # Patient Orientation is type 2C: present, empty when the screenshot's orientation is unknown.
    sc.PatientOrientation = orientation or ""
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES" if burned_in_annotation else "NO"
    sc.DerivationDescription = lo(f"Screenshot with overlay; {NOT_FOR_DIAGNOSIS}")
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if is_multiframe(source):
        reference.ReferencedFrameNumber = info.frame_index + 1
    sc.SourceImageSequence = [reference]
    complete_conditional(sc, source)
    return write_atomic(sc, out)


def write_saliency_map(
    image: Image, values: np.ndarray, *, frames: Sequence[int], out: Path, **options
) -> str:
    """Write a map's values in the object that fits the source (see the module docstring):
    ``"pm"`` (Parametric Map) or ``"seg"`` (fractional Segmentation), the kind written is
    returned. ``options`` as :func:`write_parametric_map`."""
    export = prepare_map(image, values, frames=frames, out=out, **options)
    if has_frame_of_reference(export.sources[0]):
        _parametric_map(export)
        return "pm"
    segmentation(export)
    return "seg"


__all__ = [
    "anonymize_header",
    "anonymized_uid",
    "is_class_activation",
    "write_parametric_map",
    "write_saliency_map",
    "write_secondary_capture",
]
