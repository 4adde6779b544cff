"""The batch command as a whole process against a peer script, in the same run (ratios printed).

    python tests/perf/bench_process.py              # 24 head CT slices, the bundled CT model
    python tests/perf/bench_process.py --repeat 3 --slices 24
    python tests/perf/bench_process.py --films 24 --films 240   # separate chest films, per-film cost

Both sides start a fresh Python process and end with the maps on disk, so start-up (imports),
reading the DICOM files, pre-processing, the five seed maps (Grad-CAM, Grad-CAM++, Guided
Backprop, DeconvNet, Guided Grad-CAM) and writing every map as ``.npy`` and a PNG overlay count:

- ours: ``saliency-viewer explain SERIES --model ct_resnet18 --methods <seed set> --steps 0``
  (which also writes the NIfTI maps, predictions.json and metrics.csv);
- the peer: a script that reads the slices with pydicom, windows and resizes them as the model's
  manifest says, loads the same weights into torchvision's ResNet-18 and calls pytorch-grad-cam and
  Captum one slice at a time as their documentation shows, saving each map and an overlay PNG.

With ``--films N`` (repeatable) the input is N separate 512 x 512 chest films (DICOM, each its
own study) and the model the bundled chest ResNet-18 at 256: ours is ``explain FOLDER --model
cxr_resnet18 --methods <seed set>`` (its default PNG previews; and a row with ``--previews none``),
the peer a script doing for each film what a user's notebook does (pydicom, the film's window,
resize, the same weights in torchvision's ResNet-18, pytorch-grad-cam and Captum) and writing
nothing, as notebooks keep the maps in memory; a second peer row also saves each map as ``.npy``
and a PNG overlay, as ours does. The two sides run in turn (ours, peer, ours, ...), each figure is
the median of ``--repeat`` runs, and with two or more N the per-film steady-state cost of each
side is the slope between the smallest and largest N: what one more film costs once started.
``--sides ours`` (repeatable; a prefix of the rows' names) runs only those rows: how our cost grows
to 10^3 films, say, without an hour of the peer; each row also gives the run's peak memory.

Each CT figure is the best of ``--repeat`` runs of the whole process, on the CPU, with the same
torch thread count. A second row takes off the start-up both sides share (``import torch,
torchvision``, timed in the same run) to show the ratio of the work each side chooses to do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from itertools import pairwise
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


FILM_PEER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import pydicom
    import torch
    import torchvision
    from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from safetensors.torch import load_file

    films, weights, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    net = torchvision.models.resnet18(num_classes=5)
    net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    net.load_state_dict(load_file(weights))
    net.eval()

    def prepare(ds):
        pixels = ds.pixel_array.astype(np.float32)
        if "WindowCenter" in ds:
            c, w = float(np.ravel(ds.WindowCenter)[0]), float(np.ravel(ds.WindowWidth)[0])
        else:
            c, w = (pixels.max() + pixels.min()) / 2, max(pixels.max() - pixels.min(), 1)
        grey = np.clip((pixels - (c - w / 2)) / w, 0, 1)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            grey = 1 - grey
        x = torch.from_numpy(grey)[None, None]
        x = torch.nn.functional.interpolate(x, size=(256, 256), mode="area")
        return (x - 0.5) / 0.25, grey

    for path in sorted(films.glob("*.dcm")):
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
        if out == "-":  # a notebook: the maps stay in memory
            continue
        from PIL import Image
        from pytorch_grad_cam.utils.image import show_cam_on_image

        folder = Path(out) / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        small = np.asarray(Image.fromarray(np.uint8(grey * 255)).resize((256, 256)))
        rgb = np.repeat(small[..., None], 3, -1).astype(np.float32) / 255
        for name, m in maps.items():
            np.save(folder / f"{name}.npy", m)
            unit = ((m - m.min()) / (m.max() - m.min() + 1e-12)).astype(np.float32)
            Image.fromarray(show_cam_on_image(rgb, unit, use_rgb=True)).save(folder / f"{name}.png")
    """
)


