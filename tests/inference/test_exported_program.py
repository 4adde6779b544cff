"""``torch.export`` programs (``.pt2``): the same probabilities and maps as the eager module they
were exported from, layer names as the user wrote them, and nothing in the file run but pure
tensor operators (item 2a of issue 42)."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from tests.inference.layouts import seeded, write_manifest
from tests.inference.user_net import CustomNet
from viewer.explain import explain
from viewer.explain.registry import METHODS, get_method
from viewer.inference.doctor import check_model
from viewer.inference.exported_check import check_exported_program
from viewer.inference.manifest import ManifestError
from viewer.inference.model import LoadedModel
from viewer.inference.trust import UntrustedModelError
from viewer.inference.user_code import allow_user_code
from viewer.io import discover, load_series
from viewer.resources import resource_path

LABELS = ["a", "b", "c"]
METHOD_IDS = (
    "gradcam", "gradcam++", "gradient", "guided-backprop", "deconvnet", "integrated-gradients", "lime",
)  # fmt: skip
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def film():
    return load_series(discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series[0])


@pytest.fixture
def trust_store(tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_VIEWER_TRUST", str(tmp_path / "trusted.json"))


def export_pt2(module: torch.nn.Module, path: Path, batch: bool = True) -> Path:
    """What a user writes in a notebook: the module exported with a free batch dimension."""
    shapes = {"x": {0: torch.export.Dim("batch")}} if batch else None
    program = torch.export.export(module.eval(), (torch.randn(2, 3, 64, 64),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def maps_of(loaded: LoadedModel, film) -> dict[str, np.ndarray]:
    methods = [get_method(m, **METHODS[m].quick) for m in METHOD_IDS]
    result = explain(loaded, film, methods, targets=["a"], seed=3)
    return {m: result.get(m, "a").array for m in METHOD_IDS}


def assert_same_as_eager(program: LoadedModel, eager: LoadedModel, film) -> None:
    np.testing.assert_allclose(
        program.predict(film).probabilities, eager.predict(film).probabilities, rtol=1e-5, atol=1e-6
    )
    ours, theirs = maps_of(program, film), maps_of(eager, film)
    for method in METHOD_IDS:
        scale = float(np.abs(theirs[method]).max())
        assert scale > 0, method
        np.testing.assert_allclose(ours[method], theirs[method], atol=1e-4 * scale, err_msg=method)


def test_a_custom_module_as_a_program_explains_as_the_eager_module(tmp_path, film, trust_store):
    users = seeded(CustomNet())
    (tmp_path / "program").mkdir()
    export_pt2(users, tmp_path / "program" / "net.pt2")
    network = 'target_layer = "down"\n'
    program = LoadedModel.from_manifest(
        write_manifest(tmp_path / "program", "pt2", "net.pt2", labels=LABELS, network=network), "cpu"
    )
    # The eager twin: the user's own class (python:, with consent) and the same weights.
    (tmp_path / "eager").mkdir()
    shutil.copy(Path(__file__).with_name("user_net.py"), tmp_path / "eager" / "net.py")
    save_file(users.state_dict(), str(tmp_path / "eager" / "w.safetensors"))
    allow_user_code(True)
    try:
        eager = LoadedModel.from_manifest(
            write_manifest(
                tmp_path / "eager", "python:net.py:CustomNet", "w.safetensors", labels=LABELS, network=network
            ),
            "cpu",
        )
    finally:
        allow_user_code(False)
    assert program.family == "pt2" and program.hooks
    assert {"stem", "block", "block.1", "down", "head.score"} <= {
        n for n, _ in program.network.named_modules()
    }
    assert_same_as_eager(program, eager, film)


def test_torchvision_resnet18_as_a_program_explains_as_its_state_dict(tmp_path, film, trust_store):
    # torchvision's own initialisation: outputs that follow the input, so LIME's regression is
    # well posed (with near-constant outputs it fits float rounding).
    torch.manual_seed(0)
    users = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    export_pt2(users, tmp_path / "resnet.pt2")
    torch.save(users.state_dict(), tmp_path / "resnet.pth")
    program = LoadedModel.from_manifest(write_manifest(tmp_path, "pt2", "resnet.pt2", labels=LABELS), "cpu")
    (tmp_path / "twin").mkdir()
    shutil.copy(tmp_path / "resnet.pth", tmp_path / "twin")
    eager = LoadedModel.from_manifest(
        write_manifest(tmp_path / "twin", "resnet18", "resnet.pth", labels=LABELS), "cpu"
    )
    assert program.target_layer == eager.target_layer == "layer4"
    assert_same_as_eager(program, eager, film)
    report = check_model(tmp_path / "manifest.toml", film, image_name="cxr_0002.dcm", device="cpu")
    assert report.ok, report.text()
    assert "layer4" in report.text()


def test_arch_is_found_from_a_pt2_weights_file(tmp_path, trust_store):
    export_pt2(seeded(CustomNet()), tmp_path / "net.pt2")
    manifest = write_manifest(tmp_path, "pt2", "net.pt2", labels=LABELS)
    manifest.write_text(manifest.read_text().replace('arch = "pt2"\n', ""))
    assert LoadedModel.from_manifest(manifest, "cpu").family == "pt2"


def rewrite(source: Path, target: Path, change) -> Path:
    """A copy of the archive ``source`` with ``change(name, data) -> data`` applied to each member."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            new.writestr(info.filename, change(info.filename.partition("/")[2], old.read(info)))
    return target


