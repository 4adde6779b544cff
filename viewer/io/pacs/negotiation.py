"""What the viewer proposes and accepts over DIMSE: storage SOP classes, transfer syntaxes, roles.

A server need not convert what it stores (PS3.4 C.4.2.3, C.4.3.3): an archive holding a CT in JPEG
2000 may send it only in JPEG 2000. So the viewer asks for instances in every transfer syntax it
decodes (``decodable_syntaxes``: the uncompressed ones, and each compressed one pydicom has a
decoder for here, pylibjpeg and pyjpegls), each in a presentation context of its own, since the
acceptor picks one syntax per context:

- **C-GET** (the viewer as storage SCP on its own association, by SCP/SCU role selection): one
  context per (SOP class, transfer syntax). The SOP class comes from the image-level C-FIND; it is
  optional there (and at the series level), so when a server does not say it, the viewer proposes
  the storage classes it reads (``READABLE_CLASSES``), those of the series' modality first
  (``classes_to_propose``). At most 127 storage contexts fit one association (PS3.8: 128 with
  the retrieve model's), so they come in rounds (``storage_rounds``): each further association
  asks only for the instances the last one did not bring.
- **C-MOVE**: the viewer's storage SCP takes every storage SOP class in every syntax it decodes,
  and picks, in each context the server proposes, the server's own first choice among those
  (``server_choice``; pynetdicom would otherwise pick by its own order, Implicit VR Little Endian
  first, forcing a conversion the server may not be able to make).
- **C-STORE** (sending results): each object in its own SOP class and transfer syntax.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

from pydicom import uid

NATIVE_SYNTAXES = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
)
# Compressed syntaxes the viewer may decode, most common in archives first (when the contexts of
# one SOP class do not fit a round, the rare ones go to the next).
_COMPRESSED = (
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.RLELossless,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
)
# Presentation contexts of one association for storage (PS3.8 9.3.2.2: context IDs are the odd
# numbers 1-255, so 128 in all; one is the retrieve model's).
MAX_STORAGE_CONTEXTS = 127


@cache
def decodable_syntaxes() -> tuple[str, ...]:
    """The transfer syntaxes whose pixel data the viewer decodes here: the uncompressed ones, then
    each compressed one for which pydicom has a decoder with a plugin installed."""
    from pydicom.pixels import get_decoder

    found = list(NATIVE_SYNTAXES[:2])
    for syntax in _COMPRESSED:
        try:
            if get_decoder(syntax).is_available:
                found.append(syntax)
        except NotImplementedError:
            continue
    return (*found, *NATIVE_SYNTAXES[2:])


# The storage SOP classes the viewer reads, by the Modality of the series they usually come in.
_BY_MODALITY: dict[str, tuple[str, ...]] = {
    "CT": (uid.CTImageStorage, uid.EnhancedCTImageStorage, uid.LegacyConvertedEnhancedCTImageStorage),
    "MR": (
        uid.MRImageStorage,
        uid.EnhancedMRImageStorage,
        uid.EnhancedMRColorImageStorage,
        uid.LegacyConvertedEnhancedMRImageStorage,
    ),
    "CR": (uid.ComputedRadiographyImageStorage,),
    "DX": (uid.DigitalXRayImageStorageForPresentation, uid.DigitalXRayImageStorageForProcessing),
    "MG": (
        uid.DigitalMammographyXRayImageStorageForPresentation,
        uid.DigitalMammographyXRayImageStorageForProcessing,
        uid.BreastTomosynthesisImageStorage,
        uid.BreastProjectionXRayImageStorageForPresentation,
    ),
    "IO": (
        uid.DigitalIntraOralXRayImageStorageForPresentation,
        uid.DigitalIntraOralXRayImageStorageForProcessing,
    ),
    "US": (uid.UltrasoundImageStorage, uid.UltrasoundMultiFrameImageStorage, uid.EnhancedUSVolumeStorage),
    "XA": (uid.XRayAngiographicImageStorage, uid.EnhancedXAImageStorage, uid.XRay3DAngiographicImageStorage),
    "RF": (uid.XRayRadiofluoroscopicImageStorage, uid.EnhancedXRFImageStorage),
    "NM": (uid.NuclearMedicineImageStorage,),
    "PT": (
        uid.PositronEmissionTomographyImageStorage,
        uid.EnhancedPETImageStorage,
        uid.LegacyConvertedEnhancedPETImageStorage,
    ),
    "SEG": (uid.SegmentationStorage,),
}
# In a series of any modality: screen captures, and the viewer's own results.
_ANYWHERE = (
    uid.SecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
    uid.MultiFrameSingleBitSecondaryCaptureImageStorage,
    uid.SegmentationStorage,
    uid.ParametricMapStorage,
)
READABLE_CLASSES: tuple[str, ...] = tuple(
    dict.fromkeys([*(c for classes in _BY_MODALITY.values() for c in classes), *_ANYWHERE])
)


def likely_classes(modality: str) -> tuple[str, ...]:
    """``READABLE_CLASSES`` in the order worth proposing for a series of ``modality``: its own
    classes first, then those found in any series, then the rest."""
    own = _BY_MODALITY.get(modality.upper().strip(), ())
    return tuple(dict.fromkeys([*own, *_ANYWHERE, *READABLE_CLASSES]))


Pair = tuple[str, str]  # (SOP class UID, transfer syntax UID)


def classes_to_propose(instance_classes: Sequence[str], modality: str = "") -> list[str]:
    """The storage SOP classes a C-GET proposes for instances of ``instance_classes`` (as the
    image-level C-FIND answered them, empty where it did not): those, when every instance has one;
    else those it named, then ``likely_classes`` for the series' ``modality``."""
    named = list(dict.fromkeys(c for c in instance_classes if c))
    if named and all(instance_classes):
        return named
    return list(dict.fromkeys([*named, *likely_classes(modality)]))


