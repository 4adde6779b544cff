"""The MPR model's maximum-intensity projections of a layer, against the float maps themselves."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.explain.saliency_map import SaliencyMap
from viewer.io.image import FrameInfo, Geometry, Identity, Image, Window
from viewer.io.mpr import PLANE_AXES
from viewer.io.overlay import to_index
from viewer.state import ViewerState
from viewer.state.crosshair import Crosshair
from viewer.state.layers import SaliencyLayer, display_indices


def _series(shape) -> Image:
    frames = tuple(
        FrameInfo(f"memory:slice{n}", sop_instance_uid=f"1.2.3.{n}", position=(0.0, 0.0, 2.0 * n))
        for n in range(shape[0])
    )
    return Image(
        np.zeros(shape, np.float32),
        "MONOCHROME2",
        Geometry((2.0, 0.7, 0.7), "PixelSpacing", (0.0, 0.0, 0.0)),
        Identity(modality="CT"),
        frames,
        default_window=Window(40.0, 400.0),
        is_volume=True,
        units="HU",
    )


@pytest.mark.parametrize("convention", ["unit", "signed"])
def test_the_axial_projection_is_each_line_s_strongest_value(convention):
    image = _series((12, 40, 32))
    rng = np.random.default_rng(3)
    array = rng.uniform(-1 if convention == "signed" else 0, 1, image.pixels.shape).astype(np.float32)
    # Lines whose strongest value is on one slice, beside weaker ones; on a signed map it is
    # negative beside positive ones: the sign must survive the projection.
    array[:, :5, :5] = 0.2
    array[7, :5, :5] = -0.9 if convention == "signed" else 0.9
    frames = tuple(range(image.n_frames))
    smap = SaliencyMap("gradient", "any", 0, frames, array, array, convention, 1.0, 0.0)
    state = ViewerState()
    state.open(image)
    crosshair = Crosshair(state)
    layer = SaliencyLayer(method="gradient", convention=convention)
    layer.add(smap, display_indices(smap))

    mip = crosshair.layer_mip(layer, "axial")

    signed = convention == "signed"
    strongest = np.take_along_axis(array, np.abs(array).argmax(axis=0)[None], 0)[0]
    expected = to_index(strongest, signed=signed)
    blank = int(to_index(np.zeros(1), signed=signed)[0])
    # Indices quantize magnitudes (a signed map's zero is index 128: 128 steps below it, 127 above),
    # so two values within a step of each other may swap: magnitudes agree within that step.
    step = np.abs(np.abs(mip.astype(int) - blank) - np.abs(expected.astype(int) - blank))
    assert step.max() <= 1 and np.mean(step == 0) > 0.95
    assert (mip[:5, :5] == to_index(np.float32(array[7, 0, 0]), signed=signed)).all()
    assert crosshair.layer_mip(layer, "axial") is mip  # made once per change of the maps
    # The other planes against the argmax of index magnitudes (what the reductions replaced).
    volume = crosshair.layer_volume(layer)
    for plane in ("coronal", "sagittal"):
        axis = PLANE_AXES[plane][0]
        strongest = np.abs(volume.astype(np.int16) - blank).argmax(axis=axis)
        reference = np.take_along_axis(volume, np.expand_dims(strongest, axis), axis).squeeze(axis)
        got = crosshair.layer_mip(layer, plane)
        assert np.array_equal(np.abs(got.astype(int) - blank), np.abs(reference.astype(int) - blank)), plane
