"""Network families a manifest's ``network.arch`` can name, one builder each, in a registry.

``arch`` is ``family:name`` (``timm:convnext_tiny``, ``monai:DenseNet121``, ``xrv:densenet121``),
a plain torchvision builder name (``densenet121``, ``vit_b_16``), or a family whose weights file
*is* the network (``torchscript``, ``onnx``). Optional libraries are imported where used; a
manifest naming one that is not installed says which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

import torch
import torchvision
from torch import nn

from viewer.inference.built import Built, set_input_channels
from viewer.inference.detection import torchvision_kwargs as detector_kwargs
from viewer.inference.detector_parts import DETECTOR_CLASSES, build_detector
from viewer.inference.exported_program import build_exported
from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.segmentation import torchvision_kwargs
from viewer.inference.torchscript_check import check_torchscript
from viewer.inference.trust import UntrustedModelError, is_trusted
from viewer.inference.user_code import build_user_code

# Extras of the saliency-viewer package, by the library they install.
EXTRAS = {"timm": "timm", "monai": "monai", "torchxrayvision": "xrv", "onnx2torch": "onnx", "keras": "keras"}


Builder = Callable[[ModelManifest, str], Built]
FAMILIES: dict[str, Builder] = {}
# Families named without a colon (their weights file is the whole network).
_WHOLE_FILE = ("torchscript", "onnx", "pt2", "keras")


def family(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        FAMILIES[name] = builder
        return builder

    return register


def split_arch(arch: str) -> tuple[str, str]:
    """``(family, name)`` of a manifest's ``network.arch``."""
    if arch in _WHOLE_FILE:
        return arch, ""
    if ":" in arch:
        prefix, _, name = arch.partition(":")
        return prefix, name
    return "torchvision", arch


def build(manifest: ModelManifest) -> Built:
    """The network ``manifest`` names, its classifier sized to the labels and its first layer to
    the input channels."""
    prefix, name = split_arch(manifest.arch)
    builder = FAMILIES.get(prefix)
    if builder is None:
        raise ManifestError(
            manifest.path,
            f"network.arch {manifest.arch!r}: unknown family {prefix!r}; use a torchvision name, "
            f"{', '.join(f'{f}:NAME' for f in FAMILIES if f not in (*_WHOLE_FILE, 'torchvision'))}, "
            f"or {' / '.join(_WHOLE_FILE)}",
        )
    try:
        return builder(manifest, name)
    except ManifestError:
        raise
    except (ValueError, TypeError, KeyError, RuntimeError, AttributeError) as exc:
        raise ManifestError(manifest.path, f"cannot build network.arch {manifest.arch!r}: {exc}") from None


def require(manifest: ModelManifest, module: str):
    """Import an optional library, or say which extra installs it."""
    if importlib.util.find_spec(module) is None:
        extra = EXTRAS.get(module, module)
        raise ManifestError(
            manifest.path,
            f"network.arch {manifest.arch!r} needs {module}, which is not installed: "
            f"pip install 'saliency-viewer[{extra}]'",
        )
    return importlib.import_module(module)


@family("torchvision")
def _torchvision(manifest: ModelManifest, name: str) -> Built:
    kwargs = {"num_classes": manifest.n_labels, **torchvision_kwargs(name), **detector_kwargs(manifest, name)}
    network = torchvision.models.get_model(name, weights=None, **kwargs, **manifest.arch_kwargs)
    if manifest.in_channels != 3:
        set_input_channels(network, manifest.in_channels)
    return Built(network, "torchvision")


def _detector_family(cls_name: str) -> Builder:
    def build_on(manifest: ModelManifest, name: str) -> Built:
        return Built(build_detector(manifest, cls_name, name), cls_name)

    return build_on


for _cls in DETECTOR_CLASSES:  # "fcos:mobilenet_v3_small": torchvision's FCOS on that body
    family(_cls)(_detector_family(_cls))


@family("timm")
def _timm(manifest: ModelManifest, name: str) -> Built:
    timm = require(manifest, "timm")
    kwargs = {"num_classes": manifest.n_labels, "in_chans": manifest.in_channels, **manifest.arch_kwargs}
    if "img_size" not in kwargs and _takes_img_size(timm, name):
        kwargs["img_size"] = manifest.input.size  # transformers' position embeddings fit the input
    return Built(timm.create_model(name, pretrained=False, **kwargs), "timm")


def _takes_img_size(timm, name: str) -> bool:
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # older timm or unknown name: create_model reports the real problem
        return False
    return getattr(cfg, "fixed_input_size", False) if cfg is not None else False


