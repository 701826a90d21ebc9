"""Vectorised triangle rasteriser with a true z-buffer (numpy only).

Scanline form: every triangle is expanded into the pixel rows its bounding box spans, and each row
into the exact span of pixel centres inside the triangle (the three edge functions are affine in x
on a row, so the span is an interval). Candidate fragments are therefore (almost) exactly the
covered pixels, not the bounding box. Inverse depth is affine in screen space, so the z-test uses a
per-triangle plane; the nearest fragment per pixel wins through ``np.minimum.at`` on a packed
(depth, triangle id) int64 key (deterministic: ties broken by the triangle id). Barycentrics
(perspective-correct) are computed for the winning fragments only. With numba installed the same
algorithm (per-pixel edge test, same packed key, same tie-break) runs compiled (``rasterize``);
``rasterize_numpy`` is the pure-numpy fallback. Pixel centres are at
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


def rasterize_numpy(xy: np.ndarray, z: np.ndarray, tris: np.ndarray, H: int, W: int, cull: np.ndarray | None = None) -> Fragments:
    """xy (N,2) pixels, z (N,) camera depth (>0 in front), tris (F,3). ``cull`` (F,) bool: cull
    back faces of these triangles (outward counter-clockwise triangles, y up, project with a
    positive signed area in our y-down formula when they face away)."""
    xy = np.asarray(xy, np.float64)
    X, Y = xy[:, 0], xy[:, 1]
    i0, i1, i2 = tris[:, 0], tris[:, 1], tris[:, 2]
    x0, x1, x2 = X[i0], X[i1], X[i2]
    y0, y1, y2 = Y[i0], Y[i1], Y[i2]
    z = np.asarray(z, np.float64)
    z0, z1, z2 = z[i0], z[i1], z[i2]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    ok = (np.abs(area) > 1e-9) & (np.minimum(np.minimum(z0, z1), z2) > 1e-3)
    if cull is not None:
        ok &= ~(cull & (area > 0))
    xmin = np.ceil(np.minimum(np.minimum(x0, x1), x2) - 0.5)
    xmax = np.floor(np.maximum(np.maximum(x0, x1), x2) - 0.5)
    ymin = np.ceil(np.minimum(np.minimum(y0, y1), y2) - 0.5)
    ymax = np.floor(np.maximum(np.maximum(y0, y1), y2) - 0.5)
    np.clip(xmin, 0, W, out=xmin)
    np.clip(xmax, -1, W - 1, out=xmax)
    np.clip(ymin, 0, H, out=ymin)
    np.clip(ymax, -1, H - 1, out=ymax)
    ok &= (xmax >= xmin) & (ymax >= ymin)
    idx = np.nonzero(ok)[0]
    if len(idx) == 0:
        return _empty(H, W)
    x0, x1, x2, y0, y1, y2 = x0[idx], x1[idx], x2[idx], y0[idx], y1[idx], y2[idx]
    xmin, xmax, ymin, ymax = xmin[idx], xmax[idx], ymin[idx], ymax[idx]
    # edge functions e_i(x, y) = (c_i + a_i x + d_i y) / area  (= barycentric b_i)
    s = np.sign(area[idx])[:, None]
    a = np.stack([y1 - y2, y2 - y0, y0 - y1], 1) * s
    d = np.stack([x2 - x1, x0 - x2, x1 - x0], 1) * s
    c = np.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], 1) * s  # inside <=> c + a x + d y >= 0
    iz = 1.0 / np.stack([z0[idx], z1[idx], z2[idx]], 1)
    inv_area = 1.0 / np.abs(area[idx])
    # inverse depth plane: iz(x, y) = P x + Q y + R
    P = (a * iz).sum(1) * inv_area
    Q = (d * iz).sum(1) * inv_area
    Rr = (c * iz).sum(1) * inv_area
    # ---- rows
    h = (ymax - ymin + 1).astype(np.int64)
    nrow = int(h.sum())
    tr = np.repeat(np.arange(len(idx)), h)
    start = np.cumsum(h) - h
    py = (np.repeat(ymin.astype(np.int64), h) + np.arange(nrow, dtype=np.int64) - np.repeat(start, h))
    cy = py + 0.5
    ar, dr, cr = a[tr], d[tr], c[tr]
    k = cr + dr * cy[:, None]  # (rows, 3): inside <=> k_i + a_i x >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -k / ar
    lo = np.where(ar > 0, bound, -np.inf).max(1) - _EPS
    hi = np.where(ar < 0, bound, np.inf).min(1) + _EPS
    # a_i == 0: constant condition on the row
    dead = ((ar == 0) & (k < -1e-9 * np.abs(k).max(initial=1.0))).any(1)
    xl = np.maximum(np.ceil(lo - 0.5), xmin[tr])
    xr = np.minimum(np.floor(hi - 0.5), xmax[tr])
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


try:  # compiled path (numba); falls back to numpy when numba is unavailable
    import numba as _nb
except Exception:  # pragma: no cover - exercised only without numba
    _nb = None

if _nb is not None:

    @_nb.njit(cache=True, nogil=True)
    def _raster_kernel(X, Y, Z, tris, cull, H, W, kbuf):  # pragma: no cover - compiled
        big = np.int64(1) << np.int64(40)
        for f in range(tris.shape[0]):
            i0, i1, i2 = tris[f, 0], tris[f, 1], tris[f, 2]
            x0, x1, x2 = X[i0], X[i1], X[i2]
            y0, y1, y2 = Y[i0], Y[i1], Y[i2]
            z0, z1, z2 = Z[i0], Z[i1], Z[i2]
            if min(z0, min(z1, z2)) <= 1e-3:
                continue
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if abs(area) <= 1e-9 or (cull[f] and area > 0):
                continue
            xmin = max(0, int(np.ceil(min(x0, min(x1, x2)) - 0.5)))
            xmax = min(W - 1, int(np.floor(max(x0, max(x1, x2)) - 0.5)))
            ymin = max(0, int(np.ceil(min(y0, min(y1, y2)) - 0.5)))
            ymax = min(H - 1, int(np.floor(max(y0, max(y1, y2)) - 0.5)))
            if xmax < xmin or ymax < ymin:
                continue
            sg = 1.0 if area > 0 else -1.0
            a0, a1, a2 = (y1 - y2) * sg, (y2 - y0) * sg, (y0 - y1) * sg
            d0, d1, d2 = (x2 - x1) * sg, (x0 - x2) * sg, (x1 - x0) * sg
            c0, c1, c2 = (x1 * y2 - x2 * y1) * sg, (x2 * y0 - x0 * y2) * sg, (x0 * y1 - x1 * y0) * sg
            ia = 1.0 / abs(area)
            P = (a0 / z0 + a1 / z1 + a2 / z2) * ia
            Q = (d0 / z0 + d1 / z1 + d2 / z2) * ia
            R = (c0 / z0 + c1 / z1 + c2 / z2) * ia
            tol = -1e-7 * (abs(a0) + abs(a1) + abs(a2) + 1.0)
            for py in range(ymin, ymax + 1):
                cy = py + 0.5
                k0, k1, k2 = c0 + d0 * cy, c1 + d1 * cy, c2 + d2 * cy
                for px in range(xmin, xmax + 1):
                    cx = px + 0.5
                    if k0 + a0 * cx < tol or k1 + a1 * cx < tol or k2 + a2 * cx < tol:
                        continue
                    iz = P * cx + Q * cy + R
                    if iz <= 1e-12:
                        continue
                    q = (1.0 / iz) * 1e5
                    kq = big if q >= 2.0 ** 40 else np.int64(q)
                    key = (kq << np.int64(21)) | np.int64(f)
                    pix = py * W + px
                    if key < kbuf[pix]:
                        kbuf[pix] = key

    @_nb.njit(cache=True, nogil=True)
    def _resolve_kernel(X, Y, Z, tris, pix, tid, W, bary, depth):  # pragma: no cover - compiled
        for j in range(pix.shape[0]):
            f = tid[j]
            i0, i1, i2 = tris[f, 0], tris[f, 1], tris[f, 2]
            x0, x1, x2 = X[i0], X[i1], X[i2]
            y0, y1, y2 = Y[i0], Y[i1], Y[i2]
            cx = pix[j] % W + 0.5
            cy = pix[j] // W + 0.5
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            b0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) / area
            b1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) / area
            b2 = 1.0 - b0 - b1
            w0, w1, w2 = b0 / Z[i0], b1 / Z[i1], b2 / Z[i2]
            s = w0 + w1 + w2
            dz = 1.0 / s
            depth[j] = dz
            bary[j, 0] = w0 * dz
            bary[j, 1] = w1 * dz
            bary[j, 2] = w2 * dz


def rasterize(xy: np.ndarray, z: np.ndarray, tris: np.ndarray, H: int, W: int, cull: np.ndarray | None = None) -> Fragments:
    """Compiled rasteriser (numba) with the numpy algorithm's semantics; see ``rasterize_numpy``."""
    if _nb is None:
        return rasterize_numpy(xy, z, tris, H, W, cull)
    X = np.ascontiguousarray(xy[:, 0], np.float64)
    Y = np.ascontiguousarray(xy[:, 1], np.float64)
    Z = np.ascontiguousarray(z, np.float64)
    T = np.ascontiguousarray(tris, np.int64)
    cl = np.zeros(len(T), np.bool_) if cull is None else np.ascontiguousarray(cull, np.bool_)
    kbuf = np.full(H * W, np.iinfo(np.int64).max, np.int64)
    _raster_kernel(X, Y, Z, T, cl, H, W, kbuf)
    pix = np.nonzero(kbuf != np.iinfo(np.int64).max)[0]
    tid = kbuf[pix] & _ID_MASK
    bary = np.empty((len(pix), 3), np.float64)
    depth = np.empty(len(pix), np.float64)
    _resolve_kernel(X, Y, Z, T, pix, tid, W, bary, depth)
    return Fragments(pix, tid, bary.astype(np.float32), depth.astype(np.float32), H, W)


