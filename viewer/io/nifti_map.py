"""A saliency map of a CT series as NIfTI (``<method>.nii.gz``), on the series' own voxel grid:
its size, spacing, origin and direction, so 3D Slicer or ITK-SNAP lay it over the series.

SimpleITK writes the file (it converts the patient coordinates, LPS, to NIfTI's RAS and back).
Slices a map does not cover are 0. Written whole or not at all, never over an existing file.
SimpleITK writes the uncompressed image and Intel's ISA-L (python-isal) the gzip layer: level 1
gives the bytes zlib's level 1 gives, 10-20x faster (saliency maps are noisy floats that higher
levels barely shrink; zlib was a quarter of a 24-slice series' batch run). Python's gzip stands
in where isal is not installed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:
    from isal import igzip as gzip
except ImportError:  # a platform without its wheel: the same files, slower
    import gzip  # type: ignore[no-redef]

from viewer.io.atomic import write_bytes_new
from viewer.io.image import Image


def can_write_nifti(image: Image) -> bool:
    """Whether ``image`` has a patient-space voxel grid (a CT or MR series) to place a map on."""
    return image.is_volume and image.n_frames > 1 and image.geometry.origin is not None


def write_map_nifti(image: Image, array: np.ndarray, frames: tuple[int, ...], path: Path | str) -> Path:
    """``array`` ``(len(frames), rows, cols)``, the map on the native grid of ``frames`` of the
    series ``image``, as float32 NIfTI at ``path``."""
    import SimpleITK as sitk

    if not can_write_nifti(image):
        raise ValueError("not a series with a patient-space grid: no NIfTI")
    volume = np.zeros((image.n_frames, image.rows, image.columns), np.float32)
    volume[list(frames)] = array
    out = sitk.GetImageFromArray(volume)  # (slices, rows, cols) -> x = column, y = row, z = slice
    geometry = image.geometry
    slice_, row, col = geometry.spacing
    out.SetSpacing((col, row, slice_))
    out.SetOrigin(geometry.origin)
    out.SetDirection(geometry.direction)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "map.nii"
        sitk.WriteImage(out, str(staged), useCompression=False)
        return write_bytes_new(path, gzip.compress(staged.read_bytes(), compresslevel=1, mtime=0))


__all__ = ["can_write_nifti", "write_map_nifti"]
