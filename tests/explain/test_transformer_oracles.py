"""CAM and gradient maps on vision transformers against pytorch-grad-cam, run as its documentation
shows for them: target layer the last block's first LayerNorm, and a ``reshape_transform`` that
drops the leading tokens and folds the patch tokens into their grid (Swin: channels last permuted).

Our side finds the layer and the token layout by itself (``viewer.inference.feature_grid``).
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import Saliency
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tests.explain.peers import pearson, random_input
from tests.inference.layouts import seeded
from viewer.explain import ExplainContext, get_method
from viewer.inference.feature_grid import choose_target_layer, layer_grid, probe_layers

pytestmark = pytest.mark.timeout(300)
SIZE = 64


def _networks():
    yield (
        "torchvision vit_b_16",
        lambda: torchvision.models.vit_b_16(weights=None, image_size=SIZE, num_classes=4),
    )
    yield "timm vit_tiny", lambda: timm.create_model("vit_tiny_patch16_224", num_classes=4, img_size=SIZE)
    yield (
        "timm deit distilled",
        lambda: timm.create_model("deit_tiny_distilled_patch16_224", num_classes=4, img_size=SIZE),
    )
    yield (
        "timm swin (channels last)",
        lambda: timm.create_model(
            "swin_tiny_patch4_window7_224", num_classes=4, img_size=SIZE, window_size=2
        ),
    )


@pytest.fixture(scope="module", params=list(_networks()), ids=lambda p: p[0])
def case(request):
    net = seeded(request.param[1](), seed=5)
    x = random_input(seed=2, size=SIZE)
    layers = probe_layers(net, (3, SIZE, SIZE))
    layer = choose_target_layer(net, layers)
    grid = layer_grid(layers, layer)
    with torch.no_grad():
        logits = net(x)[0]
    return net, x, layer, grid, logits


def documented_reshape(grid):
    """pytorch-grad-cam's ``reshape_transform`` from its ViT and Swin tutorials."""

    def reshape(tensor):
        if tensor.dim() == 4:  # Swin in timm: (B, H, W, C)
            return tensor.permute(0, 3, 1, 2)
        result = tensor[:, grid.prefix :, :].reshape(tensor.size(0), grid.rows, grid.cols, tensor.size(2))
        return result.transpose(2, 3).transpose(1, 2)

    return reshape


def ours(case, method_id: str, target: int) -> torch.Tensor:
    net, x, layer, grid, _ = case
    with ExplainContext(net, layer, x, task="multiclass", grid=grid) as ctx:
        return get_method(method_id).compute(ctx, [target])[0].detach()


def upsampled_unit(raw: torch.Tensor) -> np.ndarray:
    up = F.interpolate(raw.clamp(min=0)[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    up = up[:, 0] - up.amin()
    return (up / up.amax().clamp(min=1e-12)).numpy()


def test_default_layer_is_the_last_blocks_first_layernorm(case):
    _, _, layer, grid, _ = case
    if grid.layout == "tokens":
        assert layer.endswith(("encoder_layer_11.ln_1", "blocks.11.norm1"))
        assert grid.rows == grid.cols == SIZE // 16
    else:
        assert grid.layout == "nhwc" and layer == "norm"


@pytest.mark.parametrize(
    ("method_id", "peer"), [("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus), ("layercam", LayerCAM)]
)
def test_cam_on_transformers_equals_pytorch_grad_cam(case, method_id, peer):
    net, x, layer, grid, logits = case
    compared = 0
    for target in torch.argsort(logits, descending=True).tolist():
        with peer(
            model=net, target_layers=[net.get_submodule(layer)], reshape_transform=documented_reshape(grid)
        ) as cam:
            expected = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
        if expected.max() <= 0:
            continue  # every weight negative for this label: both maps are empty
        got = upsampled_unit(ours(case, method_id, target))
        assert pearson(got, expected) >= 0.99
        assert np.abs(got - expected).max() <= 5e-3
        compared += 1
    assert compared, "degenerate test case: every label's map is empty"


def test_input_gradient_on_transformers_equals_captum(case):
    net, x, _, _, logits = case
    target = int(logits.argmax())
    expected = Saliency(net).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    expected = expected.amax(dim=1).detach()
    got = ours(case, "gradient", target).abs()
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6 * float(expected.max()))


# --- attention rollout --------------------------------------------------------------------------


def peer_attention(net, x) -> list[torch.Tensor]:
    """Each block's attention as the libraries compute it themselves: torchvision's
    ``MultiheadAttention`` asked for its weights, timm's ``Attention`` with its fused kernel off
    (its explicit path hands the softmax to ``attn_drop``)."""
    import copy

    net = copy.deepcopy(net)
    seen, hooks = [], []
    for module in net.modules():
        if isinstance(module, torch.nn.MultiheadAttention):

            def pre(m, args, kwargs):
                _, weights = torch.nn.MultiheadAttention.forward(
                    m, args[0], args[1], args[2], need_weights=True, average_attn_weights=False
                )
                seen.append(weights)

            hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        elif hasattr(module, "fused_attn") and hasattr(module, "attn_drop"):
            module.fused_attn = False
            hooks.append(module.attn_drop.register_forward_hook(lambda m, i, o: seen.append(i[0])))
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return seen


def paper_rollout(attentions, prefix: int) -> torch.Tensor:
    """Abnar & Zuidema's rollout written out: Ã = 0.5 A + 0.5 I per block, rows renormalised."""
    joint = None
    for a in attentions:
        mean = a.mean(dim=1)[0].double()
        step = 0.5 * mean + 0.5 * torch.eye(mean.shape[-1], dtype=torch.float64)
        step = step / step.sum(dim=-1, keepdim=True)
        joint = step if joint is None else step @ joint
    return joint[0, prefix:] if prefix else joint[prefix:, prefix:].mean(dim=0)


def test_attention_rollout_equals_the_paper_on_the_libraries_own_attention(case):
    net, x, _, grid, _ = case
    if grid.layout != "tokens":
        pytest.skip("Swin's windowed attention has no token-to-token rollout")
    expected = paper_rollout(peer_attention(net, x), grid.prefix).reshape(grid.rows, grid.cols)
    got = ours(case, "attention-rollout", 0)[0]
    np.testing.assert_allclose(got.double().numpy(), expected.numpy(), rtol=1e-4, atol=1e-7)
    assert torch.allclose(got, ours(case, "attention-rollout", 3)[0])  # class-agnostic


def test_attention_methods_say_why_a_cnn_cannot_have_them(tmp_path):
    from tests.inference.layouts import write_manifest
    from viewer.explain import explain
    from viewer.explain.engine import UnsupportedMethod
    from viewer.inference.model import LoadedModel
    from viewer.io import discover, load_series
    from viewer.resources import resource_path

    torch.save(seeded(torchvision.models.resnet18(num_classes=3)).state_dict(), tmp_path / "w.pt")
    model = LoadedModel.from_manifest(
        write_manifest(tmp_path, "resnet18", "w.pt", labels=["a", "b", "c"]), "cpu"
    )
    film = load_series(discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series[0])
    assert not model.attention
    with pytest.raises(
        UnsupportedMethod, match="Attention rollout reads a vision transformer's self-attention"
    ):
        explain(model, film, ["attention-rollout"])
