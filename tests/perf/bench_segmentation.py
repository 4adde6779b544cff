"""Cost per region of a segmenter's maps, against pytorch-grad-cam's SemanticSegmentationTarget and
Captum on the same network, input and region, in the same run (ratios printed).

    python tests/perf/bench_segmentation.py                 # DeepLabV3-MobileNetV3 and a MONAI UNet, 256 px
    python tests/perf/bench_segmentation.py --size 128 --repeat 5

Each figure is the median of ``--repeat`` calls after a warm-up, ours and the peer alternating call by
call (so machine load falls on both alike), on the CPU, one frame and one region. Ours is the engine's
per-region work: the region-scored network (``viewer.explain.targets.RegionScores``), the recorded
pass and the method; the peer is called as its tutorial shows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from captum.attr import IntegratedGradients, Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

from tests.explain.peers import random_input
from tests.explain.segmenters import deeplab
from viewer.explain import ExplainContext, get_method
from viewer.explain.targets import PREFIX, REGION_SCORE, Region, RegionScores


def monai_unet() -> torch.nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(2, 3, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2)).eval()


NETWORKS = {
    "deeplabv3_mobilenet_v3_large": (deeplab, "backbone.12", 3),
    "monai UNet (16-128 ch)": (monai_unet, "model.1.submodule.1.submodule.1.submodule", 3),
}


def median_time(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name: str, net: torch.nn.Module, layer: str, channels: int, size: int, repeat: int) -> None:
    x = random_input(seed=3, size=size, channels=channels)
    mask = torch.zeros(size, size)
    mask[size // 4 : size // 2, size // 3 : -size // 8] = 1
    label = 1

    def ours(method: str, **params):
        with ExplainContext(
            RegionScores(net, [Region(label, mask)]),
            PREFIX + layer,
            x,
            task="segmentation",
            head=REGION_SCORE,
        ) as ctx:
            return get_method(method, **params).compute(ctx, [0])

    def forward(inputs):
        return (net(inputs)[:, label] * mask).flatten(1).sum(dim=1, keepdim=True)

    def peer_gradcam():
        with GradCAM(model=net, target_layers=[net.get_submodule(layer)]) as cam:
            return cam(input_tensor=x, targets=[SemanticSegmentationTarget(label, mask.numpy())])

    pairs = {
        "gradcam": (lambda: ours("gradcam"), peer_gradcam, "pytorch-grad-cam GradCAM"),
        "gradient": (
            lambda: ours("gradient"),
            lambda: Saliency(forward).attribute(x, target=0),
            "Captum Saliency",
        ),
        "integrated-gradients": (
            lambda: ours("integrated-gradients", baseline="zeros", steps=32),
            lambda: IntegratedGradients(forward).attribute(
                x, baselines=torch.zeros_like(x), target=0, n_steps=32, internal_batch_size=16
            ),
            "Captum IntegratedGradients (32 steps)",
        ),
    }
    print(f"{name}, {size} px, one region, median of {repeat}:")
    for method, (a, b, peer) in pairs.items():
        a(), b()  # warm-up
        ta, tb = [], []
        for _ in range(repeat):
            ta.append(median_time(a, 1))
            tb.append(median_time(b, 1))
        mine, theirs = statistics.median(ta), statistics.median(tb)
        print(f"  {method:22s} ours {mine:7.3f} s   {peer} {theirs:7.3f} s   ratio {mine / theirs:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name, (make, layer, channels) in NETWORKS.items():
        bench(name, make(), layer, channels, args.size, args.repeat)


if __name__ == "__main__":
    main()
