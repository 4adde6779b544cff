"""LRP against Zennit, run as its documentation shows (a composite, the architecture's canonizer,
``Gradient`` attribution with the one-hot output times the logit), on seeded torchvision networks
with non-trivial batch-norm statistics; on DenseNet-121, which Zennit has no canonizer for,
relevance conservation and agreement where Zennit's rules do apply."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.rules import AlphaBeta, Epsilon
from zennit.torchvision import ResNetCanonizer
from zennit.types import Convolution

from tests.explain.peers import random_input, random_network, same_snapshot, snapshot
from viewer.explain import ExplainContext, get_method
from viewer.explain.lrp_rules import Composite, LayerRule, relevance
from viewer.explain.registry import METHODS, unsupported_reason

pytestmark = pytest.mark.timeout(300)
SIZE = 96
TARGET = 3


def zennit_relevance(net: nn.Module, x: torch.Tensor, composite) -> torch.Tensor:
    with Gradient(net, composite) as attributor:
        _, rel = attributor(x, lambda out: torch.eye(out.shape[1])[[TARGET]] * out)
    return rel


def ours(method_id: str, net: nn.Module, x: torch.Tensor, **params) -> torch.Tensor:
    """The method's raw map (relevance summed over channels) as the engine computes it."""
    with ExplainContext(net, None, x, task="multiclass", input_grads=False) as ctx:
        return get_method(method_id, **params).compute(ctx, [TARGET])[0]


def canonizers(arch: str) -> list:
    return [ResNetCanonizer()] if arch.startswith("resnet") else []


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = float(b.abs().max())
    assert scale > 0
    # Float noise of the merged batch norms (folded in a different order) is ~1e-4 of the peak.
    torch.testing.assert_close(a, b, atol=1e-3 * scale, rtol=1e-3)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "vgg11"])
def test_lrp_equals_zennit_epsilon_plus_flat(arch):
    net = random_network(arch)
    x = random_input(seed=1, size=SIZE)
    theirs = zennit_relevance(net, x, EpsilonPlusFlat(canonizers=canonizers(arch))).sum(dim=1)
    assert_close(ours("lrp", net, x), theirs)


def _everywhere(rule, arch: str) -> LayerMapComposite:
    """Zennit's composite with one rule on every convolution and dense layer."""
    return LayerMapComposite(
        layer_map=[*layer_map_base(), (Convolution, rule), (nn.Linear, rule)], canonizers=canonizers(arch)
    )


@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_lrp_epsilon_equals_zennit_epsilon_on_every_layer(arch):
    net = random_network(arch)
    x = random_input(seed=2, size=SIZE)
    theirs = zennit_relevance(net, x, _everywhere(Epsilon(epsilon=0.25), arch)).sum(dim=1)
    assert_close(ours("lrp-epsilon", net, x), theirs)


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 0.0), (2.0, 1.0)])
@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_lrp_alphabeta_equals_zennit_alphabeta_on_every_layer(arch, alpha, beta):
    net = random_network(arch)
    x = random_input(seed=3, size=SIZE)
    theirs = zennit_relevance(net, x, _everywhere(AlphaBeta(alpha=alpha, beta=beta), arch)).sum(dim=1)
    assert_close(ours("lrp-alphabeta", net, x, alpha=alpha, beta=beta), theirs)


def test_alphabeta_refuses_parameters_that_do_not_conserve():
    with pytest.raises(ValueError, match="alpha - beta must be 1"):
        get_method("lrp-alphabeta", alpha=2.0, beta=0.5)


def test_densenet_agrees_with_zennit_where_its_rules_apply():
    """Zennit passes relevance through every batch norm (no canonizer for DenseNet) and sees the
    trailing ReLU and pool only as modules; with batch norms left unmerged, ours is the same map
    on torchvision's own DenseNet, functional calls and all."""
    net = random_network("densenet121")
    x = random_input(seed=4, size=SIZE)
    as_modules = nn.Sequential(net.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.classifier)
    theirs = zennit_relevance(as_modules.eval(), x, EpsilonPlusFlat()).sum(dim=1)
    unmerged = Composite(
        conv=LayerRule("zplus"), dense=LayerRule("epsilon"), first=LayerRule("flat"), merge_batchnorm=False
    )
    mine, _, layers = relevance(net, x, [TARGET], unmerged)
    assert layers == 121  # every convolution and the classifier governed by a rule
    assert_close(mine[0].sum(dim=1), theirs)