@family("monai")
def _monai(manifest: ModelManifest, name: str) -> Built:
    require(manifest, "monai")
    nets = importlib.import_module("monai.networks.nets")
    cls = getattr(nets, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ManifestError(manifest.path, f"network.arch {manifest.arch!r}: MONAI has no network {name!r}")
    kwargs = {
        "spatial_dims": 3 if manifest.input.volume else 2,
        "in_channels": manifest.in_channels,
        "out_channels": manifest.n_labels,
    }
    return Built(cls(**{**kwargs, **manifest.arch_kwargs}), "monai")


# TorchXRayVision's names, and the torchvision network its ResNets wrap (their weights files
# are that network's state dict, with a one-channel first convolution).
_XRV_RESNETS = ("resnet50", "resnet101")


@family("xrv")
def _xrv(manifest: ModelManifest, name: str) -> Built:
    xrv = require(manifest, "torchxrayvision")
    kwargs = dict(manifest.arch_kwargs)
    calibration = kwargs.pop("calibration", None)
    if name == "densenet121":
        network = xrv.models.DenseNet(
            weights=None, num_classes=manifest.n_labels, in_channels=manifest.in_channels, **kwargs
        )
    elif name in _XRV_RESNETS:
        network = torchvision.models.get_model(name, weights=None, num_classes=manifest.n_labels)
        set_input_channels(network, manifest.in_channels)
    else:
        raise ManifestError(
            manifest.path,
            f"network.arch {manifest.arch!r}: use xrv:densenet121 or xrv:{'/'.join(_XRV_RESNETS)}",
        )
    built = Built(network, "xrv")
    built.notes.append(
        "TorchXRayVision models expect a 1-channel image scaled to [-1024, 1024]: "
        'input.mean = [0.5], input.std = [0.00048828125] with intensity = "voi"'
    )
    if calibration is not None:
        built.calibrate, built.calibration = _xrv_calibration(manifest, xrv, str(calibration))
        built.activation, built.activation_source = "sigmoid", "TorchXRayVision's calibrated output"
    else:
        built.notes.append("TorchXRayVision's operating-point calibration is off (plain sigmoid outputs); "
                           'kwargs = {calibration = "all"} (or nih, chex, ...) turns it on')  # fmt: skip
    return built


def _xrv_calibration(manifest: ModelManifest, xrv, name: str):
    # The thresholds are a table in the installed package: nothing is downloaded.
    table = xrv.models.model_urls
    key = name if name in table else f"densenet121-res224-{name}"
    if key not in table or "op_threshs" not in table[key]:
        known = sorted(k for k in table if "op_threshs" in table[k])
        raise ManifestError(
            manifest.path, f"no TorchXRayVision calibration {name!r}; known: {', '.join(known)}"
        )
    threshs = torch.tensor(table[key]["op_threshs"], dtype=torch.float32)
    if len(threshs) != manifest.n_labels:
        raise ManifestError(
            manifest.path,
            f"calibration {name!r} has {len(threshs)} thresholds for {manifest.n_labels} labels",
        )
    return (
        lambda p: xrv.models.op_norm(p, threshs.to(p.device)),
        f"TorchXRayVision's operating-point calibration {key!r} (a threshold maps to 0.5)",
    )


@family("torchscript")
def _torchscript(manifest: ModelManifest, _name: str) -> Built:
    # TorchScript is code: loading runs its scripted __setstate__, and forward may call any
    # operator. Every call in the archive is checked against the pure-operator allowlist first;
    # anything else needs the user's explicit trust in this exact file. Python hooks never fire
    # inside a compiled graph, so only methods that need no layer can explain it.
    check = check_torchscript(manifest.weights)
    trusted = not check.safe and is_trusted(manifest.weights)
    if not check.safe and not trusted:
        raise UntrustedModelError(manifest.path, manifest.weights, check.reason(), sorted(check.refused))
    network = torch.jit.load(str(manifest.weights), map_location="cpu")
    built = Built(network, "torchscript", weights_inside=True, hooks=False)
    if trusted:
        built.notes.append(f"you trusted {manifest.weights.name}, which {check.reason()}")
    last = _scripted_last_op(network)
    if last in ("aten::sigmoid", "aten::softmax") and manifest.output != "logits":
        # A compiled graph cannot be cut: its outputs are taken as probabilities as they are.
        built.activation, built.activation_source = "identity", f"the TorchScript graph ends in {last[6:]}"
    return built


def _scripted_last_op(network: nn.Module) -> str | None:
    try:
        graph = network.inlined_graph  # held: the return node dies with a temporary graph
        outputs = list(graph.return_node().inputs())
        return outputs[0].node().kind() if len(outputs) == 1 else None
    except (AttributeError, RuntimeError):
        return None


family("pt2")(build_exported)  # torch.export programs: viewer/inference/exported_program.py
family("python")(build_user_code)  # the user's own class, by consent: viewer/inference/user_code.py


@family("onnx")
def _onnx(manifest: ModelManifest, _name: str) -> Built:
    from viewer.inference.onnx_model import convert_onnx

    require(manifest, "onnx2torch")
    return convert_onnx(manifest)


@family("keras")
def _keras(manifest: ModelManifest, _name: str) -> Built:
    # Keras 3 on its PyTorch backend: the .keras / .h5 file is the network (see keras_model).
    from viewer.inference.keras_model import convert_keras, use_torch_backend

    use_torch_backend()
    require(manifest, "keras")
    return convert_keras(manifest)


__all__ = ["EXTRAS", "FAMILIES", "Built", "build", "family", "require", "set_input_channels", "split_arch"]
