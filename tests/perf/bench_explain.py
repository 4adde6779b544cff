"""Explanation speed against the peer libraries, measured in the same run (ratios printed).

    python tests/perf/bench_explain.py            # DenseNet-121, ResNet-50 at 224 px + demo models
    python tests/perf/bench_explain.py --quick    # fewer repeats, no Score-CAM on DenseNet

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


def peer_lime(net, x, target, segments, samples):
    from lime import lime_image

    image = x[0].permute(1, 2, 0).double().numpy()

    def classifier(images):
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return torch.softmax(net(batch), dim=-1).numpy()

    def run():
        explainer = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer.explain_instance(
                image,
                classifier,
                labels=(target,),
                top_labels=None,
                hide_color=None,
                num_samples=samples,
                segmentation_fn=lambda _: segments,
                random_seed=0,
            )

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
    args = parser.parse_args()
    repeat = 2 if args.quick else args.repeat
    only = set(args.only.split(",")) if args.only else {"densenet121", "resnet50", "demo"}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    for arch, layer in (("densenet121", "features"), ("resnet50", "layer4")):
        if arch not in only:
            continue
        net = torchvision.models.get_model(arch, weights=None).eval()
        with torch.no_grad():
            target = int(net(x).argmax())
        scorecam = not (args.quick and arch == "densenet121")
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
