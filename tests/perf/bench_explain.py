"""Explanation speed against the peer libraries, measured in the same run (ratios printed).

    python tests/perf/bench_explain.py            # DenseNet-121, ResNet-50 at 224 px + demo models
    python tests/perf/bench_explain.py --quick    # fewer repeats, no Score-CAM on DenseNet
    python tests/perf/bench_explain.py --lime-only --only resnet50,demo   # converged LIME
    python tests/perf/bench_explain.py --rise-only --only resnet50,demo   # converged RISE

Each figure is the best of ``--repeat`` runs after a warm-up, on one image, on the CPU, with the
same torch thread count for everyone. Peers are called the way their documentation shows.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from viewer.explain import ExplainContext, get_method
from viewer.explain.perturbation import superpixels
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel

SEED_SET = ("gradcam", "gradcam++", "guided-backprop", "guided-gradcam", "deconvnet")
CAM_SIX = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "eigencam")


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up: allocator, one-off kernel selection
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ours(net, layer, x, methods, target, task="multiclass", **params):
    def run():
        with ExplainContext(net, layer, x, task=task) as ctx:
            for m in methods:
                get_method(m, **params.get(m, {})).compute(ctx, [target])

    return run


def peers_seed_set(net, layer_module, x, target):
    from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run():
        targets = [ClassifierOutputTarget(target)]
        with GradCAM(model=net, target_layers=[layer_module]) as cam:
            cam(input_tensor=x, targets=targets)
        with GradCAMPlusPlus(model=net, target_layers=[layer_module]) as cam:
            cam(input_tensor=x, targets=targets)
        GuidedBackprop(net).attribute(x, target=target)
        GuidedGradCam(net, layer_module).attribute(x, target=target)
        Deconvolution(net).attribute(x, target=target)

    return run


def plain_forward(net, x):
    def run():
        with torch.inference_mode():
            net(x)

    return run


def peer_scorecam(net, layer_module, x, target):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def run():
        with ScoreCAM(model=net, target_layers=[layer_module]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])

    return run


def peer_lime(net, x, target, segments, samples, head=None, out: dict | None = None):
    """``lime_image`` as its documentation shows; a one-channel input goes in as a grey image (it
    makes it RGB, the classifier reads one channel back). ``out["map"]``: its coefficients painted
    on the superpixels."""
    from lime import lime_image

    grey = x.shape[1] == 1
    image = (x[0, 0] if grey else x[0].permute(1, 2, 0)).double().numpy()
    head = head or (lambda logits: torch.softmax(logits, dim=-1))

    def classifier(images):
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return head(net(batch[:, :1] if grey else batch)).numpy()

    def run():
        explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explanation = explainer.explain_instance(
                image,
                classifier,
                labels=(target,),
                top_labels=None,
                hide_color=None,
                num_samples=samples,
                segmentation_fn=lambda _: segments,
                random_seed=0,
            )
        if out is not None:
            coefficients = np.zeros(int(segments.max()) + 1)
            for feature, weight in explanation.local_exp[target]:
                coefficients[feature] = weight
            out["map"] = coefficients[segments]

    return run


def throughput_limit(net, x, samples: int, batch_sizes=(8, 16, 32, 64)) -> tuple[float, int]:
    """Seconds for ``samples`` forwards at the best batch size (the machine's limit)."""
    best = (float("inf"), 0)
    for b in batch_sizes:
        batch = x.expand(b, *x.shape[1:]).contiguous()
        t = best_of(plain_forward(net, batch), 2) / b * samples
        best = min(best, (t, b))
    return best


def row(name: str, ours_s: float, peer_s: float, goal: str) -> None:
    print(f"| {name} | {ours_s:.3f} | {peer_s:.3f} | {peer_s / ours_s:.2f}x | {goal} |", flush=True)


def scorecam_map(net, layer, x, target, task, method_id: str) -> np.ndarray:
    with ExplainContext(net, layer, x, task=task) as ctx:
        return get_method(method_id).compute(ctx, [target])[0, 0].clamp(min=0).numpy()


def bench_scorecam(net, layer, layer_module, x, target, task) -> None:
    """The default Score-CAM (top-128 channels by variance) and the exact one against
    pytorch-grad-cam's, and how close the default's map stays to the exact map."""
    fast = best_of(ours(net, layer, x, ["scorecam"], target, task), 1)
    exact = best_of(ours(net, layer, x, ["scorecam-exact"], target, task), 1)
    peer = best_of(peer_scorecam(net, layer_module, x, target), 1)
    a, b = (scorecam_map(net, layer, x, target, task, m).ravel() for m in ("scorecam", "scorecam-exact"))
    r = float(np.corrcoef(a, b)[0, 1])
    row(
        f"Score-CAM (top 128 channels; Pearson {r:.3f} to every channel) vs pytorch-grad-cam",
        fast,
        peer,
        ">= 3x",
    )
    row("Score-CAM over every channel (scorecam-exact) vs pytorch-grad-cam", exact, peer, "")


def peer_occlusion(net, x, target, window: int, stride: int):
    from captum.attr import Occlusion

    def run():
        Occlusion(net).attribute(
            x, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride),
            baselines=0.0, target=target,
        )  # fmt: skip

    return run


