"""The standalone app's torchvision hook (installer/hooks/rthook_torchvision_schemas.py): where the
bundle carries torchvision without its compiled ops (built against CUDA torch), detectors still
run, on an NMS in plain torch equal to torchvision's own kernel.

CI's frozen app once failed its self-test on the bundled detector: "Couldn't load custom C++ ops"
from torchvision's nms. The second test rebuilds that situation without PyInstaller: a process
whose torchvision cannot load its compiled ops, the hook installed as the bundle installs it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "installer" / "hooks" / "rthook_torchvision_schemas.py"


def hook_functions():
    spec = importlib.util.spec_from_file_location("rthook_torchvision_schemas", HOOK)
    module = importlib.util.module_from_spec(spec)
    module._ONLY_DEFINE = True  # define, do not install into this process's imports
    spec.loader.exec_module(module)
    return module


def random_boxes(n: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * 200
    size = torch.rand(n, 2, generator=g) * 60 + 1
    boxes = torch.cat([corner, corner + size], dim=1).to(dtype)
    return boxes, torch.rand(n, generator=g).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_the_plain_torch_nms_keeps_what_torchvisions_kernel_keeps(dtype, threshold):
    nms = hook_functions().nms
    for seed, n in enumerate((1, 7, 300, 2000)):
        boxes, scores = random_boxes(n, seed, dtype)
        expected = torchvision.ops.nms(boxes, scores, threshold)
        assert 0 < len(expected) <= n
        assert torch.equal(nms(boxes, scores, threshold), expected), (n, threshold)
    empty = nms(torch.zeros(0, 4, dtype=dtype), torch.zeros(0, dtype=dtype), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)


DETECT = """
import runpy, sys, torch
def no_compiled_ops(path):
    raise OSError(f"{path}: compiled against another torch")  # as in the bundle
torch.ops.load_library = no_compiled_ops
runpy.run_path(sys.argv[1])  # the hook, installed as PyInstaller runs it before the app
import torchvision
from torchvision.extension import _has_ops
assert not _has_ops(), "torchvision loaded its compiled ops: nothing is tested"
sys.path.insert(0, sys.argv[2])
from tests.explain.detectors import detector, fcos_detector
x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
for name, make in (("fcos", fcos_detector), ("faster_rcnn", detector)):
    net = make()
    with torch.no_grad():
        out = net(x)[0]
    torch.save({k: v for k, v in out.items()}, f"{sys.argv[3]}/{name}.pt")
"""


def test_detectors_run_where_torchvision_has_no_compiled_ops(tmp_path):
    """FCOS (nms) and Faster R-CNN (nms, and RoIAlign's Python fallback) give the boxes they
    give with torchvision's compiled ops."""
    result = subprocess.run(
        [sys.executable, "-c", DETECT, str(HOOK), str(ROOT), str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from tests.explain.detectors import detector, fcos_detector

    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    for name, make in (("fcos", fcos_detector), ("faster_rcnn", detector)):
        with torch.no_grad():
            expected = make()(x)[0]
        got = torch.load(tmp_path / f"{name}.pt")
        assert len(expected["boxes"]) > 0, name
        for key in ("boxes", "labels", "scores"):
            torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-4, msg=f"{name} {key}")
