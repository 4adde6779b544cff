"""PNG, JPEG and TIFF files (:mod:`viewer.io.raster_files`): each file is a series of its own."""

from __future__ import annotations

from pathlib import Path

from viewer.io.errors import Problem
from viewer.io.image import Identity, Image
from viewer.io.raster_files import RasterRecord, load_raster, raster_format, read_raster_header
from viewer.io.series import SeriesInfo
from viewer.io.sources import FileRef


class RasterReader:
    kind = "raster"
    title = "PNG, JPEG or TIFF image"
    patterns = ("*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff")

    @staticmethod
    def sniff(head: bytes) -> int:
        return 50 if raster_format(head) else 0

    @staticmethod
    def read(ref: FileRef, head: bytes) -> RasterRecord:
        return read_raster_header(ref, raster_format(head) or "")

    @staticmethod
    def group(records: list[RasterRecord], _problems: list[Problem]) -> list[SeriesInfo]:
        return [_series(record) for record in records]

    @staticmethod
    def load(series: SeriesInfo, **_options) -> Image:
        return load_raster(series.records[0])


def _series(record: RasterRecord) -> SeriesInfo:
    identity = Identity(
        series_description=record.ref.name,
        study_description=Path(record.ref.member or record.ref.path).parent.name,
    )
    return SeriesInfo(identity, "raster", records=[record])
