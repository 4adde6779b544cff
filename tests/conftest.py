import os
import shutil
import subprocess

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from pydicom.data import get_testdata_file


def need_program(program: str) -> str:
    """The path of a system program a test needs: a skip here, a failure in CI (.ci/run installs
    what the tests need, so a missing one there is a broken CI script, not an optional extra)."""
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is missing: .ci/run installs it")
        pytest.skip(f"{program} is not installed (Debian: see .ci/run)")
    return path


@pytest.fixture(scope="module")
def xvfb():
    """A real X server on a free display number, 1600 x 1000 x 24; yields its DISPLAY."""
    read, write = os.pipe()
    server = subprocess.Popen(
        [need_program("Xvfb"), "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()  # Xvfb writes the number once it accepts connections
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(10)


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
