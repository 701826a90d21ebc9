"""Vectorised triangle rasteriser with a true z-buffer (numpy only).

Scanline form: every triangle is expanded into the pixel rows its bounding box spans, and each row
into the exact span of pixel centres inside the triangle (the three edge functions are affine in x
on a row, so the span is an interval). Candidate fragments are therefore (almost) exactly the
covered pixels, not the bounding box. Inverse depth is affine in screen space, so the z-test uses a
per-triangle plane; the nearest fragment per pixel wins through ``np.minimum.at`` on a packed
(depth, triangle id) int64 key (deterministic: ties broken by the triangle id). Barycentrics
(perspective-correct) are computed for the winning fragments only. Pixel centres are at
(c + 0.5, r + 0.5) in the continuous image coordinates used for landmarks (MediaPipe's convention:
x_px = x_norm * W).
"""

from __future__ import annotations

import numpy as np

_ID_BITS = 21
_ID_MASK = (1 << _ID_BITS) - 1
_ZQ = 1e5  # depth quantum 10 um
_EPS = 1e-7  # pixels: shared edges are covered by both triangles (the z-test picks one)


class Fragments:
    """Winning fragment per covered pixel."""

    __slots__ = ("pix", "tri", "b", "depth", "H", "W")

    def __init__(self, pix, tri, b, depth, H, W):
        self.pix, self.tri, self.b, self.depth, self.H, self.W = pix, tri, b, depth, H, W

    def tri_image(self) -> np.ndarray:
        out = np.full(self.H * self.W, -1, np.int64)
        out[self.pix] = self.tri
        return out.reshape(self.H, self.W)

    def depth_image(self) -> np.ndarray:
        out = np.full(self.H * self.W, np.inf, np.float32)
        out[self.pix] = self.depth
        return out.reshape(self.H, self.W)


def _empty(H, W) -> Fragments:
    e = np.zeros(0, np.int64)
    return Fragments(e, e, np.zeros((0, 3), np.float32), np.zeros(0, np.float32), H, W)


def rasterize(xy: np.ndarray, z: np.ndarray, tris: np.ndarray, H: int, W: int, cull: np.ndarray | None = None) -> Fragments:
    """xy (N,2) pixels, z (N,) camera depth (>0 in front), tris (F,3). ``cull`` (F,) bool: cull
    back faces of these triangles (outward counter-clockwise triangles, y up, project with a
    positive signed area in our y-down formula when they face away)."""
    p = xy[tris].astype(np.float64)  # F,3,2
    zt = z[tris].astype(np.float64)
    x0, y0 = p[:, 0, 0], p[:, 0, 1]
    x1, y1 = p[:, 1, 0], p[:, 1, 1]
    x2, y2 = p[:, 2, 0], p[:, 2, 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    ok = (np.abs(area) > 1e-9) & (zt.min(1) > 1e-3)
    if cull is not None:
        ok &= ~(cull & (area > 0))
    xs, ys = p[:, :, 0], p[:, :, 1]
    xmin = np.ceil(xs.min(1) - 0.5).clip(0, W)
    xmax = np.floor(xs.max(1) - 0.5).clip(-1, W - 1)
    ymin = np.ceil(ys.min(1) - 0.5).clip(0, H)
    ymax = np.floor(ys.max(1) - 0.5).clip(-1, H - 1)
    ok &= (xmax >= xmin) & (ymax >= ymin)
    idx = np.nonzero(ok)[0]
    if len(idx) == 0:
        return _empty(H, W)
    # edge functions e_i(x, y) = (c_i + a_i x + d_i y) / area  (= barycentric b_i)
    a = np.stack([y1 - y2, y2 - y0, y0 - y1], 1)[idx]
    d = np.stack([x2 - x1, x0 - x2, x1 - x0], 1)[idx]
    c = np.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], 1)[idx]
    s = np.sign(area[idx])[:, None]
    a, d, c = a * s, d * s, c * s  # now inside <=> c + a x + d y >= 0 for all i
    iz = 1.0 / zt[idx]
    inv_area = 1.0 / np.abs(area[idx])
    # inverse depth plane: iz(x, y) = P x + Q y + R
    P = (a * iz).sum(1) * inv_area
    Q = (d * iz).sum(1) * inv_area
    Rr = (c * iz).sum(1) * inv_area
    # ---- rows
    h = (ymax[idx] - ymin[idx] + 1).astype(np.int64)
    nrow = int(h.sum())
    tr = np.repeat(np.arange(len(idx)), h)
    start = np.cumsum(h) - h
    py = (np.repeat(ymin[idx].astype(np.int64), h) + np.arange(nrow, dtype=np.int64) - np.repeat(start, h))
    cy = py + 0.5
    ar, dr, cr = a[tr], d[tr], c[tr]
    k = cr + dr * cy[:, None]  # (rows, 3): inside <=> k_i + a_i x >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -k / ar
    lo = np.where(ar > 0, bound, -np.inf).max(1) - _EPS
    hi = np.where(ar < 0, bound, np.inf).min(1) + _EPS
    # a_i == 0: constant condition on the row
    dead = ((ar == 0) & (k < -1e-9 * np.abs(k).max(initial=1.0))).any(1)
    xl = np.maximum(np.ceil(lo - 0.5), xmin[idx][tr])
    xr = np.minimum(np.floor(hi - 0.5), xmax[idx][tr])
    n = np.where(dead, 0, xr - xl + 1).clip(0).astype(np.int64)
    keep = n > 0
    tr, py, xl, n = tr[keep], py[keep], xl[keep].astype(np.int64), n[keep]
    tot = int(n.sum())
    if tot == 0:
        return _empty(H, W)
    tf = np.repeat(tr, n)
    st = np.cumsum(n) - n
    px = np.repeat(xl, n) + np.arange(tot, dtype=np.int64) - np.repeat(st, n)
    pyf = np.repeat(py, n)
    cx = px + 0.5
    cyf = pyf + 0.5
    invz = P[tf] * cx + Q[tf] * cyf + Rr[tf]
    depth = 1.0 / np.maximum(invz, 1e-12)
    pix = pyf * W + px
    tid = idx[tf]
    key = (np.minimum(depth * _ZQ, 2**40).astype(np.int64) << _ID_BITS) | tid
    zbuf = np.full(H * W, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(zbuf, pix, key)
    win = zbuf[pix] == key
    tw, cxw, cyw, dw = tf[win], cx[win], cyf[win], depth[win]
    # perspective-correct barycentrics of the winners
    e = (c[tw] + a[tw] * cxw[:, None] + d[tw] * cyw[:, None]) * inv_area[tw][:, None]
    pb = e * iz[tw] * dw[:, None]
    return Fragments(pix[win], tid[win], pb.astype(np.float32), dw.astype(np.float32), H, W)
