"""Saliency methods by canonical id: one class per method, registered on definition."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

    from viewer.explain.context import ExplainContext
    from viewer.explain.saliency_map import Convention

METHODS: dict[str, type[Method]] = {}

# What a user sees selected before choosing: the set researchers compare first.
DEFAULT_METHODS = ("gradcam", "gradcam++", "guided-backprop", "guided-gradcam", "deconvnet", "lime")


class Method:
    """A saliency method. Subclasses set the class attributes and implement ``compute``.

    ``compute`` returns raw maps ``(targets, frames, h, w)`` at the method's own resolution (the
    target layer's grid for CAM maps, the model input's for the rest); the engine scales them to the
    method's ``convention`` and resamples them onto the native grid.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]  # "cam", "gradient", "perturbation" or "attention"
    convention: ClassVar[Convention]
    reference: ClassVar[str]
    class_sensitive: ClassVar[bool] = True
    # Parts of the shared recorded pass this method reads (see ``ExplainContext``).
    needs_input_grads: ClassVar[bool] = False
    needs_relu_rules: ClassVar[bool] = False
    # Reads the target layer through module hooks (which a TorchScript network never calls).
    needs_layer: ClassVar[bool] = False
    # Reads the self-attention of a vision transformer's blocks (a CNN has none).
    needs_attention: ClassVar[bool] = False
    # "shared": served by the one recorded pass every CAM and gradient map shares; "sampled":
    # forwards of its own (per channel, per sample or per perturbation).
    cost: ClassVar[str] = "shared"

    def __init__(self, **params):
        unknown = set(params) - set(self.defaults())
        if unknown:
            raise TypeError(f"{self.id}: unknown parameter(s) {', '.join(sorted(unknown))}")
        self.params = {**self.defaults(), **params}

    @classmethod
    def defaults(cls) -> dict:
        return {}

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def register(cls: type[Method]) -> type[Method]:
    if cls.id in METHODS:
        raise ValueError(f"method id {cls.id!r} registered twice")
    METHODS[cls.id] = cls
    return cls


def unsupported_reason(
    method: type[Method] | Method, *, hooks: bool, family: str = "", attention: bool = True
) -> str | None:
    """Why ``method`` cannot explain a network (None if it can): one whose layers take no module
    hooks (TorchScript) has neither a target layer nor ReLUs to reroute; a network without
    readable self-attention blocks and patch tokens (a CNN) has nothing for attention methods."""
    if method.needs_attention and not (attention and hooks):
        return (
            f"{method.title} reads a vision transformer's self-attention; this network has none it can read"
        )
    if hooks:
        return None
    what = "a target layer" if method.needs_layer else "rerouted ReLUs" if method.needs_relu_rules else None
    if what is None:
        return None
    usable = ", ".join(m.id for m in METHODS.values() if not (m.needs_layer or m.needs_relu_rules))
    return (
        f"{method.title} needs {what}, which a {family or 'compiled'} network does not expose to Python "
        f"(no module hooks); methods that work on it: {usable}"
    )


def cnn_methods() -> list[str]:
    """Ids of every method that applies to a convolutional network with module hooks."""
    return [m for m, cls in METHODS.items() if not cls.needs_attention]


def get_method(method_id: str, **params) -> Method:
    """An instance of the method ``method_id`` (e.g. ``"gradcam++"``) with ``params``."""
    try:
        cls = METHODS[method_id]
    except KeyError:
        raise KeyError(f"unknown method {method_id!r}; known: {', '.join(METHODS)}") from None
    return cls(**params)
