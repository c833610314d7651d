"""Small line plots drawn with Pillow (no plotting library needed): curves over frames, scaling laws."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (23, 190, 207)]


@dataclass
class Series:
    """One curve: x and y values, a legend label, and whether to draw markers only (points) or a line."""

    x: Sequence[float]
    y: Sequence[float]
    label: str
    points: bool = False
    dashed: bool = False
    markers: bool = True  # small dots on the data points of a line


def _ticks(lo: float, hi: float, log: bool, count: int = 5) -> list[float]:
    if log:
        return [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                for m in (1, 2, 5) if lo <= m * 10.0**e <= hi] or [lo, hi]
    step = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(step)) if step > 0 else 1
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= step), default=step)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def line_plot(series: list[Series], path: Path, title: str, xlabel: str, ylabel: str, log_x: bool = False,
              log_y: bool = False, size: tuple[int, int] = (720, 460), ylim: Optional[tuple[float, float]] = None) -> Path:
    """Draw ``series`` into a PNG at ``path`` (written atomically)."""
    from PIL import Image, ImageDraw

    from render3d.images import write_png

    width, height = size
    left, right, top, bottom = 70, 20, 50, 60
    xs = np.concatenate([np.asarray(s.x, float) for s in series])
    ys = np.concatenate([np.asarray(s.y, float) for s in series])
    ys = ys[np.isfinite(ys)]
    x_lo, x_hi = float(xs.min()), float(xs.max())
    y_lo, y_hi = ylim or (float(ys.min()), float(ys.max()))
    if not log_y and ylim is None:
        pad = 0.05 * (y_hi - y_lo or 1.0)
        y_lo, y_hi = y_lo - pad, y_hi + pad
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    x0, x1, y0, y1 = tx(x_lo), tx(x_hi), ty(y_lo), ty(y_hi)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (tx(x) - x0) / (x1 - x0) * (width - left - right),
                height - bottom - (ty(y) - y0) / (y1 - y0) * (height - top - bottom))

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    for v in _ticks(x_lo, x_hi, log_x):
        x, _ = px(v, y_lo)
        draw.line([x, height - bottom, x, height - bottom + 5], fill=(0, 0, 0))
        draw.text((x - 12, height - bottom + 8), f"{v:.3g}", fill=(0, 0, 0))
    for v in _ticks(y_lo, y_hi, log_y):
        _, y = px(x_lo, v)
        draw.line([left - 5, y, width - right, y], fill=(225, 225, 225))
        draw.text((5, y - 6), f"{v:.4g}", fill=(0, 0, 0))
    draw.text((left, 8), title, fill=(0, 0, 0))
    draw.text(((width - len(xlabel) * 6) / 2, height - 25), xlabel, fill=(0, 0, 0))
    draw.text((5, top - 20), ylabel, fill=(0, 0, 0))
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = [px(x, y) for x, y in zip(s.x, s.y) if math.isfinite(y)]
        if s.points:
            for x, y in pts:
                draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
        elif s.dashed:
            for a, b in zip(pts[:-1], pts[1:]):
                for t in np.arange(0, 1, 0.2):
                    p0 = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
                    p1 = (a[0] + (b[0] - a[0]) * (t + 0.1), a[1] + (b[1] - a[1]) * (t + 0.1))
                    draw.line([p0, p1], fill=color, width=2)
        else:
            draw.line(pts, fill=color, width=2)
            for x, y in pts if s.markers else []:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
        ly = top + 8 + 16 * i
        draw.line([width - right - 230, ly + 6, width - right - 205, ly + 6], fill=color, width=3)
        draw.text((width - right - 200, ly), s.label, fill=(0, 0, 0))
    write_png(path, np.asarray(img))
    return Path(path)
