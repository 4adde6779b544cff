"""Benchmark: discovery + loading against plain pydicom and plain SimpleITK, in the same run.

    python tests/perf/bench_io.py [--slices 200] [--repeats 3]

Cases: a 2048 x 2048 12-bit radiograph (uncompressed, and JPEG 2000 lossless), and a generated
CT series of 512 x 512 slices. Every reader produces the same thing, real-world values as a
float32 array, and runs in its own fresh process so its peak memory is its own. Prints seconds
(best of the repeats, warm file cache), ratios to the faster peer, and the peak memory added
over the process baseline as a multiple of the output array's bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> int:
    """Reset the peak-RSS mark (a child inherits its parent's otherwise); returns the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS")


# --- the readers under test: each returns a float32 array in real-world units -------------------


def read_ours(folder: Path) -> np.ndarray:
    from viewer.io import discover, load_series

    found = discover([folder])
    return load_series(found.series[0]).pixels


def read_pydicom(folder: Path) -> np.ndarray:
    import pydicom

    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    if len(datasets) > 1:
        datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    first = datasets[0]
    slope, intercept = float(first.get("RescaleSlope", 1)), float(first.get("RescaleIntercept", 0))
    volume = np.empty((len(datasets), first.Rows, first.Columns), np.float32)
    for k, ds in enumerate(datasets):
        np.multiply(ds.pixel_array, slope, out=volume[k], casting="unsafe")
        volume[k] += intercept
    return volume


def read_simpleitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    files = sorted(str(p) for p in folder.iterdir())
    if len(files) == 1:
        image = sitk.ReadImage(files[0], sitk.sitkFloat32)
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        reader.SetOutputPixelType(sitk.sitkFloat32)
        image = reader.Execute()
    # A view on SimpleITK's buffer (no copy), valid only while ``image`` lives: keep both.
    return _Held(sitk.GetArrayViewFromImage(image), image)


class _Held(np.ndarray):
    """An array view that keeps the object owning its buffer alive."""

    def __new__(cls, view: np.ndarray, owner: object):
        held = view.view(cls)
        held.owner = owner
        return held


def discover_ours(folder: Path) -> np.ndarray:
    from viewer.io import discover

    found = discover([folder])
    return np.zeros(sum(len(s.records) for s in found.series), np.float32)


def discover_pydicom(folder: Path) -> np.ndarray:
    """Headers only, as a viewer's series browser needs them."""
    import pydicom

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    return np.zeros(len(headers), np.float32)


def discover_simpleitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    return np.zeros(len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))), np.float32)


READERS = {"saliency-viewer": read_ours, "pydicom": read_pydicom, "SimpleITK": read_simpleitk}
DISCOVERERS = {"saliency-viewer": discover_ours, "pydicom": discover_pydicom, "SimpleITK": discover_simpleitk}


def measure(reader: str, folder: Path, repeats: int) -> dict:
    """Run in a fresh process: import, warm up once, then time ``repeats`` runs."""
    kind, _, name = reader.partition(":")
    fn = (DISCOVERERS if kind == "discover" else READERS)[name]
    fn(folder)  # warm-up: imports, decoder workers, file cache
    import gc

    gc.collect()
    times, extra_peaks = [], []
    for _ in range(repeats):
        baseline = _reset_peak()
        start = time.perf_counter()
        array = fn(folder)
        times.append(time.perf_counter() - start)
        extra_peaks.append(_status_bytes("VmHWM") - baseline)
        nbytes = array.size * 4
        checksum = float(np.asarray(array, np.float64).sum())
        del array
        gc.collect()
    return {"seconds": min(times), "extra_peak": max(extra_peaks), "nbytes": nbytes, "checksum": checksum}


def _measure_in_subprocess(reader: str, folder: Path, repeats: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", reader, str(folder), "--repeats", str(repeats)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_data(root: Path, slices: int) -> dict[str, Path]:
    from pydicom import dcmread
    from pydicom.uid import JPEG2000Lossless

    from tests.synthetic import head_volume
    from viewer.io.dicom_writer import write_ct_series, write_radiograph

    rng = np.random.default_rng(0)
    xx = np.linspace(0, 1, 2048)[None, :]
    chest = 0.35 + 0.3 * np.exp(-((xx - 0.5) ** 2) / 0.02) + 0.05 * rng.standard_normal((2048, 2048))
    cases = {"radiograph 2048x2048": root / "cxr", "radiograph 2048x2048 J2K": root / "cxr_j2k"}
    write_radiograph(np.clip(chest, 0, 1), cases["radiograph 2048x2048"] / "cxr.dcm", window=(2048, 4096))
    ds = dcmread(cases["radiograph 2048x2048"] / "cxr.dcm")
    ds.compress(JPEG2000Lossless)
    (root / "cxr_j2k").mkdir()
    ds.save_as(cases["radiograph 2048x2048 J2K"] / "cxr.dcm")
    label = f"CT {slices} x 512x512"
    cases[label] = root / "ct"
    write_ct_series(head_volume(slices, 512), cases[label], spacing=(1.0, 0.45, 0.45))
    # Discovery only: a folder of 1,000 small slices.
    cases["discover 1000 files"] = root / "many"
    write_ct_series(head_volume(1000, 32), cases["discover 1000 files"], spacing=(1.0, 5.0, 5.0))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--measure", nargs=2, metavar=("READER", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), args.repeats)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        cases = make_data(Path(tmp), args.slices)
        print(f"{'case':28s} {'reader':16s} {'seconds':>8s} {'vs best peer':>12s} {'peak / array':>12s}")
        for label, folder in cases.items():
            kind = "discover:" if label.startswith("discover") else "read:"
            results = {r: _measure_in_subprocess(kind + r, folder, args.repeats) for r in READERS}
            checksums = {round(r["checksum"], 0) for r in results.values()}
            if kind == "discover:":
                checksums = {r["nbytes"] for r in results.values()}  # same number of files found
            best_peer = min(results["pydicom"]["seconds"], results["SimpleITK"]["seconds"])
            for reader, r in results.items():
                ratio = r["seconds"] / best_peer
                memory = "" if kind == "discover:" else f"{r['extra_peak'] / r['nbytes']:11.2f}x"
                print(f"{label:28s} {reader:16s} {r['seconds']:8.3f} {ratio:11.2f}x {memory}")
            if len(checksums) != 1:
                print(f"  WARNING: readers disagree on the pixel values: {checksums}")
            print()


if __name__ == "__main__":
    main()
