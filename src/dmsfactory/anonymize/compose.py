"""Putting a rendered face into a real frame: alignment, warp, relighting, feathered blending.

* Alignment: a similarity transform (Umeyama, least squares over the 468 mesh points) takes the
  render's landmarks onto the original's.
* Target geometry: ``replace`` keeps the synthetic face's own inner geometry (eyes, nose, mouth
  where the similarity puts them: the shape dlib reads is the synthetic one) and moves only its
  outline (the 36 face-oval points) onto the original's outline, so the new face fills exactly the
  region it replaces. ``hide`` moves every feature contour onto the original's (the original's
  geometry under the synthetic face's skin, lids, irises and lighting).
* Warp: a thin-plate spline through the control points (outline + feature contours + nose + irises),
  evaluated on an 8-pixel grid and interpolated bilinearly (``cv2.remap``).
* Relighting ("lit to match"): a first-order spherical-harmonics shading model
  ``I = a + b . n`` per colour channel is fitted to the original's skin (mesh points off the eyes,
  brows and lips; ``n`` from the rendered face's 3-D landmarks) and to the render's, and the render
  is multiplied by the ratio of the two models, spread over the face by normalised convolution. The
  models have four numbers per channel, so the original's features never reach the new face; its
  skin colour and light direction do.
* Blending: alpha from the target face oval, feathered inwards by ``feather`` x face size
  (distance transform, smoothstep), or OpenCV's Poisson ``seamlessClone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dmsfactory.anonymize.mesh import N_MESH, index_sets, vertex_normals

GRID = 8  # pixels between evaluated warp nodes
# MediaPipe mesh lip indices (public topology): lower lip, inner and outer contour, corners excluded
LOWER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324, 146, 91, 181, 84, 17, 314, 405, 321, 375)
MOUTH_PAIRS = ((13, 14), (81, 178), (311, 402))
MOUTH_CORNERS = (78, 308)
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)


# MediaPipe eye contours, outer corner -> inner corner (upper[i] above lower[i]); EAR points as labels.verify
EYE_LIDS = {"right": ((246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155), (33, 160, 158, 133, 153, 144)),
            "left": ((466, 388, 387, 386, 385, 384, 398), (249, 390, 373, 374, 380, 381, 382), (362, 385, 387, 263, 373, 380))}


def _ear(p: np.ndarray, idx) -> float:
    p1, p2, p3, p4, p5, p6 = (p[i] for i in idx)
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * np.linalg.norm(p1 - p4) + 1e-9))


def close_eyes_to(target: np.ndarray, ears: dict[str, float], max_open: float = 1.25) -> dict[str, float]:
    """Lower each upper lid of ``target`` (in place) towards the lower lid so the eye's aspect ratio
    becomes ``ears[side]`` (opening by at most ``max_open``: a closed rendered lid cannot be
    stretched into an open eye). Returns the factor applied per eye."""
    out = {}
    for side, (up, lo, e_idx) in EYE_LIDS.items():
        cur = _ear(target, e_idx)
        f = float(np.clip(ears[side] / max(cur, 1e-4), 0.0, max_open))
        if abs(f - 1.0) > 1e-3:
            u, lw = list(up), list(lo)
            target[u] = target[lw] + f * (target[u] - target[lw])
        out[side] = f
    return out


def open_mouth_to(target: np.ndarray, mar: float, max_frac: float = 1.0) -> float:
    """Move the lower lip of ``target`` (478x2, in place) along the face's down direction so that its
    mouth ratio (mean inner-lip gap / inner-corner distance, as ``labels.verify.mar``) becomes ``mar``.
    The render opens the jaw; this only closes the residual (a real yawn opens wider than the
    head's jaw range). Returns the shift in pixels."""
    down = target[152] - target[10]
    down = down / (np.linalg.norm(down) + 1e-9)
    width = float(np.linalg.norm(target[MOUTH_CORNERS[0]] - target[MOUTH_CORNERS[1]]))
    gap = float(np.mean([(target[b] - target[a]) @ down for a, b in MOUTH_PAIRS]))
    shift = float(np.clip(mar * width - gap, -max(gap, 0.0), max_frac * width))
    idx = list(LOWER_LIP)
    target[idx] += shift * down
    return shift


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity (rotation, uniform scale, translation) minimising |M(src) - dst|^2 (Umeyama)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, d])
    R = U @ D @ Vt
    var = (a * a).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / max(var, 1e-12))
    t = md - s * R @ ms
    return np.hstack([s * R, t[:, None]])


