"""Saliency methods by canonical id: one class per method, registered on definition.

Everything the rest of the program knows about a method is on its class: title, family,
convention, cost, typical time, caveat, whether it is in the default set, the small parameters unit
tests run it with and those the saliency report uses. Lists of methods (the default set, the shared-pass ones,
the report's) are derived from the classes, never written out again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

    from viewer.explain.context import ExplainContext
    from viewer.explain.saliency_map import Convention

METHODS: dict[str, type[Method]] = {}
COSTS = ("shared", "own-pass", "sampled")


class Family(StrEnum):
    """What a method reads of the network; its ``description`` is what the method list says."""

    CAM = "cam"
    GRADIENT = "gradient"
    RELEVANCE = "relevance"
    PERTURBATION = "perturbation"
    ATTENTION = "attention"

    @property
    def description(self) -> str:
        return _FAMILY_TEXT[self]


_FAMILY_TEXT = {
    Family.CAM: "class activation map",
    Family.GRADIENT: "gradient",
    Family.RELEVANCE: "relevance propagation (convolutional networks)",
    Family.PERTURBATION: "perturbation",
    Family.ATTENTION: "attention (vision transformers only)",
}
# A method that typically takes this long or longer on one image is "slow": the GUI says so in its
# method list, runs it after the others over a series and offers a default set without it.
SLOW_SECONDS = 5.0


class Method:
    """A saliency method. Subclasses set the class attributes and implement ``compute``.

    ``compute`` returns raw maps ``(targets, frames, h, w)`` at the method's own resolution (the
    target layer's grid for CAM maps, the model input's for the rest); the engine scales them to the
    method's ``convention`` and resamples them onto the native grid.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[Family | str]  # one of Family (a plain string of its value is taken too)
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
    # Reroutes every layer's backward through Python (which a TorchScript network never calls).
    reroutes_layers: ClassVar[bool] = False
    # Its rules are for convolutional networks (a vision transformer's attention has none).
    cnn_only: ClassVar[bool] = False
    # Reads a detector's boxes themselves (D-RISE), not one score per target: detection models only.
    needs_detector: ClassVar[bool] = False
    # Its maths is written for 3-D networks too (grid axes, blocks, supervoxels).
    volumetric: ClassVar[bool] = False
    # One of COSTS. "shared": served by the one recorded pass every CAM and gradient map shares;
    # "own-pass": one forward of its own (per batch of frames) and one backward per label;
    # "sampled": many forwards of its own (per channel, per sample or per perturbation).
    cost: ClassVar[str] = "shared"
    # Typical seconds for one 2-D image: the bundled chest model (ResNet-18, 256 px) on the CI's
    # two CPU cores, measured with ``explain`` (a sampled method's default parameters). A guide for
    # people and for ordering work, not a promise: a GPU or another network changes it.
    seconds: ClassVar[float] = 0.1
    # Shows a rough map from its first samples and refines it as more arrive (``ctx.preview``).
    anytime: ClassVar[bool] = False
    # Draws random numbers (``ctx.generator`` or ``ctx.seed``): another seed gives another map, so its
    # stability across seeds is worth measuring (``viewer.explain.stability_runs``).
    seeded: ClassVar[bool] = False
    # What a reader must know before trusting the map; every map of the method carries it.
    caveat: ClassVar[str] = ""
    # Ticked before the user chooses: the set researchers compare first.
    default: ClassVar[bool] = False
    # Parameters small enough for a unit test to run the method on every model.
    quick: ClassVar[dict] = {}
    # Parameters of the saliency report (models/saliency_report.py), for sampled methods.
    report: ClassVar[dict] = {}

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

    def map_notes(self, target: int) -> list[str]:
        """What the maps of ``target`` computed since the last call should say about themselves
        (read once, after the last batch of frames)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def register(cls: type[Method]) -> type[Method]:
    if cls.id in METHODS:
        raise ValueError(f"method id {cls.id!r} registered twice")
    if cls.cost not in COSTS:
        raise ValueError(f"method {cls.id!r}: cost {cls.cost!r} is not one of {', '.join(COSTS)}")
    if cls.family not in set(Family):
        raise ValueError(f"method {cls.id!r}: family {cls.family!r} is not one of {', '.join(Family)}")
    cls.family = Family(cls.family)
    METHODS[cls.id] = cls
    return cls


def unsupported_reason(
    method: type[Method] | Method,
    *,
    hooks: bool,
    family: str = "",
    attention: bool = True,
    volume: bool = False,
    detector: bool = False,
) -> str | None:
    """Why ``method`` cannot explain a network (None if it can): one whose layers take no module
    hooks (TorchScript) has neither a target layer nor ReLUs to reroute; a network without
    readable self-attention blocks and patch tokens (a CNN) has nothing for attention methods;
    a 3-D network (``volume``) only methods written for three grid axes; a method that reads a
    detector's boxes needs a detection model (``detector``)."""
    if method.needs_detector and not detector:
        return f'{method.title} explains a detector\'s boxes: it needs a detection model (task = "detection")'
    if volume and not method.volumetric:
        usable = ", ".join(m.id for m in METHODS.values() if m.volumetric)
        return f"{method.title} is written for 2-D inputs; on this 3-D model use {usable}"
    if method.needs_attention and not (attention and hooks):
        return (
            f"{method.title} reads a vision transformer's self-attention; this network has none it can read"
        )
    if method.cnn_only and attention:
        return (
            f"{method.title}'s rules are for convolutional networks; on this vision transformer use "
            "transformer-attribution or attention-rollout"
        )
    if hooks:
        return None
    what = (
        "a target layer" if method.needs_layer
        else "rerouted ReLUs" if method.needs_relu_rules
        else "every layer rerouted" if method.reroutes_layers
        else None
    )  # fmt: skip
    if what is None:
        return None
    usable = ", ".join(
        m.id for m in METHODS.values() if not (m.needs_layer or m.needs_relu_rules or m.reroutes_layers)
    )
    return (
        f"{method.title} needs {what}, which a {family or 'compiled'} network does not expose to Python "
        f"(no module hooks); methods that work on it: {usable}"
    )


