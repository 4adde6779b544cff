"""D-RISE: the cost per box, against vision-explanation-methods' DRISE_saliency on the same detector,
image and number of masks in the same run; and the hit rate per box (the map's peak inside the box)
of D-RISE and of Grad-CAM (pytorch-grad-cam with FasterRCNNBoxScoreTarget) on held-out phantoms.

    python tests/perf/bench_drise.py                         # cost at the default 2000 masks
    python tests/perf/bench_drise.py --masks 500 --hits 8    # and the hit rate over 8 phantoms
    python tests/perf/bench_drise.py --no-cost --hits 8      # the hit rate only

The detector is the bundled toy one (models/cxr_detector, trained by models/train_detector.py:
FCOS on a MobileNetV3-Small body at 160 px; another folder with ``--model``), loaded as the
viewer loads it and fed through the viewer's pre-processing; the phantoms come from the seed
its training never saw. The peer (Microsoft's vision-explanation-methods 0.1.1, the one D-RISE
package on PyPI) pins matplotlib < 3.7, which this project's environment does not meet, so it is not
a project dependency: unpack its wheel (``pip download --no-deps vision-explanation-methods==0.1.1``
then unzip) and pass the folder as ``--peer``, or install it with ``--no-deps``; without it only ours
runs. The peer runs one mask per forward and draws its own masks (nearest-neighbour upsampled, as its
code does); ours batches the forwards (batch size tuned as in the viewer). Both use the same number
of masks, no early stop. Times are single runs, ours and the peer's back to back, on the CPU with
``--threads`` threads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

import train_detector as recipe  # noqa: E402

from viewer.explain.drise import DriseTarget, drise  # noqa: E402
from viewer.phantoms.chest import CHEST_LABELS  # noqa: E402

MODEL = ROOT / "models" / "cxr_detector"
TEST_SEED = 2026 + 7919  # the held-out seed of the recipe's evaluation


def load_detector(folder: Path) -> torch.nn.Module:
    """The detector as the viewer loads it from the folder's manifest."""
    from viewer.inference.model import LoadedModel

    return LoadedModel.from_manifest(folder / "manifest.toml", device="cpu").network.eval()


def targets_of(found: dict, threshold: float) -> list[DriseTarget]:
    keep = found["scores"] >= threshold
    return [
        DriseTarget(tuple(b.tolist()), int(label), float(s))
        for b, label, s in zip(
            found["boxes"][keep], found["labels"][keep], found["scores"][keep], strict=True
        )
    ]


def peer_drise(peer_path: str | None, net, x: torch.Tensor, targets: list[DriseTarget], masks: int):
    """vision-explanation-methods' D-RISE on the same detector and targets, or None when absent."""
    if peer_path:
        sys.path.insert(0, peer_path)
    try:
        from vision_explanation_methods.explanations import common
        from vision_explanation_methods.explanations import drise as peer
    except ImportError:
        return None

    classes = len(CHEST_LABELS)

    class Wrapped(common.GeneralObjectDetectionModelWrapper):
        def predict(self, batch):
            with torch.no_grad():
                outs = net(batch)
            return [
                common.DetectionRecord(
                    o["boxes"],
                    torch.ones(len(o["boxes"])),
                    common.expand_class_scores(o["scores"], o["labels"], classes),
                )
                for o in outs
            ]

    record = common.DetectionRecord(
        torch.tensor([t.box for t in targets]),
        torch.ones(len(targets)),
        common.expand_class_scores(
            torch.tensor([t.score for t in targets]), torch.tensor([t.label_id for t in targets]), classes
        ),
    )
    out = peer.DRISE_saliency(Wrapped(), x[None], [record], masks, mask_res=(16, 16))
    return torch.stack([d["detection"][0] for d in out[0]])


def peak_inside(smap: np.ndarray, box) -> bool:
    row, col = np.unravel_index(np.argmax(smap), smap.shape)
    x0, y0, x1, y1 = box
    return x0 <= col + 0.5 <= x1 and y0 <= row + 0.5 <= y1


