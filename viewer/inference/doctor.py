"""The model doctor: what the viewer understood of a model, and what a researcher should fix.

``check_model`` loads a manifest the way the viewer does and reports, in sections: the
architecture and its size; the weights file and every rename applied to its keys; the output
kind; the input pipeline; the target layer with its grid and the other candidates; one forward
pass on an image with per-label probabilities and its time; and warnings (BatchNorm saved in
train mode or never updated, labels that do not fit the head, an input range far from what the
normalisation implies, a file over 1 GB). Used by ``saliency-viewer model check`` and by the
GUI's **Model > Check model...**.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from viewer.inference.architectures import build
from viewer.inference.checkpoint import CheckpointError, match_keys, read_checkpoint
from viewer.inference.manifest import ManifestError, ModelManifest, load_manifest
from viewer.inference.model import LoadedModel
from viewer.io.image import Image

_LARGE_FILE = 1 << 30
_CANDIDATES = 6


@dataclass
class ModelReport:
    """Sections of ``(title, lines)``, warnings, and the error that stopped the check if any."""

    manifest: Path
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def add(self, title: str, *lines: str) -> None:
        self.sections.append((title, [line for line in lines if line]))

    def text(self) -> str:
        out = [f"Model check: {self.manifest}"]
        for title, lines in self.sections:
            out += ["", title] + [f"  {line}" for line in lines]
        if self.warnings:
            out += ["", "Warnings"] + [f"  ! {w}" for w in self.warnings]
        out += ["", f"ERROR: {self.error}" if self.error else "OK: the viewer can use this model."]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict:
        return {
            "manifest": str(self.manifest),
            "ok": self.ok,
            "error": self.error,
            "sections": {title: lines for title, lines in self.sections},
            "warnings": self.warnings,
            "probabilities": self.probabilities,
            "seconds": self.seconds,
        }


def check_model(
    manifest_path: Path | str, image: Image | None = None, *, image_name: str = "", device: str | None = None
) -> ModelReport:
    """Load the model of ``manifest_path`` as the viewer would, and report on it (never raises
    for a bad manifest, weights file or image: those become the report's ``error``)."""
    report = ModelReport(Path(manifest_path))
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        report.error = exc.reason
        return report
    report.manifest = manifest.path
    size = manifest.weights.stat().st_size
    if size > _LARGE_FILE:
        report.warnings.append(
            f"the weights file is {_size(size)}: loading takes long and needs as much memory"
        )
    try:
        model = LoadedModel(manifest, device)
    except (ManifestError, CheckpointError) as exc:
        report.add("Network", f"arch {manifest.arch}", f"weights {manifest.weights.name} ({_size(size)})")
        report.error = exc.reason if isinstance(exc, ManifestError) else str(exc)
        if isinstance(exc, CheckpointError) and (head := _head_mismatch(manifest)):
            report.error = f"{head}; {report.error}"
        return report
    _network(report, model, size)
    _output(report, model)
    _input(report, manifest)
    _layers(report, model)
    _train_mode(report, model)
    if image is not None:
        _forward(report, model, image, image_name)
    return report


def _head_mismatch(manifest: ModelManifest) -> str | None:
    """'labels do not fit the head' in words, when that is why the weights did not load."""
    try:
        network = build(manifest).network
        state, _ = match_keys(read_checkpoint(manifest.weights).state, network.state_dict(), manifest.key_map)
    except (ManifestError, CheckpointError):
        return None
    for key, own in network.state_dict().items():
        saved = state.get(key)
        if saved is not None and own.dim() == 2 and own.shape[0] == manifest.n_labels != saved.shape[0]:
            return (
                f"the manifest lists {manifest.n_labels} labels but the file's head ({key}) "
                f"has {saved.shape[0]} outputs"
            )
    return None


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _network(report: ModelReport, model: LoadedModel, size: int) -> None:
    m = model.manifest
    params = sum(p.numel() for p in model.network.parameters())
    lines = [
        f"arch {m.arch} ({model.family}), {params / 1e6:.2f} M parameters",
        f"weights {m.weights.name} ({_size(size)})",
    ]
    cp = model.checkpoint
    if cp is not None:
        kind = (
            f"a whole pickled {cp.whole_model.name} (read as data: its weights only)"
            if cp.whole_model is not None
            else "a state dict"
        )
        lines.append(f"the file holds {kind}, {len(cp.state)} tensors")
        lines += [f"rename: {r}" for r in cp.renames] or [
            "keys matched the architecture as saved (no renames)"
        ]
    lines += model.notes
    report.add("Network", *lines)


def _output(report: ModelReport, model: LoadedModel) -> None:
    m, head = model.manifest, model.head
    width = _output_width(model)
    lines = [f"task {m.task}: {head.describe()}", f"{m.n_labels} labels: {', '.join(m.labels)}"]
    if width is not None and width != m.n_labels:
        report.error = f"the network outputs {width} scores but the manifest lists {m.n_labels} labels"
    expected = "sigmoid" if m.task == "multilabel" else "softmax"
    if head.activation in ("sigmoid", "softmax") and head.activation != expected:
        report.warnings.append(
            f"task is {m.task} but the model's own head applies {head.activation} ({head.source}); "
            f"the viewer follows the model, so its probabilities equal your model(x): set task = "
            f'"{"multilabel" if head.activation == "sigmoid" else "multiclass"}" to agree'
        )
    if m.task == "multiclass" and m.n_labels == 1:
        report.warnings.append('a softmax over one label is always 1.0: use task = "multilabel"')
    report.add("Output", *lines)


def _output_width(model: LoadedModel) -> int | None:
    """The width of what the network returns, from one forward pass on zeros (the last module
    run is not the output: a gated head, ``score(x) * sigmoid(gate(x))``, ends in its gate)."""
    shape = (1, model.manifest.in_channels, *model.manifest.input.size)
    try:
        with torch.no_grad():
            out = model.network(torch.zeros(shape, device=model.device))
    except RuntimeError:
        return None
    return out.shape[-1] if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def _input(report: ModelReport, m: ModelManifest) -> None:
    spec = m.input
    intensity = spec.intensity
    if intensity == "windows":
        intensity += " " + ", ".join(f"[{c:g}, {w:g}]" for c, w in spec.windows)
    report.add(
        "Input",
        f"{m.in_channels} channel(s), {' x '.join(map(str, spec.size))} ({spec.resize})"
        + (
            "; 3-D: the whole series is one input (depth x height x width)"
            + (
                f", resampled to {' x '.join(f'{v:g}' for v in spec.spacing)} mm voxels"
                if spec.spacing
                else ""
            )
            if spec.volume
            else ""
        )
        + (
            f"; 2.5-D: {spec.slices} adjacent slices ({spec.neighbours} on each side), "
            f"{m.in_channels // spec.slices} channel(s) each, maps on the centre slice"
            if spec.context == "adjacent-slices"
            else ""
        ),
        f"intensity {intensity}, then (x - mean) / std with mean {list(spec.mean)}, std {list(spec.std)}",
        f"modalities {', '.join(m.modalities) or 'any'}; domain {m.domain}"
        + (f"; trained on {m.trained_on}" if m.trained_on else ""),
    )


def _layers(report: ModelReport, model: LoadedModel) -> None:
    if model.target_layer is None:
        report.add(
            "Target layer",
            f"none: {model.family} runs no Python module hooks, so CAM methods, Guided Backprop and "
            "DeconvNet cannot explain it; gradient, integrated gradients, SmoothGrad, occlusion, "
            "RISE and LIME can",
        )
        return
    chosen = "(network.target_layer)" if model.manifest.target_layer else "(found automatically)"
    lines = [f"{model.target_layer} {chosen}: {model.grid.describe()}", "candidates, last first:"]
    last_run = {
        layer.name: layer for layer in model.layers if layer.grid is not None
    }  # a module run twice: once
    for layer in list(last_run.values())[::-1][:_CANDIDATES]:
        mark = "*" if layer.name == model.target_layer else " "
        lines.append(f"{mark} {layer.name} ({layer.kind}) {layer.grid.describe()}")
    report.add("Target layer", *lines)


def _train_mode(report: ModelReport, model: LoadedModel) -> None:
    saved = model.checkpoint.whole_model if model.checkpoint is not None else None
    if saved is not None and any(
        m.training for _, m in saved.named_modules() if issubclass(m.cls, nn.modules.batchnorm._BatchNorm)
    ):
        report.warnings.append(
            "the saved model was in train mode: BatchNorm used batch statistics there; the viewer runs "
            "in eval mode with the running statistics (call model.eval() before comparing outputs)"
        )
    fresh = [
        name
        for name, m in model.network.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.running_mean is not None
        and bool((m.running_mean == 0).all() and (m.running_var == 1).all())
    ]
    if fresh:
        report.warnings.append(
            f"{len(fresh)} BatchNorm layer(s) hold their initial statistics (e.g. {fresh[0]}): "
            "the weights may never have been trained, or not in train mode"
        )


def _forward(report: ModelReport, model: LoadedModel, image: Image, name: str) -> None:
    try:
        x = model.prepare_volume(image)[0] if model.volume else model.prepare(image)[0]
        start = time.perf_counter()
        prediction = model.predict(image, frames=[image.n_frames // 2])
        report.seconds = time.perf_counter() - start
    except (ValueError, RuntimeError) as exc:
        report.error = f"one forward pass on {name or 'the image'} failed: {str(exc).splitlines()[0]}"
        return
    probabilities = prediction.probabilities[0]
    report.probabilities = {
        label: float(p) for label, p in zip(model.manifest.labels, probabilities, strict=True)
    }
    ranked = sorted(report.probabilities.items(), key=lambda kv: -kv[1])
    lo, hi, mean, std = float(x.min()), float(x.max()), float(x.mean()), float(x.std())
    lines = [
        f"image {name or image.identity.modality} {image.rows} x {image.columns}, {image.n_frames} frame(s)",
        f"model input range [{lo:.3g}, {hi:.3g}], mean {mean:.3g}, std {std:.3g}",
        f"{report.seconds * 1000:.0f} ms on {model.device.type}",
    ]
    lines += [f"{label:<24} {p:.3f}" for label, p in ranked]
    report.add("One forward pass", *lines)
    if model.family == "xrv":
        if hi > 1100 or lo < -1100 or hi - lo < 200:
            report.warnings.append(
                f"TorchXRayVision models expect inputs in [-1024, 1024]; this one spans [{lo:.3g}, {hi:.3g}]"
            )
    elif abs(mean) > 5 or std > 5 or std < 0.05:
        report.warnings.append(
            f"the model input has mean {mean:.3g} and std {std:.3g}: input.mean/std may not be the "
            "normalisation the model was trained with (a standardised input has mean near 0, std near 1)"
        )
    caution = model.manifest.caution(image)
    if caution:
        report.warnings.append(caution)
    if not torch.isfinite(torch.as_tensor(probabilities)).all():
        report.error = "the model outputs NaN or infinite values on this image"


__all__ = ["ModelReport", "check_model"]
