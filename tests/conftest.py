import os
import subprocess

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from pydicom.data import get_testdata_file

from tests.system import need_program

# The real main window (window, settings) and a local Dask cluster (cluster) for every test that
# asks for them, wherever it lives.
pytest_plugins = ["tests.plugins.gui", "tests.plugins.cluster"]


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


# Markers given by where a test lives, so `-m` selects them without every file repeating them:
# a folder's tests, or a file's (a test elsewhere that needs one says so with its own marker).
_FOLDER_MARKS = {"ui": "gui", "pacs": "pacs"}
_FILE_MARKS = {
    "test_cli_explain_cluster.py": "cluster",
    "test_cli_evaluate_cluster.py": "cluster",
    "test_cli_stability_cluster.py": "cluster",
    "test_servers.py": "pacs",  # tests/security: the viewer against hostile servers on loopback
}


@pytest.hookimpl(tryfirst=True)  # before -m selects: the marks given here count
def pytest_collection_modifyitems(config, items):
    """Mark tests ``gui``, ``pacs`` or ``cluster`` by their place (see ``_FOLDER_MARKS``), and
    ``slow`` the parameters a ``slow_for(name, values)`` marker names."""
    root = config.rootpath / "tests"
    for item in items:
        for mark in item.iter_markers("slow_for"):
            name, values = mark.args
            callspec = getattr(item, "callspec", None)
            if callspec is not None and callspec.params.get(name) in values:
                item.add_marker("slow")
        path = item.path
        parts = path.relative_to(root).parts if path.is_relative_to(root) else ()
        if parts and parts[0] in _FOLDER_MARKS:
            item.add_marker(_FOLDER_MARKS[parts[0]])
        if path.name in _FILE_MARKS:
            item.add_marker(_FILE_MARKS[path.name])