if _nb is not None:

    @_nb.njit(cache=True, nogil=True)
    def _interp_kernel(tv, b, attr, out):  # pragma: no cover - compiled
        for j in range(tv.shape[0]):
            i0, i1, i2 = tv[j, 0], tv[j, 1], tv[j, 2]
            w0, w1, w2 = b[j, 0], b[j, 1], b[j, 2]
            for k in range(attr.shape[1]):
                out[j, k] = w0 * attr[i0, k] + w1 * attr[i1, k] + w2 * attr[i2, k]


def interpolate(fr: Fragments, tris: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """Per-vertex attributes (V, C) -> per-fragment (N, C) float32 with the fragments' barycentrics."""
    tv = tris[fr.tri]
    if _nb is None:
        a = attr.astype(np.float32)
        return (fr.b[:, 0:1] * a[tv[:, 0]] + fr.b[:, 1:2] * a[tv[:, 1]] + fr.b[:, 2:3] * a[tv[:, 2]]).astype(np.float32)
    out = np.empty((len(tv), attr.shape[1]), np.float32)
    _interp_kernel(np.ascontiguousarray(tv, np.int64), fr.b, np.ascontiguousarray(attr, np.float32), out)
    return out


if _nb is not None:

    @_nb.njit(cache=True, nogil=True)
    def _normals_kernel(v, t, out):  # pragma: no cover - compiled
        for f in range(t.shape[0]):
            a, b, c = t[f, 0], t[f, 1], t[f, 2]
            e1x, e1y, e1z = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
            e2x, e2y, e2z = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
            nx = e1y * e2z - e1z * e2y
            ny = e1z * e2x - e1x * e2z
            nz = e1x * e2y - e1y * e2x
            for k in (a, b, c):
                out[k, 0] += nx
                out[k, 1] += ny
                out[k, 2] += nz


def vertex_normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (float64). Compiled when numba is there; the numpy path adds
    the same terms in the same order (triangle order per vertex), so both give identical bits."""
    v = np.ascontiguousarray(v, np.float64)
    if _nb is None:
        a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
        e1, e2 = b - a, c - a
        fn = np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1], e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                       e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], 1)
        flat = t.ravel()
        n = np.stack([np.bincount(flat, np.repeat(fn[:, k], 3), minlength=len(v)) for k in range(3)], 1)
    else:
        n = np.zeros((len(v), 3), np.float64)
        _normals_kernel(v, np.ascontiguousarray(t, np.int64), n)
    n /= np.sqrt((n * n).sum(1, keepdims=True)) + 1e-12
    return n
