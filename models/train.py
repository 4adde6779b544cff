"""Training recipe for the bundled demo models: phantom data -> torchvision ResNet -> safetensors.

    python models/train.py cxr            --out models/cxr_resnet18
    python models/train.py cxr --shortcut --out models/cxr_shortcut_resnet18
    python models/train.py ct             --out models/ct_resnet18

Renders phantom studies (viewer.phantoms) at the model's input size, trains from scratch on the
CPU (2 cores: 13-21 minutes for the shortcut and CT models, ~55 for the chest model, whose
smallest finding, nodules, needs 13 epochs to pass AUROC 0.9), evaluates on a held-out set
generated with another seed (per-label AUROC, and the Grad-CAM pointing game against the
ground-truth masks), and writes
``weights.safetensors`` (fp16), ``manifest.toml``, ``metrics.json`` and ``MODEL_CARD.md``.
Deterministic for a given --seed. Inputs go through viewer.inference.preprocess, the code that
feeds the model in the viewer, so training and use cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from viewer.inference.architectures import set_input_channels  # noqa: E402
from viewer.inference.manifest import InputSpec  # noqa: E402
from viewer.inference.preprocess import prepare_array  # noqa: E402
from viewer.phantoms.chest import CHEST_LABELS, render_chest  # noqa: E402
from viewer.phantoms.head_ct import CT_LABELS, render_head_ct  # noqa: E402

CT_WINDOWS = ((40.0, 80.0), (75.0, 215.0), (600.0, 2800.0))  # brain, subdural, bone (RSNA winners)


@dataclass
class Recipe:
    kind: str
    labels: tuple[str, ...]
    arch: str
    size: int
    spec: InputSpec
    in_channels: int
    n_train: int
    n_test: int
    epochs: int
    batch: int
    lr: float
    shortcut: bool = False


def recipe(kind: str, shortcut: bool, quick: bool) -> Recipe:
    scale = 0.1 if quick else 1.0
    if kind == "cxr":
        spec = InputSpec((256, 256), "letterbox", "voi", (), (0.5,), (0.25,))
        n_train, epochs = (1000, 4) if shortcut else (2000, 13)
        return Recipe(
            "cxr",
            CHEST_LABELS,
            "resnet18",
            256,
            spec,
            1,
            int(n_train * scale),
            int(400 * scale),
            epochs,
            32,
            2e-3,
            shortcut,
        )
    spec = InputSpec((224, 224), "letterbox", "windows", CT_WINDOWS, (0.5, 0.5, 0.5), (0.35, 0.35, 0.35))
    # Volumes, not slices: each gives `slices` training images.
    return Recipe("ct", CT_LABELS, "resnet18", 224, spec, 3, int(110 * scale), int(30 * scale), 4, 32, 2e-3)


# --- data -------------------------------------------------------------------------------------


def _render_cxr(args):
    seed, size, shortcut = args
    case = render_chest(seed, size, shortcut=shortcut)
    labels = np.array([case.labels[label] for label in CHEST_LABELS], np.float32)
    masks = np.stack([case.finding_masks(label) for label in CHEST_LABELS])
    marker = np.zeros((size, size), bool)
    if case.marker:
        x, y, w, h = case.marker["bbox"]
        marker[y : y + h, x : x + w] = True
    return case.image.astype(np.float16), labels, np.packbits(masks, axis=-1), np.packbits(marker, axis=-1)


def _render_ct(args):
    seed, size, slices = args
    case = render_head_ct(seed, size, slices=slices, prevalence=0.35)
    masks = np.zeros((slices, len(CT_LABELS), size, size), bool)
    for finding in case.findings:
        for k, mask in finding.masks.items():
            masks[k, CT_LABELS.index(finding.label)] |= mask
    masks[:, 0] = masks[:, 1:].any(axis=1)
    hu = np.clip(np.rint(case.hu), -1024, 3071).astype(np.int16)
    return hu, case.slice_labels.astype(np.float32), np.packbits(masks, axis=-1)


def make_data(r: Recipe, seed: int, n: int, workers: int):
    """Rendered images/slices, labels and packed masks for ``n`` studies from ``seed``."""
    seeds = [seed * 100_003 + i for i in range(n)]
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers) as pool:
        if r.kind == "cxr":
            out = pool.map(_render_cxr, [(s, r.size, r.shortcut) for s in seeds], chunksize=8)
            images, labels, masks, markers = (np.stack(x) for x in zip(*out, strict=True))
            return images, labels, masks, markers
        out = pool.map(_render_ct, [(s, 256, 28) for s in seeds], chunksize=2)
    hu = np.concatenate([o[0] for o in out])
    labels = np.concatenate([o[1] for o in out])
    masks = np.concatenate([o[2] for o in out])
    return hu, labels, masks, None


def to_inputs(r: Recipe, frames: np.ndarray) -> torch.Tensor:
    """Model inputs through the viewer's own pre-processing."""
    return torch.stack([prepare_array(f.astype(np.float32), r.spec, r.in_channels) for f in frames])


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Small shifts and scale, contrast jitter: positioning and exposure vary between films."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    scale = 1 + (torch.rand(n, generator=g) - 0.5) * 0.12
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = (torch.rand(n, 2, generator=g) - 0.5) * 0.10
    grid = F.affine_grid(theta, x.shape, align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=g) - 0.5) * 0.2
    return x * gain


