import pytest


@pytest.fixture
def sentinel(tmp_path):
    """A folder that attack inputs try to write into; each test checks it stays empty."""
    folder = tmp_path / "sentinel"
    folder.mkdir()
    yield folder
    assert not any(folder.iterdir()), f"an attack wrote {sorted(p.name for p in folder.iterdir())}"
