"""Opening images: DICOM (files, folders, ZIP, DICOMDIR) and PNG/JPEG/TIFF. No Qt, no torch.

Typical use::

    found = discover(["study.zip"])
    image = load_series(found.series[0])
    grey = to_display(image, frame=0)
"""

from viewer.io.discovery import Discovery, SeriesInfo, discover
from viewer.io.errors import LoadError, Problem
from viewer.io.image import FrameInfo, Geometry, Identity, Image, VoiLut, Window
from viewer.io.loader import load_series
from viewer.io.voi import apply_window, auto_window, default_voi, to_display

__all__ = [
    "Discovery",
    "FrameInfo",
    "Geometry",
    "Identity",
    "Image",
    "LoadError",
    "Problem",
    "SeriesInfo",
    "VoiLut",
    "Window",
    "apply_window",
    "auto_window",
    "default_voi",
    "discover",
    "load_series",
    "to_display",
]