def storage_rounds(classes: Iterable[str], *, size: int = MAX_STORAGE_CONTEXTS) -> list[list[Pair]]:
    """The storage presentation contexts of each C-GET association, one (class, syntax) each:
    every syntax the viewer decodes for each of ``classes``, ``size`` contexts at most per
    association."""
    pairs = [(c, s) for c in dict.fromkeys(classes) for s in decodable_syntaxes()]
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def server_choice(offered: Sequence[str], ours: Sequence[str]) -> str | None:
    """The transfer syntax the viewer takes in a presentation context a server proposes: the
    server's own first choice among ``ours`` (None: it offers none of them). pynetdicom, left to
    itself, takes the first of the acceptor's syntaxes that the context offers, whatever the
    requestor's order; so the storage SCP narrows each proposed context to this one before
    pynetdicom negotiates (``dimse_retrieve.Receiver.on_requested``)."""
    return next((s for s in offered if s in ours), None)


def name(value: str) -> str:
    """A SOP class or transfer syntax by its name (its UID when pydicom does not know it)."""
    known = uid.UID(value)
    return known.name if known.is_valid and known.name != str(known) else str(value)


def names(values: Iterable[str], most: int = 4) -> str:
    """A short list of names: the first ``most``, and how many more."""
    values = list(dict.fromkeys(values))
    shown = ", ".join(name(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


# What a C-GET or C-MOVE status means (PS3.4 C.4.2.1.5, C.4.3.1.4); the rest by their range.
_STATUSES = {
    0xA701: "out of resources: unable to calculate the number of matches",
    0xA702: "out of resources: unable to perform sub-operations",
    0xA801: "move destination unknown",
    0xA900: "identifier does not match the SOP class",
    0xB000: "sub-operations complete, one or more failures",
    0xFE00: "cancelled",
}


def status_text(code: int) -> str:
    if code in _STATUSES:
        return f"0x{code:04X} ({_STATUSES[code]})"
    if 0xA700 <= code <= 0xA7FF:
        return f"0x{code:04X} (refused: out of resources)"
    if 0xC000 <= code <= 0xCFFF:
        return f"0x{code:04X} (failed: unable to process)"
    return f"0x{code:04X}"
