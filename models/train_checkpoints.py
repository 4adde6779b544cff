"""Checkpoints of one bundled architecture that differ only by their training seed, for the
repeatability table (issue 37; Arun et al. 2021: two trainings of the same architecture).

    python models/train_checkpoints.py --out models/ct_resnet18_seeds --seeds 1 2 3 \\
        --volumes 36 --test-volumes 6 --epochs 1

The phantoms are rendered once (``--data-seed``, the held-out set from another seed) and each
seed trains in its own forked process with one torch thread (``models/train.py``'s recipe: same
network, pre-processing, optimiser and augmentation; only the number of volumes and epochs is
smaller, so that three trainings fit a shared 2-core machine). Writes ``seed<N>.safetensors``
(fp16) per seed, one ``manifest.toml`` naming them all in ``network.weights``, ``metrics.json``
(each checkpoint's AUROC and pointing game) and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.train import evaluate, fit, make_data, manifest_text, recipe, save  # noqa: E402

_DATA: dict = {}  # the rendered phantoms, inherited by the forked trainings (never pickled)


def _train_one(r, seed: int, folder: str, queue) -> None:
    """In a forked process: one seed's training, evaluation and weights file."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    model = fit(r, _DATA["images"], _DATA["labels"], seed, start)
    seconds = time.perf_counter() - start
    metrics = evaluate(r, model, *_DATA["test"])
    metrics.update(
        {
            "train_seconds": round(seconds), "n_train": len(_DATA["images"]), "epochs": r.epochs,
            "seed": seed, "data_seed": _DATA["data_seed"], "torch": torch.__version__, "cpu_threads": 1,
        }
    )  # fmt: skip
    save(r, model, Path(folder), metrics)
    queue.put((seed, metrics))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--data-seed", type=int, default=2026)
    parser.add_argument("--volumes", type=int, default=36, help="training volumes (28 slices each)")
    parser.add_argument("--test-volumes", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="processes rendering the phantoms")
    args = parser.parse_args()

    r = recipe("ct", False, False)
    r.n_train, r.n_test, r.epochs = args.volumes, args.test_volumes, args.epochs
    start = time.perf_counter()
    images, labels, _, _ = make_data(r, args.data_seed, r.n_train, args.workers)
    _DATA.update(
        data_seed=args.data_seed,
        images=images,
        labels=labels,
        test=make_data(r, args.data_seed + 7919, r.n_test, args.workers),
    )
    print(f"data: {len(images)} train slices in {time.perf_counter() - start:.0f} s", flush=True)

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            ctx.Process(target=_train_one, args=(r, seed, f"{tmp}/seed{seed}", queue)) for seed in args.seeds
        ]
        for p in runs:
            p.start()
        for p in runs:
            p.join()
        if any(p.exitcode for p in runs):
            sys.exit("a training failed (its traceback is above)")
        results = dict(queue.get() for _ in runs)
        args.out.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            Path(f"{tmp}/seed{seed}/weights.safetensors").replace(args.out / f"seed{seed}.safetensors")
    files = ", ".join(f'"seed{s}.safetensors"' for s in args.seeds)
    name = f"Head CT haemorrhage (demo, ResNet-18, per slice, {len(args.seeds)} seeds)"
    text = manifest_text(r)
    text = re.sub(r'^weights = ".*"$', f"weights = [{files}]", text, flags=re.M)
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, count=1, flags=re.M)
    (args.out / "manifest.toml").write_text(text)
    common = {
        "n_train": len(images), "n_test": len(_DATA["test"][0]), "epochs": r.epochs,
        "data_seed": args.data_seed, "torch": torch.__version__,
        "command": "python models/train_checkpoints.py " + " ".join(sys.argv[1:]),
    }  # fmt: skip
    metrics = common | {"checkpoints": {f"seed{s}": results[s] for s in args.seeds}}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (args.out / "MODEL_CARD.md").write_text(card(name, r, metrics))
    print(json.dumps({k: v["auroc"] for k, v in metrics["checkpoints"].items()}, indent=1))


def card(name: str, r, metrics: dict) -> str:
    rows = "\n".join(
        f"| {label} | "
        + " | ".join(f"{m['auroc'][label]:.3f}" for m in metrics["checkpoints"].values())
        + " |"
        for label in r.labels
    )
    seeds = list(metrics["checkpoints"])
    return f"""# Model card: {name}

**Intended use: demonstrating the stability of saliency maps across trainings (repeatability) on
synthetic data. Not for clinical use.** It has never seen a real patient image.

- Architecture and recipe: those of `ct_resnet18` (torchvision `resnet18` from scratch, three CT
  windows as channels, 224 x 224, AdamW with one-cycle learning rate, small augmentation), on a
  smaller budget: {metrics["n_train"]} phantom slices (data seed {metrics["data_seed"]}),
  {metrics["epochs"]} epochs, one CPU thread per checkpoint. The checkpoints differ only by the
  seed of their initial weights, batch order and augmentation ({", ".join(seeds)}).
- Evaluation: {metrics["n_test"]} held-out phantom slices from another seed.
- Reproduce: `{metrics["command"]}`.

| label | {" | ".join(seeds)} |
|---|{"---|" * len(seeds)}
{rows}

AUROC per checkpoint. Fewer slices and epochs than `ct_resnet18` (3080 slices, 4 epochs): these
checkpoints are weaker, and are meant to be compared with each other.
"""


if __name__ == "__main__":
    main()