# --- evaluation -------------------------------------------------------------------------------


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN without both classes."""
    labels = labels.astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    values = np.concatenate([pos, neg])
    for v in np.unique(values):  # average ranks of ties
        tie = values == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def grad_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, label: int) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of one label for a batch, upsampled to the input size."""
    store = {}
    h1 = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    h2 = layer.register_full_backward_hook(lambda m, gi, go: store.__setitem__("g", go[0]))
    try:
        model.zero_grad(set_to_none=True)
        model(x)[:, label].sum().backward()
    finally:
        h1.remove()
        h2.remove()
    weights = store["g"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * store["a"]).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()


def marker_lift(r: Recipe, model, n: int = 24, seed: int = 31337) -> float:
    """How much burning the shortcut marker into normal films raises the shortcut label's probability."""
    from viewer.phantoms.chest import _burn_marker

    plain, marked = [], []
    for i in range(n):
        case = render_chest(seed + i, r.size, findings={}, marker_probability=0.0)
        plain.append(case.image.copy())
        _burn_marker(case.image, "PORTABLE", np.random.default_rng(i), case.pixel_mm)
        marked.append(case.image)
    column = r.labels.index("pneumothorax")
    model.eval()
    with torch.inference_mode():
        lift = (
            torch.sigmoid(model(to_inputs(r, np.stack(marked))))[:, column].mean()
            - torch.sigmoid(model(to_inputs(r, np.stack(plain))))[:, column].mean()
        )
    return float(lift)


def evaluate(r: Recipe, model, images, labels, masks, markers, batch: int = 32) -> dict:
    model.eval()
    scores = []
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            scores.append(torch.sigmoid(model(to_inputs(r, images[s : s + batch]))).numpy())
    scores = np.concatenate(scores)
    per_label = {label: auroc(labels[:, i], scores[:, i]) for i, label in enumerate(r.labels)}
    # Grad-CAM pointing game: is the map's maximum inside the finding's mask?
    layer = model.layer4
    hits = {label: [] for label in r.labels}
    marker_hits = []
    size = images.shape[-1]
    for i, label in enumerate(r.labels):
        positives = np.flatnonzero(labels[:, i] > 0)[:60]
        for s in range(0, len(positives), 16):
            idx = positives[s : s + 16]
            cams = grad_cam(model, layer, to_inputs(r, images[idx]), i).numpy()
            for j, cam in zip(idx, cams, strict=True):
                peak = np.unravel_index(np.argmax(cam), cam.shape)
                # Masks are on the rendered grid; the model input may be smaller (CT: 256 -> 224).
                mask = np.unpackbits(masks[j][i], axis=-1, count=size).astype(bool)
                scale = mask.shape[0] / cam.shape[0]
                hits[label].append(bool(mask[int(peak[0] * scale), int(peak[1] * scale)]))
                if markers is not None and r.shortcut:
                    marker = np.unpackbits(markers[j], axis=-1, count=size).astype(bool)
                    if marker.any():
                        marker_hits.append(bool(marker[peak]))
    model.train()
    out = {
        "auroc": per_label,
        "pointing_game": {k: (float(np.mean(v)) if v else float("nan")) for k, v in hits.items()},
        "pointing_game_n": {k: len(v) for k, v in hits.items()},
        "n": len(images),
        "prevalence": {label: float(labels[:, i].mean()) for i, label in enumerate(r.labels)},
    }
    if marker_hits:
        out["pointing_game_marker"] = float(np.mean(marker_hits))
    if r.shortcut:
        out["marker_lift"] = marker_lift(r, model)
    return out