def bench_occlusion(net, layer, x, target, task, window: int = 32, stride: int = 16) -> None:
    """Occlusion batched over window positions against Captum's (one position per forward, its
    default), the same windows and baseline; the maps agree to 1e-4 (tests/explain/test_oracles.py)."""
    params = {"occlusion": {"window": window, "stride": stride}}
    ours_s = best_of(ours(net, layer, x, ["occlusion"], target, task, **params), 1)
    peer_s = best_of(peer_occlusion(net, x, target, window, stride), 1)
    row(f"occlusion ({window} px window, stride {stride}) vs Captum Occlusion", ours_s, peer_s, "")


def timed(fn) -> float:
    """One run's seconds (the sampled methods run for tens of seconds: no repeats)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sampled_map(net, layer, x, target, task, method_id, seed=0, **params) -> tuple[np.ndarray, str, float]:
    """Our raw map (signed: LIME's coefficients, RISE's offset mean), its note and its seconds."""
    method = get_method(method_id, **params)
    start = time.perf_counter()
    with ExplainContext(net, layer, x, task=task, seed=seed) as ctx:
        raw = method.compute(ctx, [target])[0, 0].numpy()
    return raw, method.map_notes(target)[0], time.perf_counter() - start


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def bench_lime(net, layer, x, target, task, head=None) -> None:
    """Converged LIME (its defaults: at most 1,000 samples) against ``lime_image`` at its default
    1,000 samples, the same superpixels; each map's Pearson correlation with a 5,000-sample
    reference (ours, convergence off). The reference has another seed: with the same one it would
    share its first samples with both maps, and more of them with the longer run."""
    segments = superpixels(x[0], 100)
    reference, _, _ = sampled_map(net, layer, x, target, task, "lime", seed=1, samples=5000, converge=False)
    ours_map, note, ours_s = sampled_map(net, layer, x, target, task, "lime")
    peer: dict = {}
    peer_s = timed(peer_lime(net, x, target, segments, 1000, head=head, out=peer))
    used = note.split(" (")[0].removeprefix("LIME ")
    ours_r, peer_r = pearson(ours_map, reference), pearson(peer["map"], reference)
    print(
        f"| LIME ({used}) vs lime_image (1000 samples) | {ours_s:.1f} | {peer_s:.1f} | "
        f"{peer_s / ours_s:.2f}x | {ours_r:.3f} | {peer_r:.3f} | >= 3x, Pearson >= lime_image's |",
        flush=True,
    )
    # What the 3x budget buys: a fixed third of lime_image's samples, no stopping rule.
    third, _, third_s = sampled_map(net, layer, x, target, task, "lime", samples=333, converge=False)
    print(
        f"| LIME at 333 samples (convergence off) vs lime_image (1000 samples) | {third_s:.1f} | "
        f"{peer_s:.1f} | {peer_s / third_s:.2f}x | {pearson(third, reference):.3f} | {peer_r:.3f} | |",
        flush=True,
    )


def bench_rise(net, layer, x, target, task) -> None:
    """Converged RISE (its defaults: at most 2,000 masks) against the plain run of every mask
    (convergence off, the same seed and masks), and how close the stopped map stays to it."""
    full, _, full_s = sampled_map(net, layer, x, target, task, "rise", converge=False)
    ours_map, note, ours_s = sampled_map(net, layer, x, target, task, "rise")
    used = note.split(" (")[0].removeprefix("RISE ")
    print(
        f"| RISE ({used}) vs plain RISE (2000 masks) | {ours_s:.1f} | {full_s:.1f} | "
        f"{full_s / ours_s:.2f}x | {pearson(ours_map, full):.3f} | |",
        flush=True,
    )


SAMPLED_HEADER = {
    "lime": "| measure | ours (s) | lime_image (s) | lime_image / ours | Pearson ours to 5,000-sample ref "
    "| Pearson lime_image to ref | goal |\n|---|---|---|---|---|---|---|",
    "rise": "| measure | ours (s) | plain (s) | plain / ours | Pearson to the plain map | goal |\n"
    "|---|---|---|---|---|---|",
}


def sample_input(model: LoadedModel, name: str) -> torch.Tensor:
    """A bundled model's input from its bundled sample image (middle frame): LIME and RISE on a
    trained model are only meaningful on the kind of image it was trained on."""
    from viewer.io import discover
    from viewer.io.loader import load_series
    from viewer.resources import resource_path

    sample = "ct_0001" if "CT" in model.manifest.modalities else "cxr_0001.dcm"
    image = load_series(discover([resource_path("samples", "dicom", sample)]).series[0])
    return model.prepare(image, image.n_frames // 2)[0][None]


def bench_network(label, net, layer, x, target, task, repeat, scorecam: bool, lime_samples: int) -> None:
    layer_module = net.get_submodule(layer)
    print(f"\n### {label}\n")
    print("| measure | ours (s) | reference (s) | reference / ours | goal |\n|---|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row(
            "seed set (5 maps) vs pytorch-grad-cam + Captum",
            best_of(ours(net, layer, x, SEED_SET, target, task), repeat),
            best_of(peers_seed_set(net, layer_module, x, target), repeat),
            ">= 4x",
        )
    forward = best_of(plain_forward(net, x), repeat)
    six = best_of(ours(net, layer, x, CAM_SIX, target, task), repeat)
    print(
        f"| six gradient-based CAM maps vs one plain forward | {six:.3f} | {forward:.3f} | "
        f"{forward / six:.2f}x (ours = {six / forward:.2f} forwards) | <= 1.3 forwards |",
        flush=True,
    )
    if scorecam:
        bench_scorecam(net, layer, layer_module, x, target, task)
    segments = superpixels(x[0], 100)
    lime_ours = best_of(
        ours(net, layer, x, ["lime"], target, task, lime={"samples": lime_samples, "superpixels": 100}), 1
    )
    if x.shape[1] == 3:
        row(
            f"LIME {lime_samples} samples vs lime_image",
            lime_ours,
            best_of(peer_lime(net, x, target, segments, lime_samples), 1),
            ">= 3x",
        )
    limit, batch = throughput_limit(net, x, lime_samples)
    print(
        f"| LIME vs the machine's limit ({lime_samples} forwards at batch {batch}) | {lime_ours:.3f} | "
        f"{limit:.3f} | ours = {lime_ours / limit:.2f}x the limit | <= 1.2x the limit |",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lime-samples", type=int, default=1000)
    parser.add_argument("--only", help="comma-separated subset: densenet121,resnet50,demo")
    parser.add_argument("--scorecam-only", action="store_true", help="only the Score-CAM rows")
    parser.add_argument("--occlusion-only", action="store_true", help="only the occlusion row")
    parser.add_argument("--lime-only", action="store_true", help="only converged LIME vs lime_image")
    parser.add_argument("--rise-only", action="store_true", help="only converged vs plain RISE")
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    only = set(args.only.split(",")) if args.only else {"densenet121", "resnet50", "demo"}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    sampled = "lime" if args.lime_only else "rise" if args.rise_only else None
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    for arch, layer in (("densenet121", "features"), ("resnet50", "layer4")):
        if arch not in only:
            continue
        net = torchvision.models.get_model(arch, weights=None).eval()
        with torch.no_grad():
            target = int(net(x).argmax())
        scorecam = not (args.quick and arch == "densenet121")
        if sampled:
            print(f"\n### {arch}, 224 x 224, random weights, random input\n\n{SAMPLED_HEADER[sampled]}")
            bench = bench_lime if sampled == "lime" else bench_rise
            bench(net, layer, x, target, "multiclass")
            continue
        if args.scorecam_only or args.occlusion_only:
            print(f"\n### {arch}, 224 x 224\n")
            if args.scorecam_only:
                bench_scorecam(net, layer, net.get_submodule(layer), x, target, "multiclass")
            if args.occlusion_only:
                bench_occlusion(net, layer, x, target, "multiclass")
            continue
        bench_network(
            f"{arch}, 224 x 224", net, layer, x, target, "multiclass", repeat, scorecam, args.lime_samples
        )
    if "demo" in only:
        for name, manifest in bundled_models().items():
            model = LoadedModel.from_manifest(manifest, device="cpu")
            size = model.manifest.input.size
            xm = torch.randn(1, model.manifest.in_channels, *size)
            if sampled:
                xm = sample_input(model, name)
                with torch.no_grad():
                    top = int(model.head(model.network(xm)).argmax())
                label = model.manifest.labels[top]
                print(f"\n### bundled {name}, its sample image, target {label}\n\n{SAMPLED_HEADER[sampled]}")
                net, layer, task = model.network, model.target_layer, model.manifest.task
                if sampled == "lime":
                    bench_lime(net, layer, xm, top, task, head=model.head)
                else:
                    bench_rise(net, layer, xm, top, task)
                continue
            if args.scorecam_only or args.occlusion_only:
                print(f"\n### bundled {name}\n")
                layer = model.network.get_submodule(model.target_layer)
                if args.scorecam_only:
                    bench_scorecam(model.network, model.target_layer, layer, xm, 0, model.manifest.task)
                if args.occlusion_only:
                    bench_occlusion(model.network, model.target_layer, xm, 0, model.manifest.task)
                continue
            bench_network(
                f"bundled {name}, {size[0]} x {size[1]}",
                model.network,
                model.target_layer,
                xm,
                0,
                model.manifest.task,
                repeat,
                scorecam=False,
                lime_samples=args.lime_samples,
            )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    raise SystemExit(main())
