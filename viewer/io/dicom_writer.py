"""Write DICOM: CT series and projection radiographs from arrays in real-world units.

Used by the phantom generator, the benchmarks and the tests. Every file is written atomically
(a temporary file renamed into place) and an existing file is never overwritten.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from viewer import __version__
from viewer.io.atomic import write_new
from viewer.io.image import Image

_UID_PREFIX = "1.2.826.0.1.3680043.10.1514."  # generate_uid's default root is pydicom's; ours is fixed


def make_uid(*entropy: object) -> UID:
    """A deterministic UID from the given values (same inputs, same UID)."""
    return generate_uid(prefix=_UID_PREFIX, entropy_srcs=[str(e) for e in entropy])


def anonymized_uid(uid: str) -> str:
    """The UID that stands in for ``uid`` in anonymised exports (the same one every time), and in
    the names of their files (``viewer.io.naming``)."""
    return str(make_uid("anonymized", uid))


@dataclass
class StudyInfo:
    """Patient and study fields written into every file of a study."""

    patient_name: str = "Phantom^Demo"
    patient_id: str = "PHANTOM-0001"
    patient_sex: str = "O"
    patient_birth_date: str = ""
    study_description: str = ""
    study_date: str = field(default_factory=lambda: _dt.date.today().strftime("%Y%m%d"))
    accession_number: str = ""
    study_uid: str = ""
    seed: object = 0

    def uid(self) -> str:
        return self.study_uid or make_uid("study", self.patient_id, self.seed)


# The Manufacturer of every phantom study this package writes: how a phantom is told from a real film.
PHANTOM_MANUFACTURER = "Saliency Viewer phantom"


def is_phantom(image: Image) -> bool:
    """Whether ``image`` is one of the product's own synthetic studies (the bundled samples, and
    what ``saliency-viewer phantom`` writes), not a real patient's."""
    return image.identity.manufacturer == PHANTOM_MANUFACTURER


def write_atomic(ds: Dataset, path: Path) -> Path:
    """Write a dataset to ``path`` without ever overwriting or leaving a partial file."""
    return write_new(path, lambda f: ds.save_as(f, enforce_file_format=True))


