"""The four-corner text of a view (patient, study, series, window, slice, zoom) and the caption
of an export (method, target and probability, model, the model's caution, the disclaimer), Qt-free.

Exports hide patient identifiers by default: ``hide_phi`` leaves out the name, ID, birth date,
accession number and institution (the fields ``Identity.PHI_FIELDS`` names). Every header field is
shown through ``printable`` (one line each, control characters as ``\\x1b``): the header is the
sender's text, and the corner labels are rich-text capable Qt labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from viewer.io.image import Identity, VoiLut, Window
from viewer.io.safe_text import printable
from viewer.state.viewer_state import ViewerState


def _date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def _name(value: str) -> str:
    return " ".join(part for part in value.replace("^", " ").split() if part)


def corner_texts(state: ViewerState, zoom: float, *, hide_phi: bool = False) -> dict[str, str]:
    """Text for ``top_left``, ``top_right``, ``bottom_left`` and ``bottom_right``."""
    image = state.image
    if image is None:
        return {}
    ident: Identity = image.identity
    top_left = []
    if not hide_phi:
        top_left += [_name(ident.patient_name), ident.patient_id and f"ID {ident.patient_id}"]
        birth = _date(ident.patient_birth_date)
        top_left.append(" ".join(p for p in (ident.patient_sex, birth and f"born {birth}") if p))
    top_right = [
        ident.institution if not hide_phi else "",
        ident.study_description,
        " ".join(p for p in (_date(ident.study_date), ident.study_time[:4]) if p),
        " ".join(p for p in (ident.modality, ident.series_number and f"#{ident.series_number}") if p),
        ident.series_description,
    ]
    bottom_left = []
    if image.n_frames > 1:
        info = image.frames[state.frame]
        position = ""
        if image.is_volume and info.position is not None and image.geometry.origin is not None:
            position = f"  z {info.position[2]:.1f} mm"
        bottom_left.append(f"Im {state.frame + 1}/{image.n_frames}{position}")
        if info.slice_thickness:
            bottom_left.append(f"Thk {info.slice_thickness:g} mm")
    bottom_left.append(f"{image.rows} x {image.columns}")
    voi = state.voi
    if isinstance(voi, Window):
        window = f"W {voi.width:.0f}  L {voi.center:.0f}"
        bottom_right = [f"{window}  ({voi.name})" if voi.name else window]
    elif isinstance(voi, VoiLut):
        bottom_right = [f"VOI LUT {voi.name}".strip()]
    else:
        bottom_right = []
    if state.invert != image.invert:
        bottom_right.append("Inverted")
    bottom_right.append(f"Zoom {zoom * 100:.0f}%")
    if image.units:
        bottom_right.append(image.units)
    return {
        "top_left": "\n".join(printable(p) for p in top_left if p),
        "top_right": "\n".join(printable(p) for p in top_right if p),
        "bottom_left": "\n".join(bottom_left),
        "bottom_right": "\n".join(bottom_right),
    }


def cursor_text(state: ViewerState, where: tuple[int, int] | None) -> str:
    """The status bar's readout under the cursor: position, pixel value with its units, and the
    selected layer's value there when it is shown."""
    image = state.image
    if where is None or image is None:
        return ""
    row, col = where
    value = image.frame(state.frame)[row, col]
    if image.is_color:
        text = f"x {col}  y {row}  RGB {tuple(int(v) for v in value)}"
    else:
        text = f"x {col}  y {row}  {float(value):.1f} {image.units}".rstrip()
    layer = state.active()
    if layer is not None and layer.visible:
        values = layer.values(state.frame)
        if values is not None:
            text += f"  |  {printable(layer.title)} {float(values[row, col]):+.3f}"
    return text


# --- the caption of an export -----------------------------------------------------------------
DISCLAIMER = "AI-generated, not for diagnosis"


@dataclass(frozen=True)
class Caption:
    """What an export says under the picture: ``facts`` (method, target with its probability,
    model; each kept whole on a line), the model's ``caution`` about this image, and the
    disclaimer, which has a line of its own."""

    facts: tuple[str, ...]
    caution: str = ""
    disclaimer: str = DISCLAIMER

    def text(self) -> str:
        """One line: ``Grad-CAM | effusion p=0.931 | cxr_resnet18 | AI-generated, not for diagnosis``."""
        return " | ".join(p for p in (*self.facts, self.caution, self.disclaimer) if p)


def export_caption(
    state: ViewerState,
    *,
    method: str | None = None,
    probability: float | None = None,
    caution: str | None = None,
) -> Caption:
    """The caption of the layer of ``method`` (default: the active one) for the target, with the
    model's ``caution`` (``"<model>: <what to know>"``, the model named just before). Labels and
    the model's name are the manifest's text: shown through ``printable``."""
    layer = state.layer(method) if method else state.active()
    facts = []
    if layer is not None:
        facts.append(layer.title)
    if state.target:
        facts.append(f"{state.target} p={probability:.3f}" if probability is not None else state.target)
    if state.model:
        facts.append(state.model)
    said = caution.split(": ", 1)[-1] if caution else ""
    return Caption(tuple(printable(f) for f in facts), printable(said))


def wrap_lines(parts: Sequence[str], width: float, advance: Callable[[str], float]) -> list[str]:
    """``parts`` joined by `` | `` in lines at most ``width`` wide (``advance`` measures a
    string), broken between parts; a part wider than a line is broken between words, and a word
    wider than a line between characters. Nothing is left out: the lines hold every character of
    every part (the separators at a break are dropped)."""
    return _fill([p for p in parts if p], 0, width, advance)


# What joins the units of each level: parts, the words of a part, the characters of a word.
_JOINS = (" | ", " ", "")


def _fill(units: Sequence[str], level: int, width: float, advance: Callable[[str], float]) -> list[str]:
    """Greedy lines of ``units`` joined by ``_JOINS[level]``; a unit wider than a line is filled
    at the next level (its words, then its characters), a character on a line of its own."""
    join = _JOINS[level]
    lines: list[str] = []
    line = ""
    for unit in units:
        joined = f"{line}{join}{unit}" if line else unit
        if advance(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        finer = level + 1 < len(_JOINS) and advance(unit) > width
        pieces = (
            _fill(unit.split(" ") if level == 0 else list(unit), level + 1, width, advance)
            if finer
            else [unit]
        )
        lines += pieces[:-1]
        line = pieces[-1] if pieces else ""
    if line:
        lines.append(line)
    return lines


def _break_words(text: str, width: float, advance: Callable[[str], float]) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        joined = f"{line} {word}" if line else word
        if advance(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        line = ""
        for char in word:  # a word wider than the line: as many characters as fit
            if line and advance(line + char) > width:
                lines.append(line)
                line = ""
            line += char
    lines.append(line)
    return lines