def apply_affine(M: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ M[:, :2].T + M[:, 2]


class TPS:
    """Thin-plate spline R^2 -> R^2 through control points (``reg``: smoothing, in units of the
    normalised coordinates)."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, reg: float = 1e-3):
        src = np.asarray(src, np.float64)
        dst = np.asarray(dst, np.float64)
        self.c = src.mean(0)
        self.s = float(np.sqrt(((src - self.c) ** 2).sum(1).mean())) or 1.0
        p = (src - self.c) / self.s
        n = len(p)
        K = self._U(p, p) + reg * np.eye(n)
        P = np.hstack([np.ones((n, 1)), p])
        A = np.zeros((n + 3, n + 3))
        A[:n, :n], A[:n, n:], A[n:, :n] = K, P, P.T
        B = np.zeros((n + 3, 2))
        B[:n] = dst
        self.p = p
        self.W = np.linalg.solve(A, B)

    @staticmethod
    def _U(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = d2 * np.log(d2)
        u[d2 == 0] = 0.0
        return u

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        q = (np.asarray(pts, np.float64) - self.c) / self.s
        n = len(self.p)
        return self._U(q, self.p) @ self.W[:n] + self.W[n] + q @ self.W[n + 1:]


@dataclass
class Composite:
    image: np.ndarray  # the whole output frame (uint8)
    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 of the changed region
    alpha: np.ndarray  # float32 alpha over the ROI
    landmarks: np.ndarray  # (478, 2) the synthetic face's landmarks in the output frame
    target: np.ndarray  # (478, 2) target positions the warp was built for
    lighting: dict[str, Any]  # the two fitted shading models


def _sample(img: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Bilinear samples (N, C) float32."""
    n = len(pts)
    mx = np.ascontiguousarray(pts[:, 0].astype(np.float32).reshape(1, n))
    my = np.ascontiguousarray(pts[:, 1].astype(np.float32).reshape(1, n))
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(n, -1).astype(np.float32)


def fit_shading(img_f: np.ndarray, pts: np.ndarray, normals: np.ndarray, iters: int = 2) -> np.ndarray:
    """Least-squares ``I = a + b . n`` per channel (rows: a, bx, by, bz; columns: channels), refitted
    without the worst 20 % of points (hair, beard, glasses, specular spots)."""
    I = _sample(img_f, pts)
    A = np.hstack([np.ones((len(pts), 1)), normals])
    keep = np.ones(len(pts), bool)
    coef = None
    for _ in range(iters):
        coef, *_ = np.linalg.lstsq(A[keep], I[keep], rcond=None)
        r = np.abs(A @ coef - I).sum(1)
        keep = r <= np.quantile(r, 0.8)
    return coef


def lighting_summary(coef: np.ndarray) -> dict[str, Any]:
    """Ambient colour, light direction (camera frame, unit) and strength of a fitted shading model."""
    b = coef[1:].mean(1)
    nb = float(np.linalg.norm(b))
    return {"ambient_rgb": [round(float(v), 2) for v in coef[0]],
            "direction_camera": [round(float(v), 3) for v in (b / nb if nb > 1e-9 else b)],
            "directional_strength": round(nb, 2)}


OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)


