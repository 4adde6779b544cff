"""Training recipe for the bundled toy segmenter: chest phantoms -> MONAI UNet -> safetensors.

    nice python models/train_segmenter.py --out models/cxr_segmenter
    python models/train_segmenter.py --out /tmp/seg --measure-only   # re-measure a saved model

The phantoms are rendered by ``models/train.py`` (the same seeds, the same viewer pre-processing)
with each finding's mask as the pixel target. One sigmoid channel per finding, since findings
overlap (an effusion under a consolidation): the model's mask of a label is where its probability
exceeds 0.5, as ``viewer.inference.segmentation`` decides it. Loss: binary cross-entropy plus soft
Dice, the usual pair for small structures (a nodule is ~0.2 % of the film).

Evaluated on held-out phantoms from another seed: per label, the Dice of the model's mask against
the phantom's truth on the films that have the finding, and how often the model marks a film that
has none. Then the maps, through the viewer's own API (``viewer.explain``, the code the window and
the CLI run): for each region the model found, does the peak of its Grad-CAM / gradient map fall
inside the model's mask (the hit rate, the pointing game of a segmentation map)?

Writes ``weights.safetensors`` (fp16), ``manifest.toml``, ``metrics.json`` and ``MODEL_CARD.md``.
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.train import Recipe, make_data, to_inputs  # noqa: E402
from viewer.inference.manifest import InputSpec  # noqa: E402
from viewer.phantoms.chest import CHEST_LABELS  # noqa: E402

SIZE = 128
CHANNELS = (8, 16, 32, 64)
STRIDES = (2, 2, 2)
MAP_METHODS = ("gradcam", "gradient")
TARGET_LAYER = "model.1.submodule.1.submodule.1.submodule"  # the UNet's bottleneck (16 x 16 at 128)


def recipe(quick: bool) -> Recipe:
    spec = InputSpec((SIZE, SIZE), "letterbox", "voi", (), (0.5,), (0.25,))
    scale = 0.1 if quick else 1.0
    n_train, n_test = int(800 * scale), int(200 * scale)
    return Recipe("cxr", CHEST_LABELS, "monai:UNet", SIZE, spec, 1, n_train, n_test, 10, 16, 4e-3)


def build() -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=len(CHEST_LABELS),
        channels=CHANNELS,
        strides=STRIDES,
        num_res_units=1,
    )


def unpack(masks: np.ndarray) -> torch.Tensor:
    """Packed ``(N, K, H, W/8)`` masks as float ``(N, K, H, W)``."""
    return torch.from_numpy(np.unpackbits(masks, axis=-1, count=SIZE).astype(np.float32))


def augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same small shift/scale on image and masks; contrast jitter on the image alone."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    scale = 1 + (torch.rand(n, generator=g) - 0.5) * 0.12
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = (torch.rand(n, 2, generator=g) - 0.5) * 0.10
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    y = F.grid_sample(y, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.2
    return x * gain, y


def loss_of(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight[None, :, None, None])
    p = torch.sigmoid(logits)
    inter = (p * y).sum(dim=(0, 2, 3))
    soft_dice = 1 - (2 * inter + 1) / (p.sum(dim=(0, 2, 3)) + y.sum(dim=(0, 2, 3)) + 1)
    return bce + soft_dice.mean()


def dice_scores(model, r: Recipe, images, masks, batch: int = 32) -> dict:
    """Per label: the mean Dice over held-out films with the finding, and the share of films
    without it on which the model marks any pixel."""
    model.eval()
    dices: dict[str, list[float]] = {label: [] for label in r.labels}
    false_marks: dict[str, list[bool]] = {label: [] for label in r.labels}
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            predicted = torch.sigmoid(model(to_inputs(r, images[s : s + batch]))) > 0.5
            truth = unpack(masks[s : s + batch]).bool()
            for k, label in enumerate(r.labels):
                for p, t in zip(predicted[:, k], truth[:, k], strict=True):
                    if t.any():
                        dices[label].append(float(2 * (p & t).sum() / (p.sum() + t.sum())))
                    else:
                        false_marks[label].append(bool(p.any()))
    model.train()
    return {
        "dice": {k: round(float(np.mean(v)), 4) if v else None for k, v in dices.items()},
        "dice_n": {k: len(v) for k, v in dices.items()},
        "false_mark_rate": {k: round(float(np.mean(v)), 4) if v else None for k, v in false_marks.items()},
    }


def hit_rates(manifest: Path, images: np.ndarray, per_label: int = 20) -> dict:
    """Through ``viewer.explain``: for films where the model marks a label, is the peak of each
    method's map of that region inside the model's own mask of it?"""
    import viewer

    hits: dict[str, dict[str, list[bool]]] = {m: {label: [] for label in CHEST_LABELS} for m in MAP_METHODS}
    seconds: list[float] = []
    for label in CHEST_LABELS:
        found = 0
        for image in images:
            if found >= per_label:
                break
            start = time.perf_counter()
            result = viewer.explain(str(manifest), image.astype(np.float32), list(MAP_METHODS), target=label)
            mask = result.result.masks[0, CHEST_LABELS.index(label)]
            if not mask.any():
                continue
            seconds.append(time.perf_counter() - start)
            found += 1
            for method in MAP_METHODS:
                values = result[method]
                peak = np.unravel_index(int(np.argmax(values)), values.shape)
                hits[method][label].append(bool(mask[peak]))
    rate = {
        m: {k: round(float(np.mean(v)), 3) if v else None for k, v in per.items()} for m, per in hits.items()
    }
    return {
        "hit_rate": rate,
        "hit_rate_n": {k: len(v) for k, v in hits[MAP_METHODS[0]].items()},
        "seconds_per_region": round(float(np.median(seconds)), 3) if seconds else None,
    }


def train(r: Recipe, out: Path, seed: int, workers: int, threads: int) -> dict:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    start = time.perf_counter()
    images, _, masks, _ = make_data(r, seed, r.n_train, workers)
    print(f"data: {len(images)} films in {time.perf_counter() - start:.0f} s", flush=True)
    model = build()
    steps = r.epochs * (len(images) // r.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps, pct_start=0.15)
    coverage = unpack(masks[:200]).mean(dim=(0, 2, 3)).clamp(1e-4, 0.5)
    pos_weight = ((1 - coverage) / coverage).sqrt().clamp(max=20)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(r.epochs):
        order = torch.randperm(len(images), generator=g).numpy()
        running = []
        for s in range(0, len(order) - r.batch + 1, r.batch):
            idx = np.sort(order[s : s + r.batch])
            x, y = augment(to_inputs(r, images[idx]), unpack(masks[idx]), g)
            loss = loss_of(model(x), y, pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running.append(loss.item())
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{r.epochs}: loss {np.mean(running):.4f} ({elapsed:.0f} s)", flush=True)
    metrics = {
        "train_seconds": round(time.perf_counter() - start),
        "n_train": len(images),
        "epochs": r.epochs,
        "seed": seed,
        "torch": torch.__version__,
        "cpu_threads": threads,
    }
    save(model, out)
    return metrics


def measure(r: Recipe, out: Path, seed: int, workers: int, metrics: dict) -> dict:
    from safetensors.torch import load_file

    test_images, _, test_masks, _ = make_data(r, seed + 7919, r.n_test, workers)  # a seed training never sees
    model = build()
    model.load_state_dict({k: v.float() for k, v in load_file(str(out / "weights.safetensors")).items()})
    metrics = {**metrics, **dice_scores(model, r, test_images, test_masks), "n": len(test_images)}
    metrics |= hit_rates(out / "manifest.toml", test_images)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(metrics))
    return metrics


def save(model: torch.nn.Module, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    save_file(state, str(out / "weights.safetensors"), metadata={"arch": "monai:UNet"})
    (out / "manifest.toml").write_text(manifest_text())


def manifest_text() -> str:
    labels = ", ".join(f'"{label}"' for label in CHEST_LABELS)
    return f"""name = "Chest X-ray findings segmenter (demo, MONAI UNet)"
