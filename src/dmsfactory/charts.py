"""The dataset card's two chart kinds, drawn with Pillow: overlaid histograms and stacked bars.

Every run's ``finalize`` draws them (the card's class balance, the privacy report's distance
histograms). With matplotlib they took ~1.3 s of a demo run's ~15 s, after its workers had ended:
time no other process could use (docs/orchestration.md). These draw the same content (bars, axes with
round ticks, a title, a legend, vertical threshold lines) in a few milliseconds.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

# matplotlib's first default colours (tab10), so the charts keep the colours they had
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75))
LINE_COLOURS = {"black": (0, 0, 0), "red": (214, 39, 40)}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2 or 5 x 10^k) covering [lo, hi] with about ``n`` intervals."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int(math.floor((hi - first) / step + 1e-9)) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:g}"


class _Axes:
    """A plot area in a Pillow image with data -> pixel transforms, ticks, labels and a title."""

    def __init__(self, size: tuple[int, int], xlim: tuple[float, float], ylim: tuple[float, float], title: str,
                 xlabel: str, ylabel: str, xticks: bool = True):
        from PIL import Image, ImageDraw, ImageFont

        self.img = Image.new("RGBA", size, (255, 255, 255, 255))
        self.draw = ImageDraw.Draw(self.img)
        self.font, self.small, self.bold = (ImageFont.load_default(size=s) for s in (11, 9, 12))
        w, h = size
        self.x0, self.x1, self.y0, self.y1 = 58, w - 12, 28, h - (58 if not xticks else 44)
        self.xlim, self.ylim = xlim, ylim
        d = self.draw
        d.text((w / 2, 8), title, fill="black", font=self.bold, anchor="mt")
        _text_turned(self.img, ylabel, (4, (self.y0 + self.y1) / 2), 90, self.font)
        d.text(((self.x0 + self.x1) / 2, h - 6), xlabel, fill="black", font=self.font, anchor="mb")
        for t in nice_ticks(*ylim):
            y = self.py(t)
            d.line((self.x0 - 4, y, self.x0, y), fill="black")
            d.line((self.x0 + 1, y, self.x1, y), fill=(235, 235, 235))
            d.text((self.x0 - 6, y), _fmt(t), fill="black", font=self.small, anchor="rm")
        if xticks:
            for t in nice_ticks(*xlim, n=8):
                x = self.px(t)
                d.line((x, self.y1, x, self.y1 + 4), fill="black")
                d.text((x, self.y1 + 6), _fmt(t), fill="black", font=self.small, anchor="mt")

    def px(self, x: float) -> float:
        a, b = self.xlim
        return self.x0 + (x - a) / (b - a) * (self.x1 - self.x0)

    def py(self, y: float) -> float:
        a, b = self.ylim
        return self.y1 - (y - a) / (b - a) * (self.y1 - self.y0)

    def legend(self, items: list[tuple[str, tuple[int, int, int], str]]) -> None:
        """``items``: (label, colour, "box" | "line"), top right inside the plot."""
        if not items:
            return
        d = self.draw
        wmax = max(d.textbbox((0, 0), lab, font=self.small)[2] for lab, _, _ in items)
        x = self.x1 - wmax - 28
        y = self.y0 + 4
        d.rectangle((x - 4, y - 3, self.x1 - 4, y + 13 * len(items)), fill=(255, 255, 255, 255), outline=(200, 200, 200))
        for i, (lab, col, kind) in enumerate(items):
            yy = y + 13 * i + 5
            if kind == "box":
                d.rectangle((x, yy - 4, x + 14, yy + 4), fill=col)
            else:
                d.line((x, yy, x + 14, yy), fill=col, width=2)
            d.text((x + 19, yy), lab, fill="black", font=self.small, anchor="lm")

    def png(self) -> bytes:
        d = self.draw
        d.rectangle((self.x0, self.y0, self.x1, self.y1), outline="black")
        buf = io.BytesIO()
        self.img.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()


def _text_turned(img, text: str, xy: tuple[float, float], angle: float, font, right: bool = False) -> None:
    """``text`` turned by ``angle`` degrees (counter-clockwise) onto ``img``: its box's left edge at
    ``xy[0]`` and vertical middle at ``xy[1]`` (``right``: its box's right edge at ``xy[0]``, top at ``xy[1]``)."""
    from PIL import Image, ImageDraw

    if not text:
        return
    box = ImageDraw.Draw(img).textbbox((0, 0), text, font=font)
    tile = Image.new("RGBA", (box[2] + 4, box[3] + 4), (255, 255, 255, 0))
    ImageDraw.Draw(tile).text((2, 2), text, fill="black", font=font)
    rot = tile.rotate(angle, expand=True, resample=Image.BICUBIC)
    x = int(round(xy[0] - rot.size[0])) if right else int(round(xy[0]))
    y = int(round(xy[1])) if right else int(round(xy[1] - rot.size[1] / 2))
    img.alpha_composite(rot, (max(0, x), max(0, y)))


def _dashed(draw, x: float, y0: float, y1: float, colour, dash: int, width: int = 1) -> None:
    y = y0
    while y < y1:
        draw.line((x, y, x, min(y1, y + dash)), fill=colour, width=width)
        y += 2 * dash


def histogram_png(series: dict[str, Sequence[float]], bins: np.ndarray, title: str, xlabel: str,
                  lines: Sequence[tuple[float, str, str]] = (), size: tuple[int, int] = (600, 320),
                  alpha: float = 0.55) -> bytes:
    """Overlaid histograms of ``series`` (name -> values; non-finite values and empty series left out) over
    the bin edges ``bins``, each semi-transparent (``alpha``), with dashed vertical ``lines`` ((x, label,
    "black" | "red")) and a legend giving each series' count. Returns PNG bytes."""
    from PIL import Image, ImageDraw

    hists = []
    for name, vs in series.items():
        v = np.asarray([x for x in vs if np.isfinite(x)], np.float64)
        if len(v):
            hists.append((name, len(v), np.histogram(v, bins=bins)[0]))
    top = max([int(h.max()) for _, _, h in hists] + [1])
    ax = _Axes(size, (float(bins[0]), float(bins[-1])), (0.0, top * 1.05), title, xlabel, "count")
    for i, (_, _, h) in enumerate(hists):
        layer = Image.new("RGBA", ax.img.size, (0, 0, 0, 0))
        ld = ImageDraw.Draw(layer)
        col = PALETTE[i % len(PALETTE)] + (int(round(255 * alpha)),)
        for k, c in enumerate(h):
            if c:
                ld.rectangle((ax.px(bins[k]), ax.py(c), ax.px(bins[k + 1]) - 1, ax.py(0)), fill=col)
        ax.img.alpha_composite(layer)
    ax.draw = ImageDraw.Draw(ax.img)
    items = [(f"{name} (n={n})", PALETTE[i % len(PALETTE)], "box") for i, (name, n, _) in enumerate(hists)]
    for x, label, colour in lines:
        col = LINE_COLOURS.get(colour, (0, 0, 0))
        if bins[0] <= x <= bins[-1]:
            _dashed(ax.draw, ax.px(x), ax.y0, ax.y1, col, 5 if colour == "black" else 2)
        items.append((f"{label} {x:g}", col, "line"))
    ax.legend(items)
    return ax.png()


def stacked_bars_png(categories: Sequence[str], stacks: dict[str, Sequence[float]], title: str, ylabel: str,
                     size: tuple[int, int] = (700, 320)) -> bytes:
    """One bar per category, stacked by ``stacks`` (name -> value per category, in order), with the
    category names under the bars and a legend. Returns PNG bytes."""
    n = len(categories)
    totals = np.zeros(n)
    for vals in stacks.values():
        totals += np.asarray(vals, np.float64)
    ax = _Axes(size, (-0.6, n - 0.4) if n else (0.0, 1.0), (0.0, max(1.0, float(totals.max(initial=0))) * 1.05),
               title, "", ylabel, xticks=False)
    bottom = np.zeros(n)
    for i, (name, vals) in enumerate(stacks.items()):
        for k, v in enumerate(vals):
            if v:
                ax.draw.rectangle((ax.px(k - 0.4), ax.py(bottom[k] + v), ax.px(k + 0.4), ax.py(bottom[k])),
                                  fill=PALETTE[i % len(PALETTE)])
        bottom += np.asarray(vals, np.float64)
    for k, c in enumerate(categories):  # names turned 20 degrees, ending under their bar
        _text_turned(ax.img, c, (ax.px(k) + 6, ax.y1 + 4), 20, ax.small, right=True)
    ax.legend([(name, PALETTE[i % len(PALETTE)], "box") for i, name in enumerate(stacks)])
    return ax.png()
