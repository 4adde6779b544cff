"""The head CT phantom: Hounsfield units of the tissues, and haemorrhages where their masks say."""

import numpy as np
import pytest

from viewer.phantoms.head_ct import CT_LABELS, HEMORRHAGE_LABELS, render_head_ct


@pytest.fixture(scope="module")
def normal():
    return render_head_ct(4, 192, slices=24, findings={})


def test_deterministic():
    a = render_head_ct(9, 96, slices=10)
    b = render_head_ct(9, 96, slices=10)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert a.labels == b.labels


def test_tissues_have_their_hounsfield_units(normal):
    hu = normal.hu[12]
    assert np.median(hu[:10, :10]) < -900  # air
    assert (hu > 1000).sum() > 200  # skull
    centre = hu[70:120, 70:120]
    brainish = centre[(centre > -50) & (centre < 150)]
    assert 20 < np.median(brainish) < 45  # white/grey matter
    assert not any(normal.labels.values())
    assert normal.slice_labels.sum() == 0


@pytest.mark.parametrize("label", HEMORRHAGE_LABELS)
def test_each_haemorrhage_is_blood_dense_inside_its_mask(label):
    case = render_head_ct(31, 192, slices=24, findings={label: True})
    assert case.labels[label] == 1
    assert case.labels["any"] == 1
    finding = next(f for f in case.findings if f.label == label)
    values = np.concatenate([case.hu[k][mask] for k, mask in finding.masks.items()])
    assert 45 < np.median(values) < 95  # acute blood
    column = CT_LABELS.index(label)
    assert set(np.flatnonzero(case.slice_labels[:, column])) == set(finding.masks)
    assert set(np.flatnonzero(case.slice_labels[:, 0])) >= set(finding.masks)
