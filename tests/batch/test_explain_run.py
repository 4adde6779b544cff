"""The explain run's unit of work on a cluster worker: files made where the client can see them,
or sent back as one archive; either way the same study once committed."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from viewer.batch.explain_run import STAGING, _commit, explain_task
from viewer.batch.explain_study import ExplainOptions
from viewer.inference.catalog import resolve_model
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.resources import resource_path


def test_a_worker_that_cannot_see_out_sends_the_study_back_as_an_archive(tmp_path):
    model = LoadedModel.from_manifest(resolve_model("cxr_resnet18"), "cpu")
    (series,) = discover([resource_path("samples", "dicom", "cxr_0002.dcm")]).series
    options = ExplainOptions(("gradcam", "guided-backprop"), steps=0)
    out = tmp_path / "out"
    staging = out / STAGING
    staging.mkdir(parents=True)
    (staging / ".run-token").write_text("this run")
    shared_study, shared = explain_task(model, str(out), "this run", (), options, series, "cxr_0002")
    assert shared[0] == "folder" and Path(shared[1]).parent == staging  # made in place
    elsewhere_study, packed = explain_task(model, str(out), "another run", (), options, series, "cxr_0002")
    assert packed[0] == "archive" and isinstance(packed[1], bytes)
    with zipfile.ZipFile(io.BytesIO(packed[1])) as archive:  # PNGs are not deflated a second time
        kinds = {member.filename: member.compress_type for member in archive.infolist()}
    assert kinds["gradcam.png"] == zipfile.ZIP_STORED and kinds["gradcam.npy"] == zipfile.ZIP_DEFLATED
    assert sorted(p.name for p in staging.iterdir()) == [".run-token", Path(shared[1]).name]  # no leftovers
    _commit(out, staging, "shared", shared)
    _commit(out, staging, "packed", packed)
    made = {p.name: p.read_bytes() for p in (out / "shared").iterdir()}
    assert sorted(made) == ["gradcam.npy", "gradcam.png", "guided-backprop.npy", "guided-backprop.png",
                            "predictions.json"]  # fmt: skip
    assert {p.name: p.read_bytes() for p in (out / "packed").iterdir()} == made

    def cells(study):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in study.rows]

    assert cells(shared_study) == cells(elsewhere_study) and len(shared_study.rows) == 2
    assert shared_study.line.startswith("cxr_0002: ")
