"""The result tables a run appends study by study: read one row at a time, reordered and pruned
block by block, a torn last line cut, and a summary that streams 10^5 images' rows in bounded
memory with the numbers of the whole-list computation."""

from __future__ import annotations

import csv
import os
import stat
import tracemalloc

import numpy as np
import pytest

from viewer.batch.evaluation_run import read_rows
from viewer.batch.row_files import RowAppender, cell, keep_rows, read_raw_rows, sort_rows
from viewer.explain.evaluation import PER_IMAGE, THRESHOLDS, bootstrap_mean, summarise
from viewer.io.atomic import replace_bytes, write_bytes_new


def write(path, text: str) -> None:
    path.write_bytes(text.encode())


def test_sort_rows_moves_whole_study_blocks_and_keeps_quoted_newlines(tmp_path):
    path = tmp_path / "metrics.csv"
    write(path, 'image,note\nb,1\nb,"two\nlines"\nc,3\na,4\na,5\n')
    assert sort_rows(path, "image", {"a": 0, "b": 1, "c": 2}) == 5
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [["image", "note"], ["a", "4"], ["a", "5"], ["b", "1"], ["b", "two\nlines"], ["c", "3"]]


def test_sort_rows_leaves_a_sorted_file_alone_and_puts_unknown_names_last(tmp_path):
    path = tmp_path / "metrics.csv"
    write(path, "image,v\na,1\nb,2\n")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert sort_rows(path, "image", {"a": 0, "b": 1}) == 2
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    write(path, "image,v\nz,0\nb,2\na,1\n")
    sort_rows(path, "image", {"a": 0, "b": 1})
    assert path.read_text() == "image,v\na,1\nb,2\nz,0\n"


def test_keep_rows_drops_only_the_named_studies(tmp_path):
    path = tmp_path / "metrics.csv"
    write(path, "image,v\na,1\nb,2\na,3\nc,4\n")
    keep_rows(path, "image", {"a", "c"})
    assert path.read_text() == "image,v\na,1\na,3\nc,4\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".partial")]


@pytest.mark.parametrize("tail", ["b,2", "b,", "", "b,2\n"])
def test_a_torn_last_line_is_cut_before_reading_and_appending(tmp_path, tail):
    path = tmp_path / "per_image.csv"
    write(path, "image,v\na,1\n" + tail)
    rows = list(read_raw_rows(path))
    whole = tail.endswith("\n")
    assert rows == [{"image": "a", "v": "1"}] + ([{"image": "b", "v": "2"}] if whole else [])
    with RowAppender(path, ("image", "v")) as append:
        append([{"image": "c", "v": 3.0}])
    assert path.read_text().endswith("a,1\n" + ("b,2\n" if whole else "") + "c,3.0000\n")


def test_reading_is_lazy(tmp_path):
    path = tmp_path / "per_image.csv"
    write(path, "image,v\na,1\n")
    rows = read_raw_rows(path)
    assert not isinstance(rows, list)
    assert next(rows) == {"image": "a", "v": "1"}
    assert list(read_raw_rows(tmp_path / "missing.csv")) == []


def test_results_are_readable_by_the_group_like_any_file(tmp_path):
    # mkstemp's 0600 would hide a cluster run's results from the colleagues it ran for.
    old = os.umask(0o022)
    try:
        made = [replace_bytes(tmp_path / "a.csv", b"x"), write_bytes_new(tmp_path / "b.png", b"y")]
    finally:
        os.umask(old)
    assert [stat.S_IMODE(p.stat().st_mode) for p in made] == [0o644, 0o644]


def _per_image(path, images: int, seed: int = 0) -> None:
    """A per_image.csv of ``images`` images x 2 labels x 3 methods (some false positives)."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, PER_IMAGE, restval="", lineterminator="\n")
        writer.writeheader()
        for i in range(images):
            rows = []
            for label in ("cardiomegaly", "effusion"):
                for method in ("gradcam", "lime", "rise"):
                    fp = rng.random() < 0.1
                    row = {"image": f"img{i:06d}", "label": label, "method": method, "probability": 0.7}
                    if fp:
                        row["false_positive"] = True
                    else:
                        row |= {"iou": float(rng.random()), "hit": float(rng.random() < 0.5)}
                        row |= {"auprc": float(rng.random()), "false_positive": False}
                        row["iou_by_threshold"] = [float(v) for v in rng.random(len(THRESHOLDS))]
                    rows.append({k: cell(v) for k, v in row.items()})
            writer.writerows(rows)


def test_summary_of_a_streamed_file_is_the_whole_lists_summary(tmp_path):
    path = tmp_path / "per_image.csv"
    _per_image(path, 400)
    rows = list(read_rows(path))
    streamed = summarise(read_rows(path), n=200, seed=4, validation={f"img{i:06d}" for i in range(0, 400, 3)})
    for line in streamed:
        group = [r for r in rows if (r["label"], r["method"]) == (line["label"], line["method"])]
        scored = [r for r in group if r["iou"] is not None]
        assert line["n"] == len(scored)
        assert (line["miou"], line["miou_low"], line["miou_high"]) == bootstrap_mean(
            [r["iou"] for r in scored], n=200, seed=4
        )
        assert line["false_positive_localizations"] == sum(r["false_positive"] for r in group)
        assert line["auprc"] == pytest.approx(np.mean([r["auprc"] for r in scored]))
        assert line["threshold"] in THRESHOLDS and 0 < line["n_tuned"] < line["n"]


def _peak(work) -> tuple[object, int]:
    tracemalloc.start()
    try:
        value = work()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # keeps the default run within its budget
def test_summary_streams_the_rows_in_a_fraction_of_the_memory_the_rows_take(tmp_path):
    path = tmp_path / "per_image.csv"
    _per_image(path, 20_000)  # 120,000 rows; a CheXlocalize-sized test set x a dozen methods is 10^6
    summary, streaming = _peak(lambda: summarise(read_rows(path), n=1000, seed=0, validation=set()))
    assert len(summary) == 6 and all(18_500 > line["n"] > 17_500 for line in summary)
    _, holding = _peak(lambda: list(read_rows(path)))  # what the rows cost held as dicts
    print(f"summary peak {streaming / 1e6:.1f} MB; the rows held {holding / 1e6:.1f} MB")
    assert streaming < holding / 4  # and the rows grow 1.4 KB each, the arrays about 0.1 KB


def test_resuming_a_file_with_other_columns_stops_before_writing(tmp_path):
    """A per_image.csv from a version with other columns: appending this version's rows under
    its header would shift every cell, so the run stops, naming the file, and leaves it as it is."""
    path = tmp_path / "per_image.csv"
    old = ",".join(PER_IMAGE[:-2]) + "\nimg,nodule,gradcam" + "," * (len(PER_IMAGE) - 5) + "\n"
    path.write_text(old)
    expected = r"per_image\.csv has other columns .* choose a new folder"
    with pytest.raises(ValueError, match=expected), RowAppender(path, PER_IMAGE):
        pass
    assert path.read_text() == old
    with RowAppender(path, tuple(PER_IMAGE[:-2])) as append:  # its own columns: resumed
        append([{"image": "b", "label": "nodule", "method": "gradcam"}])
    assert [r["image"] for r in csv.DictReader(path.open())] == ["img", "b"]
