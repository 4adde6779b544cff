"""Load a discovered series into an :class:`~viewer.io.image.Image`, by the reader of its format
(DICOM: :mod:`viewer.io.formats.dicom_pixels`; PNG/JPEG/TIFF: :mod:`viewer.io.raster_files`)."""

from __future__ import annotations

from collections.abc import Callable

from viewer.io.formats import reader
from viewer.io.image import Image
from viewer.io.isolated_decode import DecoderPool
from viewer.io.series import SeriesInfo

Progress = Callable[[float], None]


def load_series(
    series: SeriesInfo,
    *,
    pool: DecoderPool | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Image:
    """Decode a series. Files that fail are left out of the pixels and listed in ``Image.left_out``;
    raises :class:`LoadError` if nothing could be decoded."""
    return reader(series.kind).load(series, pool=pool, progress=progress, cancelled=cancelled)
