"""Values that cross layers: an opened image (or volume) with its grid, geometry, windowing and identity.

Pixel values are kept in real-world units (the Modality LUT applied: HU for CT). Display mapping
(VOI, MONOCHROME1 inversion) is a separate step, in :mod:`viewer.io.voi`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from viewer.io.errors import Problem

WindowFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
WindowSource = Literal["file", "preset", "auto"]

# Where the in-plane pixel spacing came from. Measurements must say which: ImagerPixelSpacing is
# measured at the detector, not in the patient (DICOM PS3.3 C.8.11.4, CP-2380).
SpacingSource = Literal[
    "PixelSpacing",
    "ImagerPixelSpacing",
    "ImagerPixelSpacing/ERMF",
    "NominalScannedPixelSpacing",
    "none",
]


@dataclass(frozen=True)
class Window:
    """A VOI window: ``center``/``width`` in the image's real-world units."""

    center: float
    width: float
    function: WindowFunction = "LINEAR"
    name: str = ""
    source: WindowSource = "file"

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2

    def label(self) -> str:
        values = f"W {self.width:g} / L {self.center:g}"
        return f"{self.name} ({values})" if self.name else values


@dataclass(frozen=True, eq=False)
class VoiLut:
    """A VOI LUT from the file's VOI LUT Sequence: ``table[v - first_mapped]`` for input ``v``."""

    first_mapped: int
    table: np.ndarray
    name: str = ""

    @property
    def output_max(self) -> float:
        return float(max(int(self.table.max()), 1))


@dataclass(frozen=True)
class Identity:
    """Identifying and descriptive header fields the UI shows (and exports can hide)."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    institution: str = ""
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    modality: str = ""
    body_part: str = ""
    manufacturer: str = ""

    # Fields that identify the patient; exports blank them unless asked not to.
    PHI_FIELDS = (
        "patient_name",
        "patient_id",
        "patient_birth_date",
        "accession_number",
        "institution",
    )


@dataclass(frozen=True)
class FrameInfo:
    """Where one frame of an image came from, and where it lies in the patient."""

    source: str
    frame_index: int = 0
    sop_instance_uid: str = ""
    instance_number: int | None = None
    position: tuple[float, float, float] | None = None
    slice_thickness: float | None = None


@dataclass(frozen=True)
class Geometry:
    """Pixel grid in the patient coordinate system (LPS, mm).

    ``spacing`` is ``(slice, row, col)``: the distance between slices, between rows and between
    columns. ``direction`` holds the unit vectors of the column index, row index and slice index as
    its columns, so a voxel at index ``(k, j, i)`` lies at ``origin + direction @ (spacing_xyz * (i, j, k))``
    (the SimpleITK convention). Projection images have an identity direction and unknown origin.
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    spacing_source: SpacingSource = "none"
    origin: tuple[float, float, float] | None = None
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def row_spacing(self) -> float:
        return self.spacing[1]

    @property
    def col_spacing(self) -> float:
        return self.spacing[2]

    @property
    def pixel_aspect(self) -> float:
        """Height of a pixel over its width, for displaying it with the right shape."""
        return self.spacing[1] / self.spacing[2]


@dataclass(eq=False)
class Image:
    """An opened image: one radiograph, a multi-frame object or a CT/MR series stacked as a volume.

    ``pixels`` always has a leading frame axis: ``(frames, rows, cols)`` for grayscale, float32 in
    real-world units; ``(frames, rows, cols, 3)`` for colour, as decoded RGB integers.
    ``is_volume`` says whether the frames are spatially ordered slices with a known geometry.
    """

    pixels: np.ndarray
    photometric: str
    geometry: Geometry
    identity: Identity
    frames: tuple[FrameInfo, ...]
    windows: tuple[Window, ...] = ()
    voi_luts: tuple[VoiLut, ...] = ()
    default_window: Window | None = None
    invert: bool = False
    is_volume: bool = False
    units: str = ""
    transfer_syntax: str = ""
    bits_stored: int | None = None
    # The reader that decoded it (``viewer.io.formats``: "dicom", "raster", ...); DICOM exports
    # need a DICOM source.
    kind: str = "dicom"
    warnings: tuple[str, ...] = field(default=())
    # Files of the series that could not be decoded and are not in ``pixels``.
    left_out: tuple[Problem, ...] = field(default=())

    @property
    def n_frames(self) -> int:
        return self.pixels.shape[0]

    @property
    def rows(self) -> int:
        return self.pixels.shape[1]

    @property
    def columns(self) -> int:
        return self.pixels.shape[2]

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 4

    @property
    def modality(self) -> str:
        return self.identity.modality

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes

    def frame(self, index: int) -> np.ndarray:
        """One frame (a view, no copy)."""
        return self.pixels[index]
