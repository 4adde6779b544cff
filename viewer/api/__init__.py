"""The public Python API (``import viewer``): explain a network where it already is, in a notebook
or a script, and open the viewer's window on it.

This package sits at the top of the layering, beside the CLI: it composes the inference,
explanation and state layers, and never imports Qt; the window (``viewer.Viewer``) is
:mod:`viewer.window`, one layer above, which uses this package and :mod:`viewer.ui`.
``viewer/__init__.py`` re-exports these names lazily, so
``import viewer`` stays cheap and imports neither torch nor Qt.
"""

from viewer.api.explain import explain
from viewer.api.explanation import Explanation
from viewer.api.sources import InputError
from viewer.inference.in_memory import NetworkError
from viewer.inference.manifest import InputSpec

__all__ = ["Explanation", "InputError", "InputSpec", "NetworkError", "explain"]
