"""Per-identity albedo atlas (RGB and near-IR grey), painted procedurally in the face's UV space.

The face UV is a cylindrical projection of the face model's mean (u = atan2(x, z + 8 cm), v = y),
and the painter works at the MediaPipe landmarks' UVs: brows follow the brow landmarks, lips fill
the lip contour, the beard fills the lower face, wrinkles run between named landmarks. Nothing here
is taken from a photo.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from . import facemodel as FM
from . import topology as T
from .parts import ATLAS, EYE_RECT, FACE_RECT, HAIR_RECT, SKIN_RECT, SWATCH_RECT, SWATCHES, glasses_style, swatch_uv

CREASE = 0.35  # strength of the supratarsal crease line
UNDER_EYE = 1.0  # strength of the under-eye darkening


@lru_cache(maxsize=1)
def _cyl_frame() -> tuple[float, float, float, float]:
    lm = _mean_landmarks()
    u = np.arctan2(lm[:, 0], lm[:, 2] + 0.08)
    return float(u.min()), float(np.ptp(u)), float(lm[:, 1].max()), float(np.ptp(lm[:, 1]))


@lru_cache(maxsize=1)
def _mean_landmarks() -> np.ndarray:
    m = FM.load()
    return m.landmarks(m.mean)


def cylinder_uv(p: np.ndarray) -> np.ndarray:
    """Face atlas coordinates (pixels) of head-frame points on the mean: u = atan2(x, z + 8 cm), v = y,
    scaled so that the 468 landmarks fill FACE_RECT with a 10 px margin."""
    umin, uptp, wmax, wptp = _cyl_frame()
    x0, s = FACE_RECT[0], FACE_RECT[2]
    m = 10
    u = np.arctan2(p[:, 0], p[:, 2] + 0.08)
    return np.stack([x0 + m + (u - umin) / uptp * (s - 2 * m), FACE_RECT[1] + m + (wmax - p[:, 1]) / wptp * (s - 2 * m)], 1)


@lru_cache(maxsize=1)
def face_uv() -> np.ndarray:
    """(468, 2) atlas pixels of the MediaPipe landmarks (where the painter puts brows, lips, lashes, ...)."""
    return cylinder_uv(_mean_landmarks()).astype(np.float64)


@lru_cache(maxsize=1)
def part_uv() -> dict[str, np.ndarray]:
    """Atlas pixels per model part, for that part's vertices (``FaceModel.part_vertices``): the face by
    the face cylinder (clamped to its rectangle: ears and neck get plain skin), the back of the head in
    the plain-skin rectangle, the mouth interior from swatches."""
    m = FM.load()
    out = {}
    v = m.mean[m.part_vertices["face"]]
    out["face"] = np.clip(cylinder_uv(v), FACE_RECT[0] + 1, FACE_RECT[0] + FACE_RECT[2] - 1)
    v = m.mean[m.part_vertices["head"]]
    a = (np.arctan2(v[:, 0], v[:, 2]) + np.pi) / (2 * np.pi)
    h = (v[:, 1].max() - v[:, 1]) / max(np.ptp(v[:, 1]), 1e-9)
    out["head"] = np.stack([SKIN_RECT[0] + 4 + a * 120, SKIN_RECT[1] + 4 + h * 120], 1)
    for k, sw in (("socket", "mouth"), ("gums", "tongue"), ("teeth", "teeth")):
        out[k] = np.tile(np.array(swatch_uv(sw)), (len(m.part_vertices[k]), 1))
    return out


def _noise(r: np.random.Generator, shape, scale: int) -> np.ndarray:
    h, w = shape
    small = r.normal(size=(max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _poly(uvs, idx) -> np.ndarray:
    return np.round(uvs[list(idx)] * 4).astype(np.int32)  # 2 bits subpixel for cv2 shift=2


def _line(img, pts, col, th, alpha_img=None):
    cv2.polylines(img, [np.round(pts * 4).astype(np.int32)], False, col, max(1, int(round(th))), cv2.LINE_AA, shift=2)


def _support(a: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box (rows, cols) of the non-zero pixels of mask ``a`` (H, W[, 1]), or None.

    The atlas painter blends each feature as ``img * (1 - a) + colour * a``; where ``a`` is exactly 0
    that leaves ``img`` unchanged bit for bit (x * 1 + c * 0 == x), so blending only inside this box
    gives the same atlas as blending the whole 512 x 512 image, at a fraction of the cost (a blurred
    mask is exactly 0 beyond the blur kernel's reach)."""
    m = a if a.ndim == 2 else a[..., 0]
    rows = np.flatnonzero(m.any(1))
    if not len(rows):
        return None
    cols = np.flatnonzero(m.any(0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _blur(m: np.ndarray, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur(m, (0, 0), sigma)`` of a mask that is zero outside a small box, computed only
    in that box grown past the kernel's reach: bit for bit the whole image's blur, at a fraction of the
    cost (a sigma-14 blur of the 512 x 512 atlas is a 113-tap kernel over every pixel). Why it is exact:
    beyond the kernel's reach the whole image's blur is exactly 0; the crop's reflected border holds
    only zeros; and a pixel's sum is the same wherever it lies, provided it is computed by the same code
    path: OpenCV's filters run SIMD over chunks of a row from its first pixel and finish the row's
    remainder with other code, whose last bit can differ (seen: 1 ulp next to the image's right edge).
    So the crop's columns start at a multiple of 64 and span a multiple of 64, or end where the image
    ends: every pixel falls into the same kind of chunk as in the whole image, for any SIMD width up to
    64 floats. ``m`` is 2-D float32."""
    box = _support(m)
    if box is None:
        return np.zeros_like(m)
    pad = int(np.ceil(4 * sigma)) + 2  # OpenCV's float kernel reaches round(4 sigma) pixels each side
    (ys, xs), (h, w) = box, m.shape
    y0, y1 = max(0, ys.start - pad), min(h, ys.stop + pad)
    x0 = max(0, xs.start - pad) // 64 * 64
    x1 = x0 + -(-(xs.stop + pad - x0) // 64) * 64
    if x1 > w - 64:  # the whole image's last (partial) chunk lies in here: end where the image ends
        x1 = w
    out = np.zeros_like(m)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(m[y0:y1, x0:x1], (0, 0), sigma)
    return out


def _blend(img: np.ndarray, a: np.ndarray, col, b: np.ndarray | None = None, k: float | None = None) -> None:
    """``img = img * (1 - a) + col * b`` in place (``b`` defaults to ``a``; with ``k``: ``col * k * b``,
    in that order), computed only where ``a`` is non-zero (:func:`_support`; ``b`` must be zero where
    ``a`` is). ``col`` is a colour (broadcast) or an image of ``img``'s size."""
    box = _support(a)
    if box is None:
        return
    ys, xs = box
    c = col[ys, xs] if isinstance(col, np.ndarray) and col.ndim == 3 else col
    if k is not None:
        c = c * k
    w = a[ys, xs] if b is None else b[ys, xs]
    img[ys, xs] = img[ys, xs] * (1 - a[ys, xs]) + c * w


def _scale(img: np.ndarray, a: np.ndarray) -> None:
    """``img *= 1 - a`` (``a``: H x W) in place, only where ``a`` is non-zero."""
    box = _support(a)
    if box is not None:
        img[box] *= (1 - a[box])[..., None]


TEETH, TONGUE, CAVITY = (225.0, 218.0, 200.0), (160.0, 70.0, 75.0), (95.0, 35.0, 38.0)  # the id-v3 constants
TEETH_YELLOW, TONGUE_COAT = (222.0, 196.0, 148.0), (196.0, 172.0, 165.0)


def mouth_colours(code: dict) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(teeth, tongue, cavity) sRGB swatch colours of an identity (:func:`identity.mouth_interior_code`); a
    code without those keys (before id-v4) gets the former constants."""
    if "teeth_value" not in code:
        return TEETH, TONGUE, CAVITY
    y, c = code["teeth_yellow"], code["tongue_coat"]
    teeth = code["teeth_value"] * ((1 - y) * np.array(TEETH) + y * np.array(TEETH_YELLOW))
    tongue = np.minimum(255, code["tongue_value"] * ((1 - c) * np.array(TONGUE) + c * np.array(TONGUE_COAT)))
    cavity = code["cavity_value"] * np.array(CAVITY)
    return tuple(teeth.tolist()), tuple(tongue.tolist()), tuple(cavity.tolist())


def build_atlas(code: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 512x512x3, nir uint8 512x512) for one identity code."""
    r = np.random.default_rng(int(code["tex_seed"]))
    uv = face_uv()
    A = ATLAS
    skin = np.array([code["skin_r"], code["skin_g"], code["skin_b"]], np.float32)
    # low-frequency tone variation + pores
    lf = _noise(r, (A, A), 48)[..., None] * 0.05 + _noise(r, (A, A), 12)[..., None] * 0.025
    pores = r.normal(size=(A, A, 1)).astype(np.float32) * 0.02
    img = (1 + lf + pores) * skin  # (A, A, 3) float32
    # redness: cheeks, nose, lips area, ears
    red = np.zeros((A, A), np.float32)
    for vi, rad in ((205, 26), (425, 26), (1, 16), (4, 14), (17, 20)):
        cv2.circle(red, tuple(np.round(uv[vi]).astype(int)), rad, 1.0, -1)
    red = _blur(red, 14) * code["skin_redness"]
    box = _support(red)  # x * (1 +- k * 0) == x outside it
    if box is not None:
        red, sub = red[box], img[box]
        sub[..., 0] *= 1 + 0.10 * red
        sub[..., 1] *= 1 - 0.10 * red
        sub[..., 2] *= 1 - 0.06 * red
    # darker skin around the eyes (sockets) and eye bags
    dark = np.zeros((A, A), np.float32)
    for c in (T.R_EYE_LOWER, T.L_EYE_LOWER):
        p = uv[list(c)].mean(0) + [0, 10]
        cv2.ellipse(dark, tuple(np.round(p).astype(int)), (26, 11), 0, 0, 360, 1.0, -1)
    dark = _blur(dark, 7) * (0.10 + 0.18 * code["eye_bags"]) * UNDER_EYE
    _scale(img, dark)
    hair = np.array([code["hair_r"], code["hair_g"], code["hair_b"]], np.float32)
    brow_col = np.minimum(hair * 0.7, skin * 0.45) if hair.mean() < 150 else np.minimum(hair * 0.5 + np.float32(15), skin * 0.6)
    # ---- facial hair: stubble / beard / moustache
    beard_mask = np.zeros((A, A), np.float32)
    cv2.fillPoly(beard_mask, [np.round(uv[[93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 401, 435, 367, 364, 430, 432, 287, 273, 335, 406, 313, 18, 83, 182, 106, 43, 57, 212, 210, 135, 138, 215, 177]]).astype(np.int32)], 1.0)
    must = np.zeros((A, A), np.float32)
    cv2.fillPoly(must, [np.round(uv[[61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 410, 322, 391, 393, 164, 167, 165, 92, 186]]).astype(np.int32)], 1.0)
    lips = np.zeros((A, A), np.float32)
    cv2.fillPoly(lips, [np.round(uv[list(T.LIPS_OUTER)]).astype(np.int32)], 1.0)
    lips_soft = _blur(lips, 1.5)
    must *= 1 - lips
    edge_noise = _noise(r, (A, A), 6)
    fuzzy = lambda m, s: np.clip(_blur(m, s) + 0.25 * edge_noise - 0.1, 0, 1)
    speck = (r.random((A, A)) < 0.35).astype(np.float32)
    # each term is >= 0 and exactly 0 where its amount is 0: such a term drops out of the maximum
    terms = [f() for amount, f in (
        (code["stubble"], lambda: fuzzy(beard_mask + must, 4) * (1 - lips) * speck * 0.55 * code["stubble"]),
        (code["beard"], lambda: fuzzy(beard_mask, 3) * (1 - lips) * (0.6 + 0.4 * speck) * code["beard"]),
        (code["moustache"], lambda: fuzzy(must, 2) * (1 - lips) * (0.6 + 0.4 * speck) * code["moustache"]),
    ) if amount != 0]
    fh = np.clip(terms[0] if len(terms) == 1 else np.maximum.reduce(terms), 0, 1)[..., None] if terms else None
    # lips
    lip_noise = _noise(r, (A, A), 4)
    inner = np.zeros((A, A), np.float32)  # the lips' inner surfaces (they roll into the mouth): darker, wet
    cv2.fillPoly(inner, [np.round(uv[list(T.LIPS_INNER)] * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    inner = _blur(inner, 1.0)[..., None] * 0.45
    lipc = np.zeros((A, A, 3), np.float32)  # the lip colour, needed only where the two lip masks are
    for box in (_support(lips_soft), _support(inner)):
        if box is not None:
            lipc[box] = np.array([code["lip_r"], code["lip_g"], code["lip_b"]], np.float32) * (1 + 0.05 * lip_noise[box][..., None])
    _blend(img, lips_soft[..., None], lipc)
    _blend(img, inner, lipc, inner, 0.55)  # as img * (1 - inner) + lipc * 0.55 * inner
    # wrinkles
    wr = np.zeros((A, A), np.float32)
    wk = code["wrinkles"]
    if wk > 0.05:
        for a, b in ((129, 61), (358, 291)):  # nasolabial folds
            p0, p1 = uv[a], uv[b]
            mid = 0.5 * (p0 + p1) + [(-6 if a == 129 else 6), 0]
            _line(wr, np.array([p0, mid, p1]), 1.0, 2)
        fy0 = uv[10][1] + 14
        for k in range(3):  # forehead lines
            y = fy0 + k * 9
            xs = np.linspace(uv[103][0] + 10, uv[332][0] - 10, 12)
            ys = y + 2.5 * np.sin(xs / 20 + r.uniform(0, 6))
            _line(wr, np.stack([xs, ys], 1), 0.8, 1)
        for c, s in ((33, -1), (263, 1)):  # crow's feet
            for k in (-1, 0, 1):
                p0 = uv[c] + [s * 4, k * 3]
                _line(wr, np.array([p0, p0 + [s * 12, k * 6]]), 0.7, 1)
        wr = _blur(wr, 1.0) * wk * 0.28
    _scale(img, wr)
    # freckles, moles, blemishes
    face_area = np.zeros((A, A), np.float32)
    cv2.fillPoly(face_area, [np.round(uv[list(T.FACE_OVAL)]).astype(np.int32)], 1.0)
    nfr = int(400 * code["freckles"])
    if nfr:
        c0 = (uv[205] + uv[425]) / 2
        pts = c0 + r.normal(size=(nfr, 2)) * [70, 35]
        for p in pts:
            cv2.circle(img, tuple(np.round(p).astype(int)), int(r.integers(1, 3)), tuple((skin * 0.78).tolist()), -1, cv2.LINE_AA)
    for _ in range(int(1 + 5 * code["moles"])):
        p = np.array([r.uniform(40, 340), r.uniform(60, 360)])
        if face_area[int(p[1]), int(p[0])] > 0:
            cv2.circle(img, tuple(np.round(p).astype(int)), int(r.integers(1, 4)), tuple((skin * 0.45).tolist()), -1, cv2.LINE_AA)
    for _ in range(int(6 * code["blemish"])):
        p = np.array([r.uniform(60, 320), r.uniform(120, 360)])
        cv2.circle(img, tuple(np.round(p).astype(int)), int(r.integers(2, 5)), tuple((skin * [1.05, 0.88, 0.88]).tolist()), -1, cv2.LINE_AA)
    # facial hair over the skin
    if fh is not None:
        _blend(img, fh, hair * 0.75)
    # brows: filled band + hair strokes
    for br in (T.R_BROW, T.L_BROW):
        upper = uv[list(br[:5])]
        lower = uv[list(br[5:])][::-1]
        th = code["brow_thick"]
        arch = code["brow_arch"]
        mid = 0.5 * (upper + lower)
        mid[1:4, 1] -= 4 * (arch - 0.4)
        half = np.abs(lower - upper)[:, 1:2] * 0.5 * (0.7 + 0.8 * th) + 1.0
        band = np.zeros((A, A), np.float32)
        poly = np.concatenate([mid - [0, 1] * half, (mid + [0, 1] * half)[::-1]])
        cv2.fillPoly(band, [np.round(poly * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
        band = _blur(band, 1.6)
        strokes = np.zeros((A, A), np.float32)
        seg = [(mid[i + 1] - mid[i]) / (np.linalg.norm(mid[i + 1] - mid[i]) + 1e-6) for i in range(4)]
        hairs = []
        for _ in range(int(160 * code["brow_density"])):
            t = r.uniform(0, 1)
            i = min(3, int(t * 4))
            f = t * 4 - i
            p = mid[i] * (1 - f) + mid[i + 1] * f + [0, r.normal() * half[i, 0] * 0.6]
            q = p + seg[i] * r.uniform(4, 8) + [0, -r.uniform(0, 2)]
            hairs.append((p, q))
        if hairs:  # one call draws them in order, as one call per hair would
            cv2.polylines(strokes, list(np.round(np.array(hairs) * 4).astype(np.int32)), False, 1.0, 1, cv2.LINE_AA, shift=2)
        a = np.clip((0.55 + 0.35 * code["brow_density"]) * band + 0.5 * strokes * band, 0, 0.95)[..., None]
        _blend(img, a, brow_col)
    # lashes / eyeliner on the upper lid margin
    for up, lo in ((T.R_EYE_UPPER, T.R_EYE_LOWER), (T.L_EYE_UPPER, T.L_EYE_LOWER)):
        # supratarsal crease ~5 mm above the lid margin (follows the lid when it closes)
        cr = np.zeros((A, A), np.float32)
        upp = uv[list(up)]
        lift = 9.0 * np.sin(np.linspace(0.15, np.pi - 0.15, len(upp)))[:, None] * [0, 1]
        _line(cr, upp - lift - [0, 1.5], 1.0, 2)
        cr = _blur(cr, 1.3)[..., None] * CREASE
        _blend(img, cr, skin * 0.45)
        # lash line: a dark band on the upper lid margin, thin line on the lower one. When the lid
        # closes the band lies along the closed lid line (what a face-mesh model reads as "closed")
        m = np.zeros((A, A), np.float32)
        _line(m, upp + [0, -1.2], 1.0, 2.5 + 3.0 * code["lash"])
        _line(m, uv[list(lo)] + [0, 0.8], 0.55, 1.5)
        m = _blur(m, 0.8)[..., None]
        _blend(img, 0.92 * m, np.float32(16) * 0.92, m)  # as img * (1 - 0.92 m) + (16 * 0.92) m
        if code.get("makeup", 0) > 0.5:
            sh = np.zeros((A, A), np.float32)
            cv2.fillPoly(sh, [np.round(np.concatenate([uv[list(up)], uv[list(up)][::-1] + [0, -10]])).astype(np.int32)], 1.0)
            sh = _blur(sh, 4)[..., None] * 0.35
            _blend(img, sh, np.float32([90, 70, 80]))
    # ---- hair region: strands
    hx, hy, hs = HAIR_RECT
    strand = cv2.GaussianBlur(r.normal(size=(hs, hs)).astype(np.float32), (1, 15), 0) * 0.8
    strand += _noise(r, (hs, hs), 16) * 0.2
    img[hy:hy + hs, hx:hx + hs] = hair * (1 + 0.35 * strand[..., None])
    # ---- eye region: sclera, iris, pupil
    ex, ey, es = EYE_RECT
    yy, xx = np.mgrid[0:es, 0:es].astype(np.float32)
    rad = np.hypot(xx - es / 2, yy - es / 2) / (es / 2 - 2) * (np.pi * 0.75)  # angle from the axis
    ang = np.arctan2(yy - es / 2, xx - es / 2)
    a_iris = np.arcsin(0.0059 / 0.012)
    a_pupil = np.arcsin(0.0022 / 0.012)
    iris = np.array([code["iris_r"], code["iris_g"], code["iris_b"]], np.float32)
    fib = 1 + 0.25 * np.sin(ang * 37 + r.uniform(0, 6)) * np.sin(ang * 11) + 0.15 * (rad / a_iris)
    eye = np.empty((es, es, 3), np.float32)
    eye[:] = np.float32([226, 220, 214])
    eye[rad > 0.9] = np.float32([200, 160, 150])
    irism = rad < a_iris
    eye[irism] = (iris * fib[..., None])[irism]
    limb = np.clip(1 - np.abs(rad - a_iris) / 0.05, 0, 1)[..., None]
    eye = eye * (1 - 0.6 * limb)
    eye[rad < a_pupil] = 8
    img[ey:ey + es, ex:ex + es] = eye
    # ---- swatches
    sw = {"socket": (170, 110, 105), "frame": tuple(glasses_style(code["tex_seed"])["colour"]),
          "lens_dark": (20, 22, 25), "lens_clear": (200, 215, 225), "mask": (150, 195, 225), "cap": (40, 50, 80),
          "phone": (25, 25, 28), "screen": (60, 110, 160), "sleeve": (60, 60, 70), "seat": (45, 45, 48), "lash": tuple(np.minimum(hair * 0.35, 28.0).tolist())}
    sw["teeth"], sw["tongue"], sw["mouth"] = mouth_colours(code)
    cl = code["clothing"]
    palette = [(40, 45, 60), (200, 200, 205), (110, 30, 35), (35, 70, 50), (90, 90, 95), (180, 150, 110), (20, 20, 22), (70, 100, 150)]
    sw["cloth"] = palette[int(cl * 8) % 8]
    sw["sleeve"] = sw["cloth"]
    cap_pal = [(40, 50, 80), (160, 30, 30), (30, 30, 30), (200, 200, 190)]
    sw["cap"] = cap_pal[int(cl * 37) % 4]
    for name, col in sw.items():
        i = SWATCHES[name]
        x0, y0 = SWATCH_RECT[0] + (i % 8) * 16, SWATCH_RECT[1] + (i // 8) * 16
        img[y0:y0 + 16, x0:x0 + 16] = col
    if True:  # mask pleats
        i = SWATCHES["mask"]
        x0, y0 = SWATCH_RECT[0] + (i % 8) * 16, SWATCH_RECT[1] + (i // 8) * 16
        img[y0:y0 + 16, x0:x0 + 16] *= (1 - 0.12 * (np.arange(16) % 5 == 0))[None, :, None]
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    # ---- near-IR grey: melanin barely absorbs at 850-940 nm, so skin is bright for every tone
    lum = img @ np.float32([0.3, 0.5, 0.2])
    skin_l = float(skin @ np.float32([0.3, 0.5, 0.2]))
    nir_skin = 165.0 - 6.0 * (6 - 1) * (skin_l < 90)
    nir = lum / skin_l * nir_skin
    hair_l = float(hair @ np.float32([0.3, 0.5, 0.2]))
    nir[hy:hy + hs, hx:hx + hs] = (lum[hy:hy + hs, hx:hx + hs] / max(hair_l, 1)) * (50 + 0.6 * hair_l)
    # lips and brows less contrasted in NIR
    nir = nir * (1 - 0.7 * lips_soft) + nir_skin * 0.95 * 0.7 * lips_soft
    ir_eye = np.full((es, es), 205, np.float32)
    ir_eye[irism] = 120 * fib[irism]
    ir_eye = ir_eye * (1 - 0.5 * limb[..., 0])
    ir_eye[rad < a_pupil] = 10
    nir[ey:ey + es, ex:ex + es] = ir_eye
    return rgb, np.clip(nir, 0, 255).astype(np.uint8)
