"""Model manifests: a small TOML file that says how to build, load and feed a model.

Example (``models/cxr_resnet18/manifest.toml``)::

    name = "Chest X-ray findings (demo)"
    task = "multilabel"                       # sigmoid per label; "multiclass" = softmax;
                                              # "segmentation": (B, labels, H, W) maps, one channel a label
                                              # "detection": boxes (see viewer.inference.detection)
    labels = ["nodule", "consolidation", "effusion", "cardiomegaly", "pneumothorax"]
    modalities = ["CR", "DX"]                 # optional: DICOM modalities the model is meant for
    domain = "synthetic"                      # "synthetic", "clinical" or "research" (default)
    trained_on = "2,000 synthetic chest phantoms"
    intended_use = "Demonstration of the viewer; not for clinical use."

    [label_aliases]                           # optional: an annotation set's own names for a label
    effusion = ["Pleural fluid collection"]

    [network]
    arch = "resnet18"                         # torchvision name, timm:/monai:/xrv:NAME, onnx, torchscript
    weights = "weights.safetensors"           # safetensors or a torch.save file (any name), relative path
                                              # (or a list of checkpoints: ["fold1.safetensors", ...])
    in_channels = 1
    target_layer = "layer4"                   # optional; found automatically when absent
    output = "auto"                           # "logits", "probabilities", or "auto" (found from the file)
    # activation = "softmax"                  # segmentation only: "softmax" (argmax masks) or "sigmoid"

    [network.key_map]                         # optional prefix renames, for names not matched by themselves
    "encoder.stem." = "conv1."

    [input]
    # kind = "volume"                         # a 3-D model: the whole series in one input
    size = [256, 256]                         # [height, width]; [depth, height, width] for a volume
    # spacing = [5.0, 1.0, 1.0]               # volume only: mm per input voxel (slice, row, column)
    resize = "letterbox"                      # "letterbox", "stretch" or "center-crop"
    intensity = "voi"                         # "voi", "percentile", or windows (below) for CT
    # windows = [[40, 80], [75, 215], [600, 2800]]   # [center, width] per channel, in HU
    mean = [0.5]
    std = [0.25]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from viewer.io.dicom_writer import is_phantom
from viewer.io.image import Image
from viewer.io.label_vocabulary import LabelMatcher

Task = Literal["multilabel", "multiclass", "segmentation", "detection"]
_TASKS = ("multilabel", "multiclass", "segmentation", "detection")
Activation = Literal["sigmoid", "softmax"]
Domain = Literal["synthetic", "clinical", "research"]
_DOMAINS = ("synthetic", "clinical", "research")
Resize = Literal["letterbox", "stretch", "center-crop"]
Output = Literal["auto", "logits", "probabilities"]
_OUTPUTS = ("auto", "logits", "probabilities")
# Usual names of weights files (the file dialog's filter); files are read by content, so any name works.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".pth.tar", ".ckpt", ".bin")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and what to fix."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class InputSpec:
    size: tuple[int, ...]  # (height, width), or (depth, height, width) for a volume
    resize: Resize = "letterbox"
    intensity: Literal["voi", "percentile", "windows"] = "voi"
    windows: tuple[tuple[float, float], ...] = ()
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    # 2.5-D models (the RSNA haemorrhage winners'): the slices on each side of the one explained
    # go in as channels too; "slice" is a frame alone.
    context: Literal["slice", "adjacent-slices"] = "slice"
    neighbours: int = 0
    # "volume": a 3-D model reads the whole series as one input (C, D, H, W), resampled to
    # ``size`` (``resize`` as for images, in physical units) or to ``spacing`` mm per voxel.
    kind: Literal["image", "volume"] = "image"
    spacing: tuple[float, float, float] | None = None

    @property
    def volume(self) -> bool:
        return self.kind == "volume"

    @property
    def slices(self) -> int:
        """How many slices one input holds (the centre and its neighbours)."""
        return 2 * self.neighbours + 1


@dataclass(frozen=True)
class DetectionSpec:
    """A detector's ``[detection]`` table: the score from which a box counts as detected, the IoU
    from which two boxes are the same finding (a box target's match, the radiologists' boxes), and
    torchvision's own resize (``min_size``/``max_size``; None: the input's size, no second resize)."""

    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    min_size: int | None = None
    max_size: int | None = None


@dataclass(frozen=True)
class ModelManifest:
    path: Path
    name: str
    task: Task
    labels: tuple[str, ...]
    arch: str
    weights: Path
    in_channels: int
    input: InputSpec
    target_layer: str | None = None
    arch_kwargs: dict = field(default_factory=dict)
    key_map: dict[str, str] = field(default_factory=dict)  # old key prefix -> new, applied first
    # What the network's file outputs: "auto" finds a last sigmoid/softmax where the file shows it.
    output: Output = "auto"
    description: str = ""
    card: Path | None = None
    # DICOM Modality codes the model was trained for (empty: any); the viewer picks a model that fits.
    modalities: tuple[str, ...] = ()
    # What the model was made for and on: "synthetic" models (the bundled demos) say so on screen
    # whenever they look at an image that is not one of the product's phantoms.
    domain: Domain = "research"
    trained_on: str = ""
    intended_use: str = ""
    # Names an annotation file may use for a label, beyond the public vocabularies' synonyms.
    label_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Every checkpoint of ``weights = ["fold1.safetensors", ...]`` (one architecture trained several
    # times); ``weights`` is the first, the one the viewer explains with. Stability compares them all.
    checkpoints: tuple[Path, ...] = ()
    # A segmenter's per-pixel activation (task = "segmentation"): None infers it (see
    # ``viewer.inference.segmentation.segmentation_head``).
    activation: Activation | None = None
    # A detector's settings (task = "detection"); None for every other task.
    detection: DetectionSpec | None = None

    def checkpoint(self, weights: Path) -> ModelManifest:
        """This manifest with ``weights`` (one of ``checkpoints``) as its only checkpoint."""
        return replace(self, weights=weights, checkpoints=(weights,))

    def label_matcher(self) -> LabelMatcher:
        """Matches annotation labels (any public vocabulary, this model's aliases) to ``labels``."""
        return LabelMatcher(self.labels, self.label_aliases)

    def accepts(self, modality: str) -> bool:
        return not self.modalities or modality.upper() in self.modalities

    def caution(self, image: Image | None) -> str | None:
        """The line a user must read before trusting this model's numbers on ``image``, or None."""
        if self.domain == "synthetic" and image is not None and not is_phantom(image):
            return (
                f"{self.name}: trained on synthetic phantoms only; "
                "these probabilities mean nothing on real images"
            )
        return None

    @property
    def n_labels(self) -> int:
        return len(self.labels)


def load_manifest(path: Path | str) -> ModelManifest:
    """Read and validate a manifest. Raises :class:`ManifestError` with a readable reason."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.toml"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ManifestError(path, "manifest file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(path, f"not valid TOML: {exc}") from None
    return parse_manifest(data, path)


def parse_manifest(data: dict, path: Path) -> ModelManifest:
    known_top = {
        "name", "task", "labels", "network", "input", "description", "card", "modalities",
        "domain", "trained_on", "intended_use", "label_aliases", "detection",
    }  # fmt: skip
    _no_unknown(path, "", data, known_top)
    for key in ("name", "task", "labels", "network", "input"):
        if key not in data:
            raise ManifestError(path, f"missing required key '{key}'")
    task = data["task"]
    if task not in _TASKS:
        raise ManifestError(path, f"task must be one of {', '.join(_TASKS)}, not {task!r}")
    labels = data["labels"]
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ManifestError(path, "labels must be a non-empty list of names")
    if len(set(labels)) != len(labels):
        raise ManifestError(path, "labels must be unique")

    network = _table(path, data, "network")
    _no_unknown(
        path,
        "network.",
        network,
        {"arch", "weights", "in_channels", "target_layer", "kwargs", "key_map", "output", "activation"},
    )
    if "arch" not in network and str(network.get("weights", "")).endswith(".pt2"):
        network = {**network, "arch": "pt2"}  # a torch.export program is the whole network
    for key in ("arch", "weights", "in_channels"):
        if key not in network:
            raise ManifestError(path, f"missing required key 'network.{key}'")
    checkpoints = _checkpoints(path, network["weights"])
    weights = checkpoints[0]
    in_channels = network["in_channels"]
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ManifestError(path, "network.in_channels must be a positive integer")

    key_map = network.get("key_map", {})
    if not isinstance(key_map, dict) or not all(isinstance(v, str) for v in key_map.values()):
        raise ManifestError(path, 'network.key_map must be a table of "old.prefix." = "new.prefix."')
    output = network.get("output", "auto")
    if output not in _OUTPUTS:
        raise ManifestError(path, f"network.output must be one of {', '.join(_OUTPUTS)}, not {output!r}")
    spec = _input_spec(path, _table(path, data, "input"), in_channels)
    activation = _activation(path, task, network.get("activation"))
    card = data.get("card")
    modalities = data.get("modalities", [])
    if not isinstance(modalities, list) or not all(isinstance(m, str) and m for m in modalities):
        raise ManifestError(path, 'modalities must be a list of DICOM modality codes, e.g. ["CR", "DX"]')
    aliases = data.get("label_aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in aliases.values()
    ):
        raise ManifestError(path, 'label_aliases must be a table of label = ["name", ...]')
    unknown_aliased = sorted(set(aliases) - set(labels))
    if unknown_aliased:
        raise ManifestError(path, f"label_aliases names label(s) not in labels: {', '.join(unknown_aliased)}")
    domain = data.get("domain", "research")
    if domain not in _DOMAINS:
        raise ManifestError(path, f"domain must be one of {', '.join(_DOMAINS)}, not {domain!r}")
    return ModelManifest(
        path=path,
        name=str(data["name"]),
        task=task,
        labels=tuple(labels),
        arch=str(network["arch"]),
        weights=weights,
        checkpoints=checkpoints,
        in_channels=in_channels,
        input=spec,
        target_layer=network.get("target_layer"),
        arch_kwargs=_arch_kwargs(path, network.get("kwargs", {})),
        key_map=dict(key_map),
        output=output,
        description=str(data.get("description", "")),
        card=(path.parent / card) if card else None,
        modalities=tuple(m.upper() for m in modalities),
        domain=domain,
        trained_on=str(data.get("trained_on", "")),
        intended_use=str(data.get("intended_use", "")),
        label_aliases={k: tuple(v) for k, v in aliases.items()},
        activation=activation,
        detection=_detection(path, task, data.get("detection"), spec),
    )


def _detection(path: Path, task: str, table: object, spec: InputSpec) -> DetectionSpec | None:
    """The ``[detection]`` table of a detector (defaults where absent); refused for other tasks."""
    if task != "detection":
        if table is not None:
            raise ManifestError(path, "[detection] is for task = detection")
        return None
    if spec.volume:
        raise ManifestError(path, "task = detection reads 2-D inputs in this version")
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise ManifestError(path, "'detection' must be a table ([detection])")
    _no_unknown(path, "detection.", table, {"score_threshold", "iou_threshold", "min_size", "max_size"})
    for key in ("score_threshold", "iou_threshold"):
        value = table.get(key, 0.5)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ManifestError(path, f"detection.{key} must be a number from 0 to 1, not {value!r}")
    for key in ("min_size", "max_size"):
        value = table.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ManifestError(path, f"detection.{key} must be a whole number of pixels, not {value!r}")
    return DetectionSpec(
        float(table.get("score_threshold", 0.5)),
        float(table.get("iou_threshold", 0.5)),
        table.get("min_size"),
        table.get("max_size"),
    )


def _activation(path: Path, task: str, given: object) -> Activation | None:
    """``network.activation`` of a segmenter: how its per-pixel logits become probabilities."""
    if task != "segmentation":
        if given is not None:
            raise ManifestError(
                path, "network.activation is for task = segmentation; the task sets it otherwise"
            )
        return None
    if given is not None and given not in ("sigmoid", "softmax"):
        raise ManifestError(path, f"network.activation must be sigmoid or softmax, not {given!r}")
    return given  # type: ignore[return-value]


def _checkpoints(path: Path, given: object) -> tuple[Path, ...]:
    """``network.weights``: one file, or a list of checkpoints of the same network."""
    names = given if isinstance(given, list) else [given]
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ManifestError(path, 'network.weights must be a file name or a list of them, e.g. ["fold1.pt"]')
    files = tuple((path.parent / n).resolve() for n in names)
    for weights in files:
        if not weights.is_file():
            raise ManifestError(path, f"weights file not found: {weights}")
    return files


# Builder arguments with which a library fetches or reads weights by itself (torchvision's
# weights/weights_backbone, timm's pretrained/checkpoint_path, TorchXRayVision's weights/cache_dir,
# which loads with pickle): the viewer reads network.weights only, through its own safe reader.
_LOADING_KWARGS = frozenset({
    "weights", "weights_backbone", "pretrained", "pretrained_backbone", "pretrained_cfg",
    "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path", "cache_dir", "model_dir",
    "weights_path", "url", "file", "hf_hub_id", "progress",
})  # fmt: skip


def _arch_kwargs(path: Path, kwargs: object) -> dict:
    if not isinstance(kwargs, dict):
        raise ManifestError(path, "network.kwargs must be a table of builder arguments")
    for key, value in kwargs.items():
        if key in _LOADING_KWARGS:
            raise ManifestError(
                path,
                f"network.kwargs.{key} would make the library download or read weights itself; "
                "name the weights file as network.weights instead",
            )
        if "://" in str(value):
            raise ManifestError(path, f"network.kwargs.{key} names an address; the viewer downloads nothing")
    return dict(kwargs)


def _input_spec(path: Path, table: dict, in_channels: int) -> InputSpec:
    _no_unknown(
        path,
        "input.",
        table,
        {"size", "resize", "intensity", "windows", "mean", "std", "context", "neighbours", "kind", "spacing"},
    )
    kind = table.get("kind", "image")
    if kind not in ("image", "volume"):
        raise ManifestError(path, f"input.kind must be image or volume, not {kind!r}")
    context = table.get("context", "slice")
    if kind == "volume" and context != "slice":
        raise ManifestError(
            path, "input.context = adjacent-slices is for 2-D models; a volume holds every slice"
        )
    if context not in ("slice", "adjacent-slices"):
        raise ManifestError(path, f"input.context must be slice or adjacent-slices, not {context!r}")
    neighbours = table.get("neighbours", 1 if context == "adjacent-slices" else 0)
    if not isinstance(neighbours, int) or neighbours < 0 or (context == "slice" and neighbours):
        raise ManifestError(
            path, "input.neighbours is a whole number of slices on each side, with adjacent-slices"
        )
    slices = 2 * neighbours + 1
    if in_channels % slices:
        raise ManifestError(
            path, f"in_channels {in_channels} is not a multiple of the {slices} slices an input holds"
        )
    per_slice = in_channels // slices
    size = table.get("size")
    dims = 3 if kind == "volume" else 2
    if not (isinstance(size, list) and len(size) == dims and all(isinstance(v, int) and v > 0 for v in size)):
        raise ManifestError(
            path,
            "input.size must be [depth, height, width] in voxels for a volume"
            if kind == "volume"
            else "input.size must be [height, width] in pixels",
        )
    spacing = table.get("spacing")
    if spacing is not None and (
        kind != "volume"
        or not isinstance(spacing, list)
        or len(spacing) != 3
        or not all(isinstance(v, int | float) and v > 0 for v in spacing)
    ):
        raise ManifestError(path, "input.spacing is [slice, row, column] in mm, for input.kind = volume")
    resize = table.get("resize", "letterbox")
    if resize not in ("letterbox", "stretch", "center-crop"):
        raise ManifestError(path, f"input.resize must be letterbox, stretch or center-crop, not {resize!r}")
    windows = table.get("windows")
    intensity = table.get("intensity", "windows" if windows else "voi")
    if intensity not in ("voi", "percentile", "windows"):
        raise ManifestError(path, f"input.intensity must be voi, percentile or windows, not {intensity!r}")
    parsed_windows: tuple[tuple[float, float], ...] = ()
    if intensity == "windows":
        if not windows or not all(isinstance(w, list) and len(w) == 2 for w in windows):
            raise ManifestError(path, "input.windows must be a list of [center, width] pairs")
        if len(windows) != per_slice:
            raise ManifestError(
                path,
                f"input.windows has {len(windows)} windows for {per_slice} input channels per slice"
                + (f" ({in_channels} channels over {slices} slices)" if slices > 1 else ""),
            )
        if any(float(w[1]) <= 0 for w in windows):
            raise ManifestError(path, "input.windows widths must be positive")
        parsed_windows = tuple((float(c), float(w)) for c, w in windows)
    mean = tuple(float(v) for v in table.get("mean", [0.0] * in_channels))
    std = tuple(float(v) for v in table.get("std", [1.0] * in_channels))
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, in_channels):
            raise ManifestError(path, f"input.{key} needs 1 or {in_channels} values, has {len(values)}")
    if any(v <= 0 for v in std):
        raise ManifestError(path, "input.std values must be positive")
    return InputSpec(
        tuple(size),
        resize,
        intensity,
        parsed_windows,
        mean,
        std,
        context,
        neighbours,
        kind,
        tuple(float(v) for v in spacing) if spacing else None,
    )


def parse_input(table: dict, in_channels: int, path: Path) -> InputSpec:
    """An ``[input]`` table given by other means than a manifest (the notebook API's
    ``preprocess``), checked as a manifest's is; ``path`` names where it came from in errors."""
    return _input_spec(path, table, in_channels)


def _table(path: Path, data: dict, key: str) -> dict:
    table = data[key]
    if not isinstance(table, dict):
        raise ManifestError(path, f"'{key}' must be a table ([{key}])")
    return table


def _no_unknown(path: Path, prefix: str, table: dict, known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ManifestError(
            path,
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; expected {', '.join(sorted(known))}",
        )
