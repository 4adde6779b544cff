"""The batch run's speed-ups (previews, the frame painted once per film, films batched, fewer
syncs) changed no map.

When they were made, each ``.npy`` was checked byte for byte against ``saliency-viewer explain``
of commit 108607c (a ``git worktree`` of it) on the same phantom films, by SHA-256. Float maps
are bytes of one torch build on one CPU kind, though: an AMD EPYC with the same torch and the same
AVX512 kernels wrote other bytes for Grad-CAM++ and Guided Grad-CAM, so a byte check fails on
rounding it does not judge. Each map must now amount to what it did (its sum, L2 norm and
maximum within 1e-4, recorded in ``AMOUNTS``): a change to the maps fails on every machine,
float rounding on none."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from viewer.cli import main
from viewer.io import discover, load_series
from viewer.io.overlay import map_over_frame
from viewer.phantoms.studies import write_chest_set

SEED_SET = "gradcam,gradcam++,guided-backprop,guided-gradcam,deconvnet"
CONVENTION = {
    "gradcam": "unit",
    "gradcam++": "unit",
    "guided-backprop": "absolute",
    "guided-gradcam": "absolute",
    "deconvnet": "absolute",
}
# sum, L2 norm, maximum (float64 of the saved float32 map), shape; torch 2.14.1+cu130 on AMD EPYC.
AMOUNTS = {
    "cxr_0001/deconvnet.npy": (10191.4, 40.3112, 0.713936, (320, 320)),
    "cxr_0001/gradcam++.npy": (23024.4, 104.307, 0.994154, (320, 320)),
    "cxr_0001/gradcam.npy": (4209.18, 40.5198, 0.98408, (320, 320)),
    "cxr_0001/guided-backprop.npy": (942.249, 9.00777, 0.843867, (320, 320)),
    "cxr_0001/guided-gradcam.npy": (148.757, 4.1567, 0.845132, (320, 320)),
    "cxr_0002/deconvnet.npy": (10932.1, 41.9605, 0.760041, (320, 320)),
    "cxr_0002/gradcam++.npy": (17112.4, 87.8017, 0.995477, (320, 320)),
    "cxr_0002/gradcam.npy": (14890.7, 85.721, 0.995915, (320, 320)),
    "cxr_0002/guided-backprop.npy": (432.582, 7.69671, 0.793392, (320, 320)),
    "cxr_0002/guided-gradcam.npy": (270.357, 6.80599, 0.789605, (320, 320)),
}


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    data = tmp_path_factory.mktemp("films")
    write_chest_set(data, 2, seed=11, size=320)  # the first two films of the recorded set of three
    return data / "dicom"


def _explain(films, out, *extra):
    assert main(["explain", str(films), "--model", "cxr_resnet18", "--methods", SEED_SET, "--quiet",
                 "--out", str(out), *extra]) == 0  # fmt: skip
    return {str(p.relative_to(out)): p for p in sorted(out.glob("*/*.npy"))}


def _digests(maps) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in maps.items()}


def _amounts_agree(maps) -> None:
    for name, path in maps.items():
        values = np.load(path).astype(np.float64)
        total, norm, peak, shape = AMOUNTS[name]
        assert values.shape == shape, name
        got = (values.sum(), np.sqrt((values * values).sum()), values.max())
        # The recorded figures carry 6 significant digits: 1e-4 is above that and float rounding.
        np.testing.assert_allclose(got, (total, norm, peak), rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("previews", ["png", "none"])
def test_maps_amount_to_what_the_code_before_wrote(films, tmp_path, previews):
    maps = _explain(films, tmp_path / "out", "--previews", previews)
    assert sorted(maps) == sorted(AMOUNTS)
    _amounts_agree(maps)
    pictures = sorted(p.name for p in (tmp_path / "out" / "cxr_0001").glob("*.png"))
    assert pictures == (sorted(f"{m}.png" for m in CONVENTION) if previews == "png" else [])


def test_previews_are_the_maps_over_the_film_and_the_same_with_every_kind(films, tmp_path):
    png = _explain(films, tmp_path / "png")
    jpeg = _explain(films, tmp_path / "jpeg", "--previews", "jpeg")
    assert _digests(png) == _digests(jpeg)
    image = load_series(discover([films / "cxr_0001.dcm"]).series[0])
    for method, convention in CONVENTION.items():
        values = np.load(png[f"cxr_0001/{method}.npy"])
        expected = map_over_frame(image, 0, values, convention)
        shown = PILImage.open(tmp_path / "png" / "cxr_0001" / f"{method}.png")
        np.testing.assert_array_equal(np.asarray(shown), expected)
        lossy = PILImage.open(io.BytesIO((tmp_path / "jpeg" / "cxr_0001" / f"{method}.jpg").read_bytes()))
        assert lossy.format == "JPEG" and lossy.size == shown.size
