"""Retrieval speed from a real Orthanc on loopback, against Orthanc's own REST download, same run.

    python tests/perf/bench_pacs.py              # the bundled 28-slice CT and a generated 200-slice CT
    python tests/perf/bench_pacs.py --slices 500

For each series: Orthanc's REST ZIP download of the series (``GET /series/{id}/archive``, the
reference), then the viewer's retrieval into an empty cache by DICOMweb (WADO-RS), C-GET and
C-MOVE, each written to disk one file per instance. Prints seconds (best of ``--repeat``), the
ratio to the REST download, and the time until the first instance is in the cache.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pacs.conftest import nodes_of
from tests.pacs.orthanc import Orthanc, dicomweb_plugin, orthanc_executable
from tests.pacs.perf_series import write_series
from viewer.cli.info import sample_studies
from viewer.io.pacs import StudyCache, connect, retrieve_study


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
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
