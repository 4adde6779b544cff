"""A batch explanation run (``saliency-viewer explain``), Qt-free, in this process or on a Dask
cluster (``viewer.batch.cluster``).

Each study's files are made in a staging folder, ``OUT/.partial/``, and moved into
``OUT/<study>/`` by one rename, then its rows are appended to ``OUT/metrics.csv`` and synced: a
run that dies leaves whole studies only, and ``resume`` skips those with rows, redoing any other.
On a cluster, a worker that sees ``OUT`` at the same path (one machine, or shared storage: it
finds the run's token in the staging folder) makes the study's files there itself; any other
sends them back as one compressed archive, which the client unpacks into the staging folder.
Only the client renames and appends, so no study is committed twice.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from viewer.batch.background_writes import BackgroundWrites
from viewer.batch.cluster import worker_annotations
from viewer.batch.cluster_spec import ClusterSpec
from viewer.batch.explain_study import COLUMNS, ExplainedStudy, ExplainOptions, explain_study
from viewer.batch.row_files import RowAppender, keep_rows, problems_text, read_raw_rows, sort_rows
from viewer.inference.model import LoadedModel
from viewer.io import discover
from viewer.io.annotations import AnnotationError, annotation_files, load_annotation
from viewer.io.atomic import replace_bytes
from viewer.io.errors import failure
from viewer.io.naming import series_name, unique_name
from viewer.state.session import ViewerSession

STAGING = ".partial"
_TOKEN = ".run-token"


@dataclass
class ExplainRequest:
    inputs: list[Path]
    annotations: list[Path]
    options: ExplainOptions
    out: Path
    resume: bool = False
    cluster: ClusterSpec | None = None  # run the studies on Dask


@dataclass
class ExplainOutcome:
    found: int = 0  # studies under the inputs
    done_before: int = 0  # skipped: an earlier run committed them
    studies: int = 0  # committed by this run
    rows: int = 0  # in metrics.csv, all runs together
    problems: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # annotation files no image matched


def run_explain(
    model: LoadedModel,
    request: ExplainRequest,
    *,
    on_problem: Callable[[str, str], None] = lambda source, reason: None,
    on_begin: Callable[[int, int, str], None] = lambda n, total, name: None,
    on_study: Callable[[ExplainedStudy, int, int, int], None] = lambda study, done, failed, pending: None,
    on_progress: Callable[[str, float], None] = lambda step, fraction: None,
    on_cluster: Callable[[str, int], None] | None = None,
) -> ExplainOutcome:
    """Explain every study under ``request.inputs`` into ``request.out``. Raises ``ValueError``
    when results are there without ``resume``, ``OSError`` for a scheduler it cannot reach
    (before anything is written). ``on_begin(n, total, name)`` before a study here,
    ``on_study(study, done, failed, pending)`` after each committed one, ``on_problem(source, reason)``
    for each file, annotation or study left out."""
    out, options = request.out, request.options
    metrics = out / "metrics.csv"
    if metrics.exists() and not request.resume:
        raise ValueError(f"{metrics} exists; add --resume to go on with it, or choose a new folder")
    outcome = ExplainOutcome()

    def problem(source: str, reason: str) -> None:
        outcome.problems.append((source, reason))
        on_problem(source, reason)

    annotations = []
    for path in annotation_files(request.annotations):
        try:
            annotations.append(load_annotation(path))
        except AnnotationError as exc:
            problem(str(path), exc.reason)
    found = discover(request.inputs)
    for p in found.problems:
        problem(p.path, p.reason)
    used: set[str] = set()
    # Anonymised, a name that is a UID (a PACS input's cache files) is the UID the results carry.
    names = [unique_name(series_name(series, anonymize=options.anonymize), used) for series in found.series]
    outcome.found = len(names)
    # Only the names are kept over the run, never the rows: 10^5 studies' rows would not fit.
    earlier = {row["image"] for row in read_raw_rows(metrics)} if request.resume else set()
    done = {name for name in earlier if (out / name).is_dir()}
    if done != earlier:
        keep_rows(metrics, "image", done)  # rows of a study whose folder is gone: redone
    pending = [(series, name) for series, name in zip(found.series, names, strict=True) if name not in done]
    outcome.done_before = len(names) - len(pending)
    if not pending and not done:
        return outcome
    if request.cluster is None:
        results = _in_process(model, pending, annotations, request, on_begin, on_progress)
    else:
        from viewer.batch.cluster import run_on_cluster

        token = secrets.token_hex(8)
        common = (str(out.resolve()), token, tuple(str(a.source) for a in annotations), options)
        results = run_on_cluster(
            request.cluster,
            str(model.manifest.path),
            explain_task,
            common,
            [(name, (series, name)) for series, name in pending],
            on_started=on_cluster,
        )
    staging = _fresh_staging(out, {name for _, name in pending})  # after connecting
    if request.cluster is not None:
        (staging / _TOKEN).write_text(token)
    matched: set[str] = set()
    failed = 0
    with RowAppender(metrics, COLUMNS) as append:
        for name, value, reason in results:
            if reason is None:
                study, files = value
                try:
                    _commit(out, staging, name, files)
                except OSError as exc:  # e.g. OUT/<study> is somebody else's folder
                    reason = f"cannot write {out / name}: {exc.strerror or exc}"
            if reason is not None:
                problem(name, reason)
                failed += 1
                continue
            append(study.rows)
            matched.update(study.matched)
            outcome.studies += 1
            on_study(study, outcome.studies, failed, len(pending))
    # The table in discovery order, however the studies finished.
    outcome.rows = sort_rows(metrics, "image", {name: i for i, name in enumerate(names)})
    if outcome.problems or (out / "problems.csv").exists():
        replace_bytes(out / "problems.csv", problems_text(outcome.problems))
    shutil.rmtree(staging, ignore_errors=True)
    if not outcome.done_before:  # an annotation may have matched a study of the earlier run
        outcome.unmatched = [str(a.source) for a in annotations if str(a.source) not in matched]
    return outcome


def _fresh_staging(out: Path, pending: set[str]) -> Path:
    """An empty ``OUT/.partial``; a study folder a killed run moved in without its rows goes."""
    out.mkdir(parents=True, exist_ok=True)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    for name in pending:
        if (out / name / "predictions.json").is_file():  # ours: every study folder has one
            shutil.rmtree(out / name)
    # A killed client's tasks may still be writing on the cluster's workers, into their own
    # uniquely named folders here, while it is removed: what they leave is never committed (their
    # client is gone) and goes with the staging folder at the end of this run.
    staging.mkdir(exist_ok=True)
    return staging


def _commit(out: Path, staging: Path, name: str, files: tuple[str, object]) -> None:
    """Move one study's files into ``OUT/<name>`` with one rename."""
    kind, value = files
    if kind == "archive":  # sent back by a worker that cannot see OUT
        folder = _new_folder(staging, name)
        with zipfile.ZipFile(io.BytesIO(value)) as archive:
            for member in archive.namelist():
                (folder / Path(member).name).write_bytes(archive.read(member))
    else:
        folder = Path(value)
    os.replace(folder, out / name)


