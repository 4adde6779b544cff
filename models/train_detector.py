"""Training recipe for the bundled demo detector: chest phantoms -> torchvision FCOS -> safetensors.

    nice python models/train_detector.py --out models/cxr_detector --threads 1
    python models/train_detector.py --out models/cxr_detector --measure-only gradcam  # its hit rate
    python models/train_detector.py --out models/cxr_detector --measure-only drise --masks 100

The classifiers' recipe (models/train.py) renders the same phantoms; here each finding's mask
becomes a box (its bounding rectangle; a nodule each, one box per other finding), labelled with
the finding's name (class ids 1..5, 0 being torchvision's background). The network is
torchvision's ``FCOS`` on a MobileNetV3-Small body with a 64-channel feature pyramid
(``arch = "fcos:mobilenet_v3_small"``, built by the viewer's own builder from the manifest this
recipe writes: nothing downloaded), trained from scratch on the CPU at a small input (``SIZE``
pixels, the images fed through the viewer's own pre-processing, letterboxed), because a D-RISE
map costs a forward per mask: a small input keeps the cost per box within seconds on a laptop.
Why FCOS on this body: 1.5 M parameters (2.9 MB in fp16, small enough for the wheel), anchor-free
and one-stage, it learns the phantoms' boxes within ten epochs from scratch. The earlier recipe,
torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` (19 M parameters, 38 MB), read a 160-px
input only at strides 16 and 32 and stalled at mAP 0.21.

Writes ``weights.safetensors`` (fp16), ``manifest.toml`` (task = "detection"), ``metrics.json``
(per-label AP at IoU 0.5 and recall at the manifest's score threshold, on held-out phantoms from
another seed) and ``MODEL_CARD.md``. Deterministic for a given --seed and thread count.

``--measure-only <method>`` then adds a method's hit rates to ``metrics.json`` (and the card), through the
viewer's own explanation engine (the code the window and the CLI run) on held-out phantoms at
their own size: for each box the model found (at the threshold) that matches a true box of its
label (IoU >= 0.5), is the peak of its Grad-CAM map (``FasterRCNNBoxScoreTarget``'s score) and of
its D-RISE map inside the box? D-RISE runs a fixed number of masks (``--masks``; no early stop),
and its seconds per box (an image's boxes share the masks) are recorded with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from viewer.inference.manifest import InputSpec  # noqa: E402
from viewer.inference.preprocess import prepare_array  # noqa: E402
from viewer.phantoms.chest import CHEST_LABELS, render_chest  # noqa: E402

ARCH = "fcos:mobilenet_v3_small"
# The pyramid's width (torchvision's 256 would be 5 M parameters of heads for 5 labels), and a
# low floor for the boxes the network returns, so the viewer's threshold can be lowered to see more.
KWARGS = {"fpn_channels": 64, "score_thresh": 0.05}
# The body's last stride-8 block: every pyramid level, and so every box, is computed from it, on
# a 20 x 20 grid. The viewer's default for detectors (the body's last block, here stride 32 and
# 5 x 5) gave this one-stage detector's Grad-CAM, HiRes-CAM and LayerCAM maps that peak outside
# their boxes far more often (hit rates 0.02, 0.53, 0.49 against 0.38, 0.87, 0.89 here; the card).
TARGET_LAYER = "backbone.body.3"
RENDER = 256  # phantoms are rendered as the classifiers' are, then letterboxed to SIZE
SIZE = 160
# The viewer normalises (as for its classifiers) and builds torchvision's detectors with their own
# mean 0 and std 1 (viewer.inference.detection): what the network sees is the viewer's input.
SPEC = InputSpec((SIZE, SIZE), "letterbox", "voi", (), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
SCORE_THRESHOLD = 0.5
IOU_MATCH = 0.5


# --- data -------------------------------------------------------------------------------------


def finding_boxes(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One phantom: its image ``(RENDER, RENDER)`` in [0, 1], boxes ``(K, 4)`` x0, y0, x1, y1 on the
    model's input grid (pixel edges, exclusive end) and class ids ``(K,)`` 1..5."""
    case = render_chest(seed, RENDER)
    scale = SIZE / RENDER
    boxes, labels = [], []
    for finding in case.findings:
        rows, cols = np.nonzero(finding.mask)
        if len(rows) == 0:
            continue
        boxes.append(
            [cols.min() * scale, rows.min() * scale, (cols.max() + 1) * scale, (rows.max() + 1) * scale]
        )
        labels.append(CHEST_LABELS.index(finding.label) + 1)
    return (
        case.image.astype(np.float32),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
    )


