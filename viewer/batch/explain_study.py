"""One study of ``saliency-viewer explain``: opened, predicted and explained by a batch session,
its files written into a folder of their own and its ``metrics.csv`` rows returned. The unit of
work, run in this process or on a cluster worker (``viewer.batch.explain_run``)."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from viewer.batch.background_writes import BackgroundWrites
from viewer.batch.detection_files import write_detections
from viewer.batch.segmentation_files import write_segmentation
from viewer.explain.box_matching import radiologist_boxes
from viewer.explain.comparison import map_agreement, score_map
from viewer.explain.metric_catalog import column_of
from viewer.explain.registry import title_of
from viewer.io.atomic import write_bytes_new, write_new
from viewer.io.errors import StudyFailed
from viewer.io.nifti_map import can_write_nifti, write_map_nifti
from viewer.io.overlay import FramePainter
from viewer.io.previews import PREVIEWS
from viewer.io.safe_text import printable
from viewer.io.series import Discovery, SeriesInfo

COLUMNS = (
    "image",
    "method",
    "target",
    "seconds",
    "pointing_game",
    "iou_otsu",
    "energy_in_mask",
    "deletion_auc",
    "insertion_auc",
    "probability",
    "substrate_drop",
    "dice_otsu",
    "iou_top",
    "auprc",
    "pointing_game_marker",
    "sanity_spearman",
    "sanity_verdict",
    "annotation_label",
    "agreement",  # the map's mean rank correlation with the image's other maps of its target
    "box",  # a detector's map: the box's index in detections.json
)


@dataclass(frozen=True)
class ExplainOptions:
    """What ``explain`` computes for every study."""

    methods: tuple[str, ...]
    targets: tuple[str, ...] = ()  # empty: the top prediction
    seed: int = 0
    steps: int | None = 0  # deletion/insertion steps: 0 skips them (the default), None adapts them
    sanity: bool = False
    dicom: bool = False
    anonymize: bool = False
    previews: str = "png"  # the picture beside each map: a key of ``io.previews.PREVIEWS``


@dataclass
class ExplainedStudy:
    """What one study gave: its rows and what to tell the user about it."""

    name: str
    rows: list[dict]
    line: str  # "<name>: <top label> <probability>; <n> maps"
    notes: list[str] = field(default_factory=list)  # per-study warnings, in order
    caution: str | None = None  # the model's caution about this image
    matched: list[str] = field(default_factory=list)  # sources of the annotations on it


def explain_study(
    session,
    series: SeriesInfo,
    name: str,
    annotations,
    options: ExplainOptions,
    folder: Path,
    writes: BackgroundWrites | None = None,
):
    """Explain ``series`` with ``session`` (``ViewerSession.batch``) and write its files into
    ``folder``; returns an ``ExplainedStudy``, or raises ``StudyFailed`` with the session's reason.
    With ``writes``, the previews are left to its thread: the caller waits for ``folder``'s writes
    before it commits the study."""
    notes: list[str] = []
    start = len(session.reports.errors)

    def left_out(problems) -> None:
        notes.extend(f"skipped {p.path}: {p.reason}" for p in problems)

    explained: list = []
    on_explained = session.explanation.series_explained.connect(
        lambda image, result: explained.append(result)
    )
    session.reports.problems_found.connect(left_out)
    try:
        session.opening.open_found(Discovery([series], []))
        image = session.state.image
        # A session that predicts on open has the target once the prediction came (none: it
        # failed, and said why); one that does not leaves it to the explanation's own forward.
        ready = session.state.target or not session.model.predict_on_open
        if image is not None and session.opening.series_index == 0 and ready:
            session.explanation.explain_series(list(options.methods), list(options.targets) or None)
        failed = "; ".join(session.reports.errors[start:])
    finally:
        session.explanation.series_explained.disconnect(on_explained)
        session.reports.problems_found.disconnect(left_out)
        del session.reports.errors[start:]  # said here, once; a batch session runs for 10^5 studies
    if not explained:
        raise StudyFailed(failed or f"{name}: nothing to explain")
    return _write_study(session, image, explained[0], name, annotations, options, folder, notes, writes)


def _write_study(
    session, image, result, name, annotations, options, folder: Path, notes, writes=None
) -> ExplainedStudy:
    """The study's files (predictions.json, each map's .npy, .png and DICOM) and metrics rows."""
    model, matcher = session.model.store.get(session.model.manifest_path), session.model.matcher
    predictions = write_predictions(folder, model.manifest.name, result, session.model.caution)
    matching = [a for a in annotations if a.matches(image)]
    for annotation in matching:
        if reason := matcher.unmatched_reason(annotation.labels_on(image)):
            notes.append(f"{name}: {Path(annotation.source).name} {reason}")
    rows, agreements = [], map_agreement(result)
    # A series' NIfTI files are written on two threads (ISA-L's gzip and file writes let go of
    # the GIL) while the other files and the scores are made.
    nifti = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nifti") if can_write_nifti(image) else None
    pending: list[Future] = []
    painters: dict[int, FramePainter] = {}  # per key frame: windowed once for all its maps
    box_files: dict[int, dict[str, str]] = {}  # a detector's maps per box, by method
    try:
        for smap in result.maps:
            best = int(np.argmax(result.probabilities[:, smap.target_index]))  # key slice of a series
            frame = smap.frames[best]
            key, rgb = write_map(
                folder,
                image,
                smap,
                best,
                several_targets=len(result.targets) > 1,
                painter=painters.get(frame) or painters.setdefault(frame, FramePainter(image, frame)),
                previews=options.previews,
                pixels=options.dicom,  # the Secondary Capture shows them
                writes=writes,
            )
            if nifti is not None:  # a series: the map over it in 3D Slicer or ITK-SNAP
                pending.append(
                    nifti.submit(write_map_nifti, image, smap.array, smap.frames, folder / f"{key}.nii.gz")
                )
            if options.dicom and (
                why := _write_dicom(
                    folder, key, image, smap, rgb, best, model.manifest.name, options.anonymize
                )
            ):
                notes.append(f"{name}: no DICOM results for {title_of(smap.method)}: {why}")
            mask, marker = _annotation_masks(image, smap.target, matching, matcher)
            # Localization over every frame the map covers; deletion/insertion and sanity on the key slice.
            scores = score_map(
                model,
                image,
                smap,
                result.frames[best],
                mask=mask,
                marker=marker,
                steps=options.steps,
                sanity=options.sanity,
                seed=options.seed,
            )
            labels = [n for a in matching for n in matcher.matched(a.labels_on(image), smap.target)]
            row = {"image": name, "probability": f"{predictions[smap.target]:.4f}"} | scores.as_row()
            if smap.box is not None:  # a detector's box: its own score
                box_files.setdefault(smap.box, {})[smap.method] = f"{key}.npy"
                row |= {"box": smap.box, "probability": f"{result.detections.scores[smap.box]:.4f}"}
            rows.append(row | {"annotation_label": "|".join(dict.fromkeys(labels))})
            rows[-1][column_of("agreement", "metrics.csv")] = _score_cell(agreements.get(id(smap)))
    finally:  # also when the study fails: no NIfTI write outlives the folder it goes into
        if nifti is not None:
            nifti.shutdown(wait=True)
    for written in pending:
        written.result()  # a failed write fails the study, as it did when written in line
    if getattr(result, "masks", None) is not None:  # a segmenter: its own masks, against the annotations
        write_segmentation(
            folder,
            image,
            result,
            lambda label: _annotation_masks(image, label, matching, matcher)[0],
            dicom=options.dicom,
            anonymize=options.anonymize,
            model_name=model.manifest.name,
        )
    if getattr(result, "detections", None) is not None:  # a detector: its boxes, against the annotations
        spec = model.manifest.detection
        frame = result.frames[0]
        truth = radiologist_boxes(image, [frame], matching, matcher)[frame]
        write_detections(
            folder,
            result,
            box_files,
            truth,
            spec.score_threshold,
            spec.iou_threshold,
            name,
            image=image,
            dicom=options.dicom,
            anonymize=options.anonymize,
            model_name=model.manifest.name,
        )
    top = max(predictions, key=predictions.get)
    return ExplainedStudy(
        name,
        rows,
        f"{name}: {top} {predictions[top]:.3f}; {len(result.maps)} maps",
        notes,
        session.model.caution,
        [str(a.source) for a in matching],
    )


def _score_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_predictions(folder: Path, model_name: str, result, caution: str | None) -> dict[str, float]:
    """predictions.json: each label's probability (a series: its largest over slices, and per
    slice), and the model's caution about this image, if it has one."""
    probabilities = result.probabilities
    predictions = {label: float(probabilities[:, i].max()) for i, label in enumerate(result.labels)}
    record = {"model": model_name, "frames": len(result.frames), "probability": predictions}
    if caution:
        record["caution"] = caution
    if len(result.frames) > 1:
        record["per_frame"] = {
            label: [round(float(p), 6) for p in probabilities[:, i]] for i, label in enumerate(result.labels)
        }
    write_bytes_new(folder / "predictions.json", json.dumps(record, indent=1).encode())
    return predictions


