"""Saliency methods, the engine that runs them, and metrics that say how far to trust a map.

No Qt here: the GUI and the CLI both drive this package.
"""

# The method modules, in the order their methods are listed (importing one registers its classes).
from viewer.explain import cam  # isort: split

from viewer.explain import ablation_cam  # isort: split

from viewer.explain import gradients  # isort: split

from viewer.explain import deeplift  # isort: split

from viewer.explain import gradient_shap  # isort: split

from viewer.explain import fullgrad  # isort: split

from viewer.explain import lrp  # isort: split

from viewer.explain import perturbation  # isort: split

from viewer.explain import attention_rollout  # isort: split

from viewer.explain import attention_gradients  # isort: split

from viewer.explain.context import Cancelled, ExplainContext
from viewer.explain.engine import Explanation, explain
from viewer.explain.registry import METHODS, Method, default_methods, get_method
from viewer.explain.saliency_map import SaliencyMap

DEFAULT_METHODS = default_methods()

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "Cancelled",
    "ExplainContext",
    "Explanation",
    "Method",
    "SaliencyMap",
    "ablation_cam",
    "attention_gradients",
    "attention_rollout",
    "cam",
    "deeplift",
    "explain",
    "fullgrad",
    "get_method",
    "gradient_shap",
    "gradients",
    "lrp",
    "perturbation",
]
