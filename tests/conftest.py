import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from pydicom.data import get_testdata_file


@pytest.fixture(scope="session")
def testdata():
    """Path of a file from pydicom's test corpus (pydicom-data included)."""

    def get(name: str) -> str:
        path = get_testdata_file(name)
        if path is None:
            pytest.fail(f"pydicom test file {name} is missing: is pydicom-data installed?")
        return path

    return get