def _base(study: StudyInfo, sop_class: UID, sop_uid: UID, modality: str, series_uid: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"SALVIEW_{__version__}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientSex = study.patient_sex
    ds.PatientBirthDate = study.patient_birth_date
    ds.StudyInstanceUID = study.uid()
    ds.StudyDate = study.study_date
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.Manufacturer = PHANTOM_MANUFACTURER
    ds.ContentDate = study.study_date
    ds.ContentTime = "120000"
    ds.BurnedInAnnotation = "NO"
    return ds


# Lossless compressions the writer offers: name -> (transfer syntax, pydicom encoding plugin).
COMPRESSIONS = {"rle": (RLELossless, "pydicom"), "j2k": (JPEG2000Lossless, "pylibjpeg")}


def _set_pixels(ds: Dataset, stored: np.ndarray, bits_stored: int, compress: str | None) -> None:
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    if compress:
        syntax, plugin = COMPRESSIONS[compress]
        # Encoded once at creation: the instance keeps its own (deterministic) UID.
        ds.compress(syntax, encoding_plugin=plugin, generate_instance_uid=False)


def write_ct_series(
    hu: np.ndarray,
    out_dir: Path | str,
    *,
    spacing: tuple[float, float, float] = (5.0, 0.5, 0.5),
    origin: tuple[float, float, float] | None = None,
    study: StudyInfo | None = None,
    series_description: str = "Head CT",
    series_number: int = 1,
    window: tuple[float, float] = (40.0, 80.0),
    compress: str | None = None,
    file_names: list[str] | None = None,
) -> list[Path]:
    """Write a volume ``hu[z, y, x]`` (Hounsfield units) as an axial CT series, one file per slice.

    Stored values are unsigned 12-bit, HU + 1024 (intercept -1024), as most scanners write them.
    Slice ``k`` lies at ``origin + k * spacing[0]`` along the patient's z axis (feet to head).
    """
    study = study or StudyInfo(study_description=series_description)
    out_dir = Path(out_dir)
    n, rows, cols = hu.shape
    dz, dy, dx = spacing
    if origin is None:
        origin = (-cols * dx / 2, -rows * dy / 2, 0.0)
    series_uid = make_uid("series", study.uid(), series_number, series_description)
    frame_uid = make_uid("frame", series_uid)
    paths = []
    for k in range(n):
        sop_uid = make_uid("ct", series_uid, k)
        ds = _base(study, CTImageStorage, sop_uid, "CT", series_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.PatientPosition = "HFS"  # Type 2C for CT: head first, supine, as a head CT is taken
        ds.InstanceNumber = k + 1
        ds.AcquisitionNumber = 1
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "HEAD"
        ds.ImagePositionPatient = [f"{origin[0]:.4f}", f"{origin[1]:.4f}", f"{origin[2] + k * dz:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{origin[2] + k * dz:.4f}"
        ds.SliceThickness = dz
        ds.PixelSpacing = [dy, dx]
        ds.KVP = 120
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = window
        stored = np.clip(np.rint(hu[k]) + 1024, 0, 4095).astype(np.uint16)
        _set_pixels(ds, stored, 12, compress)
        name = file_names[k] if file_names else f"CT{k + 1:04d}.dcm"
        paths.append(write_atomic(ds, out_dir / name))
    return paths


def write_radiograph(
    image: np.ndarray,
    path: Path | str,
    *,
    modality: str = "DX",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    pixel_spacing: tuple[float, float] | None = (0.2, 0.2),
    imager_pixel_spacing: tuple[float, float] | None = (0.2, 0.2),
    window: tuple[float, float] | None = None,
    study: StudyInfo | None = None,
    series_description: str = "Chest PA",
    series_number: int = 1,
    compress: str | None = None,
) -> Path:
    """Write a projection radiograph from ``image`` in [0, 1] (1 = most attenuating, shown white).

    The values are quantised to ``bits_stored`` bits; MONOCHROME1 stores them inverted, as CR
    readers do, so the image displays the same either way.
    """
    study = study or StudyInfo(study_description="Chest")
    top = (1 << bits_stored) - 1
    stored = np.clip(np.rint(np.asarray(image, np.float64) * top), 0, top).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(np.uint16)
    sop_class = (
        DigitalXRayImageStorageForPresentation if modality == "DX" else ComputedRadiographyImageStorage
    )
    series_uid = make_uid("series", study.uid(), series_number, series_description)
    ds = _base(study, sop_class, make_uid("image", series_uid), modality, series_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    if modality == "DX":
        _dx_attributes(ds, photometric, bits_stored, window)
    ds.PhotometricInterpretation = photometric
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"  # Type 1C beside a rescale: unspecified units (detector values)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    _set_pixels(ds, stored, bits_stored, compress)
    return write_atomic(ds, Path(path))


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _dx_attributes(ds: Dataset, photometric: str, bits_stored: int, window) -> None:
    """What the DX Image IOD (PS3.3 A.26) requires beyond a CR: a PA chest, for presentation."""
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "U"  # unpaired: the chest
    ds.AnatomicRegionSequence = [_code("43799004", "SCT", "Chest")]
    ds.ViewCodeSequence = [_code("399348003", "SCT", "postero-anterior")]
    ds.PixelIntensityRelationship = "LIN"
    # Stored MONOCHROME2 values grow with attenuation, i.e. fall as the beam's intensity rises.
    ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME2" else 1
    ds.LossyImageCompression = "00"
    ds.DetectorType = ""
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    if window is None:  # For Presentation: a window is required
        top = (1 << bits_stored) - 1
        ds.WindowCenter, ds.WindowWidth = (top + 1) / 2, top + 1


__all__ = [
    "PHANTOM_MANUFACTURER",
    "StudyInfo",
    "anonymized_uid",
    "is_phantom",
    "make_uid",
    "write_atomic",
    "write_ct_series",
    "write_radiograph",
]