def write_map(
    folder: Path,
    image,
    smap,
    best: int,
    *,
    several_targets: bool,
    painter: FramePainter | None = None,
    previews: str = "png",
    pixels: bool = False,
    writes: BackgroundWrites | None = None,
):
    """<method>.npy on the native grid and its preview over the windowed image (key slice):
    ``previews`` names the kind (``io.previews.PREVIEWS``: <method>.png by default). ``painter``
    is the key frame made ready once for all its maps. Returns the files' stem and the preview's
    pixels (None where there is no preview and ``pixels`` was not asked for, or where ``writes``
    paints and writes the preview on its own thread: only when ``pixels`` is not asked for)."""
    key = f"{smap.method}_{smap.target}" if several_targets else smap.method
    if getattr(smap, "box", None) is not None:  # a detector's map: one per box
        key = f"{smap.method}_box{smap.box}"
    values = smap.array if image.n_frames > 1 else smap.array[0]
    write_new(folder / f"{key}.npy", lambda f: np.save(f, values))  # no copy in memory first
    preview = PREVIEWS[previews]
    if preview is None and not pixels:
        return key, None
    painter = painter or FramePainter(image, smap.frames[best])
    if writes is not None and not pixels:
        suffix, encode = preview
        writes.submit(
            folder,
            _write_preview,
            painter,
            smap.array[best],
            smap.convention,
            folder / f"{key}{suffix}",
            encode,
        )
        return key, None
    rgb = painter.paint(smap.array[best], smap.convention)
    if preview is not None:
        suffix, encode = preview
        write_bytes_new(folder / f"{key}{suffix}", encode(rgb))
    return key, rgb


