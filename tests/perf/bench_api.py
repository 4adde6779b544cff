"""viewer.explain's overhead against pytorch-grad-cam: Grad-CAM on the same in-memory module and
the same input tensor, in the same run, as a notebook calls each (ratio printed; goal <= 1.1x).

    python tests/perf/bench_api.py               # ResNet-18 and the custom module of tests/api
    python tests/perf/bench_api.py --repeat 30

Each figure is the median of ``--repeat`` calls after a warm-up, the two libraries alternating
call by call (so machine load falls on both alike), on the CPU, one image. Ours includes what a
notebook call does beyond the map: the probabilities, the map on the image's grid, the metrics
rows. pytorch-grad-cam is built and called as its README shows (``with GradCAM(...) as cam``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import viewer
from tests.api.networks import chest_net, fine_tuned_resnet18, smooth_input


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(name: str, net: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, repeat: int) -> float:
    net.eval()
    target = int(net(x).argmax())

    def ours():
        viewer.explain(net, x, "gradcam", target=target)

    def peer():
        with GradCAM(model=net, target_layers=[layer]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    ours(), peer()  # warm-up (and our one probing pass per network and input shape)
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(ours))
        b.append(timed(peer))
    mine, theirs = statistics.median(a), statistics.median(b)
    ratio = mine / theirs
    print(f"{name:<28} viewer.explain {mine * 1000:8.1f} ms   pytorch-grad-cam {theirs * 1000:8.1f} ms   "
          f"ratio {ratio:.2f}x")  # fmt: skip
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    resnet = fine_tuned_resnet18()
    compare("resnet18 224 px", resnet, resnet.layer4, smooth_input(seed=1, size=(224, 224)), args.repeat)
    net = chest_net()
    compare("custom ChestNet 96 px", net, net.down, smooth_input(seed=1, size=(96, 96)), args.repeat)


if __name__ == "__main__":
    main()
