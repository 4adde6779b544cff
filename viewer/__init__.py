"""Saliency Viewer: see where a CNN is looking, on real DICOM, next to the radiologist's annotation."""

__version__ = "0.1.0"
