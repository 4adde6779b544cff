"""Manifest validation: every mistake gets a message naming the file and the key."""

import pytest
import torch

from viewer.inference import ManifestError, load_manifest

GOOD = """
name = "test"
task = "multilabel"
labels = ["a", "b"]

[network]
arch = "resnet18"
weights = "w.pt"
in_channels = 1

[input]
size = [64, 64]
intensity = "voi"
mean = [0.5]
std = [0.25]
"""


@pytest.fixture
def folder(tmp_path):
    torch.save({}, tmp_path / "w.pt")
    return tmp_path


def write(folder, text):
    path = folder / "manifest.toml"
    path.write_text(text)
    return path


def test_good_manifest(folder):
    manifest = load_manifest(write(folder, GOOD))
    assert manifest.labels == ("a", "b")
    assert manifest.weights == (folder / "w.pt").resolve()
    assert manifest.input.size == (64, 64)
    assert manifest.input.resize == "letterbox"
    assert load_manifest(folder).name == "test"  # a folder means its manifest.toml


def test_ct_windows(folder):
    text = GOOD.replace("in_channels = 1", "in_channels = 3").replace(
        'intensity = "voi"\nmean = [0.5]\nstd = [0.25]', "windows = [[40, 80], [75, 215], [600, 2800]]"
    )
    manifest = load_manifest(write(folder, text))
    assert manifest.input.intensity == "windows"
    assert manifest.input.windows == ((40.0, 80.0), (75.0, 215.0), (600.0, 2800.0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('labels = ["a", "b"]\n', ""), "missing required key 'labels'"),
        (lambda t: t.replace('task = "multilabel"', 'task = "regression"'), "task must be"),
        (lambda t: t.replace('"w.pt"', '"nope.pt"'), "weights file not found"),
        (lambda t: t.replace("[network]", '[network]\nkey_map = ["a"]'), "network.key_map must be a table"),
        (
            lambda t: t.replace("in_channels = 1", "in_channels = 1\ndepth = 3"),
            "unknown key(s) network.depth",
        ),
        (lambda t: t.replace("size = [64, 64]", "size = [64]"), "input.size must be [height, width]"),
        (lambda t: t.replace('"voi"', '"gamma"'), "input.intensity must be"),
        (lambda t: t.replace("mean = [0.5]", "mean = [0.5, 0.5]"), "input.mean needs 1 or 1 values"),
        (lambda t: t.replace('labels = ["a", "b"]', 'labels = ["a", "a"]'), "labels must be unique"),
        (
            lambda t: t.replace('intensity = "voi"', "windows = [[40, 80], [600, 2800]]"),
            "2 windows for 1 input",
        ),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_mistakes_are_named(folder, change, message):
    path = write(folder, change(GOOD))
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest(tmp_path / "missing.toml")
