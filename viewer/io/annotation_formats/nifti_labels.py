"""NIfTI label maps for CT (CQ500, PhysioNet CT-ICH, nnU-Net outputs), read with SimpleITK.

A label map lies in patient space, not on a file name: it is resampled (nearest neighbour) onto
the voxel grid of an opened CT series from both images' origin, spacing and direction, so any
resolution or storage orientation (RAS, LPS, flipped slices) lands where it belongs. Each
non-zero value is a region. Its label is the file name's part after the last ``_`` for a
one-value map (``049_hemorrhage.nii.gz``), else ``label <value>``.

SimpleITK allocates what the header declares and gunzips as far as it says, so the header is read
here first (540 decompressed bytes at most) and checked: dimensions within the ``load_bytes``
budget (:mod:`viewer.io.budgets`), a scalar voxel type, the data's offset near the header, finite
geometry. A 486 KB ``.nii.gz`` declaring a volume of 4 GB is refused before anything is inflated.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.io.annotation_formats import register
from viewer.io.annotation_formats.limits import MAX_LABELS, check_file_size, check_memory
from viewer.io.image import Image
from viewer.io.regions import Annotation, Placement, Region

_SUFFIXES = (".nii.gz", ".nii")
# NIfTI datatype codes of scalar voxels and their bytes: uint8, int16, int32, float32, float64,
# int8, uint16, uint32, int64, uint64 (complex, RGB and vector types are not label maps).
_VOXEL_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8}
_KEPT_TYPES = (2, 4, 8, 256, 512, 768)  # integers read as they are; the others cast to int32
_MAX_EXTENSIONS = 16 * 1024**2  # bytes between the header and the voxels
_CHUNK = 1 << 24  # voxels per step when listing a map's values


@dataclass(frozen=True)
class _Header:
    dims: tuple[int, ...]
    datatype: int


def _header(path: Path) -> _Header:
    """The NIfTI-1 or -2 header, checked: a ValueError saying what is wrong."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a readable NIfTI file ({exc})") from None
    if len(head) < 348:
        raise ValueError(f"a NIfTI header is at least 348 bytes; the file holds {len(head)}")
    for order in "<>":
        (size,) = struct.unpack(order + "i", head[:4])
        if size in (348, 540):
            break
    else:
        raise ValueError("not a NIfTI file (no NIfTI-1 or NIfTI-2 header)")
    if size == 348:
        if head[344:348] != b"n+1\0":
            raise ValueError("not a single-file NIfTI-1 image (magic 'n+1')")
        dims = struct.unpack(order + "8h", head[40:56])
        datatype, bitpix = struct.unpack(order + "2h", head[70:74])
        (offset,) = struct.unpack(order + "f", head[108:112])
        geometry = struct.unpack(order + "8f", head[76:108]) + struct.unpack(order + "18f", head[256:328])
    else:
        if len(head) < 540 or head[4:12] != b"n+2\0\r\n\x1a\n":
            raise ValueError("not a single-file NIfTI-2 image (magic 'n+2')")
        datatype, bitpix = struct.unpack(order + "2h", head[12:16])
        dims = struct.unpack(order + "8q", head[16:80])
        (offset,) = struct.unpack(order + "q", head[168:176])
        geometry = struct.unpack(order + "8d", head[104:168]) + struct.unpack(order + "18d", head[352:496])
    return _checked(dims, datatype, bitpix, offset, size, geometry)


def _checked(dims, datatype: int, bitpix: int, offset: float, size: int, geometry) -> _Header:
    rank = dims[0]
    if not 1 <= rank <= 7:
        raise ValueError(f"the header declares {rank} dimensions")
    extent = tuple(int(d) for d in dims[1 : rank + 1])
    if any(d < 1 for d in extent):
        raise ValueError(f"the header declares dimensions {extent}")
    if rank < 3 or any(d != 1 for d in extent[3:]):
        raise ValueError(f"a {rank}-D image of {extent}; a CT label map is 3-D")
    if datatype not in _VOXEL_BYTES:
        raise ValueError(f"voxel type {datatype}; a label map has one number per voxel")
    if bitpix != 8 * _VOXEL_BYTES[datatype]:
        raise ValueError(f"bitpix {bitpix} does not match voxel type {datatype}")
    voxels = extent[0] * extent[1] * extent[2]
    working = _VOXEL_BYTES[datatype] + (0 if datatype in _KEPT_TYPES else 4)
    check_memory(f"the {' x '.join(map(str, extent[:3]))} voxels its header declares", voxels * working)
    if not (size <= offset <= size + 4 + _MAX_EXTENSIONS) or offset != int(offset):
        raise ValueError(f"the voxels start at byte {offset}, not just after the header")
    if not all(np.isfinite(geometry)):
        raise ValueError("the header's spacing or orientation is not finite numbers")
    if not all(0 < abs(v) < 1e6 for v in geometry[1:4]):
        raise ValueError(f"voxel spacing {geometry[1:4]} is not a size")
    return _Header(extent[:3], datatype)


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

    check_file_size(path)
    header = _header(path)
    labels = sitk.ReadImage(str(path))
    if labels.GetDimension() != 3 or labels.GetSize() != header.dims:
        raise ValueError(f"SimpleITK read a {labels.GetSize()} image; its header declares {header.dims}")
    if labels.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("a vector image; a label map has one integer per voxel")
    if header.datatype not in _KEPT_TYPES:
        labels = sitk.Cast(labels, sitk.sitkInt32)
    values = _values(sitk.GetArrayViewFromImage(labels))
    _, _, named = _base(path).rpartition("_")
    annotation = Annotation(str(path))
    for value in values:
        label = named if named and len(values) == 1 else f"label {value}"
        annotation.regions.append(Region(label, place=_Placement(labels, value), reader=path.name))
    if not values:
        annotation.problems.append("the label map is empty (no non-zero voxel)")
    return annotation


def _values(voxels: np.ndarray) -> list[int]:
    """The map's non-zero values, listed a chunk at a time (no sorted copy of the whole map); a
    ValueError past :data:`MAX_LABELS` of them (noise, not labels)."""
    flat = voxels.reshape(-1)
    found: set[int] = set()
    for start in range(0, flat.size, _CHUNK):
        found.update(int(v) for v in np.unique(flat[start : start + _CHUNK]))
        if len(found) > MAX_LABELS + 1:
            raise ValueError(f"more than {MAX_LABELS} distinct values: not a label map")
    found.discard(0)
    return sorted(found)