def _write_preview(painter: FramePainter, saliency: np.ndarray, convention: str, path: Path, encode) -> None:
    write_bytes_new(path, encode(painter.paint(saliency, convention)))


def _write_dicom(
    folder: Path, key: str, image, smap, rgb, best: int, model_name: str, anonymize: bool
) -> str | None:
    """<key>.dcm (the values, in the object that fits the source) and <key>_sc.dcm (the PNG); for
    a source that cannot take them (a PNG film), why not. Any other error (a library tripping on
    an unusual header) raises ``StudyFailed`` naming the source and the cause."""
    # Imported here: highdicom costs 0.4 s of start-up that a run without --dicom does not need.
    from viewer.io.dicom_export import write_saliency_map, write_secondary_capture

    title = title_of(smap.method)
    try:
        write_saliency_map(
            image,
            smap.array,
            frames=smap.frames,
            out=folder / f"{key}.dcm",
            method=title,
            target=smap.target,
            model_name=model_name,
            convention=smap.convention,
            anonymize=anonymize,
        )
        write_secondary_capture(
            image,
            rgb,
            frame=smap.frames[best],
            out=folder / f"{key}_sc.dcm",
            description=f"{title}: {smap.target} ({model_name})",
            anonymize=anonymize,
            burned_in_annotation=False,  # the overlay only, no text
        )
    except ValueError as exc:  # what the exporters refuse, with the reason: the maps stay
        return str(exc)
    except Exception as exc:  # a library failing on this source fails the study, never the run
        source = printable(image.frames[smap.frames[best]].source)
        raise StudyFailed(
            f"cannot write the DICOM results of {title} for {source}: {type(exc).__name__}: {exc}"
        ) from exc
    return None


def _annotation_masks(image, target: str, annotations, matcher) -> tuple:
    """The union of the matching annotations' masks of model label ``target`` over all frames (any
    annotation label standing for it), and the burned-in marker of the last annotation that knows
    one (None if none does)."""
    mask = np.zeros((image.n_frames, image.rows, image.columns), bool)
    marker = None
    for annotation in annotations:
        mask |= annotation.mask(image, target, matcher)
        marker = annotation.marker_mask(image) if annotation.marker is not None else marker
    return mask, marker
