"""Build the standalone Saliency Viewer: a PyInstaller one-folder bundle with CPU-only torch.

    python installer/build.py                  # build venv, bundle, Linux tarball
    python installer/build.py --no-archive     # the bundle folder only
    python installer/build.py --self-test      # ... then run the bundle's --self-test
    python installer/build.py --startup 3      # ... then time 3 starts (to the first image shown)

Steps:

1. A build environment of its own, ``build/installer/venv``, with the **CPU** build of torch. The
   developer venv may hold PyPI's CUDA build, whose libtorch_cpu.so alone links libcudart and
   libcupti (about 4 GB of CUDA libraries that a CPU viewer never uses), so the bundle cannot
   simply leave them out. CPU torch comes from a local ``torch-*+cpu`` wheel in pip's
   configured find-links (an offline wheelhouse), else from PyTorch's CPU index.
2. The project's runtime dependencies from ``pyproject.toml``, plus PyInstaller. The bundle takes
   ``viewer`` from this source tree, with ``resources/`` and the bundled ``models/``.
3. ``pyinstaller installer/saliency_viewer.spec`` -> ``dist/SaliencyViewer/``.
4. On Linux, ``dist/saliency-viewer-<version>-linux-<arch>.tar.gz`` with the bundle, a ``.desktop``
   entry, the icon and ``install-desktop-entry.sh``. Windows (Inno Setup,
   ``installer/windows/saliency-viewer.iss``) and macOS (the spec's ``BUNDLE``) are built on those
   systems from the same spec.

When torchvision's compiled ops cannot load beside CPU torch (the only torchvision on hand was
built against CUDA torch), they are left out, and a runtime hook declares the two op schemas
torchvision's import insists on and gives NMS, the one compiled op detectors need (RoIAlign has
torchvision's own Python fallback), a kernel in plain torch
(``installer/hooks/rthook_torchvision_schemas.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALLER = ROOT / "installer"
BUILD = ROOT / "build" / "installer"
DIST = ROOT / "dist"
APP = "SaliencyViewer"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# torchvision's minor version has followed torch's by 15 since torch 2.0 / torchvision 0.15.
TORCHVISION_MINOR_OFFSET = 15
SAMPLE_FOR_STARTUP = ("samples", "dicom", "cxr_0001.dcm")

sys.path.insert(0, str(INSTALLER))
from frozen_modules import model_extras  # noqa: E402


def run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    print("+", shlex.join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def venv_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def project_version() -> str:
    text = (ROOT / "viewer" / "__init__.py").read_text()
    return re.search(r'__version__\s*=\s*"([^"]+)"', text).group(1)


# --- 1. build environment ---------------------------------------------------------------------


def pip_find_links(python: Path) -> list[Path]:
    """Folders pip is configured to search for wheels (``find-links`` in any pip config or env)."""
    out = subprocess.run(
        [str(python), "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    folders = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("find-links"):
            folders += [Path(v.removeprefix("file://")) for v in value.strip("'\"").split()]
    folders += [Path(v) for v in os.environ.get("PIP_FIND_LINKS", "").split()]
    return [f for f in folders if f.is_dir()]


def local_cpu_torch_wheel(python: Path) -> Path | None:
    """The newest ``torch-X.Y.Z+cpu`` wheel for this Python and machine in pip's find-links."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    machine = platform.machine().lower()
    wheels = [
        w
        for folder in pip_find_links(python)
        for w in folder.glob(f"torch-*+cpu-{tag}-{tag}-*.whl")
        if machine in w.name.lower()
    ]

    def version(wheel: Path) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", wheel.name.split("-")[1].split("+")[0]))

    return max(wheels, key=version, default=None)


def torch_info(python: Path) -> dict[str, str] | None:
    probe = "import torch; print(torch.__version__); print(torch.version.cuda or '')"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    if result.returncode:
        return None
    version, cuda = [*result.stdout.splitlines(), "", ""][:2]
    return {"version": version, "cuda": cuda}


def install_cpu_torch(python: Path) -> None:
    info = torch_info(python)
    if info and not info["cuda"]:
        print(f"build venv: torch {info['version']} (CPU) already installed")
        return
    wheel = local_cpu_torch_wheel(python)
    if wheel is None:
        run([python, "-m", "pip", "install", "torch", "torchvision", "--index-url", TORCH_CPU_INDEX])
        return
    major, minor = (int(p) for p in wheel.name.split("-")[1].split(".")[:2])
    torchvision = f"torchvision=={major - 2}.{minor + TORCHVISION_MINOR_OFFSET}.*"
    run([python, "-m", "pip", "install", wheel])
    # PyPI's torchvision for this torch; --no-deps so pip cannot swap in a CUDA torch for it.
    run([python, "-m", "pip", "install", "--no-deps", torchvision])


