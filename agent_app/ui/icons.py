"""Tray icons per state: the SVG assets with PNG fallbacks, or icons painted with QPainter when assets are missing.

Called on the GUI thread. `render_fallback_pngs` (used by scripts/screenshots.py --icons) renders the PNGs with QtSvg.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPainterPath, QPen, QPixmap

from agent_app.core.paths import assets_dir
from agent_app.core.status import TrayState

log = logging.getLogger(__name__)

ICON_SIZES = (16, 22, 32, 48, 64)
COLOURS = {
    TrayState.protected: "#2e7d32",
    TrayState.offline: "#616161",
    TrayState.attention: "#f9a825",
    TrayState.needs_reenrolment: "#c62828",
}
GLYPHS = {
    TrayState.protected: "check",
    TrayState.offline: "dash",
    TrayState.attention: "!",
    TrayState.needs_reenrolment: "cross",
}


def icons_dir() -> Path:
    """assets/icons in a source checkout, a PyInstaller bundle or a wheel's installed data files."""
    return assets_dir() / "icons"


def icon_name(state: TrayState) -> str:
    return f"tray-{state.value.replace('_', '-')}"


def tray_icon(state: TrayState, *, directory: Path | None = None) -> QIcon:
    folder = directory or icons_dir()
    icon = QIcon()
    svg = folder / f"{icon_name(state)}.svg"
    if svg.is_file():
        icon.addFile(str(svg))
    for size in ICON_SIZES:
        png = folder / f"{icon_name(state)}-{size}.png"
        if png.is_file():
            icon.addFile(str(png))
    if icon.isNull():
        log.warning("tray icon assets missing in %s; painting %s", folder, state.value)
        for size in ICON_SIZES:
            icon.addPixmap(QPixmap.fromImage(paint_icon(state, size)))
    return icon


def paint_icon(state: TrayState, size: int) -> QImage:
    """The same shield as the SVGs, drawn with QPainter (no QtSvg needed)."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(size / 64.0, size / 64.0)
    shield = QPainterPath()
    shield.moveTo(32, 4)
    shield.lineTo(56, 12)
    shield.lineTo(56, 30)
    shield.cubicTo(56, 45, 46, 55, 32, 60)
    shield.cubicTo(18, 55, 8, 45, 8, 30)
    shield.lineTo(8, 12)
    shield.closeSubpath()
    painter.setPen(QPen(QColor("#1b1b1b"), 3))
    painter.setBrush(QColor(COLOURS[state]))
    painter.drawPath(shield)
    glyph_colour = QColor("#1b1b1b") if state is TrayState.attention else QColor("white")
    pen = QPen(glyph_colour, 7, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    glyph = GLYPHS[state]
    if glyph == "check":
        painter.drawPolyline([QPointF(20, 32), QPointF(29, 41), QPointF(45, 23)])
    elif glyph == "dash":
        painter.drawLine(QPointF(20, 32), QPointF(44, 32))
    elif glyph == "cross":
        painter.drawLine(QPointF(22, 22), QPointF(42, 42))
        painter.drawLine(QPointF(42, 22), QPointF(22, 42))
    else:
        font = QFont()
        font.setBold(True)
        font.setPixelSize(38)
        painter.setFont(font)
        painter.drawText(QRectF(8, 8, 48, 48), Qt.AlignmentFlag.AlignCenter, "!")
    painter.end()
    return image


def render_fallback_pngs(directory: Path | None = None) -> list[Path]:
    """Render every SVG in `directory` to PNGs at ICON_SIZES with QtSvg (falls back to `paint_icon`)."""
    folder = directory or icons_dir()
    written: list[Path] = []
    from PySide6.QtSvg import QSvgRenderer  # in PySide6-Essentials; imported lazily, only this helper needs it

    for state in TrayState:
        svg = folder / f"{icon_name(state)}.svg"
        for size in ICON_SIZES:
            if svg.is_file():
                image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
                image.fill(Qt.GlobalColor.transparent)
                painter = QPainter(image)
                painter.setRenderHint(QPainter.RenderHint.Antialiasing)
                QSvgRenderer(str(svg)).render(painter)
                painter.end()
            else:
                image = paint_icon(state, size)
            target = folder / f"{icon_name(state)}-{size}.png"
            image.save(str(target))
            written.append(target)
    return written