task = "segmentation"
labels = [{labels}]
modalities = ["CR", "DX"]
description = "Trained on synthetic phantoms for demonstration only; not for clinical use."
card = "MODEL_CARD.md"

domain = "synthetic"
trained_on = "synthetic chest radiograph phantoms and their finding masks (viewer.phantoms.chest)"
intended_use = "Demonstrating the viewer's segmentation support; not for clinical use."

[network]
arch = "monai:UNet"
weights = "weights.safetensors"
in_channels = 1
activation = "sigmoid"
target_layer = "{TARGET_LAYER}"
kwargs = {{channels = {list(CHANNELS)}, strides = {list(STRIDES)}, num_res_units = 1}}

[input]
size = [{SIZE}, {SIZE}]
resize = "letterbox"
intensity = "voi"
mean = [0.5]
std = [0.25]
"""


def _cell(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def model_card(m: dict) -> str:
    rows = "\n".join(
        f"| {label} | {_cell(m['dice'][label])} (n={m['dice_n'][label]}) | "
        + f"{_cell(m['false_mark_rate'][label])} | "
        + " | ".join(_cell(m["hit_rate"][method][label]) for method in MAP_METHODS)
        + f" (n={m['hit_rate_n'][label]}) |"
        for label in CHEST_LABELS
    )
    return f"""# Model card: Chest X-ray findings segmenter (demo, MONAI UNet)

