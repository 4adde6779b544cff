"""Check a model before using it: ``saliency-viewer model check MANIFEST_OR_NAME [IMAGE]``.

Prints what the viewer understood of the model (architecture and size, every rename applied to
the weights' keys, output kind, input pipeline, target layer and candidates), one forward pass on
IMAGE (default: a bundled sample the model accepts) with per-label probabilities and timing, and
the warnings a researcher needs. Exit code 0 when the viewer can use the model, 1 when not.

``model trust FILE`` lets a TorchScript or ``.pt2`` file run operators beyond pure tensor
arithmetic (it prints them first; trust is by the file's SHA-256, so a changed file is refused
again); ``model untrust FILE`` takes that back. ``model init FILE`` writes a manifest from what a
weights file shows (``viewer/cli/model_init.py``)."""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

from viewer.cli.arguments import add_trust_code
from viewer.cli.model_init import add_init, run_init

HELP = "check a model: what the viewer understood of its manifest and weights, and one forward pass"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check", help="load a model as the viewer would and report on it", description=__doc__
    )
    check.add_argument("model", help="a bundled model's name, a manifest.toml, or a folder holding one")
    check.add_argument(
        "image", nargs="?", type=Path, help="an image or series to run once (default: a sample)"
    )
    check.add_argument("--json", action="store_true", help="print the report as one JSON document")
    check.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    add_trust_code(check)
    add_init(sub)
    for action, text in (
        ("trust", "let a TorchScript file run operators beyond pure tensor arithmetic (you consent)"),
        ("untrust", "take back your trust in a model file"),
    ):
        sub.add_parser(action, help=text, description=text).add_argument(
            "model", help="the model file, or a manifest / folder / bundled name whose weights to trust"
        )


def run(args: argparse.Namespace) -> int:
    if args.action in ("trust", "untrust"):
        return _trust(args.model, args.action == "trust")
    if args.action == "init":
        return run_init(args, lambda manifest: _image(None, manifest), lambda report: _emit(report, False))
    from viewer.inference.catalog import resolve_model
    from viewer.inference.doctor import ModelReport, check_model
    from viewer.inference.manifest import ManifestError, load_manifest

    try:
        path = resolve_model(args.model)
    except ManifestError as exc:
        return _emit(ModelReport(Path(args.model), error=exc.reason), args.json)
    try:
        image, name = _image(args.image, load_manifest(path))
    except ManifestError as exc:
        return _emit(ModelReport(path, error=exc.reason), args.json)
    except ValueError as exc:
        return _emit(ModelReport(path, error=str(exc)), args.json)
    return _emit(check_model(path, image, image_name=name, device=args.device), args.json)


def _emit(report, as_json: bool) -> int:
    if as_json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.text())
    return 0 if report.ok else 1


def _image(path: Path | None, manifest):
    """The image to run once: the first series in ``path``, or a bundled sample the model accepts."""
    from viewer.cli.info import sample_studies
    from viewer.io import discover, load_series

    found = discover([path] if path is not None else [sample_studies()])
    series = found.series
    if path is None:
        series = [s for s in series if manifest.accepts(s.modality)] or series
    if not series:
        reasons = "; ".join(str(p) for p in found.problems[:3])
        raise ValueError(
            f"no image found in {path or sample_studies()}" + (f" ({reasons})" if reasons else "")
        )
    name = Path(str(series[0].records[0].ref)).name
    try:
        image = load_series(series[0])
    except Exception as exc:  # a file that will not decode: name it, no traceback
        raise ValueError(f"cannot read {name}: {exc}") from None
    return image, name


def _trust(name: str, grant: bool) -> int:
    """Record (or take back) the user's trust in one graph file, after showing what it runs."""
    from viewer.inference.catalog import resolve_model
    from viewer.inference.exported_check import check_exported_program
    from viewer.inference.manifest import ManifestError, load_manifest
    from viewer.inference.torchscript_check import check_torchscript
    from viewer.inference.trust import store_path, trust, untrust

    try:
        path = Path(name)
        if not (path.is_file() and path.suffix != ".toml"):
            path = load_manifest(resolve_model(name)).weights
    except ManifestError as exc:
        print(f"saliency-viewer: {exc}", file=sys.stderr)
        return 1
    if not grant:
        done = untrust(path)
        print(f"{path}: {'no longer trusted' if done else 'was not trusted'}")
        return 0
    if path.suffix.lower() in (".h5", ".hdf5", ".keras"):
        return _trust_keras(path)
    check = (
        check_exported_program(path)
        if zipfile.is_zipfile(path) and _is_pt2(path)
        else check_torchscript(path)
    )
    if check.safe:
        print(f"{path}: nothing to trust: it runs pure tensor operators only")
        return 0
    print(f"{path} {check.reason()}.")
    trust(path, sorted(check.refused) or [check.reason()])
    print(f"Trusted (this exact file, by its SHA-256) in {store_path()}.")
    return 0


def _trust_keras(path: Path) -> int:
    """Trust a Keras file whose configuration has Lambda layers or custom objects (code)."""
    from viewer.inference.keras_config import KerasConfigError
    from viewer.inference.keras_model import check_keras_file, describe_refusals, use_torch_backend
    from viewer.inference.trust import store_path, trust

    use_torch_backend()
    try:
        found = check_keras_file(path)
    except (ImportError, KerasConfigError, OSError) as exc:
        print(f"saliency-viewer: {path}: {exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"{path}: nothing to trust: it holds only Keras' built-in layers")
        return 0
    print(f"{path} {describe_refusals(found)}.")
    trust(path, [f"{r.class_name} in layer {r.layer}" for r in found])
    print(f"Trusted (this exact file, by its SHA-256) in {store_path()}.")
    return 0


def _is_pt2(path: Path) -> bool:
    """A torch.export archive (it records its format), not a TorchScript one."""
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/archive_format") for name in archive.namelist())
