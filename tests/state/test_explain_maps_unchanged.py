"""The batch run's speed-ups (previews, the frame painted once per film, films batched, fewer
syncs) changed no map: each ``.npy`` is byte for byte what the code before them wrote.

The hashes were recorded by running ``saliency-viewer explain`` of commit 108607c (a ``git
worktree`` of it) on the same phantom films. Float maps are bytes of one torch build on one CPU
kind: elsewhere the test says so and skips rather than fail on rounding it does not judge."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
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
RECORDED_ON = ("2.14.1+cu130", "AVX512")  # torch and its CPU kernels when the hashes were taken
BEFORE = {
    "cxr_0001/deconvnet.npy": "1acffb6c93c8f5169184e26a4392154abab916e931fe90a0ec378d557df511b6",
    "cxr_0001/gradcam++.npy": "c7a8e1d90823e412d6635c939d67350f2f12b53675cf4757922b794dd950ec69",
    "cxr_0001/gradcam.npy": "e29c0575902b3bea206277d6147c9aec6395b03751fac30ef071151c8abc1b52",
    "cxr_0001/guided-backprop.npy": "4eceae602e179b1ad576a34a871814bd8c71fe5152c3a16d2449a32f531e439c",
    "cxr_0001/guided-gradcam.npy": "6b5102201fefe884e98fb79bbb1570dd7302237d7987904b7e90f417602a4254",
    "cxr_0002/deconvnet.npy": "b48fc305044d323074d736c82a7b7093358b4077d182d5489be5429b36b19fdc",
    "cxr_0002/gradcam++.npy": "98d4ba3b107b37a162767a24437628626d8b22bceaf8db068473cc8922eb64be",
    "cxr_0002/gradcam.npy": "929df3cf1710499523d4b1db3d233342ffec4feb28f47478aea2e1113d6d3a99",
    "cxr_0002/guided-backprop.npy": "f935d03df2809af2708aefc4aacec4bb1894cb8df7c3d656deda1145af2df02c",
    "cxr_0002/guided-gradcam.npy": "27e9301c2bd76f686dc28c5a9ce16866980156dc293247658747d595c6dd5ca5",
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


@pytest.mark.parametrize("previews", ["png", "none"])
def test_maps_are_the_bytes_the_code_before_wrote(films, tmp_path, previews):
    maps = _explain(films, tmp_path / "out", "--previews", previews)
    assert sorted(maps) == sorted(BEFORE)
    here = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    if here != RECORDED_ON:
        pytest.skip(f"hashes recorded with torch {RECORDED_ON[0]} on {RECORDED_ON[1]}; this is {here}")
    assert _digests(maps) == BEFORE
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
