"""MPR and whole-series explanation speed, against SimpleITK and the per-slice loop, same run.

    python tests/perf/bench_mpr.py                    # 200 x 512 x 512 volume, 48 slices explained
    python tests/perf/bench_mpr.py --explain-slices 200

Reformatting: the viewer's :class:`~viewer.io.mpr.Reformat` (a view of the array, planes cut by
indexing) against SimpleITK reorienting the same volume with ``DICOMOrient`` and cutting planes
from its array (the planes are checked equal). A volume with a missing slice, which SimpleITK
cannot hold as one image, is timed for the viewer alone (it resamples along the slice axis).
Memory is the peak the reformat and three planes allocate (tracemalloc, which also sees
SimpleITK's buffers through numpy), as a multiple of the volume's size.

Whole-series explanation on the bundled CT model: Grad-CAM and Guided Grad-CAM over the slices
in one engine call, and through the GUI's progressive path (chunks nearest the slice on screen
first, layers refreshed after each), against calling the engine once per slice, as a notebook
loop does. Best of ``--repeat``, seconds per slice.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf.bench_explain import best_of as best
from viewer.explain.engine import explain
from viewer.inference.catalog import bundled_models
from viewer.inference.model import LoadedModel
from viewer.io.image import FrameInfo, Geometry, Identity, Image
from viewer.io.mpr import Reformat
from viewer.state import tasks
from viewer.state.runner import Job


def volume(slices: int, size: int, *, gap: bool = False) -> Image:
    """An axial CT-like volume in memory, 2.5 mm slices (one 5 mm step with ``gap``)."""
    rng = np.random.default_rng(0)
    pixels = rng.normal(40, 20, (slices, size, size)).astype(np.float32)
    heights = np.arange(slices) * 2.5 + (np.arange(slices) >= slices // 2) * (2.5 if gap else 0.0)
    frames = tuple(FrameInfo(f"memory:{k}", position=(0.0, 0.0, float(z))) for k, z in enumerate(heights))
    geometry = Geometry((2.5, 0.5, 0.5), "PixelSpacing", (0.0, 0.0, 0.0))
    return Image(pixels, "MONOCHROME2", geometry, Identity(modality="CT"), frames, is_volume=True, units="HU")


def ours(image: Image) -> list[np.ndarray]:
    reformat = Reformat.of(image)
    display = reformat.display(image.pixels)
    middle = [n // 2 for n in reformat.shape]
    return [
        reformat.plane(display, p, i) for p, i in zip(("axial", "coronal", "sagittal"), middle, strict=True)
    ]


def simpleitk(image: Image) -> list[np.ndarray]:
    """The same planes by SimpleITK: the volume reoriented with ``DICOMOrient`` (an image of
    evenly spaced slices: SimpleITK has no unevenly spaced volumes), planes cut from its array."""
    volume = sitk.GetImageFromArray(image.pixels, isVector=False)
    volume.SetSpacing((0.5, 0.5, 2.5))
    # Axes increasing towards the left, posterior and inferior: the viewer's display volume.
    oriented = sitk.DICOMOrient(volume, "LPI")
    array = sitk.GetArrayFromImage(oriented)
    middle = [n // 2 for n in array.shape]
    return [array[middle[0]].copy(), array[:, middle[1]].copy(), array[:, :, middle[2]].copy()]


def peak_memory(fn, image: Image) -> float:
    tracemalloc.start()
    fn(image)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / image.pixels.nbytes


def plane_times(image: Image, repeat: int) -> dict[str, float]:
    reformat = Reformat.of(image)
    display = reformat.display(image.pixels)
    out = {}
    for plane, axis in (("axial", 0), ("coronal", 1), ("sagittal", 2)):
        indices = np.linspace(0, reformat.shape[axis] - 1, 50).astype(int)

        def cut(plane=plane, indices=indices):
            for i in indices:
                reformat.plane(display, plane, int(i))

        out[plane] = best(cut, repeat) / len(indices)
    return out


class _Job:
    """What the tasks need of a job, outside a runner."""

    def __init__(self):
        self.cancel = Job("bench", lambda job: None).cancel

    def progress(self, *_args) -> None:
        pass

    def emit(self, *_args) -> None:
        pass

    def check(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--explain-slices", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(
        f"reformat of a {args.slices} x {args.size} x {args.size} float32 volume, 3 planes through its middle"
    )
    header = f"{'volume':<22}{'viewer (s)':>12}{'SimpleITK (s)':>15}{'ratio':>8}"
    print(header + f"{'viewer memory':>15}{'SimpleITK memory':>18}")
    image = volume(args.slices, args.size)
    for a, b in zip(ours(image), simpleitk(image), strict=True):  # the same planes
        np.testing.assert_array_equal(a, b)
    t_ours, t_sitk = best(lambda: ours(image), args.repeat), best(lambda: simpleitk(image), args.repeat)
    m_ours, m_sitk = peak_memory(ours, image), peak_memory(simpleitk, image)
    line = f"{'even spacing':<22}{t_ours:>12.4f}{t_sitk:>15.4f}{t_ours / t_sitk:>8.3f}"
    print(line + f"{m_ours:>14.2f}x{m_sitk:>17.2f}x")
    gapped = volume(args.slices, args.size, gap=True)
    t_gap, m_gap = best(lambda: ours(gapped), args.repeat), peak_memory(ours, gapped)
    print(
        f"{'one missing slice':<22}{t_gap:>12.4f}{'-':>15}{'-':>8}{m_gap:>14.2f}x   (resampled by the viewer)"
    )
    cuts = plane_times(volume(args.slices, args.size), args.repeat)
    print(
        "one plane cut from the display volume (ms): "
        + ", ".join(f"{p} {t * 1000:.2f}" for p, t in cuts.items())
    )

    manifest = bundled_models()["ct_resnet18"]
    model = LoadedModel.from_manifest(manifest, device="cpu")
    image = volume(args.explain_slices, args.size)
    store = tasks.ModelStore()
    store.put(model)
    target = [model.manifest.labels[0]]
    print(
        f"\nwhole-series explanation, {args.explain_slices} slices of {args.size} x {args.size}, "
        "ct_resnet18 on the CPU (s per slice)"
    )
    print(f"{'method':<16}{'one call':>10}{'progressive':>13}{'per-slice loop':>16}{'loop / call':>13}")
    for method in ("gradcam", "guided-gradcam"):
        call = best(lambda m=method: explain(model, image, [m], targets=target), args.repeat)

        def progressive_run(m=method):
            tasks.explain_series(
                _Job(), store, manifest, image, [m], target, show=True, around=image.n_frames // 2
            )

        def loop_run(m=method):
            for f in range(image.n_frames):
                explain(model, image, [m], targets=target, frames=[f])

        progressive = best(progressive_run, args.repeat)
        loop = best(loop_run, max(1, args.repeat - 1))
        n = image.n_frames
        print(f"{method:<16}{call / n:>10.4f}{progressive / n:>13.4f}{loop / n:>16.4f}{loop / call:>13.2f}")


if __name__ == "__main__":
    main()
