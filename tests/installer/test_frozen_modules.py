"""What the PyInstaller spec puts in the bundle, without building it: every module the viewer
imports by name (a bundle without one fails at its first start: ``No module named
'viewer.io.annotation_formats.phantom_json'``), and every bundled model's files.

The spec runs here with PyInstaller's functions stubbed, so these tests see the same lists the
real build gets."""

from __future__ import annotations

import importlib.util
import json
import os
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import viewer
from tests.installer.bundled import LEFT_OUT, MODELS
from viewer.io import annotation_formats

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer"


@pytest.fixture(scope="module")
def frozen_modules():
    spec = importlib.util.spec_from_file_location("frozen_modules", INSTALLER / "frozen_modules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def analysis() -> dict:
    """The keyword arguments the spec gives PyInstaller's ``Analysis`` (hiddenimports, datas, ...)."""
    captured: dict = {}

    class Analysis:
        def __init__(self, scripts, **kwargs):
            captured.update(kwargs, scripts=scripts)
            self.binaries, self.datas, self.pure, self.scripts = [], [], [], []

    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda package, **kwargs: [f"{package}.stub"]
    hooks.copy_metadata = lambda dist, **kwargs: []
    stubs = {
        "PyInstaller": types.ModuleType("PyInstaller"),
        "PyInstaller.utils": types.ModuleType("PyInstaller.utils"),
        "PyInstaller.utils.hooks": hooks,
    }
    saved_path, saved_modules = list(sys.path), {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    spec = INSTALLER / "saliency_viewer.spec"
    namespace = {"SPECPATH": str(INSTALLER), "__file__": str(spec), "Analysis": Analysis}
    namespace |= {name: lambda *args, **kwargs: None for name in ("PYZ", "EXE", "COLLECT", "BUNDLE")}
    try:
        exec(compile(spec.read_text(), str(spec), "exec"), namespace)
    finally:
        sys.path[:] = saved_path
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return captured


# Imports every module of the viewer in a fresh interpreter, recording each module that
# importlib.import_module / __import__ is asked for by name, and prints those of the viewer.
_RECORD_BY_NAME = """
import builtins, importlib, json, sys
asked = set()
real_import_module, real_import = importlib.import_module, builtins.__import__
def import_module(name, package=None):
    asked.add(importlib.util.resolve_name(name, package) if name.startswith(".") else name)
    return real_import_module(name, package)
importlib.import_module = import_module
failed = {}
for module in json.loads(sys.argv[1]):
    try:
        real_import_module(module)
    except Exception as exc:
        failed[module] = repr(exc)
print(json.dumps({"asked": sorted(n for n in asked if n.split(".")[0] == "viewer"), "failed": failed}))
"""


def test_every_module_imported_by_name_is_a_hidden_import(frozen_modules, analysis, tmp_path):
    modules = [m for m in frozen_modules.package_modules() if m != "viewer.__main__"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", _RECORD_BY_NAME, json.dumps(modules)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    recorded = json.loads(result.stdout.splitlines()[-1])
    assert not recorded["failed"], recorded["failed"]
    assert "viewer.io.annotation_formats.phantom_json" in recorded["asked"]  # the one that broke it
    hidden = set(analysis["hiddenimports"])
    assert set(recorded["asked"]) <= hidden, sorted(set(recorded["asked"]) - hidden)
    # Registries read from their own lists, as the build reads them.
    by_registry = frozen_modules.registry_imports()
    formats = [f"viewer.io.annotation_formats.{name}" for name in annotation_formats._MODULES]
    assert by_registry["viewer.io.annotation_formats"] == formats
    assert set(recorded["asked"]) <= {m for names in by_registry.values() for m in names}


def test_hidden_imports_are_every_module_collect_submodules_finds(frozen_modules, analysis):
    """The source-file walk finds what PyInstaller's ``collect_submodules("viewer")`` (a pkgutil
    walk that imports each subpackage) would, and all of it goes to the spec."""
    walked = {"viewer"} | {m.name for m in pkgutil.walk_packages(viewer.__path__, "viewer.")}
    assert set(frozen_modules.package_modules()) == walked
    assert walked <= set(analysis["hiddenimports"])
    assert "pydicom.pixels.stub" in analysis["hiddenimports"]  # the pixel decoders stay


def test_a_by_name_import_the_build_cannot_read_stops_it(frozen_modules, tmp_path):
    package = tmp_path / "viewer"
    (package / "formats").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "formats" / "a.py").write_text("")
    registry = package / "formats" / "__init__.py"
    loop = 'for _m in _MODULES:\n    importlib.import_module(f"{__name__}.{_m}")\n'
    registry.write_text(f'import importlib\n_MODULES = ("a", "b")\n{loop}')
    listed = frozen_modules.registry_imports(tmp_path)["viewer.formats"]
    assert listed == ["viewer.formats.a", "viewer.formats.b"]
    with pytest.raises(frozen_modules.RegistryError, match=r"viewer\.formats\.b \(listed by viewer\.formats"):
        frozen_modules.hidden_imports(tmp_path)
    registry.write_text('import importlib\ndef load(x):\n    return importlib.import_module("viewer." + x)\n')
    with pytest.raises(frozen_modules.RegistryError, match=r"formats/__init__\.py:3"):
        frozen_modules.registry_imports(tmp_path)
    # Optional libraries imported by name (the model families) are no registry of the viewer's.
    registry.write_text("import importlib\ndef require(name):\n    return importlib.import_module(name)\n")
    assert frozen_modules.registry_imports(tmp_path) == {}


def test_spec_bundles_every_model_file_and_no_training_script(analysis):
    bundled = {(Path(src).name, dest) for src, dest in analysis["datas"]}
    assert MODELS, "no bundled models in the checkout"
    for model in MODELS:
        for file in model.iterdir():
            assert (file.name, f"models/{model.name}") in bundled
    assert LEFT_OUT and not [dest for _, dest in analysis["datas"] if dest.split("/")[-1] in LEFT_OUT]
    assert not any(src.endswith(".py") for src, _ in analysis["datas"])
    assert (str(ROOT / "resources" / "samples"), "resources/samples") in analysis["datas"]


def test_the_library_of_each_bundled_models_family_goes_into_the_build(frozen_modules, analysis):
    """CI's frozen app once carried the MONAI segmenter without MONAI, and failed on it. Every
    bundled model's family must be buildable from the bundle: torchvision's, or an extra the build
    venv installs and the spec collects (an import by name inside the library included)."""
    import tomllib

    from viewer.inference.architectures import EXTRAS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    families = {
        tomllib.loads((m / "manifest.toml").read_text())["network"]["arch"].split(":", 1)[0] for m in MODELS
    }
    assert "monai" in families  # the segmenter is bundled
    needed = frozen_modules.model_extras()
    assert set(needed) == families & set(extras)
    assert needed["monai"] == extras["monai"]
    for module, extra in EXTRAS.items():
        assert (f"{module}.stub" in analysis["hiddenimports"]) == (extra in needed), module
