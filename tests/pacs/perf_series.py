"""A generated axial CT series of any length, for the PACS fault tests and the retrieve benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.io.dicom_writer import StudyInfo, write_ct_series


def write_series(folder: Path, slices: int, size: int = 512, *, seed: int = 0) -> list[Path]:
    """``slices`` uncompressed ``size`` x ``size`` CT slices (a noisy head-sized ellipse) in
    ``folder``, in a study of their own."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    head = np.where(x**2 / 0.8 + y**2 < 0.8, 40.0, -1000.0)
    hu = head[None] + rng.normal(0, 20, (slices, size, size))
    study = StudyInfo(
        patient_name=f"Series^Generated{slices}", patient_id=f"GEN-{slices}-{seed}",
        study_description=f"Generated CT, {slices} slices",
    )  # fmt: skip
    return write_ct_series(hu.astype(np.float32), folder, spacing=(1.0, 0.5, 0.5), study=study)
