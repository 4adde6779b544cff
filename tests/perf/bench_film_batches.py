"""Does batching separate films through the network pay on this machine? (issue 38, lever 2)

    python tests/perf/bench_film_batches.py                 # batches of 1, 2, 4 and 8 films
    python tests/perf/bench_film_batches.py --sizes 1 4 --rounds 5 --threads 1

The five seed maps (Grad-CAM, Grad-CAM++, Guided Backprop, DeconvNet, Guided Grad-CAM) of the
bundled chest ResNet-18 at 256 px are computed the way the engine computes them, on one context
holding ``B`` prepared films at once, against ``B`` contexts of one film each: the work a batch
run would share if it stacked films. Sizes are measured in turn (1, 2, 4, ...) for ``--rounds``
rounds on the same inputs, and each size's median time per film is printed with its ratio to one
film a pass. Nothing is written; the machine's other load shows up in every size alike. On a
machine whose cores other work keeps busy, give ``--threads 1``: torch's threads then wait on each
other at every operator (a film took 9 s at 2 threads against 1 s at one, on 2 shared cores).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SEED_SET = ("gradcam", "gradcam++", "guided-backprop", "deconvnet", "guided-gradcam")


def seed_maps(model, inputs, methods) -> None:
    """What ``engine.explain`` does for one chunk: a context, each method's raw maps."""
    from viewer.explain.context import ExplainContext

    input_grads = any(m.needs_input_grads for m in methods)
    with ExplainContext.for_model(model, inputs, input_grads=input_grads) as ctx:
        ctx.probabilities(ctx.logits.float())
        for method in methods:
            method.compute(ctx, [0])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch's threads (default: its own choice)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from viewer.explain.registry import get_method
    from viewer.inference.catalog import resolve_model
    from viewer.inference.model import LoadedModel
    from viewer.io import discover, load_series
    from viewer.phantoms.studies import write_chest_set

    model = LoadedModel.from_manifest(resolve_model("cxr_resnet18"), "cpu")
    methods = [get_method(m) for m in SEED_SET]
    with tempfile.TemporaryDirectory() as tmp:
        write_chest_set(Path(tmp), max(args.sizes), seed=7, size=512)
        found = discover([Path(tmp) / "dicom"]).series
        films = torch.stack([model.prepare(load_series(s), 0)[0] for s in found])
    seed_maps(model, films[:1], methods)  # warm-up: kernels chosen, pages touched
    per_film: dict[int, list[float]] = {size: [] for size in args.sizes}
    for _ in range(args.rounds):
        for size in args.sizes:
            start = time.perf_counter()
            seed_maps(model, films[:size], methods)
            per_film[size].append((time.perf_counter() - start) / size)
    base = median(per_film[args.sizes[0]])
    print(
        f"Five seed maps, chest ResNet-18 at 256, {torch.get_num_threads()} threads; median of {args.rounds}"
    )
    print("| Films a pass | per film | vs one a pass |")
    print("|---|---|---|")
    for size in args.sizes:
        cost = median(per_film[size])
        print(f"| {size} | {cost * 1000:.0f} ms | {cost / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