def make_data(seed: int, n: int) -> tuple[torch.Tensor, list[dict]]:
    """Inputs ``(n, 3, SIZE, SIZE)`` through the viewer's pre-processing, and their targets."""
    images, targets = [], []
    for i in range(n):
        image, boxes, labels = finding_boxes(seed * 100_003 + i)
        images.append(prepare_array(image, SPEC, 3))
        targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
    return torch.stack(images), targets


def augment(x: torch.Tensor, target: dict, g: torch.Generator) -> tuple[torch.Tensor, dict]:
    """A left-right flip half the time (findings occur on either side) and exposure jitter."""
    boxes = target["boxes"].clone()
    if torch.rand((), generator=g) < 0.5:
        x = x.flip(-1)
        boxes[:, [0, 2]] = SIZE - boxes[:, [2, 0]]
    gain = 1 + (float(torch.rand((), generator=g)) - 0.5) * 0.2
    return x * gain, {"boxes": boxes, "labels": target["labels"]}


# --- evaluation -------------------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)``."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def average_precision(detections: list, truths: list, label: int) -> tuple[float, float, int]:
    """AP at IoU 0.5 (all-point interpolated, as PASCAL VOC 2010+), recall at ``SCORE_THRESHOLD``
    and the number of true boxes, for one class over a data set."""
    scored, n_true = [], 0
    recalled = 0
    for det, truth in zip(detections, truths, strict=True):
        t = truth["boxes"][truth["labels"] == label]
        n_true += len(t)
        d = det["boxes"][det["labels"] == label]
        s = det["scores"][det["labels"] == label]
        order = np.argsort(-s, kind="stable")
        taken = np.zeros(len(t), bool)
        ious = box_iou(d[order], t) if len(t) and len(d) else np.zeros((len(d), len(t)))
        for k, j in enumerate(order):
            best = int(np.argmax(ious[k])) if len(t) else -1
            hit = best >= 0 and ious[k, best] >= IOU_MATCH and not taken[best]
            if hit:
                taken[best] = True
                recalled += int(s[j] >= SCORE_THRESHOLD)
            scored.append((float(s[j]), hit))
    if n_true == 0:
        return float("nan"), float("nan"), 0
    scored.sort(key=lambda e: -e[0])
    hits = np.array([h for _, h in scored], float)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1) if len(hits) else np.zeros(0)
    recall = tp / n_true
    envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * envelope[:-1]).sum()), recalled / n_true, n_true


def evaluate(model: torch.nn.Module, inputs: torch.Tensor, targets: list[dict], batch: int = 8) -> dict:
    model.eval()
    detections = []
    with torch.inference_mode():
        for s in range(0, len(inputs), batch):
            for out in model(inputs[s : s + batch]):
                detections.append({k: v.numpy() for k, v in out.items()})
    truths = [{k: v.numpy() for k, v in t.items()} for t in targets]
    ap, recall, count = {}, {}, {}
    for i, label in enumerate(CHEST_LABELS):
        ap[label], recall[label], count[label] = average_precision(detections, truths, i + 1)
    model.train()
    valid = [v for v in ap.values() if v == v]
    return {"ap50": ap, "recall": recall, "boxes": count, "map50": float(np.mean(valid)), "n": len(inputs)}


# --- training ---------------------------------------------------------------------------------


def build(out: Path) -> torch.nn.Module:
    """The network as the viewer builds it from the manifest written to ``out`` (nothing downloaded)."""
    from viewer.inference.manifest import load_manifest
    from viewer.inference.model import build_network

    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.toml").write_text(manifest_text())
    weights = out / "weights.safetensors"
    if not weights.exists():
        weights.touch()  # the manifest names it; the trained weights replace it
    return build_network(load_manifest(out / "manifest.toml"))


