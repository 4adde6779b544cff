"""Decode a DICOM series into an :class:`~viewer.io.image.Image` in real-world units.

Three decoding routes, chosen per file:

- uncompressed single-frame grayscale: read straight from the file at the offset found while
  scanning the header (no second header parse);
- other uncompressed or deflated data: pydicom, in this process;
- compressed (JPEG, JPEG-LS, JPEG 2000, RLE): pydicom plugins in a disposable worker process
  (:mod:`viewer.io.isolated_decode`), so a native decoder crash costs one file, not the app.

A series is written slice by slice into one preallocated float32 volume, so memory peaks at the
volume plus one slice. Before anything is allocated the series is held to the budgets
(:mod:`viewer.io.budgets`: slices, decoded bytes per series and per file) from its headers, so a
series made by hand (not by discovery, which checks the same) cannot slip past them; native pixel
data is read in blocks of rows from a stream, a ZIP member's included, never copied whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from viewer.io import pixel_decode
from viewer.io.budgets import decoded_bytes, over_budget
from viewer.io.dicom_header import HeaderRecord
from viewer.io.errors import LoadError, Problem, describe_exception
from viewer.io.image import FrameInfo, Geometry, Image, VoiLut, Window
from viewer.io.isolated_decode import shared_pool
from viewer.io.presets import load_presets
from viewer.io.series import SeriesInfo
from viewer.io.voi import auto_window

Progress = Callable[[float], None]
# Uncompressed pixels are rescaled in blocks of about this many, so no full-size temporary exists.
_BLOCK_PIXELS = 1 << 18


def record_decoded_bytes(record: HeaderRecord) -> int:
    """What one file's pixels take once decoded, from its header (PALETTE COLOR becomes RGB)."""
    if record.photometric == "PALETTE COLOR":  # indices become RGB, of up to 16 bits a sample
        return decoded_bytes(record.rows, record.columns, record.frames, 3, 16)
    samples = record.samples_per_pixel
    return decoded_bytes(record.rows, record.columns, record.frames, samples, record.bits_allocated)


def record_over_budget(record: HeaderRecord) -> str | None:
    """Why one file's declared pixels are beyond the budgets, or None."""
    size = f"{record.rows} x {record.columns}"
    if record.frames > 1:
        if reason := over_budget(f"an object of {record.frames} frames", record.frames, "slices"):
            return reason
        size = f"{record.frames} frames of {size}"
    return over_budget(f"{size} pixels decoded", record_decoded_bytes(record), "load_bytes")


def series_over_budget(series: SeriesInfo) -> str | None:
    """Why a series is beyond the budgets (too many slices, too many decoded bytes), or None."""
    frames = series.n_frames
    if reason := over_budget(f"series of {frames} slices", frames, "slices"):
        return reason
    total = sum(record_decoded_bytes(r) for r in series.records)
    what = f"series of {frames} slices of {series.rows} x {series.columns} decoded"
    return over_budget(what, total, "study_bytes")


