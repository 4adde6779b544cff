"""``torch.export`` programs (``.pt2``): a custom architecture without a pickle or its class.

``arch = "pt2"`` (or a manifest whose ``weights`` ends in ``.pt2`` and names no ``arch``) loads
what ``torch.export.save`` wrote. The archive is checked first
(:mod:`viewer.inference.exported_check`); a safe one is then read part by part with
``torch.export``'s own readers, each of them here only ever given raw tensor records and JSON:
the weights and constants (none pickled, the check made sure), the graph, and neither the
sample inputs (a pickle the viewer does not need) nor the guards (Python source that
``ep.module()`` would ``exec``; the viewer's input shape is the manifest's). A file the check
refuses loads only if the user trusted it, and then through ``torch.export.load`` itself.

The program runs unflattened (``torch.export.unflatten``): every submodule is back under its
original dotted name (``layer4``, ``features.7``), so forward hooks (CAM methods, the layer
probe) work as on the eager module, and autograd runs through the graph's ATen calls, which the
ReLU rules of Guided Backprop and DeconvNet reroute (:mod:`viewer.explain.relu_rules`).

The private readers used (``torch.export.pt2_archive._package``) are pinned by the tests that
load programs written by the installed ``torch.export.save``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from viewer.inference.built import Built
from viewer.inference.exported_check import check_exported_program
from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.trust import UntrustedModelError, is_trusted


def load_checked_program(path: Path) -> torch.export.ExportedProgram:
    """The program in a ``.pt2`` archive that :func:`check_exported_program` found safe: read
    without its sample inputs and without its guards code."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _bytes_to_dataclass
    from torch.export.pt2_archive import _package as pt2

    with pt2.PT2ArchiveReader(str(path)) as reader:
        names = reader.get_file_names()
        models = [n[len("models/") : -len(".json")] for n in names if n.startswith("models/")]
        if len(models) != 1:
            raise ValueError(f"the archive holds {len(models)} programs; the viewer runs one")
        serialized = _bytes_to_dataclass(
            schema.ExportedProgram, reader.read_bytes(f"models/{models[0]}.json")
        )
        serialized.guards_code = []
        state_dict = pt2._load_state_dict(reader, models[0])
        constants = pt2._load_constants(reader, models[0])
        return ExportedProgramDeserializer().deserialize(serialized, state_dict, constants, b"")


def build_exported(manifest: ModelManifest, _name: str) -> Built:
    """The registry's ``pt2`` builder: the checked (or trusted) program, unflattened."""
    check = check_exported_program(manifest.weights)
    trusted = not check.safe and is_trusted(manifest.weights)
    if not check.safe and not trusted:
        raise UntrustedModelError(manifest.path, manifest.weights, check.reason(), sorted(check.refused))
    try:
        program = (
            torch.export.load(str(manifest.weights)) if trusted else load_checked_program(manifest.weights)
        )
    except (RuntimeError, ValueError, KeyError, AssertionError, TypeError) as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ManifestError(manifest.path, f"cannot read {manifest.weights.name}: {line}") from None
    _require_free_batch(manifest, program)
    network = torch.export.unflatten(program)
    built = Built(network, "pt2", weights_inside=True)
    if trusted:
        built.notes.append(f"you trusted {manifest.weights.name}, which {check.reason()}")
    last = _last_operator(network)
    if last in ("sigmoid", "softmax", "_softmax") and manifest.output != "logits":
        # The graph is kept whole: its outputs are taken as probabilities as they are.
        built.activation, built.activation_source = "identity", f"the exported graph ends in {last}"
    return built


def _require_free_batch(manifest: ModelManifest, program: torch.export.ExportedProgram) -> None:
    """The viewer runs batches (perturbations, integration steps): a program exported with its
    batch size fixed cannot take them."""
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in _user_inputs(program)]
    if len(inputs) != 1:
        raise ManifestError(
            manifest.path, f"{manifest.weights.name} takes {len(inputs)} inputs; the viewer gives one image"
        )
    value = inputs[0].meta.get("val")
    if value is not None and isinstance(value.shape[0], int):
        raise ManifestError(
            manifest.path,
            f"{manifest.weights.name} was exported for a batch of exactly {value.shape[0]}, and the viewer "
            "runs batches: export it with a free batch dimension, torch.export.export(model, (x,), "
            'dynamic_shapes={"x": {0: torch.export.Dim("batch")}}) (x: your forward\'s input name)',
        )


def _user_inputs(program: torch.export.ExportedProgram) -> set[str]:
    return set(program.graph_signature.user_inputs)


def _last_operator(network: nn.Module) -> str | None:
    """The ATen operator that makes the unflattened program's single output, if it is one."""
    graph = getattr(network, "graph", None)
    if graph is None:
        return None
    outputs = [n for n in graph.nodes if n.op == "output"]
    if len(outputs) != 1:
        return None
    (values,) = outputs[0].args
    values = values if isinstance(values, tuple | list) else (values,)
    if len(values) != 1 or not hasattr(values[0], "target"):
        return None
    name = getattr(values[0].target, "__name__", "")
    return name.split(".")[0] or None


__all__ = ["build_exported", "load_checked_program"]