def train(out: Path, seed: int, n_train: int, n_test: int, epochs: int, batch: int, lr: float) -> dict:
    torch.manual_seed(seed)
    start = time.perf_counter()
    inputs, targets = make_data(seed, n_train)
    test_inputs, test_targets = make_data(seed + 7919, n_test)  # a seed the training never sees
    print(f"data: {n_train} train, {n_test} test in {time.perf_counter() - start:.0f} s", flush=True)
    model = build(out)
    steps = epochs * (n_train // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n_train, generator=g).tolist()
        running = []
        for s in range(0, n_train - batch + 1, batch):
            pairs = [augment(inputs[i], targets[i], g) for i in order[s : s + batch]]
            losses = model([p[0] for p in pairs], [p[1] for p in pairs])
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running.append(loss.item())
            if len(running) % 25 == 0:
                print(f"  step {len(running)}: loss {np.mean(running[-25:]):.3f}", flush=True)
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{epochs}: loss {np.mean(running):.4f} ({elapsed:.0f} s)", flush=True)
    train_seconds = time.perf_counter() - start
    metrics = evaluate(model, test_inputs, test_targets)
    metrics.update(
        {
            "train_seconds": round(train_seconds), "n_train": n_train, "epochs": epochs, "seed": seed,
            "test_seed": seed + 7919, "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
            "score_threshold": SCORE_THRESHOLD, "iou_match": IOU_MATCH,
        }
    )  # fmt: skip
    save(model, out, metrics)
    return metrics


# --- the maps' hit rates ------------------------------------------------------------------------


def native_truth(seed: int) -> tuple[np.ndarray, list[tuple[list[float], str]]]:
    """A held-out phantom at its own size (``RENDER``) and its true boxes in its pixels."""
    image, boxes, labels = finding_boxes(seed)
    scale = SIZE / RENDER
    return image, [(list(b / scale), CHEST_LABELS[k - 1]) for b, k in zip(boxes, labels, strict=True)]


def box_hits(result, truth: list[tuple[list[float], str]]) -> list[tuple[str, bool]]:
    """The pointing game of a detection map: for each box explained in ``result`` (an
    ``engine.explain`` result) that matches a true box of its label (``truth``: ``(box, label)``
    in image pixels; IoU >= 0.5), its label and whether its map's peak lies inside the box."""
    from viewer.batch.detection_files import match_boxes

    found = result.detections
    boxes = [found.boxes[m.box] for m in result.maps]
    matched = match_boxes(boxes, [found.labels[m.box] for m in result.maps], truth).matched
    out = []
    for smap, box, match in zip(result.maps, boxes, matched, strict=True):
        if match is not None:
            row, col = np.unravel_index(int(np.argmax(smap.array[0])), smap.array[0].shape)
            inside = box[0] <= col + 0.5 <= box[2] and box[1] <= row + 0.5 <= box[3]
            out.append((found.labels[smap.box], bool(inside)))
    return out


def hit_rates(manifest: Path, method: str, n_images: int, masks: int, seed: int) -> dict:
    """Through ``viewer.explain.engine``: ``method``'s maps (a method id; D-RISE with ``masks``)
    of the boxes found on ``n_images`` held-out phantoms; per label, the share of the boxes
    matching a true box whose map peaks inside the box (and the seconds per box: an image's boxes
    share a run)."""
    from viewer.api.sources import open_image
    from viewer.explain import engine
    from viewer.explain.drise import DRISE
    from viewer.explain.registry import get_method
    from viewer.inference.model import LoadedModel

    model = LoadedModel.from_manifest(manifest, device="cpu")
    explainer = DRISE(masks=masks, converge=False) if method == "drise" else get_method(method)
    hits: dict[str, list[bool]] = {label: [] for label in CHEST_LABELS}
    seconds: list[float] = []
    for i in range(n_images):
        pixels, truth = native_truth((seed + 7919) * 100_003 + i)  # make_data's held-out seeds
        start = time.perf_counter()
        result = engine.explain(model, open_image(pixels), [explainer])
        if not result.maps:
            continue  # no box at the threshold: nothing to explain on this image
        seconds.append((time.perf_counter() - start) / len(result.maps))
        for label, inside in box_hits(result, truth):
            hits[label].append(inside)
        print(f"  {method}: {i + 1}/{n_images} images, {len(result.maps)} boxes", flush=True)
    every = [h for v in hits.values() for h in v]
    record = {
        "hit_rate": {k: round(float(np.mean(v)), 3) if v else None for k, v in hits.items()},
        "hit_rate_all": round(float(np.mean(every)), 3) if every else None,
        "hit_rate_n": {k: len(v) for k, v in hits.items()},
        "images": n_images,
        "seconds_per_box": float(f"{np.median(seconds):.2g}") if seconds else None,
        "target_layer": model.target_layer,
        "threads": torch.get_num_threads(),
        "score_threshold": model.manifest.detection.score_threshold,  # the boxes explained
    }
    return record | ({"masks": masks} if method == "drise" else {})


def measure(out: Path, method: str, n_images: int, masks: int) -> dict:
    seed = json.loads((out / "metrics.json").read_text())["seed"]
    record = hit_rates(out / "manifest.toml", method, n_images, masks, seed)
    metrics = json.loads((out / "metrics.json").read_text())  # read again: another method may have run
    metrics.setdefault("maps", {})[method] = record
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(metrics))
    return metrics


