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


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only when asked for: ``pytest -m slow`` (or any -m naming them)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (e.g. make installer-test)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
