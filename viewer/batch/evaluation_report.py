"""The self-contained HTML report of ``saliency-viewer evaluate``: per label, bar charts of mIoU and
hit rate with their 95 % intervals and the radiologists' line, each method's best and worst
images (map and annotation outline), a table, and the definitions.
Charts are drawn with matplotlib (extra ``report``) and inlined as PNG."""

from __future__ import annotations

import base64
import html
import io
import math

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
except ImportError:  # said where the report is written
    raise ImportError("the HTML report needs matplotlib: pip install 'saliency-viewer[report]'") from None

from viewer.explain import detection_scores, evaluation
from viewer.explain.evaluation import RADIOLOGISTS


def _chart(label: str, rows: list[dict]) -> str:
    methods = [r for r in rows if r["method"] != RADIOLOGISTS]
    human = next((r for r in rows if r["method"] == RADIOLOGISTS), None)
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(methods) + 1.4), sharey=True)
    for ax, key, title in ((axes[0], "miou", "mIoU"), (axes[1], "hit_rate", "hit rate")):
        low, high = f"{key.split('_')[0]}_low", f"{key.split('_')[0]}_high"
        values = [r[key] for r in methods]
        errors = [
            [max(0.0, r[key] - r[low]) if not math.isnan(r[low]) else 0 for r in methods],
            [max(0.0, r[high] - r[key]) if not math.isnan(r[high]) else 0 for r in methods],
        ]
        ax.barh([r["method"] for r in methods], values, xerr=errors, color="#4c72b0", capsize=3)
        if human is not None and not math.isnan(human[key]):
            ax.axvline(human[key], color="#c44e52", linestyle="--", label="radiologists")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_title(f"{label}: {title}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def _pictures(gallery, label: str, methods: list[str]) -> str:
    """Per method, its best and worst images with their IoU: the map over the image, the
    annotation outlined."""
    lines = []
    for method in methods:
        best, worst = gallery.chosen(label, method)
        cells = []
        for title, entries in (("best", best), ("worst", worst)):
            for iou, image in entries:
                path = gallery.path(label, method, image)
                if not path.is_file():
                    continue  # a run killed between an image's rows and its picture
                data = base64.b64encode(path.read_bytes()).decode()
                caption = f"{title}: {html.escape(image)}, IoU {iou:.2f}"
                cells.append(
                    f"<figure><img alt='{caption}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{caption}</figcaption></figure>"
                )
        if cells:
            lines.append(f"<h3>{html.escape(method)}</h3><div class='gallery'>{''.join(cells)}</div>")
    return "\n".join(lines)


def render_report(
    model_name: str,
    summary: list[dict],
    images: int,
    gallery=None,
    stability: tuple | list = (),
    detection: tuple | list = (),
) -> str:
    labels = list(dict.fromkeys(r["label"] for r in summary))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Saliency evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "td:first-child,td:nth-child(2),th{text-align:left}"
        ".gallery{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;font-size:12px}</style>",
        f"<h1>Saliency evaluation: {html.escape(model_name)}</h1>",
        f"<p>{images} images; means with 95 % percentile bootstrap intervals over images.</p>",
    ]
    for label in labels:
        group = [r for r in summary if r["label"] == label]
        if any(r["n"] for r in group):
            name = html.escape(label)
            chart = _chart(label, group)
            parts.append(f"<h2>{name}</h2><img alt='{name}' src='data:image/png;base64,{chart}'>")
            if gallery is not None:
                methods = [r["method"] for r in group if r["method"] != RADIOLOGISTS and r["n"]]
                parts.append(_pictures(gallery, label, methods))
    columns = list(summary[0]) if summary else []
    parts.append("<h2>Table</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>")
    for row in summary:
        parts.append("<tr>" + "".join(f"<td>{_fmt(row[c])}</td>" for c in columns) + "</tr>")
    parts.append("</table>")
    if stability:  # evaluate --stability: one line per method and kind
        from viewer.batch.evaluation_stability import summary_lines

        lines = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(stability))
        parts.append(
            f"<h2>Stability of the maps</h2><p>Mean pairwise SSIM and Spearman, 95 % CIs.</p><ul>{lines}</ul>"
        )
    if detection:  # a detector: its boxes against the radiologists'
        parts.append(_detection_table(detection))
    parts.append("<h2>Definitions</h2><pre>" + html.escape(evaluation.__doc__ or "") + "</pre>")
    if detection:
        parts.append("<pre>" + html.escape(detection_scores.__doc__ or "") + "</pre>")
    return "\n".join(parts)


def _detection_table(rows: tuple | list) -> str:
    first = rows[0]
    head = (
        f"<h2>Detected boxes</h2><p>At score &ge; {first['score_threshold']:g} and IoU &ge; "
        f"{first['iou_threshold']:g}; AP as COCO defines it, at that IoU; 95 % bootstrap intervals "
        "over images.</p>"
    )
    columns = (
        "label",
        "radiologist_boxes",
        "model_boxes",
        "true_positives",
        "false_positives",
        "false_negatives",
    )
    cells = "".join(f"<th>{c}</th>" for c in (*columns, "precision", "recall", "AP"))
    lines = [f"{head}<table><tr>{cells}</tr>"]
    for row in rows:
        measured = [
            f"{_fmt(row[k])} [{_fmt(row[k + '_low'])}, {_fmt(row[k + '_high'])}]"
            for k in ("precision", "recall", "ap")
        ]
        values = [html.escape(str(row["label"])), *(_fmt(row[c]) for c in columns[1:]), *measured]
        lines.append("<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    return "\n".join([*lines, "</table>"])
