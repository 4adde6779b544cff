"""MkDocs hook: the tables the docs generate from the program's own registries, so a method's
title, reference and caveat are written once, on its class, and the docs cannot drift from them.

A page asks for a table with a marker on a line of its own: ``<!-- generated: methods -->``.
An unknown marker stops the build (the site is built with ``strict``).
"""

from __future__ import annotations

import re
from pathlib import Path

_MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)
ROOT = Path(__file__).resolve().parents[2]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def methods_table() -> str:
    from viewer.explain.registry import METHODS, speed_label

    rows = [
        "| Method | id | Family | Cost | Typical time | Default | Reference | Caveat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method_id, cls in METHODS.items():
        rows.append(
            f"| {_cell(cls.title)} | `{method_id}` | {_cell(cls.family.description)} | {cls.cost} | "
            f"{speed_label(method_id) or 'under 1 s'} | {'yes' if cls.default else ''} | "
            f"{_cell(cls.reference)} | {_cell(cls.caveat)} |"
        )
    return "\n".join(rows)


def metrics_table() -> str:
    from viewer.explain.metric_catalog import FILES, METRICS, column_of

    head = " | ".join(f"column in {f}" for f in FILES)
    rows = [
        f"| Score | id | Better | Needs | Definition | Reference | {head} |",
        "|---" * (6 + len(FILES)) + "|",
    ]
    for metric_id, m in METRICS.items():
        columns = " | ".join(f"`{column_of(metric_id, f)}`" for f in FILES)
        rows.append(
            f"| {_cell(m.title)} | `{metric_id}` | {m.better or '(context)'} | {m.needs} | "
            f"{_cell(m.definition)} | {_cell(m.reference)} | {columns} |"
        )
    return "\n".join(rows)


def contributing() -> str:
    """CONTRIBUTING.md at the repository root (where code hosts show it), as a page of the site."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    text = text.split("\n", 1)[1] if text.startswith("# ") else text
    return text.replace("](docs/", "](")  # its links into docs/ as the site's own pages


def security() -> str:
    """SECURITY.md at the repository root, as a page of the site."""
    text = (ROOT / "SECURITY.md").read_text()
    return text.split("\n", 1)[1] if text.startswith("# ") else text


GENERATED = {
    "methods": methods_table,
    "metrics": metrics_table,
    "contributing": contributing,
    "security": security,
}


def on_files(files, config):
    """The README's screenshots (resources/docs/, where the wheel leaves them out) as the site's
    assets/: the pages show them as ``assets/<name>``."""
    from mkdocs.structure.files import File

    for picture in sorted((ROOT / "resources" / "docs").glob("*")):
        if picture.suffix.lower() in (".png", ".jpg", ".jpeg", ".svg"):
            files.append(File.generated(config, f"assets/{picture.name}", abs_src_path=str(picture)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs calls it by these names
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATED:
            raise ValueError(
                f"{page.file.src_path}: no generated table {name!r} (known: {', '.join(GENERATED)})"
            )
        return GENERATED[name]()

    return _MARKER.sub(replace, markdown)