def write_films(folder: Path, n: int, unique: int = 8) -> None:
    """``n`` separate 512 x 512 chest films, each its own study: ``unique`` phantoms rendered, the
    rest copies of them under new UIDs (rendering is slower than what is measured)."""
    import pydicom
    from pydicom.uid import generate_uid

    from viewer.phantoms.studies import write_chest_set

    rendered = folder.parent / f"{folder.name}-rendered"
    if not rendered.exists():
        write_chest_set(rendered, min(n, unique), seed=7, size=512)
    sources = sorted((rendered / "dicom").glob("*.dcm"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ds = pydicom.dcmread(sources[i % len(sources)])
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID = f"FILM{i:05d}"
        ds.save_as(folder / f"film_{i:05d}.dcm")


def films_bench(counts: list[int], repeat: int, env: dict, only: list[str] | None = None) -> None:
    """Ours and the peer on separate films, in turn; medians, ratios, the per-film slope and each
    side's peak resident memory. ``only``: the sides whose names start with one of these."""
    from statistics import median

    from viewer.inference.catalog import bundled_models

    weights = str(Path(bundled_models()["cxr_resnet18"]).parent / "weights.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        peer_script = tmp / "peer.py"
        peer_script.write_text(FILM_PEER)
        sides = {
            "ours": lambda films, out: [sys.executable, "-m", "viewer", "explain", str(films), "--model",
                                        "cxr_resnet18", "--methods", SEED_SET, "--quiet", "--out", str(out)],
            "ours --previews none": lambda films, out: [*sides["ours"](films, out), "--previews", "none"],
            "peer, writing nothing": lambda films, out: [sys.executable, str(peer_script), str(films),
                                                         weights, "-"],
            "peer, writing .npy + PNG": lambda films, out: [sys.executable, str(peer_script), str(films),
                                                            weights, str(out)],
        }  # fmt: skip
        chosen = [side for side in sides if not only or any(side.startswith(o) for o in only)]
        times: dict[tuple[str, int], list[float]] = {}
        peaks: dict[tuple[str, int], float] = {}
        for n in counts:
            films = tmp / f"films{n}"
            write_films(films, n)
            for run in range(repeat):
                for side in chosen:
                    out = tmp / f"out-{n}-{run}-{side.replace(' ', '_')}"
                    seconds, peak = timed_with_peak(sides[side](films, out), env)
                    times.setdefault((side, n), []).append(seconds)
                    peaks[side, n] = max(peaks.get((side, n), 0.0), peak)
                    shutil.rmtree(out, ignore_errors=True)
        med = {key: median(values) for key, values in times.items()}
        print(f"Separate 512 x 512 chest films, ResNet-18 at 256, five seed maps; median of {repeat}")
        print("| Whole process | " + " | ".join(f"{n} films" for n in counts) + " |")
        print("|---|" + "---|" * len(counts))
        for side in chosen:
            cells = [f"{med[side, n]:.1f} s ({med[side, n] / n * 1000:.0f} ms/film)" for n in counts]
            print(f"| {side} | " + " | ".join(cells) + " |")
        pairs = [
            (ours, peer)
            for ours in ("ours", "ours --previews none")
            for peer in ("peer, writing nothing", "peer, writing .npy + PNG")
            if ours in chosen and peer in chosen
        ]
        for ours, peer in pairs:
            cells = [f"{med[ours, n] / med[peer, n]:.2f}x" for n in counts]
            print(f"| {ours} / {peer} | " + " | ".join(cells) + " |")
        print("| Peak resident memory | " + " | ".join(f"{n} films" for n in counts) + " |")
        for side in chosen:
            print(f"| {side} | " + " | ".join(f"{peaks[side, n]:.0f} MiB" for n in counts) + " |")
        if len(counts) > 1:
            ordered = sorted(counts)
            print("Per film, steady state (slope between successive N):")
            for side in chosen:
                steps = [
                    f"{a}->{b}: {(med[side, b] - med[side, a]) / (b - a) * 1000:.0f} ms"
                    for a, b in pairwise(ordered)
                ]
                print(f"  {side}: " + ", ".join(steps))
            a, b = ordered[0], ordered[-1]
            slope = {side: (med[side, b] - med[side, a]) / (b - a) for side in chosen}
            for ours, peer in pairs:
                print(f"  {ours} / {peer} ({a} -> {b}): {slope[ours] / slope[peer]:.2f}x")


def timed_with_peak(command: list[str], env: dict) -> tuple[float, float]:
    """Seconds and the peak resident memory (MiB) of one child process, started on its own."""
    script = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "seconds = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "sys.stderr.write(done.stderr[-2000:]) if done.returncode else None\n"
        "print(seconds, peak, done.returncode)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *command], env=env, capture_output=True, text=True)
    seconds, peak, code = done.stdout.split()
    if code != "0":
        raise SystemExit(f"{command[:3]} failed:\n{done.stderr}")
    return float(seconds), float(peak)


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
    parser.add_argument("--films", type=int, action="append", help="separate films instead (repeatable)")
    parser.add_argument("--sides", action="append", help="with --films: rows starting so (repeatable)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "QT_QPA_PLATFORM": "offscreen"}
    if args.films:
        films_bench(sorted(set(args.films)), args.repeat, env, args.sides)
        return 0

    from viewer.inference.catalog import bundled_models
    from viewer.phantoms.studies import write_ct_set

    manifest = bundled_models()["ct_resnet18"]
    weights = str(Path(manifest).parent / "weights.safetensors")
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
