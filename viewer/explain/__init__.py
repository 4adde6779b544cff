"""Saliency methods, the engine that runs them, and metrics that say how far to trust a map.

No Qt here: the GUI and the CLI both drive this package.
"""

from viewer.explain.context import Cancelled, ExplainContext
from viewer.explain.engine import Explanation, explain
from viewer.explain.registry import DEFAULT_METHODS, METHODS, Method, get_method
from viewer.explain.saliency_map import SaliencyMap

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "Cancelled",
    "ExplainContext",
    "Explanation",
    "Method",
    "SaliencyMap",
    "explain",
    "get_method",
]
