"""Layer-wise Relevance Propagation (Bach et al., PLoS ONE 2015; Montavon et al. 2019): the target's
logit redistributed layer by layer back onto the pixels, each layer by a rule
(``lrp_rules``). Three composites, as Zennit names them:

- ``lrp``: EpsilonPlusFlat, the recommended default: z+ on convolutions, epsilon on dense layers,
  flat on the first layer; batch norms merged into the convolution before them.
- ``lrp-epsilon``: epsilon on every convolution and dense layer (``epsilon`` 0.25 by default,
  Montavon et al.'s middle-layer choice; near 0 it tends to Gradient x Input).
- ``lrp-alphabeta``: alpha-beta on every convolution and dense layer (alpha 1, beta 0 by
  default: only positive contributions count).

The map is the relevance summed over the input's channels: signed, and adding up to the logit
less what biases (and epsilon) absorbed. For convolutional networks: on a vision transformer the
rules would pass relevance through attention unchanged, so these methods refuse it.
"""

from __future__ import annotations

import torch

from viewer.explain.context import ExplainContext
from viewer.explain.lrp_rules import Composite, LayerRule, relevance
from viewer.explain.registry import Method, register


class _LRP(Method):
    family = "relevance"
    cost = "own-pass"
    seconds = 0.4
    convention = "signed"
    reroutes_layers = True
    cnn_only = True
    caveat = "rules for convolutional networks (on a transformer use transformer-attribution)"

    def __init__(self, **params):
        super().__init__(**params)
        self._shown: dict[int, tuple[float, float]] = {}  # per target: relevance and logit summed

    def composite(self) -> Composite:
        raise NotImplementedError

    def compute(self, ctx: ExplainContext, targets: list[int]) -> torch.Tensor:
        composite = self.composite()
        maps = []
        for a, b in ctx.batches(len(ctx.inputs), kind="gradient"):
            rel, logits, _ = relevance(ctx.network, ctx.inputs[a:b], targets, composite)
            maps.append(rel.sum(dim=-3))  # one forward per batch, one backward per target
            for t, target in enumerate(targets):
                shown, logit = self._shown.get(target, (0.0, 0.0))
                self._shown[target] = (shown + float(rel[t].sum()), logit + float(logits[:, target].sum()))
        return torch.cat(maps, dim=1)

    def map_notes(self, target: int) -> list[str]:
        """How much of the logit the map shows: biases, merged batch-norm shifts and epsilon keep
        the rest, and a reader comparing maps should know."""
        shown, logit = self._shown.pop(target, (0.0, 0.0))
        if logit == 0:
            return []
        return [
            f"relevance shown: {100 * shown / logit:.0f} % of the logit ({logit:.3g}); biases keep the rest"
        ]


@register
class LRP(_LRP):
    id = "lrp"
    title = "LRP (EpsilonPlusFlat)"
    reference = (
        "Bach et al., PLoS ONE 2015; composite of Montavon et al. 2019 (z+ conv, epsilon dense, flat first)"
    )

    def composite(self) -> Composite:
        return Composite(conv=LayerRule("zplus"), dense=LayerRule("epsilon"), first=LayerRule("flat"))


@register
class LRPEpsilon(_LRP):
    id = "lrp-epsilon"
    title = "LRP-epsilon"
    reference = "Bach et al., PLoS ONE 2015 (epsilon rule on every layer)"

    @classmethod
    def defaults(cls) -> dict:
        return {"epsilon": 0.25}

    def composite(self) -> Composite:
        rule = LayerRule("epsilon", epsilon=self.params["epsilon"])
        return Composite(conv=rule, dense=rule)


@register
class LRPAlphaBeta(_LRP):
    id = "lrp-alphabeta"
    title = "LRP-alpha-beta"
    reference = "Bach et al., PLoS ONE 2015 (alpha-beta rule on every layer; alpha 1, beta 0)"

    @classmethod
    def defaults(cls) -> dict:
        return {"alpha": 1.0, "beta": 0.0}

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["alpha"] - self.params["beta"] != 1 or self.params["beta"] < 0:
            raise ValueError("lrp-alphabeta: alpha - beta must be 1, with beta >= 0 (e.g. 1 and 0, 2 and 1)")

    def composite(self) -> Composite:
        rule = LayerRule("alphabeta", alpha=self.params["alpha"], beta=self.params["beta"])
        return Composite(conv=rule, dense=rule)
