"""Render the app icon for every platform: PNG sizes (Linux), .ico (Windows), .icns (macOS).

    python installer/make_icons.py resources/icons/saliency-viewer.svg OUT_DIR

Qt renders the SVG (so the icon needs no other SVG library); Pillow packs the .ico and .icns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, out: Path) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    pngs = []
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        path = out / f"saliency-viewer-{size}.png"
        image.save(str(path))
        pngs.append(path)
    return pngs


def main() -> None:
    from PIL import Image

    svg, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    pngs = render(svg, out)
    largest = Image.open(pngs[-1])
    largest.save(out / "saliency-viewer.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    largest.save(out / "saliency-viewer.icns")
    print(f"icons: {out}")


if __name__ == "__main__":
    main()