**Intended use: demonstration of Saliency Viewer's segmentation support on synthetic data. Not for
clinical use.** It has never seen a real patient image; its masks on real images mean nothing.

- Architecture: MONAI `UNet` (2-D, channels {list(CHANNELS)}, strides {list(STRIDES)}, one residual
  unit), trained from scratch; one sigmoid channel per finding (findings overlap), mask = probability > 0.5.
- Input: the radiograph as displayed (file VOI, MONOCHROME1 inverted), one channel, {SIZE} x {SIZE}.
- Training data: {m["n_train"]} chest phantoms from `viewer.phantoms.chest` (seed {m["seed"]}) with
  their finding masks; {m["epochs"]} epochs, AdamW with one-cycle learning rate, BCE + soft Dice,
  small shift/scale/contrast augmentation. Trained in {m["train_seconds"]} s on {m["cpu_threads"]}
  CPU thread(s) (torch {m["torch"]}), under load from other jobs.
- Evaluation: {m["n"]} held-out phantoms generated with a different seed.
- Reproduce: `python models/train_segmenter.py --out <folder>`.

| label | Dice (films with the finding) | films without it marked | Grad-CAM hit rate | gradient hit rate |
|---|---|---|---|---|
{rows}

The hit rate: for held-out films on which the model marks the label, the map of that region (the
sum of the label's logits over the model's mask, as pytorch-grad-cam's `SemanticSegmentationTarget`)
computed by `viewer.explain`, and whether its maximum lies inside the model's own mask.
Grad-CAM at the UNet's bottleneck (`{TARGET_LAYER}`, 16 x 16); median time per region for both maps:
{m["seconds_per_region"]} s on this machine's CPU.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, for a smoke test")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--measure-only", action="store_true", help="evaluate the model saved in --out")
    args = parser.parse_args()
    r = recipe(args.quick)
    if args.epochs:
        r.epochs = args.epochs
    if args.measure_only:
        metrics = json.loads((args.out / "metrics.json").read_text())
    else:
        metrics = train(r, args.out, args.seed, args.workers, args.threads)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    metrics = measure(r, args.out, args.seed, args.workers, metrics)
    print(json.dumps({k: metrics[k] for k in ("dice", "false_mark_rate", "hit_rate")}, indent=1))


if __name__ == "__main__":
    main()
