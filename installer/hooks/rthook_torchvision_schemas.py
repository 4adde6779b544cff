# PyInstaller runtime hook, added only when the bundle leaves out torchvision's compiled ops (the
# only torchvision at build time was linked against CUDA torch; see installer/build.py).
#
# torchvision's import registers fake kernels for torchvision::nms and ::qnms, which fails unless
# those operators exist: the hook declares both schemas. Detectors (the bundled cxr_detector, any
# torchvision R-CNN, RetinaNet, FCOS or SSD) call nms in their post-processing, so nms also gets a
# CPU kernel in plain torch, the greedy suppression torchvision's C++ kernel runs (boxes in
# decreasing score order, a box dropped when its IoU with a kept one is above the threshold), and
# torchvision's "no compiled ops" check lets nms through. RoIAlign (Faster R-CNN) already falls
# back to torchvision's Python version without the compiled ops; any other compiled op fails with
# torch's own "no kernel" error. This happens on torchvision's first import, so processes that
# never touch torch (the DICOM decode workers) do not pay for importing it.
import importlib.abc
import sys


def nms(dets, scores, iou_threshold: float):
    """Indices of the boxes ``dets`` ``(N, 4)`` (x0, y0, x1, y1) kept by greedy non-maximum
    suppression, highest score first, as ``torch.ops.torchvision.nms`` returns them. The loop runs
    in numpy, in the boxes' own precision: with a torch operation per box it took 7.3 ms for 100
    random boxes and 64 ms for 1000 (torchvision's kernel: 0.2 and 4 ms), in numpy 2.2 and 20 ms;
    a detector runs it per forward, D-RISE per mask."""
    import numpy as np
    import torch

    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=dets.device)
    order = torch.argsort(scores, descending=True, stable=True)
    x0, y0, x1, y1 = dets[order].detach().cpu().numpy().T
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(x0), dtype=bool)
    keep = []
    for i in range(len(x0)):
        if suppressed[i]:
            continue
        keep.append(i)
        w = np.maximum(np.minimum(x1[i], x1[i + 1 :]) - np.maximum(x0[i], x0[i + 1 :]), 0)
        h = np.maximum(np.minimum(y1[i], y1[i + 1 :]) - np.maximum(y0[i], y0[i + 1 :]), 0)
        inter = w * h
        suppressed[i + 1 :] |= inter / (areas[i] + areas[i + 1 :] - inter) > iou_threshold
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def _nms_has_a_kernel():
    """Stands in for ``torchvision.extension._assert_has_ops``: this hook gave nms a kernel."""


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    library = None

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and _DeclareTorchvisionOps.library is None:
            import torch

            library = torch.library.Library("torchvision", "DEF")
            library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            library.impl("nms", nms, "CPU")
            _DeclareTorchvisionOps.library = library  # the schemas live as long as this object
        elif name == "torchvision.ops" and "torchvision.extension" in sys.modules:
            # torchvision imports its extension module first; torchvision.ops.boxes takes this name
            # from it when it is imported, just after.
            sys.modules["torchvision.extension"]._assert_has_ops = _nms_has_a_kernel
        return None  # the normal finders import torchvision itself


if not globals().get("_ONLY_DEFINE"):  # the tests read the functions without installing the hook
    sys.meta_path.insert(0, _DeclareTorchvisionOps())
