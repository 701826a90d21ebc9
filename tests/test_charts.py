"""The card's charts (Pillow): bars where the data put them, round ticks, threshold lines."""

import io

import numpy as np
from PIL import Image

from dmsfactory.charts import PALETTE, histogram_png, nice_ticks, stacked_bars_png


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _columns(img: np.ndarray, colour, tol: int = 6) -> np.ndarray:
    """x positions of the columns holding pixels of ``colour``."""
    hit = (np.abs(img - np.array(colour)) <= tol).all(axis=2)
    return np.flatnonzero(hit.any(axis=0))


def test_nice_ticks_are_round_steps_covering_the_range():
    assert nice_ticks(0, 1.26, n=8) == [0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]  # step: the first of 1, 2, 5 x 10^k >= range / n
    assert nice_ticks(0, 1.26) == [0, 0.5, 1.0]
    assert nice_ticks(0, 157.5) == [0, 50, 100, 150]
    assert nice_ticks(2, 2) == [2]


def test_histogram_bars_stand_over_their_values_and_lines_at_their_x():
    bins = np.linspace(0, 1.2, 49)
    blended = [round(255 - 0.55 * (255 - c)) for c in PALETTE[0]]  # the first series, alpha 0.55 over white
    left = _rgb(histogram_png({"a": [0.1] * 20}, bins, "t", "x"))
    right = _rgb(histogram_png({"a": [1.0] * 20 + [float("nan")]}, bins, "t", "x"))
    cl, cr = _columns(left, blended), _columns(right, blended)
    assert len(cl) and len(cr)
    w = left.shape[1]
    assert cl.max() < 0.25 * w and cr.min() > 0.6 * w  # the bar sits over 0.1, resp. 1.0 of 0..1.2
    assert abs(len(cl) - len(cr)) <= 2  # one bin wide each
    # a dashed threshold line at 0.6: black pixels in the middle column, absent without the line
    with_line = _rgb(histogram_png({"a": [0.1] * 20}, bins, "t", "x", lines=[(0.6, "threshold", "black")]))
    plot = slice(40, 260)
    black_cols = lambda img: {int(c) for c in _columns(img[plot, 60:-130], (0, 0, 0), tol=30)}  # noqa: E731
    mid = 58 + (0.6 / 1.2) * (600 - 12 - 58) - 60  # the plot area spans x 58 .. w - 12; the slice starts at 60
    assert any(abs(c - mid) <= 2 for c in black_cols(with_line) - black_cols(left))


def test_stacked_bars_are_as_tall_as_their_totals():
    img = _rgb(stacked_bars_png(["a", "b"], {"train": [100, 50], "val": [0, 50], "test": [0, 0]}, "t", "images"))
    blue = (np.abs(img - np.array(PALETTE[0])) <= 3).all(axis=2)
    orange = (np.abs(img - np.array(PALETTE[1])) <= 3).all(axis=2)
    w = img.shape[1]
    left, right = blue[:, : w // 2 - 40], blue[:, w // 2 : w - 150]  # clear of the legend's swatches
    h_a, h_b = left.any(axis=1).sum(), right.any(axis=1).sum()
    assert abs(h_a - 2 * h_b) <= 3  # train: 100 against 50
    h_val_b = orange[:, w // 2 : w - 150].any(axis=1).sum()
    assert abs(h_val_b - h_b) <= 3 and not orange[:, : w // 2 - 40].any()  # b's val on top of its train; a has none