class DicomSeriesLoader:
    def __init__(self, series, pool, progress, cancelled):
        self.series: SeriesInfo = series
        self.pool = pool
        self.progress = progress
        self.cancelled = cancelled or (lambda: False)
        self.records: list[HeaderRecord] = series.records
        # Frame offset of each record in the output stack.
        self.offsets = np.cumsum([0] + [r.frames for r in self.records]).tolist()
        self.pixels: np.ndarray | None = None
        self.ok = np.zeros(len(self.records), bool)
        self.failures: list[Problem] = []
        self.voi_luts: tuple[VoiLut, ...] = ()
        self.photometric = self.records[0].photometric or "MONOCHROME2"
        self.notes: list[str] = []
        self.done = 0

    def load(self) -> Image:
        self._check_budgets()
        compressed = []
        for i, record in enumerate(self.records):
            if self.cancelled():
                raise LoadError(str(record.ref), "loading cancelled")
            if record.is_compressed:
                compressed.append(i)
                continue
            try:
                decoded = self._decode_in_process(i, record)
                if decoded is None:
                    self.ok[i] = True
                    self._advance()
                else:
                    self._store(i, decoded)
            except LoadError as exc:
                self._fail(i, exc.reason)
            except Exception as exc:
                self._fail(i, f"cannot decode pixel data: {describe_exception(exc)}")
        if compressed:
            pool = self.pool or shared_pool()
            pool.decode(
                [self.records[i].ref for i in compressed],
                lambda k, result: self._on_isolated(compressed[k], result),
                self.cancelled,
            )
            if self.cancelled():
                raise LoadError(str(self.records[0].ref), "loading cancelled")
        if not self.ok.any():
            reason = self.failures[0].reason if self.failures else "no pixel data could be decoded"
            raise LoadError(self.failures[0].path if self.failures else self.series.paths[0], reason)
        return self._image()

    def _check_budgets(self) -> None:
        """Refuse, from the headers, a series beyond the budgets before allocating anything."""
        for record in self.records:
            if reason := record_over_budget(record):
                raise LoadError(str(record.ref), reason)
        if reason := series_over_budget(self.series):
            raise LoadError(self.series.paths[0], reason)

    def _decode_in_process(self, index: int, record: HeaderRecord) -> pixel_decode.Decoded | None:
        """Decode an uncompressed file here; direct reads go straight into the output (None)."""
        if record.pixel_location is None or record.has_voi_lut_sequence or record.has_modality_lut_sequence:
            return pixel_decode.decode_file(record.ref)
        self._read_native_into(index, record)
        return None

    def _read_native_into(self, index: int, record: HeaderRecord) -> None:
        """Read stored values in blocks of rows and rescale each into the output: no full-size
        temporary, and no copy of the file (a ZIP member is inflated block by block)."""
        loc = record.pixel_location
        target = self._output((record.rows, record.columns), np.float32)[self.offsets[index]]
        row_bytes = loc.length // record.rows
        itemsize = np.dtype(loc.dtype).itemsize
        block = max(1, _BLOCK_PIXELS // record.columns)
        with record.ref.stream() as stream:
            stream.seek(loc.offset)
            for r0 in range(0, record.rows, block):
                r1 = min(record.rows, r0 + block)
                length = (r1 - r0) * row_bytes
                stored = pixel_decode.read_native(
                    stream.read(length),
                    length,
                    str(record.ref),
                    loc.dtype,
                    record.bits_stored,
                    before=r0 * row_bytes // itemsize,
                    total=loc.length // itemsize,
                )
                pixel_decode.real_units(
                    stored.reshape(r1 - r0, record.columns),
                    record.rescale_slope,
                    record.rescale_intercept,
                    modality=record.identity.modality,
                    bits_stored=record.bits_stored,
                    pixel_representation=record.pixel_representation,
                    out=target[r0:r1],
                    notes=self.notes,
                )

    def _on_isolated(self, index: int, result: pixel_decode.Decoded | Problem) -> None:
        if isinstance(result, Problem):
            self._fail(index, result.reason)
            return
        try:
            self._store(index, result)
        except LoadError as exc:
            self._fail(index, exc.reason)

    def _store(self, index: int, decoded: pixel_decode.Decoded) -> None:
        record = self.records[index]
        start, stop = self.offsets[index], self.offsets[index + 1]
        arr = decoded.pixels
        if arr.shape[0] != stop - start or arr.shape[1:3] != (record.rows, record.columns):
            raise LoadError(str(record.ref), f"decoded size {arr.shape} does not match the header")
        if len(self.records) == 1:
            self.pixels = arr  # a single object: keep the decoded array, no copy
        else:
            target = self._output(arr.shape[1:], arr.dtype)
            if target.shape[1:] != arr.shape[1:] or target.dtype != arr.dtype:
                raise LoadError(
                    str(record.ref), "slice differs in size or colour from the rest of the series"
                )
            target[start:stop] = arr
        self.photometric = decoded.photometric
        self.voi_luts = self.voi_luts or decoded.voi_luts
        self.notes += [n for n in decoded.notes if n not in self.notes]
        self.ok[index] = True
        self._advance()

    def _output(self, frame_shape: tuple[int, ...], dtype) -> np.ndarray:
        """The output stack, allocated once from the first decoded frame's shape and type."""
        if self.pixels is None:
            self.pixels = np.empty((self.offsets[-1], *frame_shape), dtype)
        return self.pixels

    def _fail(self, index: int, reason: str) -> None:
        self.failures.append(Problem(str(self.records[index].ref), reason))
        self._advance()

    def _advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done / len(self.records))

    def _image(self) -> Image:
        records = self.records
        pixels = self.pixels
        warnings = list(self.series.notes_all()) + self.notes
        if not self.ok.all():
            keep = np.concatenate(
                [np.arange(self.offsets[i], self.offsets[i + 1]) for i in range(len(records)) if self.ok[i]]
            )
            pixels = pixels[keep]
            warnings.append(
                f"{len(self.failures)} of {len(self.records)} files could not be decoded and are left out"
            )
            records = [r for i, r in enumerate(records) if self.ok[i]]
        first = records[0]
        frames = tuple(
            FrameInfo(
                source=str(r.ref),
                frame_index=k,
                sop_instance_uid=r.sop_instance_uid,
                instance_number=r.instance_number,
                position=r.position,
                slice_thickness=r.slice_thickness,
            )
            for r in records
            for k in range(r.frames)
        )
        is_volume = self.series.is_volume and len(records) > 1
        color = pixels.ndim == 4
        windows, default = self._windows(pixels, records, color)
        photometric = "RGB" if color else self.photometric
        invert = photometric == "MONOCHROME1" or (
            photometric == "MONOCHROME2" and first.presentation_lut_shape == "INVERSE"
        )
        return Image(
            pixels=pixels,
            photometric=photometric,
            geometry=self._geometry(records, is_volume),
            identity=first.identity if len(records) == 1 else self.series.identity,
            frames=frames,
            windows=windows,
            voi_luts=self.voi_luts,
            default_window=default,
            invert=invert,
            is_volume=is_volume,
            units="HU" if first.identity.modality == "CT" and not color else "",
            transfer_syntax=self.series.transfer_syntax,
            bits_stored=first.bits_stored,
            kind="dicom",
            warnings=tuple(dict.fromkeys(warnings)),
            left_out=tuple(self.failures),
        )

    def _windows(self, pixels, records, color) -> tuple[tuple[Window, ...], Window | None]:
        if color:
            return (), None
        presets = load_presets()
        modality = records[0].identity.modality
        file_windows = records[len(records) // 2].windows
        auto = auto_window(pixels, presets.low_percentile, presets.high_percentile)
        preset_windows = tuple(p.window for p in presets.presets(modality))
        # The file's own VOI first (its window, else its VOI LUT: default None), then the modality's
        # preset, then percentiles.
        default: Window | None = None
        if file_windows:
            default = file_windows[0]
        elif not self.voi_luts:
            default = presets.default(modality) or auto
        return (*file_windows, *preset_windows, auto), default

    def _geometry(self, records: list[HeaderRecord], is_volume: bool) -> Geometry:
        first = records[0]
        row_spacing, col_spacing = first.spacing
        if is_volume:
            iop = np.asarray(first.orientation)
            normal = np.cross(iop[:3], iop[3:])
            positions = np.array([np.dot(r.position, normal) for r in records])
            slice_spacing = float(np.median(np.diff(positions)))
            direction = np.column_stack([iop[:3], iop[3:], normal])
            return Geometry(
                (slice_spacing, row_spacing, col_spacing),
                first.spacing_source,
                first.position,
                tuple(float(v) for v in direction.ravel()),
            )
        thickness = first.slice_thickness or 1.0
        geometry = Geometry((thickness, row_spacing, col_spacing), first.spacing_source, first.position)
        if first.orientation is not None:
            iop = np.asarray(first.orientation)
            direction = np.column_stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])])
            geometry = replace(geometry, direction=tuple(float(v) for v in direction.ravel()))
        return geometry
