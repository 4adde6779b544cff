"""Fuzzing of each model format's reader: a few hundred mutations of a valid file each (fixed
seeds), every one read in process. A case may load or be refused, but only with the reader's own
error and a one-line reason: any other exception, or a hang, is a defect."""

from __future__ import annotations

import io
import random
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.security.harness import HANG_S
from viewer.inference.checkpoint import CheckpointError, read_checkpoint
from viewer.inference.manifest import ManifestError

CASES = int(__import__("os").environ.get("FUZZ_CASES", "300"))


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One mutation of ``data``: flipped bytes, a truncation, a duplicated or deleted chunk,
    inserted noise, or a run of 0xFF (huge lengths and counts in binary headers)."""
    out = bytearray(data)
    kind = rng.randrange(6)
    at = rng.randrange(max(len(out), 1))
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(out))
            out[i] = rng.randrange(256)
    elif kind == 1:
        del out[at:]
    elif kind == 2:
        size = rng.randint(1, 64)
        out[at:at] = out[at : at + size]
    elif kind == 3:
        del out[at : at + rng.randint(1, 64)]
    elif kind == 4:
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        out[at : at + 8] = b"\xff" * 8
    return bytes(out)


def _rezip(source: bytes, member_suffix: str, rng: random.Random) -> bytes:
    """``source`` (a ZIP) with the member ending in ``member_suffix`` mutated and the archive
    rewritten with correct checksums, so the mutation reaches the reader, not zipfile's CRC check."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as archive, zipfile.ZipFile(out, "w") as copy:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith(member_suffix):
                data = _mutate(data, rng)
            copy.writestr(info, data)
    return out.getvalue()


def _fuzz(tmp_path: Path, name: str, variants: Callable[[random.Random], bytes], read, errors) -> None:
    rng = random.Random(f"model fuzz {name}")
    path = tmp_path / name
    loaded = refused = 0
    for case in range(CASES):
        path.write_bytes(variants(rng))
        start = time.monotonic()
        try:
            read(path)
            loaded += 1
        except errors as exc:
            message = str(exc)
            assert message and "\n" not in message.strip(), f"case {case}: {message!r}"
            refused += 1
        except Exception as exc:  # pragma: no cover - a defect: say which case
            pytest.fail(f"{name} case {case}: {type(exc).__name__}: {exc}")
        assert time.monotonic() - start < HANG_S, f"{name} case {case} took too long"
    assert refused > CASES // 3, f"{name}: only {refused} of {CASES} mutations refused; mutations too mild"


def _saved(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def test_fuzz_state_dict_zip(tmp_path):
    valid = _saved(_network().state_dict())
    _fuzz(tmp_path, "state.pt", lambda rng: _rezip(valid, "data.pkl", rng), read_checkpoint, CheckpointError)


def test_fuzz_state_dict_storage_records_and_whole_file(tmp_path):
    valid = _saved({"state_dict": _network().state_dict(), "epoch": 3})

    def variants(rng: random.Random) -> bytes:
        return _rezip(valid, "data/0", rng) if rng.random() < 0.5 else _mutate(valid, rng)

    _fuzz(tmp_path, "wrapped.pt", variants, read_checkpoint, CheckpointError)


def test_fuzz_whole_pickled_model(tmp_path):
    valid = _saved({"model": _network(), "best_loss": 0.5})
    _fuzz(tmp_path, "whole.pt", lambda rng: _rezip(valid, "data.pkl", rng), read_checkpoint, CheckpointError)


def test_fuzz_older_stream_format(tmp_path):
    valid = _saved({"model": _network()}, _use_new_zipfile_serialization=False)
    _fuzz(tmp_path, "legacy.pt", lambda rng: _mutate(valid, rng), read_checkpoint, CheckpointError)


def test_fuzz_safetensors(tmp_path):
    from safetensors.torch import save

    valid = save({k: v.contiguous() for k, v in _network().state_dict().items()})
    _fuzz(tmp_path, "w.safetensors", lambda rng: _mutate(valid, rng), read_checkpoint, CheckpointError)


def test_fuzz_torchscript_operator_check(tmp_path):
    """The check reads code and pickles of hostile archives: it must always answer (safe,
    refused, or cannot check), never raise."""
    from viewer.inference.torchscript_check import check_torchscript

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(_network()), buffer)
    valid = buffer.getvalue()
    suffixes = (".py", "data.pkl", "constants.pkl", "data/0")

    def variants(rng: random.Random) -> bytes:
        return _rezip(valid, rng.choice(suffixes), rng) if rng.random() < 0.8 else _mutate(valid, rng)

    def read(path: Path) -> None:
        check = check_torchscript(path)
        if not check.safe:
            raise ManifestError(path, check.reason())

    _fuzz(tmp_path, "script.pt", variants, read, ManifestError)


def test_fuzz_onnx(tmp_path):
    pytest.importorskip("onnx2torch")
    from tests.inference.layouts import write_manifest
    from tests.security.test_model_files import _onnx_model
    from viewer.inference.manifest import load_manifest
    from viewer.inference.onnx_model import convert_onnx

    _onnx_model(tmp_path / "valid.onnx")
    valid = (tmp_path / "valid.onnx").read_bytes()
    (tmp_path / "m.onnx").write_bytes(valid)
    manifest = load_manifest(write_manifest(tmp_path, "onnx", "m.onnx", labels=["a", "b"]))

    def read(path: Path) -> None:
        (tmp_path / "m.onnx").write_bytes(path.read_bytes())
        convert_onnx(manifest)

    _fuzz(tmp_path, "case.onnx", lambda rng: _mutate(valid, rng), read, ManifestError)
