"""What the notebook API accepts, turned into what the viewer works on: images into
:class:`~viewer.io.image.Image`, networks into a :class:`~viewer.inference.model.LoadedModel`.

Two readings of an array, chosen by what the call says rather than guessed from values: with a
network in memory and no ``preprocess``, an array or tensor *is* the network's input (what the
user's own ``model(x)`` takes); in every other case an array is an image's pixels that the
model's ``[input]`` pipeline resizes and normalises, as it would a file.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from viewer.inference.catalog import resolve_model
from viewer.inference.manifest import InputSpec, ManifestError, load_manifest, parse_input
from viewer.inference.model import LoadedModel
from viewer.inference.preprocess import GridTransform
from viewer.io import FrameInfo, Geometry, Identity, Image, LoadError, auto_window, discover, load_series

# What ``explain`` and ``show`` take as an image (one of them; a list is handled by the caller).
ImageLike = Any  # numpy array, torch tensor, PIL image, str / PathLike, pydicom Dataset
NetworkLike = nn.Module | str | os.PathLike


class InputError(ValueError):
    """An image or network the API cannot use; the message names it and the reason."""


@dataclass
class NetworkInput:
    """An image that is the network's input itself: ``tensor`` is ``(C, H, W)``."""

    tensor: torch.Tensor
    image: Image  # what the maps are drawn over (the input's channels averaged)
    transform: GridTransform


def is_array(image: object) -> bool:
    return isinstance(image, np.ndarray | torch.Tensor)


def network_input(image: np.ndarray | torch.Tensor) -> NetworkInput:
    """An array read as the network's input: ``(C, H, W)``, ``(1, C, H, W)`` or ``(H, W)``."""
    tensor = torch.as_tensor(image).detach()
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    elif tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3:
        raise InputError(
            f"an input of shape {tuple(image.shape)}: give one image as (C, H, W) or (1, C, H, W) "
            "(a list of them for several)"
        )
    if not tensor.is_floating_point():
        tensor = tensor.float()
    _, rows, cols = tensor.shape
    grey = tensor.float().mean(dim=0).cpu().numpy().astype(np.float32)
    transform = GridTransform(rows, cols, (rows, cols), 1.0, 1.0, 0.0, 0.0)
    return NetworkInput(tensor, array_image(grey, "input tensor"), transform)


def array_image(values: np.ndarray, name: str = "array") -> Image:
    """An :class:`Image` of pixels held in memory: ``(H, W)`` grey (any numeric type) or
    ``(H, W, 3)`` / ``(H, W, 4)`` colour (8-bit, or floats in [0, 1])."""
    values = np.asarray(values)
    if values.ndim == 3 and values.shape[-1] in (3, 4):
        rgb = values[..., :3]
        if rgb.dtype != np.uint8:
            rgb = np.clip(np.rint(rgb.astype(np.float64) * (255 if rgb.max() <= 1 else 1)), 0, 255)
        pixels = np.ascontiguousarray(rgb.astype(np.uint8))[None]
        photometric, window = "RGB", None
    elif values.ndim == 2:
        pixels = values.astype(np.float32)[None]
        photometric, window = "MONOCHROME2", auto_window(pixels)
    else:
        raise InputError(f"{name} of shape {values.shape}: an image is (H, W) grey or (H, W, 3) colour")
    return Image(
        pixels=pixels,
        photometric=photometric,
        geometry=Geometry(),
        identity=Identity(series_description=name),
        frames=(FrameInfo(name, 0),),
        windows=(window,) if window is not None else (),
        default_window=window,
        kind="array",
        bits_stored=8 if values.dtype == np.uint8 else None,
    )


def open_image(image: ImageLike) -> Image:
    """Any image the API takes, opened as the viewer opens files: a path (DICOM, PNG, JPEG, TIFF,
    a folder of one series), a pydicom ``Dataset``, a PIL image or an array of pixels."""
    if isinstance(image, Image):
        return image
    if is_array(image):
        values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
        return array_image(values)
    if isinstance(image, str | os.PathLike):
        return _open_path(Path(image))
    kind = type(image)
    if kind.__module__.startswith("pydicom"):
        return _open_dataset(image)
    if kind.__module__.startswith("PIL"):
        return array_image(
            np.asarray(image.convert("RGB") if image.mode not in ("L", "I", "F", "I;16") else image)
        )
    raise InputError(
        f"cannot read an image from a {kind.__name__}: give a numpy array, a torch tensor, a PIL "
        "image, a path or a pydicom Dataset"
    )


def _open_path(path: Path) -> Image:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    found = discover([path])
    if not found.series:
        reason = found.problems[0].reason if found.problems else "no image the viewer can read"
        raise InputError(f"{path}: {reason}")
    try:
        return load_series(found.series[0])
    except LoadError as exc:
        raise InputError(str(exc)) from None


def _open_dataset(dataset) -> Image:
    """A dataset in memory, opened through the DICOM reader (written to a temporary file first:
    the reader's checks, decoders and geometry are the file's)."""
    with tempfile.TemporaryDirectory(prefix="saliency-viewer-") as folder:
        path = Path(folder) / "dataset.dcm"
        try:
            dataset.save_as(path, enforce_file_format=True)
        except (ValueError, AttributeError, TypeError) as exc:
            raise InputError(f"the pydicom Dataset cannot be written as a DICOM file: {exc}") from None
        return _open_path(path)


def input_spec(preprocess: object, in_channels: int) -> InputSpec | None:
    """``preprocess`` in the manifest's ``[input]`` vocabulary (a dict, an :class:`InputSpec`, or
    any dataclass with those fields) as an :class:`InputSpec`."""
    if preprocess is None or isinstance(preprocess, InputSpec):
        return preprocess
    if dataclasses.is_dataclass(preprocess) and not isinstance(preprocess, type):
        preprocess = dataclasses.asdict(preprocess)
    if not isinstance(preprocess, dict):
        raise InputError(f"preprocess must be a dict of [input] settings, not a {type(preprocess).__name__}")
    table = {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess.items() if v is not None}
    try:
        return parse_input(table, in_channels, Path("preprocess"))
    except ManifestError as exc:
        raise InputError(exc.reason) from None


_LOADED: dict[tuple[str, float], LoadedModel] = {}
_LOADED_MAX = 4


def model_from_file(source: str | os.PathLike, preprocess: object = None) -> LoadedModel:
    """A bundled model's name, a manifest, a folder holding ``manifest.toml``, or a model file with
    a manifest beside it that names it; loaded once per file version (the last few are kept)."""
    path = Path(source)
    if path.is_file() and path.suffix != ".toml":
        beside = path.parent / "manifest.toml"
        if not beside.is_file() or load_manifest(beside).weights != path.resolve():
            raise InputError(
                f"{path}: no manifest.toml beside it names this file; write one (see docs/notebook.md) "
                "or pass the manifest"
            )
        path = beside
    manifest_path = resolve_model(path)
    key = (str(Path(manifest_path).resolve()), Path(manifest_path).stat().st_mtime)
    model = _LOADED.get(key)
    if model is None:
        model = LoadedModel.from_manifest(manifest_path)
        _LOADED[key] = model
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
    spec = input_spec(preprocess, model.manifest.in_channels)
    if spec is None or spec == model.manifest.input:
        return model
    return LoadedModel(dataclasses.replace(model.manifest, input=spec), str(model.device))


__all__ = [
    "ImageLike",
    "InputError",
    "NetworkInput",
    "NetworkLike",
    "array_image",
    "input_spec",
    "is_array",
    "model_from_file",
    "network_input",
    "open_image",
]
