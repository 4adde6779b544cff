"""The batch command as a whole process against a peer script, in the same run (ratios printed).

    python tests/perf/bench_process.py              # 24 head CT slices, the bundled CT model
    python tests/perf/bench_process.py --repeat 3 --slices 24

Both sides start a fresh Python process and end with the maps on disk, so start-up (imports),
reading the DICOM files, pre-processing, the five seed maps (Grad-CAM, Grad-CAM++, Guided
Backprop, DeconvNet, Guided Grad-CAM) and writing every map as ``.npy`` and a PNG overlay count:

- ours: ``saliency-viewer explain SERIES --model ct_resnet18 --methods <seed set> --steps 0``
  (which also writes the NIfTI maps, predictions.json and metrics.csv);
- the peer: a script that reads the slices with pydicom, windows and resizes them as the model's
  manifest says, loads the same weights into torchvision's ResNet-18 and calls pytorch-grad-cam and
  Captum one slice at a time as their documentation shows, saving each map and an overlay PNG.

Each figure is the best of ``--repeat`` runs of the whole process, on the CPU, with the same
torch thread count. A second row takes off the start-up both sides share (``import torch,
torchvision``, timed in the same run) to show the ratio of the work each side chooses to do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SEED_SET = "gradcam,gradcam++,guided-backprop,deconvnet,guided-gradcam"

PEER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import pydicom
    import torch
    import torchvision
    from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam
    from PIL import Image
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from safetensors.torch import load_file

    series, weights, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    net = torchvision.models.resnet18(num_classes=6)
    net.load_state_dict(load_file(weights))
    net.eval()
    windows = [(40, 80), (75, 215), (600, 2800)]
    mean, std = 0.5, 0.35

    def prepare(ds):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        channels = [np.clip((hu - (c - w / 2)) / w, 0, 1) for c, w in windows]
        x = torch.from_numpy(np.stack(channels).astype(np.float32))[None]
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="area")
        return (x - mean) / std, channels[0]

    for path in sorted(series.glob("*.dcm")):
        x, grey = prepare(pydicom.dcmread(path))
        target = int(net(x).argmax())
        targets = [ClassifierOutputTarget(target)]
        maps = {}
        with GradCAM(model=net, target_layers=[net.layer4]) as cam:
            maps["gradcam"] = cam(input_tensor=x, targets=targets)[0]
        with GradCAMPlusPlus(model=net, target_layers=[net.layer4]) as cam:
            maps["gradcam++"] = cam(input_tensor=x, targets=targets)[0]
        for name, method in (("guided-backprop", GuidedBackprop(net)), ("deconvnet", Deconvolution(net))):
            maps[name] = method.attribute(x, target=target).abs().amax(dim=1)[0].detach().numpy()
        guided = GuidedGradCam(net, net.layer4)
        maps["guided-gradcam"] = guided.attribute(x, target=target).abs().amax(dim=1)[0].detach().numpy()
        small = np.asarray(Image.fromarray(np.uint8(grey * 255)).resize((224, 224)))
        rgb = np.repeat(small[..., None], 3, -1)
        for name, m in maps.items():
            np.save(out / f"{path.stem}_{name}.npy", m)
            unit = (m - m.min()) / (m.max() - m.min() + 1e-12)
            overlay = show_cam_on_image(rgb.astype(np.float32) / 255, unit.astype(np.float32), use_rgb=True)
            Image.fromarray(overlay).save(out / f"{path.stem}_{name}.png")
    """
)


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    from viewer.inference.catalog import bundled_models
    from viewer.phantoms.studies import write_ct_set

    manifest = bundled_models()["ct_resnet18"]
    weights = str(Path(manifest).parent / "weights.safetensors")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "QT_QPA_PLATFORM": "offscreen"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_ct_set(tmp / "data", 1, seed=7, slices=args.slices)
        series = tmp / "data" / "dicom" / "ct_0001"
        peer_script = tmp / "peer.py"
        peer_script.write_text(PEER)
        ours_times, peer_times, floor_times = [], [], []
        for run in range(args.repeat):
            ours_out, peer_out = tmp / f"ours{run}", tmp / f"peer{run}"
            ours_times.append(
                timed(
                    [sys.executable, "-m", "viewer", "explain", str(series), "--model", "ct_resnet18",
                     "--methods", SEED_SET, "--steps", "0", "--quiet", "--out", str(ours_out)],
                    env,
                )
            )  # fmt: skip
            peer_times.append(
                timed([sys.executable, str(peer_script), str(series), weights, str(peer_out)], env)
            )
            maps = len(list((ours_out / "ct_0001").glob("*.npy")))
            peer_maps = len(list(peer_out.glob("*.npy")))
            floor_times.append(timed([sys.executable, "-c", "import torch, torchvision"], env))
        ours_best, peer_best, floor = min(ours_times), min(peer_times), min(floor_times)
        print(f"{args.slices} slices 512 x 512, ResNet-18 at 224, five seed maps, {args.threads} threads")
        print("| Whole process | ours | pytorch-grad-cam + Captum script | ratio |")
        print("|---|---|---|---|")
        print(
            f"| explain --steps 0 vs the peer script | {ours_best:.1f} s ({maps} series maps) | "
            f"{peer_best:.1f} s ({peer_maps} slice maps) | ours {peer_best / ours_best:.2f}x faster |"
        )
        # What neither side can skip: the ResNet-18 is torchvision's, and importing torchvision
        # imports torch._dynamo (torchvision.ops). Beyond it, the work each side chose to do.
        print(
            f"| beyond `import torch, torchvision` ({floor:.1f} s, both) | {ours_best - floor:.1f} s | "
            f"{peer_best - floor:.1f} s | ours {(peer_best - floor) / (ours_best - floor):.2f}x faster |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
