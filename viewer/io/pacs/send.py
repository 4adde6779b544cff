"""Send the viewer's DICOM results (Parametric Map, Secondary Capture, Segmentation, SR) to a node.

Each object sent names the algorithm that made it the way IHE AI Results asks: an item of the
Contributing Equipment Sequence with purpose DCM 109102 "Processing Equipment", the viewer as
manufacturer, the model's name as model name, and as software versions the viewer's version and the
SHA-256 of the model's weights. The files on disk are read, never changed. A send that fails on the
way (server down, timed out, HTTP 5xx) is repeated with the same objects: the same SOP Instance
UIDs, so a server that had stored some of them stores nothing twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom import Dataset
from pydicom.sr.codedict import codes

from viewer import __version__
from viewer.io.dicom_derived import MANUFACTURER, lo
from viewer.io.pacs.nodes import PacsError
from viewer.io.pacs.retrieve import Connection


@dataclass(frozen=True)
class Algorithm:
    """The model that made the results: its name and the SHA-256 of its weights file."""

    name: str
    weights_sha256: str

    @classmethod
    def of_weights(cls, name: str, weights: Path) -> Algorithm:
        digest = hashlib.sha256()
        with open(weights, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return cls(name, digest.hexdigest())


def identified(ds: Dataset, algorithm: Algorithm) -> Dataset:
    """``ds`` with a Contributing Equipment item naming ``algorithm`` (once, however often sent)."""
    versions = [__version__, algorithm.weights_sha256]
    for item in ds.get("ContributingEquipmentSequence", []):
        if (
            item.get("ManufacturerModelName") == lo(algorithm.name)
            and list(item.get("SoftwareVersions", [])) == versions
        ):
            return ds
    item = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=lo(algorithm.name),
        software_versions=versions,
    )
    ds.ContributingEquipmentSequence = [*ds.get("ContributingEquipmentSequence", []), item]
    return ds


def read_results(paths: Sequence[Path], algorithm: Algorithm | None) -> list[Dataset]:
    """The objects in ``paths``, identified with ``algorithm`` when given; ``ValueError`` naming a
    file that is not DICOM."""
    datasets = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise ValueError(f"{path}: not a DICOM file ({exc})") from None
        datasets.append(identified(ds, algorithm) if algorithm else ds)
    return datasets


def send(
    connection: Connection, datasets: Sequence[Dataset], *, attempts: int = 3, pause: float = 1.0
) -> None:
    """Store ``datasets`` on the node, repeating the whole (idempotent) send after a transient
    failure, ``attempts`` times in all with a doubling pause."""
    for attempt in range(attempts):
        try:
            connection.store(list(datasets))
            return
        except PacsError as exc:
            if not exc.transient or attempt == attempts - 1:
                raise
            time.sleep(pause * 2**attempt)
