"""Retrieval speed from a real Orthanc on loopback, against Orthanc's own REST download, same run.

    python tests/perf/bench_pacs.py              # the bundled 28-slice CT and a generated 200-slice CT
    python tests/perf/bench_pacs.py --slices 500

For each series: Orthanc's REST ZIP download of the series (``GET /series/{id}/archive``, the
reference), then the viewer's retrieval into an empty cache by DICOMweb (WADO-RS), C-GET and
C-MOVE, each written to disk one file per instance. Prints seconds (best of ``--repeat``), the
ratio to the REST download, and the time until the first instance is in the cache.

Then the time to the first image shown by the viewer (``saliency-viewer --quit-on-first-image``,
a new process each time, offscreen) given a study URL, against the same viewer opening the files
Orthanc's REST download put on disk (download, unpack, open): for the generated series alone, and
for a study whose 20-slice first series is followed by the generated one, shown while the rest
is still arriving.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pacs.orthanc import Orthanc, dicomweb_plugin, orthanc_executable
from tests.pacs.perf_series import write_series
from tests.pacs.servers import nodes_of
from viewer.cli.info import sample_studies
from viewer.io.dicom_writer import StudyInfo, write_ct_series
from viewer.io.pacs import PacsConfig, StudyCache, connect, retrieve_study
from viewer.io.pacs.nodes import save_config


def _rest_download(server: Orthanc, series_uid: str, out: Path) -> float:
    (found,) = requests.post(
        server.base + "/tools/find",
        json={"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}},
        timeout=30,
    ).json()
    start = time.perf_counter()
    with requests.get(f"{server.base}/series/{found}/archive", stream=True, timeout=600) as answer:
        answer.raise_for_status()
        with open(out / "series.zip", "wb") as f:
            for block in answer.iter_content(1 << 20):
                f.write(block)
    return time.perf_counter() - start


def _viewer(server: Orthanc, protocol: str, study_uid: str, out: Path) -> tuple[float, float]:
    cache = StudyCache(out, 1 << 40)
    first: list[float] = []
    start = time.perf_counter()
    connection = connect(nodes_of(server)[protocol])

    def progress(_):
        if not first:
            first.append(time.perf_counter() - start)

    retrieve_study(connection, cache, study_uid, on_progress=progress)
    return time.perf_counter() - start, first[0]


def _first_image(target: str, env: dict) -> float:
    """Seconds from starting the viewer on ``target`` to its first image painted."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "viewer", "--quit-on-first-image", target],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if "first image shown" not in done.stdout:
        raise RuntimeError(f"{target}: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - start


def _shown(server: Orthanc, tmp: Path, slices: int, repeat: int) -> None:
    study = StudyInfo(patient_name="Two^Series", patient_id="BENCH-2", study_description="lead + long")
    rng = np.random.default_rng(1)
    files = {}
    for number, (name, count) in enumerate((("Lead", 20), ("Long", slices)), 1):
        hu = rng.normal(40, 20, (count, 512, 512)).astype(np.float32)
        files[name] = write_ct_series(
            hu, tmp / name, study=study, series_number=number, series_description=name
        )
    server.upload(files["Lead"] + files["Long"])
    uid = {k: str(pydicom.dcmread(v[0], stop_before_pixels=True).SeriesInstanceUID) for k, v in files.items()}
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp / "config")}
    print(f"\n{'first image shown':<44}{'seconds':>9}{'x disk':>8}")
    cases = ((f"{slices}-slice series", [uid["Long"]]), (f"20 + {slices} slices, 2 series", None))
    for name, series in cases:
        rows = {}
        for method in ("REST zip + open", "web", "get"):
            best = float("inf")
            for _ in range(repeat):
                cache = tmp / "cache"
                shutil.rmtree(cache, ignore_errors=True)
                config = PacsConfig(nodes_of(server), cache, 100.0)
                env["SALIENCY_VIEWER_PACS"] = str(save_config(config, tmp / "pacs.toml"))
                if method == "REST zip + open":  # the peer workflow: download, unpack, open
                    out = tmp / "download"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    start = time.perf_counter()
                    for one in series or [uid["Lead"], uid["Long"]]:
                        _rest_download(server, one, out)
                        shutil.unpack_archive(out / "series.zip", out / one)
                    seconds = time.perf_counter() - start + _first_image(str(out), env)
                else:
                    tail = f"/series/{series[0]}" if method == "web" and series else ""
                    tail = f"/{series[0]}" if method == "get" and series else tail
                    base = f"{server.dicomweb}/studies/" if method == "web" else "pacs://get/"
                    seconds = _first_image(base + study.uid() + tail, env)
                best = min(best, seconds)
            rows[method] = best
            print(f"{name + ', ' + method:<44}{best:9.2f}{best / rows['REST zip + open']:8.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    executable, plugin = orthanc_executable(), dicomweb_plugin()
    if not executable or not plugin:
        print("needs Orthanc and its DICOMweb plugin (Debian: orthanc orthanc-dicomweb)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = Orthanc(executable, plugin, tmp / "orthanc").start()
        try:
            ct = sorted((sample_studies() / "ct_0001").glob("*.dcm"))
            generated = write_series(tmp / "generated", args.slices, 512)
            server.upload(ct + generated)
            print(f"{'series':<28}{'method':<12}{'seconds':>9}{'x REST':>8}{'first (s)':>11}")
            for name, files in (
                (f"bundled CT, {len(ct)} slices", ct),
                (f"generated CT, {args.slices} slices", generated),
            ):
                header = pydicom.dcmread(files[0], stop_before_pixels=True)
                study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
                times = {}
                for method in ("REST zip", "web", "get", "move"):
                    best, first = float("inf"), float("nan")
                    for _ in range(args.repeat):
                        out = tmp / "out"
                        shutil.rmtree(out, ignore_errors=True)
                        out.mkdir()
                        if method == "REST zip":
                            seconds = _rest_download(server, series, out)
                        else:
                            seconds, first_at = _viewer(server, method, study, out)
                            first = min(first, first_at) if first == first else first_at
                        best = min(best, seconds)
                    times[method] = best
                    ratio = best / times["REST zip"]
                    shown = f"{first:11.3f}" if method != "REST zip" else f"{'':>11}"
                    print(f"{name:<28}{method:<12}{best:9.3f}{ratio:8.2f}{shown}")
            _shown(server, tmp, args.slices, args.repeat)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
