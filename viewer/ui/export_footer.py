"""The band under an exported picture: the colour bar of the map, the legend of the annotation's
regions, the caption and the disclaimer, laid out to the picture's width so that every word is
kept at every size (wrapped, never cut), in type a reader can read on a slide.

The band is as wide as the picture, and never narrower than ``MIN_WIDTH`` (a small picture is
centred on it). Its type grows with the width: 14 px up to 720 px, 26 px from 1248 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen

from viewer.state.overlay_text import Caption, wrap_lines
from viewer.ui.pictures import to_qimage

MIN_WIDTH = 360
BAND = QColor("#111111")
TEXT = QColor("#f0f0f0")
CAUTION = QColor("#ffcc66")  # the model's caution about this image: amber, as in the model panel


@dataclass(frozen=True)
class ColourBar:
    """A map's colour scale: its title, its 256 colours from low to high, and its range."""

    title: str
    colours: np.ndarray  # (256, 3) uint8
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class Footer:
    caption: Caption
    legend: tuple[tuple[str, str], ...] = ()  # (label, outline colour) of each region drawn
    bar: ColourBar | None = None


def font_size(width: int) -> int:
    return max(14, min(26, width // 48))


def _fonts(width: int) -> tuple[QFont, QFont]:
    font = QFont()
    font.setPixelSize(font_size(width))
    bold = QFont(font)
    bold.setBold(True)
    return font, bold


def caption_lines(caption: Caption, picture_width: int) -> tuple[list[str], list[str], list[str]]:
    """The lines the band under a picture ``picture_width`` wide gives the caption's facts, the
    caution and the disclaimer."""
    width = max(picture_width, MIN_WIDTH)
    font, bold = _fonts(width)
    inner = width - 2 * round(font.pixelSize() * 0.6)
    plain, heavy = QFontMetrics(font).horizontalAdvance, QFontMetrics(bold).horizontalAdvance
    return (
        wrap_lines(caption.facts, inner, plain),
        wrap_lines([caption.caution], inner, plain),
        wrap_lines([caption.disclaimer], inner, heavy),
    )


def with_footer(picture: QImage, footer: Footer) -> QImage:
    """``picture`` above a dark band holding ``footer``."""
    width = max(picture.width(), MIN_WIDTH)
    font, bold = _fonts(width)
    plain_metrics = QFontMetrics(font)
    pad = round(font.pixelSize() * 0.6)
    inner = width - 2 * pad
    facts, caution, disclaimer = caption_lines(footer.caption, picture.width())
    legend = _legend_rows(footer.legend, inner, plain_metrics)
    line = plain_metrics.lineSpacing()
    bar_height = _bar_height(footer.bar, inner, font) if footer.bar is not None else 0
    height = pad + bar_height + line * (len(legend) + len(facts) + len(caution) + len(disclaimer)) + pad

    out = QImage(width, picture.height() + height, QImage.Format.Format_RGB888)
    out.fill(BAND)
    painter = QPainter(out)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    painter.drawImage((width - picture.width()) // 2, 0, picture)
    y = picture.height() + pad
    painter.setFont(font)
    if footer.bar is not None:
        _draw_bar(painter, footer.bar, pad, y, inner, font)
        y += bar_height
    for row in legend:
        _draw_legend_row(painter, row, pad, y, plain_metrics)
        y += line
    for lines, colour, face in ((facts, TEXT, font), (caution, CAUTION, font), (disclaimer, TEXT, bold)):
        painter.setFont(face)
        painter.setPen(colour)
        for text in lines:
            painter.drawText(QRectF(pad, y, inner, line), int(_LEFT), text)
            y += line
    painter.end()
    return out


_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter


# --- the colour bar ----------------------------------------------------------------------------
def _title_above(bar: ColourBar, width: int, font: QFont) -> bool:
    """Whether the bar's title goes on a line of its own (a line too narrow for it and the scale)."""
    size = font.pixelSize()
    return QFontMetrics(font).horizontalAdvance(bar.title) + size + 6 * size > width


def _bar_height(bar: ColourBar, width: int, font: QFont) -> int:
    size, line = font.pixelSize(), QFontMetrics(font).lineSpacing()
    return (line if _title_above(bar, width, font) else 0) + round(size * 0.9) + 3 + line + round(size * 0.3)


def _draw_bar(painter: QPainter, bar: ColourBar, x: int, y: int, width: int, font: QFont) -> None:
    """``title  [colours from low to high]``, the low, middle and high values under the colours
    (the title on a line above them where the line is too narrow for both)."""
    metrics = QFontMetrics(font)
    size, line = font.pixelSize(), metrics.lineSpacing()
    thickness = round(size * 0.9)
    painter.setPen(TEXT)
    if _title_above(bar, width, font):
        painter.drawText(QRectF(x, y, width, line), int(_LEFT), bar.title)
        y += line
        left = x
    else:
        title_width = metrics.horizontalAdvance(bar.title)
        painter.drawText(QRectF(x, y, title_width + 2, thickness), int(_LEFT), bar.title)
        left = x + title_width + size
    length = min(x + width - left, 16 * size)
    rect = QRectF(left, y, length, thickness)
    painter.drawImage(rect, to_qimage(np.ascontiguousarray(bar.colours[None, :, :], np.uint8)))
    painter.setPen(QPen(QColor("#808080"), 1))
    painter.drawRect(rect.adjusted(-0.5, -0.5, 0.5, 0.5))
    painter.setPen(TEXT)
    for i, value in enumerate((bar.low, (bar.low + bar.high) / 2, bar.high)):
        text = f"{value:g}"
        centre = left + length * i / 2
        text_width = metrics.horizontalAdvance(text)
        tx = min(max(centre - text_width / 2, left), left + length - text_width)
        painter.drawLine(QPointF(centre, y + thickness), QPointF(centre, y + thickness + 3))
        painter.drawText(QRectF(tx, y + thickness + 3, text_width + 2, line), int(_LEFT), text)


# --- the legend of the annotation's regions --------------------------------------------------------
_SWATCH = 1.6  # the outline sample's length, in font sizes


def _legend_items(legend: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [("Annotation:", ""), *legend] if legend else []


def _legend_rows(
    legend: tuple[tuple[str, str], ...], width: int, metrics: QFontMetrics
) -> list[list[tuple[str, str]]]:
    """The legend's items (``Annotation:``, then a line of each region's colour and its label)
    in rows no wider than ``width``."""
    rows: list[list[tuple[str, str]]] = []
    used = width + 1
    for label, colour in _legend_items(legend):
        need = _item_width(label, colour, metrics)
        if used + need > width and (not rows or rows[-1]):
            rows.append([])
            used = 0
        rows[-1].append((label, colour))
        used += need
    return rows


def _item_width(label: str, colour: str, metrics: QFontMetrics) -> int:
    size = metrics.height()
    swatch = round(_SWATCH * size) + size // 3 if colour else 0
    return swatch + metrics.horizontalAdvance(label) + size


def _draw_legend_row(
    painter: QPainter, row: list[tuple[str, str]], x: int, y: int, metrics: QFontMetrics
) -> None:
    size = metrics.height()
    line = metrics.lineSpacing()
    for label, colour in row:
        if colour:
            length = round(_SWATCH * size)
            painter.setPen(QPen(QColor(colour), max(2.0, size / 6)))
            painter.drawLine(QPointF(x, y + line / 2), QPointF(x + length, y + line / 2))
            x += length + size // 3
        painter.setPen(TEXT)
        painter.drawText(QRectF(x, y, metrics.horizontalAdvance(label) + 2, line), int(_LEFT), label)
        x += metrics.horizontalAdvance(label) + size