def title_of(method_id: str) -> str:
    """A method's title for people (``"Grad-CAM++"``); a map derived from a method's maps
    (``"gradcam:agreement"``, see ``viewer.state.map_stability``) says so (``"Grad-CAM
    (agreement)"``); an unknown id stands for itself."""
    cls = METHODS.get(method_id)
    base, _, part = method_id.partition(":")
    if cls is None and part and base in METHODS:
        return f"{METHODS[base].title} ({part})"
    return cls.title if cls is not None else method_id


def default_methods() -> tuple[str, ...]:
    """Ids of the methods ticked before the user chooses, in the registry's order."""
    return tuple(m for m, cls in METHODS.items() if cls.default)


def fast_default_methods() -> tuple[str, ...]:
    """The default set without its slow methods: every map within about a second."""
    return tuple(m for m in default_methods() if not is_slow(m))


def is_slow(method_id: str) -> bool:
    """Whether a method typically takes ``SLOW_SECONDS`` or more on one image (unknown: no)."""
    cls = METHODS.get(method_id)
    return cls is not None and cls.seconds >= SLOW_SECONDS


def typical_seconds(method_id: str) -> float:
    """A method's typical seconds on one image (see ``Method.seconds``; unknown ids: the default)."""
    cls = METHODS.get(method_id)
    return cls.seconds if cls is not None else Method.seconds


def speed_label(method_id: str) -> str:
    """How long a method takes, in a few words for a list: ``""`` when under a second, ``"~4 s"``,
    or ``"slow, ~60 s"``."""
    cls = METHODS.get(method_id)
    if cls is None or cls.seconds < 1.0:
        return ""
    return ("slow, " if is_slow(method_id) else "") + f"~{cls.seconds:.0f} s"


def speed_note(method_id: str) -> str:
    """How long a method takes, as a sentence for a tooltip."""
    cls = METHODS.get(method_id)
    if cls is None:
        return ""
    if cls.seconds < 1.0:
        return "Fast: well under a second per image on a CPU."
    note = f"Typically ~{cls.seconds:.0f} s per image on two CPU cores"
    if cls.anytime:
        return note + "; a first map shows after about 2 s and is refined as samples arrive."
    return note + (": slow, run after the others." if is_slow(method_id) else ".")


def methods_costing(cost: str) -> list[str]:
    """Ids of the methods of one cost class (one of ``COSTS``)."""
    return [m for m, cls in METHODS.items() if cls.cost == cost]


def cnn_methods() -> list[str]:
    """Ids of every method that applies to a convolutional network with module hooks."""
    return [m for m, cls in METHODS.items() if not (cls.needs_attention or cls.needs_detector)]


def register_detector_method(cls: type[Method]) -> type[Method]:
    """Register a method that reads a detector's boxes (``needs_detector``); once only, however
    often the module that registers it is imported."""
    cls.needs_detector = True
    return METHODS[cls.id] if cls.id in METHODS else register(cls)


def get_method(method_id: str, **params) -> Method:
    """An instance of the method ``method_id`` (e.g. ``"gradcam++"``) with ``params``."""
    try:
        cls = METHODS[method_id]
    except KeyError:
        raise KeyError(f"unknown method {method_id!r}; known: {', '.join(METHODS)}") from None
    return cls(**params)