def _mouth_interior(warped: np.ndarray, frame: np.ndarray, target: np.ndarray, src_lm: np.ndarray,
                    roi: tuple[int, int, int, int], size: float, fill: str) -> np.ndarray:
    """Paint the open mouth inside the synthetic inner-lip contour.

    ``teeth``: a synthetic cavity (dark, a band of upper teeth under the upper lip, a tongue tint
    at the bottom), shaded by the surrounding skin's brightness. ``dark``: cavity shading only.
    ``source``: the original's mouth interior warped into the synthetic lips (most realistic for
    a landmark detector; teeth and tongue are the original's)."""
    X0, Y0, X1, Y1 = roi
    lips = target[list(OUTER_LIPS) + list(INNER_LIPS)]
    mg = 0.06 * size + 3
    x0 = int(np.clip(np.floor(lips[:, 0].min() - mg), X0, X1))
    y0 = int(np.clip(np.floor(lips[:, 1].min() - mg), Y0, Y1))
    x1 = int(np.clip(np.ceil(lips[:, 0].max() + mg), X0, X1))
    y1 = int(np.clip(np.ceil(lips[:, 1].max() + mg), Y0, Y1))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return warped
    full, warped = warped, warped[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]
    out = _mouth_patch(warped, frame, target, src_lm, (x0, y0, x1, y1), size, fill)
    full = full.copy()
    full[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = out
    return full


def _mouth_patch(warped: np.ndarray, frame: np.ndarray, target: np.ndarray, src_lm: np.ndarray,
                 roi: tuple[int, int, int, int], size: float, fill: str) -> np.ndarray:
    x0, y0, x1, y1 = roi
    h, w = y1 - y0, x1 - x0
    off = np.array([x0 + 0.5, y0 + 0.5])
    poly = np.round((target[list(INNER_LIPS)] - off) * 16).astype(np.int32)
    mm = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mm, [poly], 255, cv2.LINE_AA, shift=4)
    if not mm.any():
        return warped
    k = cv2.GaussianBlur(mm.astype(np.float32) / 255.0, (0, 0), max(0.6, 0.005 * size))[..., None]
    # lips: a detector finds an open mouth by its lip edges, so the band between the outer and inner
    # lip contours is given a lip colour (redder and darker than the surrounding skin)
    lm_ = np.zeros((h, w), np.uint8)
    cv2.fillPoly(lm_, [np.round((target[list(OUTER_LIPS)] - off) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    band = cv2.GaussianBlur((lm_.astype(np.float32) - mm.astype(np.float32)).clip(0, 255) / 255.0, (0, 0),
                            max(0.6, 0.006 * size))[..., None]
    warped = warped * (1 - 0.75 * band) + warped * np.array([0.78, 0.5, 0.52], np.float32) * 0.75 * band
    if fill == "dark":
        return warped * (1.0 - 0.8 * k)
    if fill == "source":
        t = TPS(target[list(INNER_LIPS) + [1, 152, 61, 291]], np.asarray(src_lm, float)[list(INNER_LIPS) + [1, 152, 61, 291]])
        ys, xs = np.nonzero(mm)
        xy = t(np.stack([xs + x0 + 0.5, ys + y0 + 0.5], 1)) - 0.5
        mx = np.zeros((h, w), np.float32)
        my = np.zeros((h, w), np.float32)
        mx[ys, xs], my[ys, xs] = xy[:, 0], xy[:, 1]
        src = cv2.remap(frame.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return warped * (1 - k) + src * k
    # synthetic teeth: position between the upper (0) and lower (1) inner lip lines
    up = np.full((h, w), 255, np.uint8)
    lo = np.full((h, w), 255, np.uint8)
    cv2.polylines(up, [np.round((target[list(UPPER_INNER)] - off) * 16).astype(np.int32)], False, 0, 1, cv2.LINE_8, shift=4)
    cv2.polylines(lo, [np.round((target[list(LOWER_INNER)] - off) * 16).astype(np.int32)], False, 0, 1, cv2.LINE_8, shift=4)
    du = cv2.distanceTransform(up, cv2.DIST_L2, 3)
    dl = cv2.distanceTransform(lo, cv2.DIST_L2, 3)
    v = du / (du + dl + 1e-6)
    ring = cv2.dilate(mm, np.ones((5, 5), np.uint8)) & ~mm
    skin = warped[ring > 0].mean(0) if (ring > 0).any() else np.array([150.0, 110, 95])
    b = float(np.clip(skin.mean() / 160.0, 0.25, 1.4))
    gap = float(np.mean([np.linalg.norm(target[bb] - target[a]) for a, bb in MOUTH_PAIRS]))
    tooth = float(np.clip(0.45 * gap / max(gap, 1e-6), 0, 0.35)) if gap > 2 else 0.0
    teeth_w = np.clip((tooth - v) / 0.04 + 0.5, 0, 1) if tooth else np.zeros_like(v)
    tongue_w = np.clip((v - 0.7) / 0.3, 0, 1) * 0.6
    col = (np.array([38.0, 18, 18])[None, None] * (1 - teeth_w[..., None]) * (1 - tongue_w[..., None])
           + np.array([205.0, 195, 180])[None, None] * teeth_w[..., None]
           + np.array([125.0, 55, 55])[None, None] * tongue_w[..., None] * (1 - teeth_w[..., None]))
    return warped * (1 - k) + (col * b) * k


def _feather_alpha(mask: np.ndarray, feather_px: float) -> np.ndarray:
    d = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
    t = np.clip(d / max(feather_px, 1.0), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def compose(frame: np.ndarray, render: np.ndarray, render_lm: np.ndarray, render_lm3d: np.ndarray,
            src_lm: np.ndarray, *, mode: str = "replace", feather: float = 0.06, relight: bool = True,
            blend: str = "alpha", forehead: float = 1.0, mouth_mar: float | None = None, mouth_fill: str = "teeth",
            eye_ear: dict[str, float] | None = None,
            shading_src: np.ndarray | None = None) -> Composite:
    """Blend ``render`` (its landmarks ``render_lm``, 3-D ``render_lm3d``) over the face whose
    MediaPipe landmarks in ``frame`` are ``src_lm``. Returns the new frame and what was changed."""
    ix = index_sets()
    oval = ix["oval"]
    M = similarity(render_lm[:N_MESH], src_lm[:N_MESH])
    target = apply_affine(M, render_lm)
    if mode == "hide":
        target = np.asarray(src_lm, np.float64).copy()
    else:
        target[oval] = src_lm[oval]
        if mouth_mar is not None:
            open_mouth_to(target, mouth_mar)
        if eye_ear is not None:
            close_eyes_to(target, eye_ear)
    ctrl = np.unique(np.concatenate([oval, ix["features"]]))
    H, W = frame.shape[:2]
    poly = target[oval]
    size = float(max(np.ptp(poly[:, 0]), np.ptp(poly[:, 1]), 8.0))
    feather_px = max(2.0, feather * size)
    x0 = int(max(0, np.floor(poly[:, 0].min()) - 2))
    y0 = int(max(0, np.floor(poly[:, 1].min()) - 2))
    x1 = int(min(W, np.ceil(poly[:, 0].max()) + 3))
    y1 = int(min(H, np.ceil(poly[:, 1].max()) + 3))
    if x1 - x0 < 4 or y1 - y0 < 4:
        raise ValueError("face region outside the frame")
    back = TPS(target[ctrl], render_lm[ctrl])
    gx = np.arange(x0, x1 + GRID, GRID, dtype=np.float64)
    gy = np.arange(y0, y1 + GRID, GRID, dtype=np.float64)
    G = np.stack(np.meshgrid(gx + 0.5, gy + 0.5), -1).reshape(-1, 2)  # pixel centres
    src_xy = back(G).reshape(len(gy), len(gx), 2).astype(np.float32)
    # node k sits at pixel x0 + k*GRID; resize with align-corners semantics via explicit maps
    w, h = x1 - x0, y1 - y0
    fx = (np.arange(w, dtype=np.float32)) / GRID
    fy = (np.arange(h, dtype=np.float32)) / GRID
    mapx = cv2.remap(src_xy[..., 0], *np.meshgrid(fx, fy), cv2.INTER_LINEAR)
    mapy = cv2.remap(src_xy[..., 1], *np.meshgrid(fx, fy), cv2.INTER_LINEAR)
    # pixel centres: our landmark coordinates are continuous (pixel i covers [i, i+1)), remap's are i
    warped = cv2.remap(render.astype(np.float32), mapx - 0.5, mapy - 0.5, cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    fwd = TPS(render_lm[ctrl], target[ctrl])
    out_lm = fwd(render_lm).astype(np.float32)
    out_lm[ctrl] = target[ctrl]
    # lighting
    light: dict[str, Any] = {}
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    if relight:
        n = vertex_normals(render_lm3d)
        skin = ix["skin"]
        sig = max(0.6, 0.012 * size)
        m_ = int(3 * sig) + 2
        fx0, fy0 = max(0, x0 - m_), max(0, y0 - m_)
        fb = cv2.GaussianBlur(frame[fy0:min(H, y1 + m_), fx0:min(W, x1 + m_)].astype(np.float32), (0, 0), sig)
        rb = cv2.GaussianBlur(render.astype(np.float32), (0, 0), sig)
        cs = fit_shading(fb, src_lm[skin] - 0.5 - [fx0, fy0], n[skin]) if shading_src is None else shading_src
        cr = fit_shading(rb, render_lm[skin] - 0.5, n[skin])
        A = np.hstack([np.ones((N_MESH, 1)), n])
        ratio = np.clip((A @ cs) / np.maximum(A @ cr, 4.0), 0.4, 2.5)
        # the field is smooth (sigma 0.1 x face size): built at 1/4 resolution, then upsampled
        q = 4
        hq, wq = -(-h // q), -(-w // q)
        num = np.zeros((hq, wq, ratio.shape[1]), np.float32)
        den = np.zeros((hq, wq), np.float32)
        p = np.floor((target[:N_MESH] - [x0, y0]) / q).astype(int)
        ok = (p[:, 0] >= 0) & (p[:, 1] >= 0) & (p[:, 0] < wq) & (p[:, 1] < hq)
        np.add.at(num, (p[ok, 1], p[ok, 0]), ratio[ok].astype(np.float32))
        np.add.at(den, (p[ok, 1], p[ok, 0]), 1.0)
        sr = max(0.5, 0.10 * size / q)
        num = cv2.GaussianBlur(num, (0, 0), sr)
        den = cv2.GaussianBlur(den, (0, 0), sr)
        if num.ndim == 2:
            num = num[..., None]
        field = num / np.maximum(den, 1e-6)[..., None]
        field = cv2.resize(field, (wq * q, hq * q), interpolation=cv2.INTER_LINEAR)[:h, :w]
        if field.ndim == 2:
            field = field[..., None]
        warped = warped * field
        light = {"source": lighting_summary(cs), "render": lighting_summary(cr)}
    if mouth_mar is not None and mode != "hide":
        warped = _mouth_interior(warped, frame, target, src_lm, (x0, y0, x1, y1), size, mouth_fill)
    mpoly = poly.copy()
    if forehead < 1.0:  # lower the top of the region: the original's hairline (and the render's fringe) stay out
        up = target[10] - target[152]
        up = up / (np.linalg.norm(up) + 1e-9)
        brow = target[ix["brows"]].mean(0)
        hgt = (mpoly - brow) @ up
        hi = hgt > 0
        mpoly[hi] -= ((1.0 - forehead) * hgt[hi])[:, None] * up
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round((mpoly - [x0 + 0.5, y0 + 0.5]) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    alpha = _feather_alpha(mask, feather_px)
    out = frame.copy()
    if blend == "poisson":
        warped_u8 = np.clip(warped + 0.5, 0, 255).astype(np.uint8)
        m8 = (alpha > 0.05).astype(np.uint8) * 255
        if m8.any():
            ys, xs = np.nonzero(m8)
            centre = (int(x0 + (xs.min() + xs.max() + 1) // 2), int(y0 + (ys.min() + ys.max() + 1) // 2))
            src_full = out.copy()
            src_full[y0:y1, x0:x1] = warped_u8
            mfull = np.zeros((H, W), np.uint8)
            mfull[y0:y1, x0:x1] = m8
            cl = cv2.seamlessClone(src_full, out, mfull, centre, cv2.NORMAL_CLONE)
            a = alpha[..., None]
            out[y0:y1, x0:x1] = np.clip(cl[y0:y1, x0:x1] * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    else:
        a = alpha[..., None]
        out[y0:y1, x0:x1] = np.clip(warped * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return Composite(out, (x0, y0, x1, y1), alpha, out_lm, target, light)


def compose_crop(frame: np.ndarray, base: np.ndarray, crop: np.ndarray, M: np.ndarray, src_lm: np.ndarray, *,
                 feather: float = 0.08, forehead: float = 1.0) -> Composite:
    """Blend an aligned face crop (frame -> crop similarity ``M``) back over the face outlined by
    ``src_lm`` (the diffusion route: the new face keeps the original's geometry)."""
    ix = index_sets()
    H, W = frame.shape[:2]
    poly = np.asarray(src_lm, float)[ix["oval"]]
    size = float(max(np.ptp(poly[:, 0]), np.ptp(poly[:, 1]), 8.0))
    x0 = int(max(0, np.floor(poly[:, 0].min()) - 2))
    y0 = int(max(0, np.floor(poly[:, 1].min()) - 2))
    x1 = int(min(W, np.ceil(poly[:, 0].max()) + 3))
    y1 = int(min(H, np.ceil(poly[:, 1].max()) + 3))
    w, h = x1 - x0, y1 - y0
    Minv = cv2.invertAffineTransform(M.astype(np.float64))
    T = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    A = np.vstack([Minv, [0.0, 0.0, 1.0]])
    # crop pixel centres: M maps continuous frame coordinates; remap works on integer pixel indices
    Mroi = (np.linalg.inv(T) @ A)[:2]
    warped = cv2.warpAffine(crop.astype(np.float32), Mroi, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mpoly = poly.copy()
    if forehead < 1.0:
        up = src_lm[10] - src_lm[152]
        up = up / (np.linalg.norm(up) + 1e-9)
        brow = np.asarray(src_lm, float)[ix["brows"]].mean(0)
        hgt = (mpoly - brow) @ up
        hi = hgt > 0
        mpoly[hi] -= ((1.0 - forehead) * hgt[hi])[:, None] * up
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round((mpoly - [x0 + 0.5, y0 + 0.5]) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    alpha = _feather_alpha(mask, max(2.0, feather * size))
    out = base.copy()
    a = alpha[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(warped * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return Composite(out, (x0, y0, x1, y1), alpha, np.zeros((0, 2), np.float32), np.asarray(src_lm, float), {})
