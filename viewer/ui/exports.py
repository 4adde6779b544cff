"""Annotated screenshots (the view, the image at native resolution, a contact sheet of all methods),
the clipboard, and DICOM exports of the map on screen.

Every export burns in what a reader needs to interpret it, in a band under the picture
(``ui/export_footer.py``) wrapped to its width so nothing is cut at any size: method, target label
and probability, model, the model's caution about this image, "AI-generated, not for diagnosis" on
a line of its own, the legend of the annotation's regions, and the colour bar (the view's own bar
is in the screenshot of the view; the native image gets one in the band). Corner text is drawn
with a dark outline, so it reads on a white film. Patient identifiers are hidden unless the user
turned "Show patient identifiers in exports" on; ``--screenshot`` is an export too
(:func:`render_window`). Files are written atomically and never replace a file. :func:`save` is the
one way the File menu and the command line (``--export``, ``--export-native``) write them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QImage, QPainter, QTransform
from PySide6.QtWidgets import QWidget

from viewer.explain.registry import title_of
from viewer.io.atomic import write_bytes_new
from viewer.io.overlay import blend, colormap
from viewer.io.safe_text import printable
from viewer.io.voi import to_display
from viewer.state import SaliencyLayer, ViewerState
from viewer.state.overlay_text import Caption, corner_texts, export_caption
from viewer.state.session import ViewerSession
from viewer.ui.canvas import ImageCanvas, draw_outlined_text
from viewer.ui.export_footer import ColourBar, Footer, with_footer
from viewer.ui.layer_items import annotation_outlines, cosmetic_pen, label_colour, outline_path
from viewer.ui.pictures import from_qimage, to_qimage

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


@dataclass(frozen=True)
class ExportContext:
    """What an export reads: the session (image, layers, target, prediction, caution), the view
    for screenshots, and whether patient identifiers are hidden."""

    session: ViewerSession
    canvas: ImageCanvas | None = None
    hide_phi: bool = True

    @property
    def state(self) -> ViewerState:
        return self.session.state

    def probability(self) -> float | None:
        return self.session.model.probability()

    @property
    def caution(self) -> str | None:
        return self.session.model.caution


def export_caption_of(ctx: ExportContext, method: str | None = None) -> Caption:
    """The caption of the layer of ``method`` (default: the active one): see :class:`Caption`."""
    return export_caption(ctx.state, method=method, probability=ctx.probability(), caution=ctx.caution)


def caption(ctx: ExportContext, method: str | None = None) -> str:
    """``Grad-CAM | effusion p=0.931 | cxr_resnet18 | AI-generated, not for diagnosis``, one line
    (a DICOM Secondary Capture's description; pictures wrap it: :func:`footer`)."""
    return printable(export_caption_of(ctx, method).text())


def legend(ctx: ExportContext) -> tuple[tuple[str, str], ...]:
    """``(label, colour)`` of each annotation label outlined on the slice on screen, in the colours
    the outlines are drawn with (the label is the annotation file's text: printable)."""
    state = ctx.state
    annotation, image = state.annotation, state.image
    if image is None or annotation is None or not state.show_annotation:
        return ()
    labels = annotation.labels
    return tuple(
        (printable(label), label_colour(labels, label))
        for label in labels
        if annotation.mask(image, label)[state.frame].any()
    )


def colour_bar(ctx: ExportContext, method: str | None = None) -> ColourBar | None:
    """The colour scale of the layer of ``method`` (default: the active layer, when shown), as
    the canvas's bar shows it: the whole colour map over [0, 1], or [-1, 1] for a signed map."""
    state = ctx.state
    layer = state.layer(method) if method else state.active()
    if layer is None or (method is None and not layer.visible) or layer.values(state.frame) is None:
        return None
    low = -1.0 if layer.signed else 0.0
    return ColourBar(printable(layer.title), colormap(layer.colormap), low, 1.0)


def footer(ctx: ExportContext, method: str | None = None, *, bar: bool = True) -> Footer:
    return Footer(export_caption_of(ctx, method), legend(ctx), colour_bar(ctx, method) if bar else None)


# --- rendering ------------------------------------------------------------------------------
def render_view(ctx: ExportContext) -> QImage:
    """The canvas as on screen (zoom, pan, visible layers, colour bar, annotation), with the corner
    text re-rendered without identifiers when they are hidden, and the band below (legend,
    caption; the canvas's own colour bar is in the picture)."""
    canvas = ctx.canvas
    if canvas is None:
        raise ValueError("no view to take a screenshot of")
    if not canvas.isVisible():
        # Behind another tab the view has not laid out what changed since (the colour bar's axis
        # takes its width from its labels once painted): paint, lay out, then grab. Before the
        # corners are set as exported: the new layout re-zooms, and the window re-writes them.
        # A paint can change the axis's width again (its labels measured at the new size), so
        # paint and lay out until the colour bar stops moving (two rounds in practice).
        before = None
        for _ in range(4):
            canvas.grab()
            canvas.layout_item.layout.invalidate()
            canvas.layout_item.layout.activate()
            now = (canvas.colorbar.geometry(), canvas.colorbar.getAxis("right").width())
            if now == before:
                break
            before = now
    with corners_as_exported(ctx):
        shot = canvas.grab().toImage()
    return with_footer(shot, footer(ctx, bar=not canvas.colorbar.isVisible()))


def render_window(window: QWidget, ctx: ExportContext) -> QImage:
    """The whole window as ``--screenshot`` and the self-test save it. A picture of the study that
    leaves the viewer, so an export like the others: the corner text without identifiers unless
    ``ctx`` shows them."""
    with corners_as_exported(ctx):
        return window.grab().toImage()


@contextmanager
def corners_as_exported(ctx: ExportContext) -> Iterator[None]:
    """The canvas's corner text as exports show it (identifiers hidden unless ``ctx`` shows
    them) for the duration, held there (a zoom the grab sets off does not write the on-screen
    text back), then as on screen again."""
    canvas = ctx.canvas
    if canvas is None:
        yield
        return
    corners = canvas.corners
    corners.set_texts(corner_texts(ctx.state, canvas.zoom(), hide_phi=ctx.hide_phi))
    corners.held = True
    try:
        yield
    finally:
        corners.held = False
        corners.set_texts(corner_texts(ctx.state, canvas.zoom()))


def compose_native(ctx: ExportContext, layers: list[SaliencyLayer] | None = None) -> np.ndarray:
    """RGB uint8 at the image's native pixel grid: windowed image, the given layers (default: the
    visible ones) with their own colour map, threshold and opacity, in drawing order."""
    state = ctx.state
    image = state.image
    if image is None:
        raise ValueError("no image is open")
    rgb = to_display(image, state.frame, state.voi, state.invert)
    layers = [layer for layer in state.layers if layer.visible] if layers is None else layers
    for layer in layers:
        values = layer.values(state.frame)
        if values is None:
            continue
        rgb = (
            blend(
                rgb,
                values,
                cmap=layer.colormap,
                opacity=layer.opacity,
                signed=layer.signed,
                low=layer.low,
                high=layer.high,
            ).astype(np.float32)
            / 255
        )
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def draw_annotation(image: QImage, ctx: ExportContext, scale: float = 1.0) -> None:
    """Burn the annotation outlines of the current frame into ``image`` (native grid x ``scale``),
    the same outlines the canvas draws."""
    drawn = annotation_outlines(ctx.state)
    if not drawn:
        return
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setTransform(QTransform.fromScale(scale, scale))
    for colour, mask in drawn:
        painter.setPen(cosmetic_pen(colour, max(1.5, image.width() / 600)))
        painter.drawPath(outline_path(mask))
    painter.end()


def draw_corners(image: QImage, texts: dict[str, str]) -> None:
    """The corner text in light type with a dark outline (it reads on a white film too)."""
    painter = QPainter(image)
    font = QFont()
    font.setPixelSize(max(12, image.width() // 56))
    painter.setFont(font)
    margin = font.pixelSize() // 2
    rect = QRectF(margin, margin, image.width() - 2 * margin, image.height() - 2 * margin)
    flags = {
        "top_left": Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft,
        "top_right": Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight,
        "bottom_left": Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
        "bottom_right": Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignRight,
    }
    halo = max(1, font.pixelSize() // 12)
    for corner, text in texts.items():
        if text:
            draw_outlined_text(painter, rect, int(flags[corner]), text, halo=halo)
    painter.end()


def with_caption(image: QImage, text: str) -> QImage:
    """``image`` with a dark band below it holding ``text`` (wrapped: a contact sheet's tile)."""
    return with_footer(image, Footer(Caption((text,), disclaimer="")))


def render_native(
    ctx: ExportContext, layers: list[SaliencyLayer] | None = None, method: str | None = None
) -> QImage:
    """The image at native resolution with layers, annotation and corner text burned in, and the
    band below: the colour bar of ``method``'s layer (default: the active one), the legend of the
    annotation's regions, the caption."""
    state = ctx.state
    image = state.image
    shot = to_qimage(compose_native(ctx, layers))
    draw_annotation(shot, ctx)
    aspect = image.geometry.pixel_aspect
    if abs(aspect - 1.0) > 1e-3:  # square pixels on screen: stretch rows by their spacing
        height = round(image.rows * aspect)
        shot = shot.scaled(image.columns, height, mode=Qt.TransformationMode.SmoothTransformation)
    draw_corners(shot, corner_texts(state, 1.0, hide_phi=ctx.hide_phi))
    return with_footer(shot, footer(ctx, method))


def render_contact_sheet(ctx: ExportContext, tile: int = 512) -> QImage:
    """The image with its annotation, then every computed layer of this frame, side by side."""
    state = ctx.state
    layers = [layer for layer in state.layers if layer.values(state.frame) is not None]
    if not layers:
        raise ValueError("no saliency maps computed for this image yet")
    tiles = [("Image", render_tile(ctx, [], tile))]
    tiles += [(layer.title, render_tile(ctx, [layer], tile, layer.method)) for layer in layers]
    columns = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    width, height = tiles[0][1].width(), max(t.height() for _, t in tiles)
    sheet = QImage(columns * width, rows * height, QImage.Format.Format_RGB888)
    sheet.fill(QColor("#111111"))
    painter = QPainter(sheet)
    for i, (_title, picture) in enumerate(tiles):
        painter.drawImage((i % columns) * width, (i // columns) * height, picture)
    painter.end()
    whole = export_caption_of(ctx)
    facts = tuple(printable(p) for p in (state.target, state.model) if p)
    return with_footer(sheet, Footer(Caption(facts, whole.caution), legend(ctx)))


def render_tile(
    ctx: ExportContext, layers: list[SaliencyLayer], size: int, method: str | None = None
) -> QImage:
    state = ctx.state
    image = state.image
    picture = to_qimage(compose_native(ctx, layers))
    height = round(size * image.rows * image.geometry.pixel_aspect / image.columns)
    picture = picture.scaled(size, height, mode=Qt.TransformationMode.SmoothTransformation)
    draw_annotation(picture, ctx, scale=size / image.columns)
    title = title_of(method) if method else "Image"
    if method:
        probability = ctx.probability()
        title += f"  ({state.target} p={probability:.3f})" if probability is not None else ""
    return with_caption(picture, title)


# --- writing --------------------------------------------------------------------------------
def encode(image: QImage, suffix: str) -> bytes:
    fmt = FORMATS.get(suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported image format {suffix!r}: use .png, .jpg or .jpeg")
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, fmt, 92 if fmt == "JPEG" else -1):
        raise ValueError(f"could not encode the image as {fmt}")
    buffer.close()
    return bytes(data.data())


def save_image(image: QImage, path: Path) -> Path:
    return write_bytes_new(path, encode(image, Path(path).suffix))


def save_view(ctx: ExportContext, path: Path) -> Path:
    return save_image(render_view(ctx), path)


def save_native(ctx: ExportContext, path: Path) -> Path:
    _require_image(ctx)
    return save_image(render_native(ctx), path)


def save_contact_sheet(ctx: ExportContext, path: Path) -> Path:
    _require_image(ctx)
    return save_image(render_contact_sheet(ctx), path)


SAVES = {"view": save_view, "native": save_native, "sheet": save_contact_sheet}


def save(kind: str, ctx: ExportContext, path: Path) -> Path:
    """Write the export ``kind`` to ``path``: ``view`` (the screen, File > Export screenshot of the
    view and ``--export``), ``native`` (the image's own grid, File > Export image at native
    resolution and ``--export-native``) or ``sheet`` (every method). PNG or JPEG by the suffix."""
    return SAVES[kind](ctx, Path(path))


def copy_view(ctx: ExportContext) -> None:
    QGuiApplication.clipboard().setImage(render_view(ctx))


def save_dicom(ctx: ExportContext, kind: str, path: Path, *, anonymize: bool | None = None) -> Path:
    """``pm``: the active layer's map, as a Parametric Map over a CT slice or a fractional
    Segmentation over a radiograph (:func:`viewer.io.dicom_export.write_saliency_map`); ``sc``:
    the native render (layers and annotation burned in) as a Secondary Capture. Both reference
    the source study. ``anonymize`` (default: as identifiers are hidden) de-identifies the header;
    sending into the source study on its own PACS keeps it, while the picture follows ``hide_phi``."""
    from viewer.io import dicom_export

    state = ctx.state
    image = _require_image(ctx)
    if image.kind != "dicom":
        raise ValueError("DICOM export needs a DICOM source image (this one is a PNG/JPEG)")
    anonymize = ctx.hide_phi if anonymize is None else anonymize
    if kind == "pm":
        layer = state.active()
        values = layer.values(state.frame) if layer is not None else None
        if values is None:
            raise ValueError("no saliency map on this image to export: run a method first")
        dicom_export.write_saliency_map(
            image,
            values[None],
            frames=[state.frame],
            out=path,
            method=layer.title,
            target=state.target,
            model_name=state.model,
            convention=layer.convention,
            anonymize=anonymize,
        )
        return path
    rgb = from_qimage(render_native(ctx))
    return dicom_export.write_secondary_capture(
        image,
        rgb,
        frame=state.frame,
        out=path,
        description=caption(ctx),
        anonymize=anonymize,
        # The corner text shows the patient's name and ID only when identifiers are shown.
        burned_in_annotation=not ctx.hide_phi,
    )


def _require_image(ctx: ExportContext):
    if ctx.state.image is None:
        raise ValueError("no image is open")
    return ctx.state.image
