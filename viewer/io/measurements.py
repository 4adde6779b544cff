"""Measurements on an image frame: a length, an angle, or a region (rectangle, ellipse, freehand
polygon) with the statistics of the pixels inside. No Qt, no torch.

Points are ``(x, y)`` image coordinates with pixel ``(row r, column c)`` spanning ``c..c+1`` and
``r..r+1``, which is also DICOM's convention for SCOORD graphic data (the top-left corner of the
top-left pixel is ``0, 0``), so they go into a DICOM SR unchanged. Distances and areas are in mm
from the image's in-plane spacing, and each result says which attribute that spacing came from:
ImagerPixelSpacing is measured at the detector, so a radiograph's lengths are magnified by the
source-to-detector geometry unless the spacing was corrected (PS3.3 C.8.11.4). An image without
any spacing is measured in pixels and says so. Region statistics are over the pixels whose centre
lies inside the shape (as the shapes are rasterised for annotations), in the image's real-world
units (HU for CT); the standard deviation is the population one (divided by n, as OHIF's).

A measurement drawn in an MPR plane (``plane`` "axial", "coronal" or "sagittal", ``frame`` the
plane's index in the display volume, points in that plane's pixel coordinates) is measured on
the reformatted plane with its own physical spacing; one drawn on a plane that is an acquired
slice pixel for pixel is a measurement of that slice (see :func:`on_acquired_slice`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from viewer.io.drawn_shapes import rasterize
from viewer.io.image import Image
from viewer.io.mpr import PLANES, Reformat

MeasureKind = Literal["length", "angle", "rectangle", "ellipse", "polygon"]
KINDS: tuple[str, ...] = ("length", "angle", "rectangle", "ellipse", "polygon")
REGIONS = ("rectangle", "ellipse", "polygon")
# How many points each kind is drawn with (a polygon: at least three).
POINTS = {"length": 2, "angle": 3, "rectangle": 2, "ellipse": 2}

_SPACING_NOTE = {
    "PixelSpacing": "spacing from Pixel Spacing (in the patient)",
    "ImagerPixelSpacing": "spacing from Imager Pixel Spacing (at the detector: magnified, not corrected)",
    "ImagerPixelSpacing/ERMF": "spacing from Imager Pixel Spacing over the estimated magnification (ERMF)",
    "NominalScannedPixelSpacing": "spacing from Nominal Scanned Pixel Spacing (of the digitised film)",
    "none": "no pixel spacing in the file: measured in pixels",
}


class MeasurementError(ValueError):
    """A measurement that cannot be taken (too few points, a colour image's statistics)."""


@dataclass(frozen=True)
class Measurement:
    """What the user drew: its kind, the image frame it is on and its points; in an MPR
    ``plane``, ``frame`` is the plane's index in the display volume."""

    kind: MeasureKind
    frame: int
    points: tuple[tuple[float, float], ...]
    label: str = ""
    plane: str = ""  # "": the image's own frame

    def __post_init__(self) -> None:
        if self.plane and self.plane not in PLANES:
            raise MeasurementError(f"unknown plane {self.plane!r}; known: {', '.join(PLANES)}")
        if self.kind not in KINDS:
            raise MeasurementError(f"unknown measurement {self.kind!r}; known: {', '.join(KINDS)}")
        wanted = POINTS.get(self.kind)
        if (wanted is not None and len(self.points) != wanted) or (
            self.kind == "polygon" and len(self.points) < 3
        ):
            raise MeasurementError(
                f"a {self.kind} needs {wanted or 'at least 3'} points, not {len(self.points)}"
            )


@dataclass(frozen=True)
class Measured:
    """A measurement's values. ``length`` (mm or px), ``angle`` (degrees), and for regions
    ``area`` (mm² or px²) with ``mean``, ``sd``, ``minimum``, ``maximum`` over ``pixels`` pixels in
    ``units``. ``calibrated``: whether mm (else pixels); ``spacing`` says where mm came from."""

    measurement: Measurement
    spacing: str
    calibrated: bool
    units: str = ""
    length: float | None = None
    angle: float | None = None
    area: float | None = None
    mean: float | None = None
    sd: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    pixels: int = 0

    def text(self) -> str:
        """One line for the view and the list: ``12.3 mm``, ``41.2°``, ``mean 38.1 HU, SD 4.0, ...``."""
        mm = "mm" if self.calibrated else "px"
        if self.length is not None:
            return f"{self.length:.1f} {mm}"
        if self.angle is not None:
            return f"{self.angle:.1f}°"
        units = f" {self.units}" if self.units else ""
        return (
            f"mean {self.mean:.1f}{units}, SD {self.sd:.1f}, min {self.minimum:.0f}, max {self.maximum:.0f}, "
            f"area {self.area:.1f} {mm}²"
        )


def on_acquired_slice(measurement: Measurement, reformat: Reformat) -> Measurement:
    """``measurement`` as one of the acquired slice it was drawn on, where its MPR plane is that
    slice pixel for pixel (an axial series' axial plane); else unchanged."""
    if not measurement.plane:
        return measurement
    frame = reformat.native_frame(measurement.plane, measurement.frame)
    if frame is None:
        return measurement
    return Measurement(measurement.kind, frame, measurement.points, measurement.label)


def measure(measurement: Measurement, image: Image) -> Measured:
    """The values of ``measurement`` on ``image``."""
    source = image.geometry.spacing_source
    calibrated = source != "none"
    spacing = _SPACING_NOTE.get(source, source)
    reformat = None
    if measurement.plane:
        reformat = Reformat.of(image)  # MprError (a ValueError) says why an image has no planes
        normal = PLANES.index(measurement.plane)
        if not 0 <= measurement.frame < reformat.shape[normal]:
            raise MeasurementError(f"{measurement.plane} plane {measurement.frame} is not in the volume")
        row_mm, col_mm = reformat.plane_spacing(measurement.plane)
        spacing += f"; {measurement.plane} plane: slice spacing from the slice positions"
    else:
        if not 0 <= measurement.frame < image.n_frames:
            raise MeasurementError(f"frame {measurement.frame} is not in the image (0..{image.n_frames - 1})")
        row_mm, col_mm = image.geometry.row_spacing, image.geometry.col_spacing
    if not calibrated:
        row_mm, col_mm = 1.0, 1.0
    scale = np.array([col_mm, row_mm])
    points = np.asarray(measurement.points, np.float64) * scale  # (x, y) in mm (or px)
    common = {"measurement": measurement, "spacing": spacing, "calibrated": calibrated}
    kind = measurement.kind
    if kind == "length":
        return Measured(**common, length=float(np.linalg.norm(points[1] - points[0])))
    if kind == "angle":
        a, b = points[0] - points[1], points[2] - points[1]
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        if norms == 0:
            raise MeasurementError("an angle needs two arms of non-zero length")
        return Measured(**common, angle=math.degrees(math.acos(float(np.clip(a @ b / norms, -1.0, 1.0)))))
    if image.is_color:
        raise MeasurementError("region statistics need a grey-scale image; this one is in colour")
    shape = "polygon" if kind == "polygon" else kind
    pixels = _pixels(measurement, image, reformat)
    mask = rasterize(shape, np.asarray(measurement.points), *pixels.shape[:2])
    values = pixels[mask].astype(np.float64)
    if values.size == 0:
        raise MeasurementError(f"the {kind} holds no pixel centre")
    return Measured(
        **common,
        units=image.units,
        area=_area(kind, points),
        mean=float(values.mean()),
        sd=float(values.std()),
        minimum=float(values.min()),
        maximum=float(values.max()),
        pixels=int(values.size),
    )


def _pixels(measurement: Measurement, image: Image, reformat: Reformat | None) -> np.ndarray:
    """The values of the frame, or of the MPR plane (through ``reformat``), it was drawn on."""
    if reformat is None:
        return image.frame(measurement.frame)
    return reformat.plane(reformat.display(image.pixels), measurement.plane, measurement.frame)


def _area(kind: str, points: np.ndarray) -> float:
    """The shape's own area (not its pixel count), from points already in mm."""
    if kind == "polygon":
        x, y = points[:, 0], points[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
    width, height = np.abs(points[1] - points[0])
    return float(width * height * (math.pi / 4 if kind == "ellipse" else 1.0))
