"""Model files made to run code, write files or take all memory: each is built here, shown to be
live where that can be done safely (the loader the viewer used before, in a child process, does
run it), and then refused by the viewer with one line naming what it met, nothing written and
little memory used."""

from __future__ import annotations

import collections
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.inference.layouts import write_manifest
from tests.security.harness import ROOT, assert_refused, run_cli
from viewer.inference.checkpoint import CheckpointError, read_checkpoint

LABELS = ["a", "b"]
FILM = str(ROOT / "resources" / "samples" / "dicom" / "cxr_0001.dcm")


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python (the control: a loader without the viewer's checks)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )


# --- pickles that call constructors -----------------------------------------------------------


class _LinearBomb:
    """``nn.Linear(60000, 60000)`` from two integers: 14.4 GB if the constructor is called."""

    def __reduce__(self):
        return (nn.Linear, (60000, 60000))


def test_a_constructor_call_from_a_small_file_is_refused_without_allocating(tmp_path):
    weights = tmp_path / "weights.pt"
    torch.save({"state_dict": _LinearBomb()}, weights)
    assert weights.stat().st_size < 2000
    manifest = write_manifest(tmp_path, "resnet18", "weights.pt", labels=LABELS)
    outcome = run_cli(["model", "check", str(manifest)])
    line = assert_refused(outcome, "torch.nn.modules.linear.Linear", statuses=(1,), max_rss=2 * 1024**3)
    assert "constructor" in line


class _Payload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _XrvConstructor:
    """TorchXRayVision's ``DenseNet(weights=..., cache_dir=...)``: its constructor loads the file it
    finds in ``cache_dir`` with ``torch.load(weights_only=False)``, a second pickle that runs code."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = str(cache_dir)

    def __reduce__(self):
        import torchxrayvision as xrv

        args = (32, (6, 12, 24, 16), 64, 4, 0, 18, 1, "densenet121-res224-all", self.cache_dir)
        return (xrv.models.DenseNet, args)


def test_torchxrayvision_constructor_that_loads_a_second_pickle_is_never_called(tmp_path, sentinel):
    xrv = pytest.importorskip("torchxrayvision")
    cache = tmp_path / "cache"
    cache.mkdir()
    url = xrv.models.model_urls["densenet121-res224-all"]["weights_url"]
    torch.save(_Payload(f"touch {sentinel / 'ran'}"), cache / os.path.basename(url))
    weights = tmp_path / "checkpoint.pt"
    torch.save({"model": _XrvConstructor(cache)}, weights)

    # Control: the allowlisted restricted unpickler the viewer used before runs the payload.
    live = _python(
        "import torch, torchxrayvision as xrv\n"
        "with torch.serialization.safe_globals([xrv.models.DenseNet]):\n"
        f"    torch.load({str(weights)!r}, weights_only=True)\n"
    )
    assert (sentinel / "ran").exists(), f"the payload is not live: {live.stderr[-800:]}"
    (sentinel / "ran").unlink()

    manifest = write_manifest(tmp_path, "xrv:densenet121", "checkpoint.pt", labels=LABELS, in_channels=1)
    outcome = run_cli(["model", "check", str(manifest)])
    assert_refused(outcome, "torchxrayvision.models.DenseNet", statuses=(1,))
    outcome = run_cli(["explain", FILM, "--model", str(manifest), "--out", str(tmp_path / "out")])
    assert_refused(outcome, "torchxrayvision.models.DenseNet")
    assert not any(sentinel.iterdir())


# --- TorchScript ------------------------------------------------------------------------------


_WRITER = textwrap.dedent('''
    import sys, torch
    from torch import nn

    class Writer(nn.Module):
        """Its scripted __setstate__ maps (and so creates) a file with aten::from_file."""

        def __init__(self, path: str):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, 2))
            self.path = path

        def forward(self, x):
            return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)[:, :3] @ self.weight

        @torch.jit.export
        def __getstate__(self):
            return (self.weight, self.path, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, str, bool]):
            mapped = torch.from_file(state[1], shared=True, size=16)
            self.weight = state[0]
            self.training = bool(mapped.sum() >= 0) and state[2]
            self.path = state[1]

    torch.jit.script(Writer(sys.argv[2])).save(sys.argv[1])
''')


def _scripted_writer(path: Path, target: Path) -> None:
    script = path.with_name("make_writer.py")  # torch.jit.script reads the class's source file
    script.write_text(_WRITER)
    result = subprocess.run(
        [sys.executable, str(script), str(path), str(target)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_torchscript_that_writes_a_file_is_refused_until_trusted(tmp_path, sentinel):
    model = tmp_path / "model.pt"
    _scripted_writer(model, sentinel / "written")
    live = _python(f"import torch; torch.jit.load({str(model)!r})")
    assert (sentinel / "written").exists(), f"the payload is not live: {live.stderr[-800:]}"
    (sentinel / "written").unlink()

    manifest = write_manifest(tmp_path, "torchscript", "model.pt", labels=LABELS)
    env = {**os.environ, "SALIENCY_VIEWER_TRUST": str(tmp_path / "trust.json")}
    outcome = run_cli(["model", "check", str(manifest)], env=env)
    line = assert_refused(outcome, "aten::from_file", statuses=(1,))
    assert "model trust" in line
    outcome = run_cli(["explain", FILM, "--model", str(manifest), "--out", str(tmp_path / "out")], env=env)
    assert_refused(outcome, "aten::from_file")
    assert not any(sentinel.iterdir())

    # The user's explicit trust lets this exact file run (and so write its file) ...
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    model_b = trusted / "model.pt"
    _scripted_writer(model_b, trusted / "written")
    manifest_b = write_manifest(trusted, "torchscript", "model.pt", labels=LABELS)
    granted = run_cli(["model", "trust", str(model_b)], env=env)
    assert granted.returncode == 0 and "aten::from_file" in granted.stdout, granted.describe()
    checked = run_cli(["model", "check", str(manifest_b)], env=env)
    assert checked.returncode == 0, checked.describe()
    assert (trusted / "written").exists()
    # ... and no other: the same code saved anew is a different file.
    _scripted_writer(model_b, trusted / "written-again")
    assert_refused(run_cli(["model", "check", str(manifest_b)], env=env), "aten::from_file", statuses=(1,))
    assert not (trusted / "written-again").exists()
    untrusted = run_cli(["model", "untrust", str(model_b)], env=env)
    assert "was not trusted" in untrusted.stdout


def test_torchvision_families_scripted_and_traced_pass_the_operator_check(tmp_path):
    """The allowlist must not refuse what researchers export: a CNN of each common family and a
    vision transformer, scripted and traced (the full survey of 22 families ran when the list
    was written; these keep it honest)."""
    import torchvision

    from viewer.inference.torchscript_check import check_torchscript

    for name in ("resnet18", "densenet121", "efficientnet_b0", "mobilenet_v3_small", "vit_b_16"):
        network = torchvision.models.get_model(name, weights=None, num_classes=3).eval()
        for kind in ("script", "trace"):
            path = tmp_path / f"{name}-{kind}.pt"
            with torch.no_grad():
                made = (
                    torch.jit.script(network)
                    if kind == "script"
                    else torch.jit.trace(network, torch.zeros(1, 3, 224, 224), check_trace=False)
                )
            made.save(str(path))
            check = check_torchscript(path)
            assert check.safe, f"{name} {kind}: {check.reason()}"


@pytest.fixture(scope="module")
def resnet_script(tmp_path_factory) -> Path:
    import torchvision

    path = tmp_path_factory.mktemp("script") / "resnet18.pt"
    torch.jit.script(torchvision.models.resnet18(num_classes=2)).save(str(path))
    return path


_FORWARD = "    return (self)._forward_impl(x, )\n"


def _with_code(source: Path, out: Path, edit) -> Path:
    """A copy of the archive ``source`` whose ResNet code (the file holding its forward; scripting
    may mangle its name) went through ``edit(text)``: what an attacker writes by hand into a file
    that was scripted honestly."""
    edited = 0
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(out, "w") as copy:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith(".py") and _FORWARD.encode() in data:
                data, edited = edit(data.decode()).encode(), edited + 1
            copy.writestr(info, data)
    assert edited == 1, "the scripted ResNet's forward moved"
    return out


@pytest.mark.parametrize(
    ("injected", "named"),
    [
        ('    _evil = torch.save(x, "/tmp/out.pt")\n', "aten::save"),
        ('    _evil = ops.aten.from_file("/tmp/f", True, 4)\n', "aten::from_file"),
        ("    _evil = torch.from_file\n", "aten::from_file"),
        ("    _evil = ops.torchvision.nms(x, x, 0.5)\n", "torchvision::nms"),
        ("    _evil = __torch__.torch.classes.myext.Shell()\n", "torch.classes.myext.Shell"),
        ("    print(x)\n", "print()"),
        ('    _evil = torch.tofile(x, "/tmp/x")\n', "aten::tofile"),
        ('    _evil = (x).tofile("/tmp/x")\n', "method tofile()"),
    ],
)
def test_hand_written_calls_in_torchscript_code_are_named(tmp_path, resnet_script, injected, named):
    from viewer.inference.torchscript_check import check_torchscript

    def edit(text: str) -> str:
        head, sep, rest = text.partition(_FORWARD)
        return head + injected + sep + rest

    check = check_torchscript(_with_code(resnet_script, tmp_path / "edited.pt", edit))
    assert not check.safe
    assert named in check.refused, check.reason()
    assert named in check.reason()


def test_torchscript_code_that_cannot_be_read_is_refused(tmp_path, resnet_script):
    from viewer.inference.torchscript_check import check_torchscript

    check = check_torchscript(_with_code(resnet_script, tmp_path / "bad.pt", lambda t: t + "\ndef (:\n"))
    assert not check.safe and "cannot check its code" in check.reason()


# --- tensors that declare more than the file holds ----------------------------------------------


class _Storage:
    def __init__(self, numel: int):
        self.numel = numel


class _Tensor:
    def __init__(self, storage, size, stride, offset=0):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel)
        return None


def _checkpoint(path: Path, state: dict, record: bytes, *, deflate: bool = False) -> Path:
    """A ZIP checkpoint as torch.save lays it out, with a data.pkl written here."""
    import io

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr(
            "archive/data/0", record, compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        )
        archive.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize(
    ("numel", "size", "stride", "record", "deflate", "reason"),
    [
        (10**12, (10**6, 10**6), (10**6, 1), b"\0" * 16, False, "declares"),
        (4, (10**6, 10**6), (10**6, 1), b"\0" * 16, False, "more than the file holds"),
        (1, (10**9,), (0,), b"\0" * 4, False, "more than the file holds"),
        (4, (2,), (-1,), b"\0" * 16, False, "is not a tensor's"),
        (2**28, (2**28,), (1,), b"\0" * 2**30, True, "compressed"),
    ],
)
def test_tensor_extents_are_bounded_by_the_file(tmp_path, numel, size, stride, record, deflate, reason):
    path = _checkpoint(
        tmp_path / "w.pt", {"weight": _Tensor(_Storage(numel), size, stride)}, record, deflate=deflate
    )
    assert path.stat().st_size < 2 * 1024**2
    with pytest.raises(CheckpointError, match=reason):
        read_checkpoint(path)


def test_an_older_format_storage_that_declares_more_than_the_file_is_refused(tmp_path):
    weights = tmp_path / "old.pt"
    torch.save({"w": torch.zeros(4)}, weights, _use_new_zipfile_serialization=False)
    data = bytearray(weights.read_bytes())
    count = (4).to_bytes(8, "little")
    at = data.rindex(count)  # the storage's element count, before its 16 bytes
    data[at : at + 8] = (10**12).to_bytes(8, "little")
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="declares"):
        read_checkpoint(weights)


def test_a_bomb_checkpoint_is_refused_by_the_cli_in_little_memory(tmp_path):
    _checkpoint(
        tmp_path / "w.pt", {"weight": _Tensor(_Storage(10**12), (10**6, 10**6), (10**6, 1))}, b"\0" * 16
    )
    manifest = write_manifest(tmp_path, "resnet18", "w.pt", labels=LABELS)
    assert_refused(run_cli(["model", "check", str(manifest)]), "w.pt", "declares", statuses=(1,))


# --- safetensors, manifests, ONNX ---------------------------------------------------------------


def _safetensors(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "reason"),
    [
        (b'{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}', b"\0" * 16,
         "is not its 16 bytes"),
        (b'{"w": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 16]}}', b"\0" * 16,
         "is not a tensor's"),
        (b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1600000000]}}', b"\0" * 16,
         "outside the file"),
        (b'{"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}', b"\0" * 16, "unknown dtype"),
        (b'{"w": ' + b"[" * 100000 + b"]" * 100000 + b"}", b"", "not JSON"),
    ],
)  # fmt: skip
def test_safetensors_headers_are_checked_against_the_file(tmp_path, header, data, reason):
    with pytest.raises(CheckpointError, match=reason):
        read_checkpoint(_safetensors(tmp_path / "w.safetensors", header, data))


def test_a_safetensors_header_longer_than_the_file_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes((2**60).to_bytes(8, "little") + b'{"w": {}}')
    with pytest.raises(CheckpointError, match="header of"):
        read_checkpoint(path)


def test_manifest_arguments_that_download_weights_are_refused(tmp_path):
    torch.save({}, tmp_path / "w.pt")
    manifest = write_manifest(
        tmp_path,
        "fasterrcnn_resnet50_fpn",
        "w.pt",
        labels=LABELS,
        network='kwargs = { weights_backbone = "DEFAULT" }\n',
    )
    outcome = run_cli(["model", "check", str(manifest)])
    assert_refused(outcome, "network.kwargs.weights_backbone", statuses=(1,))


_ONNX_WEIGHT_BYTES = 2 * 3 * 3 * 3 * 4


def _onnx_model(path: Path, *, domain: str = "", external: str | None = None, offset: int = 0) -> Path:
    """A small CNN graph (Conv, Relu, GlobalAveragePool, Flatten) whose convolution weight may live
    in an external file and whose Relu may be put in another operator domain."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((2, 3, 3, 3), 0.1, dtype=np.float32), "W")
    if external is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", external),
            ("offset", str(offset)),
            ("length", str(_ONNX_WEIGHT_BYTES)),
        ):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], domain=domain),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("domain", "com.microsoft::Relu"), ("outside", "outside the model's folder"), ("past", "which holds")],
)
def test_onnx_custom_operators_and_external_data_outside_the_folder_are_refused(tmp_path, kind, reason):
    pytest.importorskip("onnx2torch")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\1" * _ONNX_WEIGHT_BYTES)
    (model_dir / "w.bin").write_bytes(b"\0" * _ONNX_WEIGHT_BYTES)
    if kind == "domain":
        _onnx_model(model_dir / "m.onnx", domain="com.microsoft")
    else:
        where = "../secret.bin" if kind == "outside" else "w.bin"
        _onnx_model(model_dir / "m.onnx", external=where, offset=0 if kind == "outside" else 8)
    manifest = write_manifest(model_dir, "onnx", "m.onnx", labels=LABELS)
    assert_refused(run_cli(["model", "check", str(manifest)]), reason, statuses=(1,))


def test_onnx_external_data_inside_the_folder_loads(tmp_path):
    pytest.importorskip("onnx2torch")
    from viewer.inference.model import LoadedModel

    (tmp_path / "w.bin").write_bytes(torch.full((54,), 0.1).numpy().tobytes())
    _onnx_model(tmp_path / "m.onnx", external="w.bin")
    manifest = write_manifest(tmp_path, "onnx", "m.onnx", labels=LABELS, inputs="")
    model = LoadedModel.from_manifest(manifest)
    out = model.network(torch.ones(1, 3, 64, 64))
    assert out.shape == (1, 2) and torch.all(out > 0)  # the external weights were read