def runtime_requirements() -> list[str]:
    """The project's dependencies from pyproject.toml, less torch/torchvision (installed above)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [d for d in deps if re.split(r"[<>=!~ \[;]", d)[0].lower() not in {"torch", "torchvision"}]


def model_requirements() -> list[str]:
    """The requirements of the extras the bundled models need (MONAI for the segmenter): the
    frozen app has no pip, so a model it carries must find its library inside."""
    return [req for reqs in model_extras(ROOT).values() for req in reqs]


def ensure_build_env(env: Path) -> Path:
    python = venv_python(env)
    if not python.exists():
        venv.create(env, with_pip=True, clear=True)
        run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    install_cpu_torch(python)
    info = torch_info(python)
    if info is None or info["cuda"]:
        sys.exit(f"build venv {env} has no CPU build of torch ({info}); delete it and retry")
    # Pin what is installed so no dependency can pull a CUDA torch back in.
    pins = BUILD / "torch-pins.txt"
    frozen = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    pins.write_text("".join(f"{line}\n" for line in frozen.splitlines() if line.startswith("torch")))
    requirements = [*runtime_requirements(), *model_requirements()]
    run([python, "-m", "pip", "install", "--quiet", "-c", pins, "pyinstaller>=6.10", *requirements])
    return python


def torchvision_ops_load(python: Path) -> bool:
    result = subprocess.run(
        [str(python), "-c", "import torchvision; print(torchvision.extension._has_ops())"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "True"


# --- 2. icons ---------------------------------------------------------------------------------


def make_icons(python: Path, out: Path) -> None:
    """PNG sizes, .ico and .icns from the one SVG icon (rendered by Qt, packed by Pillow)."""
    out.mkdir(parents=True, exist_ok=True)
    run([python, INSTALLER / "make_icons.py", ROOT / "resources" / "icons" / "saliency-viewer.svg", out])


# --- 3. bundle and 4. package -----------------------------------------------------------------


def build_bundle(python: Path, icons: Path, torchvision_ops: bool) -> Path:
    env = dict(
        os.environ,
        SV_ICONS=str(icons),
        SV_TORCHVISION_OPS="1" if torchvision_ops else "0",
        QT_QPA_PLATFORM="offscreen",
    )
    work = BUILD / "work"
    spec = INSTALLER / "saliency_viewer.spec"
    options = ["--noconfirm", "--clean", "--log-level", "WARN", "--distpath", DIST, "--workpath", work]
    run([python, "-m", "PyInstaller", *options, spec], env=env)
    return DIST / APP


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def linux_archive(bundle: Path, icons: Path) -> Path:
    name = f"saliency-viewer-{project_version()}-linux-{platform.machine()}"
    staging = DIST / name
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    linux = INSTALLER / "linux"
    shutil.copy2(linux / "saliency-viewer.desktop", staging)
    shutil.copy2(linux / "install-desktop-entry.sh", staging)
    shutil.copy2(icons / "saliency-viewer-256.png", staging / "saliency-viewer.png")
    archive = DIST / f"{name}.tar.gz"
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(staging, arcname=name)
        tar.add(bundle, arcname=f"{name}/{APP}")
    tmp.replace(archive)
    shutil.rmtree(staging)
    return archive


def executable(bundle: Path) -> Path:
    return bundle / (f"{APP}.exe" if os.name == "nt" else APP)


def self_test(bundle: Path) -> int:
    """The frozen app's ``--self-test`` (every bundled model on the samples); its exit code."""
    began = time.perf_counter()
    code = subprocess.run([str(executable(bundle)), "--self-test"], check=False).returncode
    print(f"bundle --self-test: {'passed' if code == 0 else f'FAILED (exit {code})'} "
          f"in {time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
    return code


def drop_page_cache() -> bool:
    """Empty Linux's page cache (root only), so the next start reads the bundle from disk."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def startup_times(bundle: Path, runs: int, cold: bool = False) -> list[float]:
    """Seconds from launching the bundle to its first image drawn (``--quit-on-first-image``);
    ``cold``: with the page cache emptied before each start."""
    sample = bundle / "_internal" / "resources" / Path(*SAMPLE_FOR_STARTUP)
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    times = []
    for _ in range(runs):
        if cold and not drop_page_cache():
            raise PermissionError("cannot empty the page cache (needs root on Linux)")
        start, shown = time.perf_counter(), None
        with subprocess.Popen(
            [str(executable(bundle)), "--quit-on-first-image", str(sample)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        ) as app:
            for line in app.stdout:
                if line.startswith("first image shown"):
                    shown = time.perf_counter() - start
        if app.returncode or shown is None:
            sys.exit(f"the bundle did not show the sample ({executable(bundle)}, exit {app.returncode})")
        times.append(shown)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--venv", type=Path, default=BUILD / "venv", help="build environment")
    parser.add_argument("--no-archive", action="store_true", help="skip the Linux tarball")
    parser.add_argument("--self-test", action="store_true", help="run the bundle's --self-test")
    parser.add_argument("--startup", type=int, default=0, metavar="N", help="time N starts of the bundle")
    args = parser.parse_args()

    BUILD.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    python = ensure_build_env(args.venv)
    ops = torchvision_ops_load(python)
    if not ops:
        print("torchvision's compiled ops do not load beside CPU torch: bundling torchvision.models only")
    icons = BUILD / "icons"
    make_icons(python, icons)
    bundle = build_bundle(python, icons, ops)
    print(f"bundle: {bundle} ({folder_size(bundle) / 2**20:.0f} MiB)")
    if sys.platform.startswith("linux") and not args.no_archive:
        archive = linux_archive(bundle, icons)
        print(f"archive: {archive} ({archive.stat().st_size / 2**20:.0f} MiB)")
    print(f"built in {time.perf_counter() - began:.0f} s")
    if args.startup:
        kinds = {"warm": False}
        if drop_page_cache():
            kinds = {"cold (page cache emptied)": True, **kinds}
        for kind, cold in kinds.items():
            times = startup_times(bundle, args.startup, cold)
            print(
                f"start to first image, {kind}: {statistics.median(times):.2f} s median of "
                + ", ".join(f"{t:.2f}" for t in times)
            )
    if args.self_test:
        return self_test(bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
