# Types of the names viewer/__init__.py loads lazily (see its _LAZY table).
from viewer.api.explain import explain as explain
from viewer.api.explanation import Explanation as Explanation
from viewer.api.sources import InputError as InputError
from viewer.explain.registry import METHODS as METHODS
from viewer.inference.in_memory import NetworkError as NetworkError
from viewer.inference.manifest import InputSpec as InputSpec
from viewer.window import Viewer as Viewer
from viewer.window import run as run
from viewer.window import show as show

__version__: str
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