def edit_program(edit):
    def change(name: str, data: bytes) -> bytes:
        if name.startswith("models/"):
            program = json.loads(data)
            edit(program)
            return json.dumps(program).encode()
        return data

    return change


def _retarget(program: dict) -> None:
    node = next(n for n in program["graph_module"]["graph"]["nodes"] if "relu" in n["target"])
    node["target"] = "torch.ops.aten.from_file.default"


def test_a_program_calling_a_non_pure_operator_is_refused_by_name(tmp_path, trust_store):
    good = export_pt2(seeded(CustomNet()), tmp_path / "good.pt2")
    rewrite(good, tmp_path / "net.pt2", edit_program(_retarget))
    check = check_exported_program(tmp_path / "net.pt2")
    assert not check.safe and "aten::from_file" in check.refused
    manifest = write_manifest(tmp_path, "pt2", "net.pt2", labels=LABELS)
    with pytest.raises(UntrustedModelError, match=r"aten::from_file") as caught:
        LoadedModel.from_manifest(manifest, "cpu")
    assert "aten::from_file" in caught.value.request.operators


def test_pickled_payloads_and_code_in_shape_expressions_are_refused(tmp_path, trust_store):
    good = export_pt2(seeded(CustomNet()), tmp_path / "good.pt2")

    def pickled(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    check = check_exported_program(rewrite(good, tmp_path / "pickled.pt2", pickled))
    assert any("pickled tensor" in what for what in check.refused)

    def expression(program: dict) -> None:
        program["range_constraints"]["__import__('os').system('true')"] = {"min_val": 0, "max_val": None}

    check = check_exported_program(rewrite(good, tmp_path / "expr.pt2", edit_program(expression)))
    assert any("shape expression" in what for what in check.refused)
    assert check_exported_program(good).safe  # its own symbol, Symbol('s..', positive=True), is plain


class _Sentinel:
    """Unpickled, creates the file it names: proves whether a pickle was ever loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_sample_inputs_and_guards_in_the_file_are_never_run(tmp_path, film, trust_store):
    good = export_pt2(seeded(CustomNet()), tmp_path / "good.pt2")
    sentinel_pickle, sentinel_guard = tmp_path / "unpickled", tmp_path / "guarded"

    def planted(name: str, data: bytes) -> bytes:
        if name.startswith("data/sample_inputs/"):
            return pickle.dumps(_Sentinel(str(sentinel_pickle)))
        if name.startswith("models/"):
            program = json.loads(data)
            program["guards_code"] = [f"__import__('pathlib').Path({str(sentinel_guard)!r}).touch()"]
            return json.dumps(program).encode()
        return data

    rewrite(good, tmp_path / "net.pt2", planted)
    loaded = LoadedModel.from_manifest(write_manifest(tmp_path, "pt2", "net.pt2", labels=LABELS), "cpu")
    loaded.predict(film)
    assert not sentinel_pickle.exists() and not sentinel_guard.exists()


def test_a_program_with_a_fixed_batch_says_how_to_export_it(tmp_path, trust_store):
    export_pt2(seeded(CustomNet()), tmp_path / "net.pt2", batch=False)
    with pytest.raises(ManifestError, match=r"batch of exactly 2.*Dim\(\"batch\"\)"):
        LoadedModel.from_manifest(write_manifest(tmp_path, "pt2", "net.pt2", labels=LABELS), "cpu")


def test_a_file_that_is_not_a_program_is_named(tmp_path, trust_store):
    (tmp_path / "net.pt2").write_bytes(b"not a zip")
    with pytest.raises(UntrustedModelError, match=r"net\.pt2 cannot check its code"):
        LoadedModel.from_manifest(write_manifest(tmp_path, "pt2", "net.pt2", labels=LABELS), "cpu")


def test_model_trust_names_what_a_program_runs(tmp_path, capsys, trust_store):
    from viewer.cli import main as cli_main
    from viewer.inference.trust import is_trusted

    good = export_pt2(seeded(CustomNet()), tmp_path / "good.pt2")
    assert cli_main(["model", "trust", str(good)]) == 0
    assert "nothing to trust" in capsys.readouterr().out and not is_trusted(good)
    edited = rewrite(good, tmp_path / "net.pt2", edit_program(_retarget))
    assert cli_main(["model", "trust", str(edited)]) == 0
    assert "aten::from_file" in capsys.readouterr().out and is_trusted(edited)
