"""``arch = "python:path/to/net.py:ClassName"``: the user's own network class, by explicit consent.

Importing a Python file runs it, so the viewer imports one only when the user has said so for
this run (``--trust-code`` on the command line: :func:`allow_user_code`) or for this exact file
(the viewer's "Trust and load" answer, kept by the file's SHA-256 in the trust store of
:mod:`viewer.inference.trust`; a changed file is asked about again). The class is built with the
manifest's ``kwargs`` (the manifest is the user's own) and its weights are then read by the
viewer's safe loaders, as for any architecture.

Never, whatever the consent, for a model that came from elsewhere: a manifest or code file inside
a ZIP archive, in the PACS retrieval cache, or named by an address. Those are refused by origin,
with no question asked, since the user did not write them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from torch import nn

from viewer.inference.built import Built
from viewer.inference.manifest import ManifestError, ModelManifest
from viewer.inference.trust import UntrustedModelError, is_trusted
from viewer.io.pacs.nodes import ConfigError, default_cache_folder, load_config
from viewer.io.sources import is_zip


class _Consent:
    everything = False  # --trust-code: the user consents for every python: model of this run


def allow_user_code(allowed: bool = True) -> None:
    """The ``--trust-code`` flag: import the ``python:`` code of the models this run opens."""
    _Consent.everything = allowed


class UserCodeError(UntrustedModelError):
    """A ``python:`` manifest whose code the user has not consented to run."""

    def __init__(self, manifest: Path, code: Path, arch: str):
        super().__init__(manifest, code, f"is Python code ({arch}): loading the model runs it", ["import"])
        self.reason = (
            f"network.arch {arch!r} imports {code}, which runs it as a program. If it is your own "
            "code, pass --trust-code (or answer Trust in the viewer)"
        )
        self.args = (f"{manifest}: {self.reason}",)


def split_target(manifest: ModelManifest, name: str) -> tuple[Path, str]:
    """``(code file, class name)`` of ``python:`` ``name``, the file relative to the manifest."""
    path, sep, cls = name.rpartition(":")
    if not sep or not path.endswith(".py") or not cls.isidentifier():
        raise ManifestError(
            manifest.path, f"network.arch {manifest.arch!r}: write python:path/to/net.py:ClassName"
        )
    return (manifest.path.parent / path).resolve(), cls


def foreign_origin(path: Path) -> str | None:
    """Why ``path`` came from elsewhere (a ZIP, the PACS cache, an address), or None."""
    text = str(path)
    if "://" in text:
        return "it is named by an address"
    if "!/" in text or any(is_zip(parent) for parent in Path(text).parents):
        return "it is inside a ZIP archive"
    try:
        configured = load_config().cache_folder
    except ConfigError:
        configured = None
    resolved = Path(path).resolve()
    for cache in {default_cache_folder(), *([configured] if configured else [])}:
        if resolved.is_relative_to(Path(cache).expanduser().resolve()):
            return "it is in the PACS retrieval cache"
    return None


def build_user_code(manifest: ModelManifest, name: str) -> Built:
    """The registry's ``python`` builder: import the user's module, then build its class."""
    code, cls_name = split_target(manifest, name)
    for what, path in (("the manifest", manifest.path), ("the code file", code)):
        origin = foreign_origin(path)
        if origin is not None:
            raise ManifestError(
                manifest.path,
                f"network.arch {manifest.arch!r} is refused: {what} came from elsewhere ({origin}); "
                "only your own code can be run, from your own folders",
            )
    if not code.is_file():
        raise ManifestError(manifest.path, f"network.arch {manifest.arch!r}: no file {code}")
    if not (_Consent.everything or is_trusted(code)):
        raise UserCodeError(manifest.path, code, manifest.arch)
    cls = getattr(_import(manifest, code), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ManifestError(manifest.path, f"{code.name} has no nn.Module class {cls_name!r}")
    built = Built(cls(**manifest.arch_kwargs), "python")
    built.notes.append(f"your own code: {code} (you consented to run it)")
    return built


def _import(manifest: ModelManifest, code: Path):
    module_name = f"saliency_viewer_user_code_{code.stem}_{abs(hash(str(code)))}"
    spec = importlib.util.spec_from_file_location(module_name, code)
    if spec is None or spec.loader is None:
        raise ManifestError(manifest.path, f"cannot import {code}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code failed: name the file and the reason, no traceback
        sys.modules.pop(module_name, None)
        raise ManifestError(
            manifest.path, f"importing {code.name} failed: {type(exc).__name__}: {exc}"
        ) from None
    return module


__all__ = ["UserCodeError", "allow_user_code", "build_user_code", "foreign_origin", "split_target"]
