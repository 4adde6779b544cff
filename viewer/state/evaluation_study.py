"""One study of a data-set evaluation: its rows and the pictures of its scored maps. The unit
of work, run in this process or on a cluster worker (``viewer.state.cluster``)."""

from __future__ import annotations

from functools import partial

from viewer.explain import explain, get_method
from viewer.explain.evaluation import RADIOLOGISTS, map_scores, reader_agreement, truths
from viewer.io.loader import load_series
from viewer.state.cluster import worker_annotations
from viewer.state.evaluation_gallery import picture


def evaluate_task(model, annotation_paths: tuple[str, ...], methods, seed: int, series, name: str):
    """On a cluster worker: one study's rows, and the pictures of its scored maps as PNG bytes."""
    rows, pictures = evaluate_one(model, series, name, worker_annotations(annotation_paths), methods, seed)
    return rows, [(label, method, iou, draw()) for label, method, iou, draw in pictures]


def evaluate_one(
    model, series, name, annotations, methods, seed, on_progress=None, cancel=None
) -> tuple[list[dict], list[tuple]]:
    """The rows of one image: every annotated label x method, the radiologists' agreement, and
    the false-positive localizations; and per scored map ``(label, method, IoU, draw)``, where
    ``draw()`` makes its picture for the report."""
    image = load_series(series)
    matcher = model.manifest.label_matcher()
    found = truths(image, [a for a in annotations if a.matches(image)], matcher)
    prediction = model.predict(image)
    probability = {
        label: float(prediction.probabilities[:, i].max()) for i, label in enumerate(prediction.labels)
    }
    rows: list[dict] = []
    pictures: list[tuple] = []
    if found:
        result = explain(
            model,
            image,
            [get_method(m) for m in methods],
            targets=list(found),
            seed=seed,
            on_progress=on_progress,
            cancel=cancel,
        )
        for smap in result.maps:
            truth = found[smap.target]
            scores = map_scores(smap.array, truth)
            rows.append(_row(name, smap.target, smap.method, probability, truth.annotation_labels, **scores))
            if scores["iou"] is not None:
                draw = partial(picture, image, smap.array, truth.union, smap.convention)
                pictures.append((smap.target, smap.method, scores["iou"], draw))
    for label, truth in found.items():
        agreement = reader_agreement(truth)
        if agreement is not None:
            rows.append(
                _row(
                    name,
                    label,
                    RADIOLOGISTS,
                    probability,
                    truth.annotation_labels,
                    iou=agreement["iou"],
                    hit=agreement["hit"],
                )
            )
    for label in model.manifest.labels:
        if label not in found and probability[label] >= 0.5:  # predicted, not annotated
            rows += [_row(name, label, m, probability, (), false_positive=True) for m in methods]
    return rows, pictures


def _row(image, label, method, probability, annotation_labels, **scores) -> dict:
    row = {"image": image, "label": label, "method": method, "probability": probability[label]}
    row |= {k: scores.get(k) for k in ("iou", "dice", "hit", "energy", "auprc", "iou_by_threshold")}
    row["annotation_label"] = "|".join(annotation_labels)
    row["false_positive"] = bool(scores.get("false_positive", False))
    return row
