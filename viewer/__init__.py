"""Saliency Viewer: see where a CNN is looking, on real DICOM, next to the radiologist's annotation.

The public Python API (``viewer.explain``, ``viewer.Explanation``, ...) is loaded on first use:
``import viewer`` imports neither torch nor Qt, so the I/O layer keeps its no-torch promise. The
names in ``__all__`` are public and follow semantic versioning (see CHANGELOG.md and
docs/notebook.md).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# Public name -> the module that defines it. Imported here by name only (not by an import
# statement, not even under TYPE_CHECKING): viewer.io imports this package for __version__, and a
# static import would make it depend on torch. Type checkers read viewer/__init__.pyi instead.
_LAZY = {
    "Explanation": "viewer.api.explanation",
    "InputError": "viewer.api.sources",
    "NetworkError": "viewer.inference.in_memory",
    "InputSpec": "viewer.inference.manifest",
    "METHODS": "viewer.explain.registry",
    "Viewer": "viewer.window",  # the window: Qt is imported on first use only
    "show": "viewer.window",
    "run": "viewer.window",
}

__all__ = [
    "METHODS",
    "Explanation",
    "InputError",
    "InputSpec",
    "NetworkError",
    "Viewer",
    "__version__",
    "explain",
    "run",
    "show",
]


class _ExplainPackage(types.ModuleType):
    """``viewer.explain`` is two things under one name: the explanation engine's package
    (``viewer.explain.engine``, ...) and the public function ``viewer.explain(network, image)``.
    The package is made callable, so neither shadows the other, whichever is imported first."""

    def __call__(self, *args, **kwargs):
        return importlib.import_module("viewer.api.explain").explain(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        # The import system sets ``viewer.explain`` to the subpackage when it is first imported.
        if name == "explain" and type(value) is types.ModuleType:
            value.__class__ = _ExplainPackage
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name == "explain":  # the subpackage, callable (see _ExplainPackage)
        return importlib.import_module("viewer.explain")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'viewer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
