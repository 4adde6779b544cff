"""Cost per box of a detector's maps, against pytorch-grad-cam's FasterRCNNBoxScoreTarget and Captum
on the same network, input and box, in the same run (ratios printed).

    python tests/perf/bench_detection.py                    # Faster R-CNN MobileNetV3 FPN, 320 px
    python tests/perf/bench_detection.py --size 256 --repeat 5 --threads 1

Each figure is the median of ``--repeat`` calls after a warm-up, ours and the peer alternating call by
call (so machine load falls on both alike), on the CPU, one frame and one box: the detector's own top
box. Ours is the engine's per-box work: the box-scored network (``viewer.explain.box_targets.BoxScores``),
the recorded pass and the method; the peer is called as its Faster R-CNN tutorial shows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from captum.attr import Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

from tests.explain.detectors import LAYER, detector
from tests.explain.peers import random_input
from viewer.explain import ExplainContext, get_method
from viewer.explain.box_targets import BOX_SCORE, PREFIX, BoxScores, BoxTarget


def bench(size: int, repeat: int) -> None:
    net = detector(size=size)
    x = random_input(seed=3, size=size, channels=3)
    with torch.no_grad():
        out = net(x)[0]
    box, label = out["boxes"][0].clone(), int(out["labels"][0])
    target = FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box.numpy()])

    def ours(method: str):
        scored = BoxScores(net, [BoxTarget(tuple(box.tolist()), label)])
        with ExplainContext(scored, PREFIX + LAYER, x, task="detection", head=BOX_SCORE) as ctx:
            return get_method(method).compute(ctx, [0])

    def forward(inputs):
        return torch.stack([target(o) for o in net(inputs)]).reshape(len(inputs), 1)

    def peer_gradcam():
        with GradCAM(model=net, target_layers=[net.get_submodule(LAYER)]) as cam:
            return cam(input_tensor=x, targets=[target])

    pairs = {
        "gradcam": (lambda: ours("gradcam"), peer_gradcam, "pytorch-grad-cam GradCAM"),
        "gradient": (
            lambda: ours("gradient"),
            lambda: Saliency(forward).attribute(x, target=0),
            "Captum Saliency",
        ),
        "forward only": (
            lambda: BoxScores(net, [BoxTarget(tuple(box.tolist()), label)])(x),
            lambda: net(x),
            "detector",
        ),
    }
    print(f"Faster R-CNN MobileNetV3-Large 320 FPN, {size} px, one box, median of {repeat}:")
    for method, (a, b, peer) in pairs.items():
        a(), b()  # warm-up
        ta, tb = [], []
        for _ in range(repeat):
            start = time.perf_counter()
            a()
            ta.append(time.perf_counter() - start)
            start = time.perf_counter()
            b()
            tb.append(time.perf_counter() - start)
        mine, theirs = statistics.median(ta), statistics.median(tb)
        print(f"  {method:14s} ours {mine:7.3f} s   {peer} {theirs:7.3f} s   ratio {mine / theirs:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench(args.size, args.repeat)


if __name__ == "__main__":
    main()
