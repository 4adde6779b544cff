# PyInstaller runtime hook, added only when the bundle leaves out torchvision's compiled ops (the
# only torchvision at build time was linked against CUDA torch; see installer/build.py).
#
# torchvision's import registers fake kernels for torchvision::nms and ::qnms, which fails unless
# those operators exist. The viewer uses torchvision.models only, so declaring the two schemas,
# without kernels, is enough: calling nms would raise "no kernel", nothing here calls it. This
# happens on torchvision's first import, so processes that never touch torch (the DICOM decode
# workers) do not pay for importing it.
import importlib.abc
import sys


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    library = None

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and _DeclareTorchvisionOps.library is None:
            import torch

            library = torch.library.Library("torchvision", "DEF")
            library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _DeclareTorchvisionOps.library = library  # the schemas live as long as this object
        return None  # the normal finders import torchvision itself


sys.meta_path.insert(0, _DeclareTorchvisionOps())