def _new_folder(staging: Path, name: str) -> Path:
    """A study's own staging folder (made with the user's umask: it becomes ``OUT/<name>``)."""
    folder = staging / f"{name}-{secrets.token_hex(6)}"
    folder.mkdir()
    return folder


def _in_process(model, pending, annotations, request: ExplainRequest, on_begin, on_progress) -> Iterator:
    """The studies explained here one by one: ``(name, (study, files), None)`` or a failure.

    A study's previews are written on a second thread while the next study is computed
    (``BackgroundWrites``): a study is handed on, to be committed, only once its writes are done,
    so what a killed run leaves is still whole studies only."""
    session = ViewerSession.batch(model, seed=request.options.seed, predict=False)
    session.reports.progress.connect(lambda lane, step, f: lane == "explain" and on_progress(step, f))
    staging = request.out / STAGING
    with BackgroundWrites() as writes:
        waiting = None  # the study computed last, its previews perhaps still being written
        for n, (series, name) in enumerate(pending, 1):
            on_begin(n, len(pending), name)
            folder = _new_folder(staging, name)
            try:
                study = explain_study(session, series, name, annotations, request.options, folder, writes)
            except Exception as exc:  # one bad study never stops the run: it is listed with why
                writes.discard(folder)
                shutil.rmtree(folder, ignore_errors=True)
                computed = (name, folder, None, failure(exc))
            else:
                computed = (name, folder, study, None)
            if waiting is not None:
                yield _written(writes, *waiting)
            waiting = computed
        if waiting is not None:
            yield _written(writes, *waiting)


def _written(writes: BackgroundWrites, name: str, folder: Path, study, reason: str | None) -> tuple:
    """A computed study once its background writes are done; one whose writes failed is removed
    and listed with why, as a study whose files failed in line always was."""
    if reason is not None:
        return name, None, reason
    try:
        writes.wait(folder)
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return name, None, failure(exc)
    return name, (study, ("folder", str(folder))), None


_sessions: dict[tuple[int, int], ViewerSession] = {}


def explain_task(model, out: str, token: str, annotation_paths, options: ExplainOptions, series, name: str):
    """On a cluster worker: one study explained with the worker's batch session; its files made
    in the run's staging folder when this worker sees it, else returned as a ZIP archive."""
    key = (id(model), options.seed)
    if key not in _sessions:
        _sessions.clear()
        _sessions[key] = ViewerSession.batch(model, seed=options.seed, predict=False)
    staging = Path(out) / STAGING
    try:
        shared = (staging / _TOKEN).read_text() == token
    except OSError:
        shared = False
    folder = _new_folder(staging, name) if shared else Path(tempfile.mkdtemp(prefix=f"{name}-"))
    try:
        study = explain_study(
            _sessions[key], series, name, worker_annotations(annotation_paths), options, folder
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if shared:
        return study, ("folder", str(folder))
    try:
        return study, ("archive", _archive(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Already compressed: deflating them again costs the worker time and saves no bytes.
_STORED = {".gz", ".png"}


def _archive(folder: Path) -> bytes:
    # Level 1: the maps are noisy floats that level 6 shrank no further, at twice the time (a
    # 24-slice CT study: 3.95 s -> 2.00 s, 152 -> 153 MB).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(folder.iterdir()):
            stored = path.suffix in _STORED
            archive.write(path, path.name, compress_type=zipfile.ZIP_STORED if stored else None)
    return buffer.getvalue()