def save(model: torch.nn.Module, out: Path, metrics: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(
        state, str(out / "weights.safetensors"), metadata={"arch": ARCH, "labels": ",".join(CHEST_LABELS)}
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "manifest.toml").write_text(manifest_text())
    (out / "MODEL_CARD.md").write_text(model_card(metrics))


NAME = "Chest X-ray findings detector (demo, FCOS MobileNetV3-Small)"


def manifest_text() -> str:
    return "\n".join(
        [
            f'name = "{NAME}"',
            'task = "detection"',
            "labels = [" + ", ".join(f'"{label}"' for label in CHEST_LABELS) + "]",
            'modalities = ["CR", "DX"]',
            'description = "Trained on synthetic phantoms for demonstration only; not for clinical use."',
            'card = "MODEL_CARD.md"',
            "",
            'domain = "synthetic"',
            'trained_on = "synthetic chest radiograph phantoms (viewer.phantoms.chest), a box per finding"',
            'intended_use = "Demonstrating the viewer and its saliency methods; not for clinical use."',
            "",
            "[network]",
            f'arch = "{ARCH}"',
            'weights = "weights.safetensors"',
            "in_channels = 3",
            "kwargs = { " + ", ".join(f"{k} = {v}" for k, v in KWARGS.items()) + " }",
            f'target_layer = "{TARGET_LAYER}"',
            "",
            "[input]",
            f"size = [{SIZE}, {SIZE}]",
            f'resize = "{SPEC.resize}"',
            f'intensity = "{SPEC.intensity}"',
            f"mean = {list(SPEC.mean)}",
            f"std = {list(SPEC.std)}",
            "",
            "[detection]",
            f"score_threshold = {SCORE_THRESHOLD}",
            f"min_size = {SIZE}",
            f"max_size = {SIZE}",
            "",
        ]
    )


def model_card(m: dict) -> str:
    rows = "\n".join(
        f"| {label} | {m['boxes'][label]} | {m['ap50'][label]:.3f} | {m['recall'][label]:.2f} |"
        for label in CHEST_LABELS
    )
    return f"""# Model card: {NAME}

**Intended use: demonstration of Saliency Viewer on synthetic data. Not for clinical use.**
It has never seen a real patient image; its boxes on real images mean nothing.

- Architecture: `{ARCH}`, torchvision's `FCOS` on the body of `mobilenet_v3_small` read at
  strides 8, 16 and 32 through a {KWARGS["fpn_channels"]}-channel feature pyramid (P6, P7 above),
  no downloaded weights, trained from scratch, {len(CHEST_LABELS)} classes plus background;
  input {SIZE} x {SIZE}, the radiograph as displayed, grey in three channels, normalised by the
  viewer (mean 0.5, std 0.25; the network's own normalisation is off, as the viewer builds every
  torchvision detector).
- Training data: {m["n_train"]} phantom radiographs from `viewer.phantoms.chest` (seed {m["seed"]}),
  rendered at {RENDER} x {RENDER} and letterboxed to {SIZE} through the viewer's own pre-processing;
  a box per finding (its mask's bounding rectangle; each nodule its own); {m["epochs"]} epochs,
  AdamW with a one-cycle learning rate, left-right flips and exposure jitter.
  Trained in {m["train_seconds"]} s on {m["cpu_threads"]} CPU thread(s) (torch {m["torch"]}), on a
  shared machine.
- Evaluation: {m["n"]} held-out phantoms generated with another seed ({m["test_seed"]}).
- Reproduce: `python models/train_detector.py --out <folder> --train {m["n_train"]} --epochs {m["epochs"]}
  --threads {m["cpu_threads"]}` (the same weights for the same thread count), then
  `--measure-only METHOD` (`--masks N` for D-RISE) for each method below.

| label | boxes | AP at IoU {IOU_MATCH} | recall at score >= {SCORE_THRESHOLD} |
|---|---|---|---|
{rows}

mAP at IoU {IOU_MATCH}: {m["map50"]:.3f}. A toy: nodules (6 to 12 pixels at this input, faint)
are a point or two of the finest level's 8-pixel grid and are found least often.
{maps_section(m.get("maps", {}))}"""


def maps_section(maps: dict) -> str:
    """The card's hit rates of the maps measured so far (``--measure-only``), or nothing."""
    if not maps:
        return ""
    from viewer.explain.registry import METHODS

    titles = {k: cls.title for k, cls in METHODS.items()}
    measured = [k for k in titles if k in maps]
    head = " | ".join(f"{titles[k]} hit rate" for k in measured)
    rows = "\n".join(
        f"| {label} | "
        + " | ".join(
            f"{_rate(maps[k]['hit_rate'][label])} (n={maps[k]['hit_rate_n'][label]})" for k in measured
        )
        + " |"
        for label in CHEST_LABELS
    )
    overall = " | ".join(f"**{_rate(maps[k]['hit_rate_all'])}**" for k in measured)
    notes = [
        f"{titles[k]}: {maps[k]['images']} held-out phantoms, boxes scored >= {maps[k]['score_threshold']}, "
        f"{maps[k]['seconds_per_box']} s per box on "
        f"{maps[k]['threads']} thread(s)"
        + (f", {maps[k]['masks']} masks per image" if "masks" in maps[k] else "")
        + (f", target layer `{maps[k]['target_layer']}`" if METHODS[k].family == "cam" else "")
        for k in measured
    ]
    why = ""
    if {"gradcam", "hirescam", "layercam"} <= set(maps):
        rates = [_rate(maps[k]["hit_rate_all"]) for k in ("gradcam", "hirescam", "layercam")]
        why = f"""
Grad-CAM weighs each channel of the layer by its gradient averaged over the whole grid; a box of
this one-stage detector is scored at a few locations of one pyramid level, and the averaged
weights bring in features elsewhere too. HiRes-CAM and LayerCAM keep the gradient at each
location (HiRes-CAM's argument, Draelos and Carin 2020): hit rates {rates[0]} for Grad-CAM
against {rates[1]} and {rates[2]} here.
"""
    return f"""
## Do its maps point at its boxes?

Through the viewer's own engine, on held-out phantoms at their own size (256 x 256): for every
box the model found at the threshold that matches a true box of its label (IoU >= {IOU_MATCH}),
is the peak of the box's map inside the box? (The pointing game of a detection map.)

| label | {head} |
|---|{"---|" * len(measured)}
{rows}
| all | {overall} |

{"; ".join(notes)}. The machine was shared with other work, so the seconds are upper bounds.
{why}"""


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--train", type=int, default=800, help="phantoms to train on")
    parser.add_argument("--test", type=int, default=80, help="held-out phantoms")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--measure-only", metavar="METHOD", help="add a method's hit rates to --out")
    parser.add_argument("--hit-images", type=int, default=40, help="held-out phantoms for the hit rates")
    parser.add_argument("--masks", type=int, default=500, help="D-RISE masks per image for the hit rates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure_only:
        metrics = measure(args.out, args.measure_only, args.hit_images, args.masks)
        print(json.dumps(metrics["maps"][args.measure_only], indent=1))
        return
    metrics = train(args.out, args.seed, args.train, args.test, args.epochs, args.batch, args.lr)
    print(json.dumps({"ap50": metrics["ap50"], "recall": metrics["recall"]}, indent=1))


if __name__ == "__main__":
    main()