def grad_cam_maps(net, x: torch.Tensor, targets: list[DriseTarget]) -> list[np.ndarray]:
    """pytorch-grad-cam's Grad-CAM of each box's FasterRCNNBoxScoreTarget, at the last layer of the
    backbone's body (the viewer's default target layer for a detector)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    layer = list(net.backbone.body.children())[-1]
    maps = []
    with GradCAM(net, target_layers=[layer]) as cam:
        for t in targets:
            target = FasterRCNNBoxScoreTarget([t.label_id], [np.asarray(t.box)])
            maps.append(cam(x[None], targets=[target])[0])
    return maps


def hit_rate(net, n: int, masks: int, threshold: float) -> None:
    from torchvision.ops import box_iou

    inputs, truths = recipe.make_data(TEST_SEED, n)
    hits = {"D-RISE": [], "Grad-CAM": [], "D-RISE (missed truth boxes)": []}
    seconds = []
    for x, truth in zip(inputs, truths, strict=True):
        with torch.inference_mode():
            found = net(x[None])[0]
        detected = targets_of(found, threshold)
        # A detected box counts where it matches a true box (IoU >= 0.5, same label): its peak
        # should then fall in that box. True boxes no detection matched are explained as given.
        matched, missed = [], []
        for k in range(len(truth["boxes"])):
            tbox, tlabel = truth["boxes"][k], int(truth["labels"][k])
            same = [d for d in detected if d.label_id == tlabel]
            ious = (
                box_iou(tbox[None], torch.tensor([d.box for d in same])).reshape(-1)
                if same
                else torch.zeros(0)
            )
            if len(ious) and float(ious.max()) >= 0.5:
                matched.append(same[int(ious.argmax())])
            else:
                missed.append(DriseTarget(tuple(tbox.tolist()), tlabel))
        everything = matched + missed
        if not everything:
            continue
        start = time.perf_counter()
        maps = drise(net, x, everything, masks=masks, converge=False).numpy()
        seconds.append((time.perf_counter() - start) / len(everything))
        for k, (t, smap) in enumerate(zip(everything, maps, strict=True)):
            key = "D-RISE" if k < len(matched) else "D-RISE (missed truth boxes)"
            hits[key].append(peak_inside(smap, t.box))
        for t, cam in zip(matched, grad_cam_maps(net, x, matched), strict=True):
            hits["Grad-CAM"].append(peak_inside(cam, t.box))
    for key, values in hits.items():
        rate = f"{np.mean(values):.2f}" if values else "n/a"
        print(f"hit rate {key:28s} {rate} ({sum(values)} of {len(values)} boxes)")
    if seconds:
        print(
            f"D-RISE seconds per box at {masks} masks (an image's boxes share them): {np.mean(seconds):.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--masks", type=int, default=2000)
    parser.add_argument("--hits", type=int, default=0, help="held-out phantoms for the hit rate (0: skip)")
    parser.add_argument("--peer", help="folder holding the unpacked vision_explanation_methods package")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=recipe.SCORE_THRESHOLD, help="boxes explained")
    parser.add_argument("--no-cost", action="store_true", help="only the hit rate")
    parser.add_argument("--boxes", type=int, default=None, help="time at most this many boxes (the top ones)")
    parser.add_argument("--model", type=Path, default=MODEL, help="a folder written by train_detector.py")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load_detector(args.model)
    threshold = args.threshold
    if args.no_cost:
        hit_rate(net, args.hits, args.masks, threshold)
        return
    inputs, _ = recipe.make_data(TEST_SEED, 12)
    with torch.inference_mode():
        found = [net(x[None])[0] for x in inputs]
    # The held-out phantom with the most boxes above the threshold: the cost is per image, shared.
    best = int(np.argmax([len(targets_of(f, threshold)) for f in found]))
    x, targets = inputs[best], targets_of(found[best], threshold)[: args.boxes]
    if not targets:
        print("no box above the threshold on 12 held-out phantoms; nothing to time")
        return
    start = time.perf_counter()
    ours = drise(net, x, targets, masks=args.masks, converge=False, seed=args.seed)
    mine = time.perf_counter() - start
    print(f"{len(targets)} boxes, {args.masks} masks, {x.shape[-1]} px, {torch.get_num_threads()} thread(s)")
    print(f"ours  D-RISE: {mine:.1f} s per image, {mine / len(targets):.1f} s per box")
    start = time.perf_counter()
    theirs = peer_drise(args.peer, net, x, targets, args.masks)
    if theirs is None:
        print("peer (vision-explanation-methods) not found: see the docstring; only ours timed")
    else:
        peer_s = time.perf_counter() - start
        print(f"peer  D-RISE: {peer_s:.1f} s per image, {peer_s / len(targets):.1f} s per box")
        print(f"ratio ours/peer: {mine / peer_s:.2f}")
        r = [
            np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
            for a, b in zip(ours, theirs, strict=True)
        ]
        print(
            f"Pearson r of the maps per box (different masks): median {np.nanmedian(r):.2f}, "
            f"min {np.nanmin(r):.2f}"
        )
    if args.hits:
        hit_rate(net, args.hits, args.masks, threshold)


if __name__ == "__main__":
    main()