def _bias_free(net: nn.Module) -> nn.Module:
    """The same DenseNet with every bias zero, merged ones included (batch-norm shift and mean)."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.zero_()
            m.running_mean.zero_()
        elif isinstance(m, nn.Linear | nn.Conv2d) and m.bias is not None:
            m.bias.data.zero_()
    return net


def test_densenet_relevance_is_conserved_through_every_cut_when_nothing_absorbs_it():
    net = _bias_free(random_network("densenet121"))
    x = random_input(seed=5, size=SIZE)
    trace: list = []
    lrp = Composite(
        conv=LayerRule("zplus"), dense=LayerRule("epsilon", epsilon=1e-9), first=LayerRule("flat")
    )
    rel, logits, _ = relevance(net, x, [TARGET], lrp, trace)
    logit = float(logits[0, TARGET])
    assert float(rel.sum()) == pytest.approx(logit, rel=1e-3)
    # Cuts through the whole network: the classifier's input and each transition's input (the
    # dense block's full concatenation).
    cuts = [net.classifier.weight] + [getattr(net.features, f"transition{i}").conv.weight for i in (1, 2, 3)]
    sums = {id(w): into for w, _, into in trace}
    assert all(id(w) in sums for w in cuts)
    for w in cuts:
        assert sums[id(w)] == pytest.approx(logit, rel=1e-3)


def test_densenet_biases_absorb_relevance_on_the_real_network():
    """With the biases (and batch-norm shifts merged into the convolutions) of a real network, part
    of the logit stays in them: the map shows less than the whole logit, and the share is reported."""
    net = random_network("densenet121")
    x = random_input(seed=5, size=SIZE)
    rel, logits, _ = relevance(net, x, [TARGET], get_method("lrp").composite())
    shown = float(rel.sum()) / float(logits[0, TARGET])
    assert 0.5 < shown < 0.999 or 1.001 < shown < 1.5


@pytest.mark.parametrize("arch", ["resnet18", "densenet121", "mobilenet_v3_small", "vgg11"])
def test_lrp_methods_run_on_each_architecture_and_leave_it_untouched(arch):
    net = random_network(arch)
    x = torch.cat([random_input(seed=6, size=64), random_input(seed=7, size=64)])
    before = snapshot(net)
    for method_id in ("lrp", "lrp-epsilon", "lrp-alphabeta"):
        with ExplainContext(net, None, x, task="multiclass", input_grads=False) as ctx:
            maps = get_method(method_id).compute(ctx, [0, 3])
        assert maps.shape == (2, 2, 64, 64) and torch.isfinite(maps).all(), method_id
        assert maps.abs().amax() > 0, method_id
    assert same_snapshot(before, snapshot(net))


def test_one_rerouted_forward_serves_every_label():
    """The rerouted forward, and one plain forward that checks it computes the network's own
    logits, whatever the number of labels."""
    net = random_network("resnet18")

    def forwards(targets):
        calls = []
        handle = net.register_forward_hook(lambda *_: calls.append(1))
        try:
            with ExplainContext(net, None, random_input(size=64), task="multiclass", batch_size=8) as ctx:
                get_method("lrp").compute(ctx, targets)
        finally:
            handle.remove()
        return len(calls)

    assert forwards([0, 1, 2, 3]) == forwards([2]) == 2


def test_lrp_is_refused_on_transformers_and_compiled_networks_with_the_reason():
    for method_id in ("lrp", "lrp-epsilon", "lrp-alphabeta"):
        on_vit = unsupported_reason(METHODS[method_id], hooks=True, attention=True)
        assert "convolutional networks" in on_vit and "transformer-attribution" in on_vit
        compiled = unsupported_reason(METHODS[method_id], hooks=False, family="torchscript", attention=False)
        assert "every layer rerouted" in compiled and "lrp" not in compiled.split("work on it:")[1]
        assert unsupported_reason(METHODS[method_id], hooks=True, attention=False) is None


def test_vgg_of_torchvision_without_batch_norm_needs_no_merging():
    net = torchvision.models.vgg11(weights=None, num_classes=6).eval()
    x = random_input(seed=8, size=64)
    merged, _, _ = relevance(net, x, [1], get_method("lrp").composite())
    unmerged = Composite(
        conv=LayerRule("zplus"), dense=LayerRule("epsilon"), first=LayerRule("flat"), merge_batchnorm=False
    )
    plain, _, _ = relevance(net, x, [1], unmerged)
    assert torch.equal(merged, plain)


def test_a_forward_that_relies_on_a_discarded_in_place_result_is_refused_by_name():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            y = self.conv(x)
            y.add_(1.0 + y)  # the statement's own result is dropped: only the mutation counts
            return self.fc(y.mean(dim=(2, 3)))

    net = InPlace().eval()
    with pytest.raises(RuntimeError, match="LRP: this network's forward changes tensors in place"):
        relevance(net, random_input(size=32), [1], get_method("lrp").composite())
