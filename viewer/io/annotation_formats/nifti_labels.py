"""NIfTI label maps for CT (CQ500, PhysioNet CT-ICH, nnU-Net outputs), read with SimpleITK.

A label map lies in patient space, not on a file name: it is resampled (nearest neighbour) onto
the voxel grid of an opened CT series from both images' origin, spacing and direction, so any
resolution or storage orientation (RAS, LPS, flipped slices) lands where it belongs. Each
non-zero value is a region. Its label is the file name's part after the last ``_`` for a
one-value map (``049_hemorrhage.nii.gz``), else ``label <value>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.io.annotation_formats import register
from viewer.io.image import Image
from viewer.io.regions import Annotation, Placement, Region

_SUFFIXES = (".nii.gz", ".nii")


def _sniff(path: Path, head: bytes) -> bool:
    return path.name.lower().endswith(_SUFFIXES)


def _base(path: Path) -> str:
    name = path.name
    return next(name[: -len(s)] for s in _SUFFIXES if name.lower().endswith(s))


class _Placement(Placement):
    """One value of a label map, placed on images' voxel grids."""

    def __init__(self, labels, value: int):
        super().__init__()
        self.labels, self.value = labels, value

    def _place(self, image: Image) -> np.ndarray | None:
        import SimpleITK as sitk

        geometry = image.geometry
        if not image.is_volume or geometry.origin is None:
            return None  # a radiograph has no patient-space grid to resample onto
        reference = sitk.Image(image.columns, image.rows, image.n_frames, sitk.sitkUInt8)
        slice_, row, col = geometry.spacing
        reference.SetSpacing((col, row, slice_))
        reference.SetOrigin(geometry.origin)
        reference.SetDirection(geometry.direction)
        binary = sitk.BinaryThreshold(self.labels, self.value, self.value, 1, 0)
        placed = sitk.Resample(
            binary, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )
        mask = sitk.GetArrayFromImage(placed).astype(bool)  # (frames, rows, cols)
        return mask if mask.any() else None


@register("NIfTI label map", _sniff)
def read(path: Path) -> Annotation:
    import SimpleITK as sitk

    labels = sitk.ReadImage(str(path))
    if labels.GetDimension() != 3:
        raise ValueError(f"a {labels.GetDimension()}-D image; a CT label map is 3-D")
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("a vector image; a label map has one integer per voxel")
    labels = sitk.Cast(labels, sitk.sitkInt32)
    values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v != 0]
    _, _, named = _base(path).rpartition("_")
    annotation = Annotation(str(path))
    for value in values:
        label = named if named and len(values) == 1 else f"label {value}"
        annotation.regions.append(Region(label, place=_Placement(labels, value), reader=path.name))
    if not values:
        annotation.problems.append("the label map is empty (no non-zero voxel)")
    return annotation