# --- training ---------------------------------------------------------------------------------


def train(
    r: Recipe, out: Path, seed: int, workers: int, threads: int = 0, data_seed: int | None = None
) -> dict:
    """``seed`` drives the initial weights, the batch order and the augmentation; ``data_seed``
    (``seed`` unless given) the phantoms, so that checkpoints of one training set can differ by
    their ``seed`` alone (repeatability, issue 37)."""
    data_seed = seed if data_seed is None else data_seed
    torch.manual_seed(seed)
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    start = time.perf_counter()
    images, labels, _, _ = make_data(r, data_seed, r.n_train, workers)
    test = make_data(r, data_seed + 7919, r.n_test, workers)  # a seed the training never sees
    print(
        f"data: {len(images)} train, {len(test[0])} test images in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    model = fit(r, images, labels, seed, start)
    train_seconds = time.perf_counter() - start
    metrics = evaluate(r, model, *test)
    metrics.update(
        {
            "train_seconds": round(train_seconds),
            "n_train": len(images),
            "epochs": r.epochs,
            "seed": seed,
            "data_seed": data_seed,
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
        }
    )
    save(r, model, out, metrics)
    return metrics


def fit(r: Recipe, images: np.ndarray, labels: np.ndarray, seed: int, start: float) -> torch.nn.Module:
    """A network trained from scratch on ``images``: ``seed`` sets its initial weights, the batch
    order and the augmentation (``start``: when the run began, for the progress lines)."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.get_model(r.arch, weights=None, num_classes=len(r.labels))
    if r.in_channels != 3:
        set_input_channels(model, r.in_channels)
    steps = r.epochs * (len(images) // r.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps, pct_start=0.15)
    prevalence = labels.mean(0).clip(0.02, 0.98)
    pos_weight = torch.tensor((1 - prevalence) / prevalence, dtype=torch.float32).clamp(max=10)
    g = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    for epoch in range(r.epochs):
        order = torch.randperm(len(images), generator=g).numpy()
        running = []
        for s in range(0, len(order) - r.batch + 1, r.batch):
            idx = np.sort(order[s : s + r.batch])
            x = augment(to_inputs(r, images[idx]), g)
            y = torch.from_numpy(labels[idx])
            loss = F.binary_cross_entropy_with_logits(model(x), y, pos_weight=pos_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
        elapsed = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{r.epochs}: loss {np.mean(running):.4f} ({elapsed:.0f} s)", flush=True)
    return model


def save(r: Recipe, model: torch.nn.Module, out: Path, metrics: dict) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()
    }
    save_file(
        state, str(out / "weights.safetensors"), metadata={"arch": r.arch, "labels": ",".join(r.labels)}
    )
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "manifest.toml").write_text(manifest_text(r))
    (out / "MODEL_CARD.md").write_text(model_card(r, metrics))


_TRAINED_ON = {
    ("cxr", False): "synthetic chest radiograph phantoms (viewer.phantoms.chest)",
    ("cxr", True): "synthetic chest radiograph phantoms with a burned-in marker that leaks the label "
    "(viewer.phantoms.chest)",
    ("ct", False): "synthetic head CT phantoms (viewer.phantoms.head_ct)",
}


def manifest_text(r: Recipe) -> str:
    names = {
        ("cxr", False): "Chest X-ray findings (demo, ResNet-18)",
        ("cxr", True): "Chest X-ray findings, trained with a shortcut marker (demo, ResNet-18)",
        ("ct", False): "Head CT haemorrhage (demo, ResNet-18, per slice)",
    }
    lines = [
        f'name = "{names[(r.kind, r.shortcut)]}"',
        'task = "multilabel"',
        "labels = [" + ", ".join(f'"{label}"' for label in r.labels) + "]",
        'modalities = ["CT"]' if r.kind == "ct" else 'modalities = ["CR", "DX"]',
        'description = "Trained on synthetic phantoms for demonstration only; not for clinical use."',
        'card = "MODEL_CARD.md"',
        "",
        'domain = "synthetic"',
        f'trained_on = "{_TRAINED_ON[(r.kind, r.shortcut)]}"',
        'intended_use = "Demonstrating the viewer and its saliency methods; not for clinical use."',
        "",
        "[network]",
        f'arch = "{r.arch}"',
        'weights = "weights.safetensors"',
        f"in_channels = {r.in_channels}",
        'target_layer = "layer4"',
        "",
        "[input]",
        f"size = [{r.spec.size[0]}, {r.spec.size[1]}]",
        f'resize = "{r.spec.resize}"',
    ]
    if r.spec.intensity == "windows":
        lines.append("windows = [" + ", ".join(f"[{c:g}, {w:g}]" for c, w in r.spec.windows) + "]")
    else:
        lines.append(f'intensity = "{r.spec.intensity}"')
    lines += [f"mean = {list(r.spec.mean)}", f"std = {list(r.spec.std)}", ""]
    return "\n".join(lines)


def model_card(r: Recipe, m: dict) -> str:
    rows = "\n".join(
        f"| {label} | {m['prevalence'][label]:.2f} | {m['auroc'][label]:.3f} | "
        f"{m['pointing_game'][label]:.2f} (n={m['pointing_game_n'][label]}) |"
        for label in r.labels
    )
    unit = "slices" if r.kind == "ct" else "radiographs"
    shortcut = ""
    if r.shortcut:
        shortcut = (
            "\n## Shortcut\n\nTrained on phantoms where a burned-in 'PORTABLE' marker appears on 95 % of "
            "pneumothorax films and 5 % of the others. The model uses the marker: burning it into "
            f"normal films raises the pneumothorax probability by {m.get('marker_lift', float('nan')):.2f} "
            "on average (24 films). Grad-CAM at layer4 does not show it: its maximum falls on the marker "
            f"in {m.get('pointing_game_marker', float('nan')):.0%} of marked held-out films. Finer "
            "methods should expose the marker; this model is the test case for that.\n"
        )
    inputs = (
        "three CT windows as channels (brain 40/80, subdural 75/215, bone 600/2800), 224 x 224"
        if r.kind == "ct"
        else "the radiograph as displayed (file VOI, MONOCHROME1 inverted), one channel, 256 x 256"
    )
    return f"""# Model card: {manifest_text(r).splitlines()[0][8:-1]}

**Intended use: demonstration of Saliency Viewer on synthetic data. Not for clinical use.**
It has never seen a real patient image; its outputs on real images mean nothing.

- Architecture: torchvision `{r.arch}` trained from scratch, multi-label (sigmoid), {len(r.labels)} labels.
- Input: {inputs}.
- Training data: {m["n_train"]} phantom {unit} from `viewer.phantoms` (seed {m["seed"]}), rendered at
  256 x 256 and fed through the viewer's own pre-processing; {m["epochs"]} epochs, AdamW with
  one-cycle learning rate, small shift/scale/contrast augmentation.
  Trained in {m["train_seconds"]} s on {m["cpu_threads"]} CPU threads (torch {m["torch"]}).
- Evaluation: {m["n"]} held-out phantom {unit} generated with a different seed.
- Reproduce: `python models/train.py {r.kind}{" --shortcut" if r.shortcut else ""} --out <folder>`.

| label | prevalence | AUROC | Grad-CAM pointing game |
|---|---|---|---|
{rows}

The pointing game counts a hit when the maximum of the label's Grad-CAM map (layer4) lies inside the
ground-truth mask of that finding, over positive held-out cases (at most 60 per label).
{shortcut}"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["cxr", "ct"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--shortcut", action="store_true")
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, for a smoke test")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--data-seed", type=int, help="seed of the phantoms (default: --seed)")
    args = parser.parse_args()
    r = recipe(args.kind, args.shortcut, args.quick)
    if args.epochs:
        r.epochs = args.epochs
    metrics = train(r, args.out, args.seed, args.workers, args.threads, args.data_seed)
    print(json.dumps({"auroc": metrics["auroc"], "pointing_game": metrics["pointing_game"]}, indent=1))


if __name__ == "__main__":
    main()
