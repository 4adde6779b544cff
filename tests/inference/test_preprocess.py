"""Pre-processing records its geometry exactly: a map on the model grid lands on the right native pixel."""

import numpy as np
import pytest
import torch

from viewer.inference.manifest import InputSpec
from viewer.inference.preprocess import geometry, intensity_channels, prepare_frame, resample
from viewer.io import Window, discover, load_series
from viewer.io.voi import apply_window


@pytest.mark.parametrize("resize", ["letterbox", "stretch", "center-crop"])
@pytest.mark.parametrize(("rows", "cols"), [(300, 200), (200, 300), (128, 128), (97, 131)])
def test_model_grid_maps_back_to_native_pixels(resize, rows, cols):
    spec = InputSpec((64, 64), resize)
    transform = geometry(rows, cols, spec)
    # A smooth blob in the native image, taken to the model grid and brought back, keeps its peak.
    r0, c0 = int(rows * 0.37), int(cols * 0.61)
    yy, xx = np.mgrid[0:rows, 0:cols]
    blob = np.exp(-(((yy - r0) / (rows / 12)) ** 2 + ((xx - c0) / (cols / 12)) ** 2)).astype(np.float32)
    model_grid = resample(blob[None], transform)
    back = transform.to_native(model_grid)[0].numpy()
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert abs(peak[0] - r0) <= 1
    assert abs(peak[1] - c0) <= 1
    # A coarser map (as a CAM layer gives) maps back the same way.
    coarse = torch.nn.functional.adaptive_avg_pool2d(model_grid[None], (16, 16))[0]
    back = transform.to_native(coarse)[0].numpy()
    peak = np.unravel_index(np.argmax(back), back.shape)
    assert abs(peak[0] - r0) <= rows / 16 + 1
    assert abs(peak[1] - c0) <= cols / 16 + 1


def test_letterbox_keeps_aspect_and_pads():
    transform = geometry(300, 150, InputSpec((100, 100), "letterbox"))
    assert transform.scale_y == transform.scale_x
    assert (transform.top, transform.left) == (0.0, 25.0)
    out = resample(np.ones((1, 300, 150), np.float32), transform)
    assert out[0, :, :25].abs().sum() == 0
    assert out[0, :, 25:75].min() == 1.0


def test_ct_windows_become_channels():
    hu = np.array([[-1000, 0, 40, 80, 1000]], np.float32)
    spec = InputSpec((8, 8), intensity="windows", windows=((40, 80), (600, 2800)))
    channels = intensity_channels(hu, spec, 2)
    np.testing.assert_allclose(channels[0], apply_window(hu, Window(40, 80, "LINEAR_EXACT")))
    np.testing.assert_allclose(channels[0, 0], [0, 0, 0.5, 1, 1])


def test_voi_input_is_the_displayed_image(testdata):
    image = load_series(discover([testdata("RG1_UNCR.dcm")]).series[0])  # MONOCHROME1
    spec = InputSpec((128, 128), "letterbox", "voi", (), (0.0,), (1.0,))
    tensor, transform = prepare_frame(image, 0, spec, 1)
    assert tensor.shape == (1, 128, 128)
    # Bones are white in the model input too: the spine column is brighter than the lungs.
    inner = tensor[0, :, int(transform.left) : 128 - int(transform.left)]
    width = inner.shape[1]
    assert (
        inner[40:60, width // 2 - 3 : width // 2 + 3].mean()
        > inner[40:60, width // 4 - 3 : width // 4 + 3].mean()
    )
