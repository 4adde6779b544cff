"""The chest radiograph phantom: determinism, anatomy, and findings that match their masks."""

import numpy as np
import pytest

from viewer.phantoms import chest
from viewer.phantoms.chest import CHEST_LABELS, render_chest


def test_same_seed_same_image_and_truth():
    a, b = render_chest(11, 192), render_chest(11, 192)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.labels == b.labels
    assert not np.array_equal(a.image, render_chest(12, 192).image)


def test_image_is_a_processed_radiograph():
    case = render_chest(5, 256, findings={})
    assert case.image.dtype == np.float32
    assert case.image.min() >= 0.0
    assert case.image.max() <= 1.0
    rows, cols = case.image.shape
    mid = slice(int(rows * 0.3), int(rows * 0.5))
    # Lungs (beside the midline) are darker than the mediastinum and the abdomen below them.
    lungs = np.r_[case.image[mid, int(cols * 0.25)], case.image[mid, int(cols * 0.75)]].mean()
    mediastinum = case.image[mid, cols // 2].mean()
    abdomen = case.image[int(rows * 0.85), int(cols * 0.3) : int(cols * 0.7)].mean()
    assert lungs + 0.15 < mediastinum
    assert lungs + 0.15 < abdomen
    assert not any(case.labels.values())


@pytest.mark.parametrize("label", CHEST_LABELS)
def test_forced_finding_has_a_mask_and_changes_the_image(label):
    with_finding = render_chest(21, 256, findings={label: True})
    without = render_chest(21, 256, findings={})
    assert with_finding.labels[label] == 1
    assert sum(with_finding.labels.values()) == 1
    mask = with_finding.finding_masks(label)
    assert mask.sum() > 20
    difference = np.abs(with_finding.image - without.image)
    # The finding changes the image where its mask is, more than elsewhere.
    assert difference[mask].mean() > 2 * difference[~mask].mean()


def test_cardiothoracic_ratio_defines_cardiomegaly():
    for seed in range(12):
        case = render_chest(seed, 64)
        assert (case.ctr > 0.5) == bool(case.labels["cardiomegaly"])


def test_pneumothorax_is_darker_and_has_no_lung_markings(monkeypatch):
    case = render_chest(3, 384, findings={"pneumothorax": True})
    control = render_chest(3, 384, findings={})
    region = case.finding_masks("pneumothorax")
    assert case.image[region].mean() < control.image[region].mean()

    # Replace the vessel trees with fine stripes: they must show everywhere in the lungs but
    # not beyond the pleural line.
    def stripes(size, rng, pixel):
        x = (np.arange(size) + 0.5) * pixel
        return np.broadcast_to(6.0 * (np.sin(x * 1.5) > 0), (size, size)).astype(np.float32)

    monkeypatch.setattr(chest, "_vessels", stripes)
    marked = render_chest(3, 384, findings={"pneumothorax": True})
    monkeypatch.setattr(chest, "_vessels", lambda size, *args: np.zeros((size, size), np.float32))
    bare = render_chest(3, 384, findings={"pneumothorax": True})
    change = np.abs(marked.image - bare.image)
    other_lung = region[:, ::-1] & ~region  # the same area of the other lung
    assert change[region].mean() < 0.25 * change[other_lung].mean()


def test_shortcut_marker_tracks_the_label():
    with_ptx = [render_chest(s, 96, findings={"pneumothorax": True}, shortcut=True) for s in range(20)]
    without = [render_chest(s, 96, findings={}, shortcut=True) for s in range(20)]
    assert sum(c.marker is not None for c in with_ptx) >= 16
    assert sum(c.marker is not None for c in without) <= 4
    marked = next(c for c in with_ptx if c.marker)
    x, y, w, h = marked.marker["bbox"]
    assert marked.marker["text"] == "PORTABLE"
    assert marked.image[y : y + h, x : x + w].max() == 1.0
