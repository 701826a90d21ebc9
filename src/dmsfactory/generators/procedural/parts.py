"""Geometry the MediaPipe mesh lacks, plus expressions.

Head frame: x = subject's left, y = up, z = out of the face; origin = midpoint of the outer eye
corners (33, 263); metres. Every builder returns a :class:`Part` (vertices, triangles, uv in atlas
pixels, material). Triangles are counter-clockwise seen from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import facemodel as FM
from . import topology as T

ATLAS = 512
# atlas regions (x0, y0, size) in pixels
FACE_RECT = (0, 0, 384)
SKIN_RECT = (384, 0, 128)
HAIR_RECT = (384, 128, 128)
EYE_RECT = (384, 256, 128)
SWATCH_RECT = (384, 384, 128)  # 8x8 swatches of 16 px
SWATCHES = {"mouth": 0, "teeth": 1, "socket": 2, "cloth": 3, "frame": 4, "lens_dark": 5, "mask": 6, "cap": 7,
            "phone": 8, "screen": 9, "sleeve": 10, "seat": 11, "lens_clear": 12, "tongue": 13, "lash": 14}


def swatch_uv(name: str) -> tuple[float, float]:
    i = SWATCHES[name]
    return (SWATCH_RECT[0] + (i % 8) * 16 + 8.0, SWATCH_RECT[1] + (i // 8) * 16 + 8.0)


@dataclass
class Part:
    name: str
    v: np.ndarray  # (N,3)
    t: np.ndarray  # (F,3)
    uv: np.ndarray  # (N,2) atlas pixels
    frame: str = "head"  # head | world
    cull: bool = True
    spec: float = 0.15  # specular strength
    occluder: bool = False  # hides landmarks (accessories, hands, hair)
    nir_albedo: float | None = None  # grey albedo under 850/940 nm; None = from texture
    extra: dict = field(default_factory=dict)


def _grid_tris(nu: int, nv: int, wrap_u: bool = False) -> np.ndarray:
    t = []
    cols = nu if wrap_u else nu - 1
    for j in range(nv - 1):
        for i in range(cols):
            a = j * nu + i
            b = j * nu + (i + 1) % nu
            c = (j + 1) * nu + i
            d = (j + 1) * nu + (i + 1) % nu
            t += [(a, b, d), (a, d, c)]
    return np.array(t, np.int64)


def orient_outward(v: np.ndarray, t: np.ndarray, centre) -> np.ndarray:
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    c = v[t].mean(1) - np.asarray(centre)
    t = t.copy()
    flip = (n * c).sum(1) < 0
    t[flip] = t[flip][:, ::-1]
    return t


def ellipsoid(centre, radii, nu=16, nv=10, uv_rect=SKIN_RECT, name="ellipsoid", **kw) -> Part:
    th = np.linspace(0, np.pi, nv)
    ph = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    P, H_ = np.meshgrid(ph, th)
    v = np.stack([np.sin(H_) * np.cos(P), np.cos(H_), np.sin(H_) * np.sin(P)], -1).reshape(-1, 3) * radii + centre
    t = orient_outward(v, _grid_tris(nu, nv, True), centre)
    uv = np.stack([uv_rect[0] + 4 + (P.ravel() / (2 * np.pi)) * (uv_rect[2] - 8), uv_rect[1] + 4 + (H_.ravel() / np.pi) * (uv_rect[2] - 8)], 1)
    return Part(name, v, t, uv, **kw)


def box(centre, size, R=np.eye(3), sw="phone", name="box", **kw) -> Part:
    s = np.asarray(size) / 2
    c = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * s
    v = c @ R.T + centre
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    t = np.array([q for a, b, c_, d in quads for q in ((a, b, c_), (a, c_, d))])
    t = orient_outward(v, t, centre)
    uv = np.tile(swatch_uv(sw), (8, 1))
    return Part(name, v, t, uv, **kw)


def tube(p0, p1, r0, r1, n=10, sw="sleeve", name="tube", **kw) -> Part:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    a = p1 - p0
    a /= np.linalg.norm(a)
    u = np.cross(a, [0.0, 0.0, 1.0])
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(a, [1.0, 0, 0])
    u /= np.linalg.norm(u)
    w = np.cross(a, u)
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * w
    v = np.concatenate([p0 + r0 * ring, p1 + r1 * ring, [p0, p1]])
    t = list(_grid_tris(n, 2, True))
    t += [(2 * n, (i + 1) % n, i) for i in range(n)] + [(2 * n + 1, n + i, n + (i + 1) % n) for i in range(n)]
    t = np.array(t)
    t = orient_outward(v, t, 0.5 * (p0 + p1))
    return Part(name, v, t, np.tile(swatch_uv(sw), (len(v), 1)), **kw)


# ---------------------------------------------------------------- face-level helpers
EYE_R_CONTOUR = np.array(T.R_EYE_UPPER + T.R_EYE_LOWER[1:-1][::-1])
EYE_L_CONTOUR = np.array(T.L_EYE_UPPER + T.L_EYE_LOWER[1:-1][::-1])


def eye_geometry(v: np.ndarray, side: str) -> tuple[np.ndarray, float]:
    """Eyeball centre and radius for one eye of model vertices ``v`` (head frame): the sphere through the
    eye hole's boundary (the lids' inner margin lies on the model's eyeball), 0.4 mm smaller so that the
    ball never z-fights the lids' inner surface (a dark socket fan closes the gap behind it)."""
    P = v[FM.load().eyes[side]["loop"]]
    A = np.c_[2 * P, np.ones(len(P))]
    s = np.linalg.lstsq(A, (P**2).sum(1), rcond=None)[0]
    c = s[:3]
    R = float(np.sqrt(s[3] + c @ c))
    return c, float(np.clip(R - 0.0004, 0.0110, 0.0165))


def fan(v_face: np.ndarray, contour: np.ndarray, depth: float, sw: str, name: str, offset=(0, 0, 0)) -> Part:
    pts = v_face[contour]
    apex = pts.mean(0) + np.array([0, 0, -depth]) + np.asarray(offset)
    v = np.concatenate([pts, apex[None]])
    n = len(pts)
    t = np.array([(i, (i + 1) % n, n) for i in range(n)])
    t = orient_outward(v, t, apex + np.array([0, 0, -0.05]))
    uv = np.tile(swatch_uv(sw), (n + 1, 1))
    uv[-1] += (0, 0)
    return Part(name, v, t, uv, cull=False)


# The upper front teeth (renderer 0.10.0). The head model's upper teeth are a row of separate crowns whose
# central incisors end 3 mm above the lip line (only canine and premolar tips reach it): when the lips
# part they show as white spikes with dark gaps, and a yawn shows almost none of them. A real open mouth
# shows a continuous band of upper incisors under the upper lip. This row replaces the model's upper
# teeth: half-widths (projected on x) of the central and lateral incisor, canine and first premolar
# (mean crown widths 8.6, 6.6, 7.6, 7.0 mm measured along the arch; here projected on the arch's
# chord, so the later ones narrower), the edge of each tooth above the central incisors' (mm: laterals
# sit higher, the canine ends in a cusp, the premolar higher again), a V-shaped notch where two crowns
# meet, and a crown 11 mm tall and proclined (its edge ahead of its neck).
TOOTH_X_MM = (0.0, 8.3, 14.0, 19.0, 23.5)
TOOTH_EDGE_MM = (0.0, 0.7, 0.2, 0.9)
CANINE_CUSP_MM, NOTCH_MM, NOTCH_HALF_MM = 1.0, 0.7, 0.6
CROWN_MM, PROCLINE = 11.0, 0.15


def upper_teeth(edge_y: float, front_z: float, arch: float, width: float = 1.0, step_mm: float = 0.5) -> Part:
    """The upper front teeth as one curved band (head frame, metres): the incisal edge of the central
    incisors at height ``edge_y``, their labial face at depth ``front_z``; the arch recedes as
    ``arch * x**2`` (1/m); ``width`` scales it sideways. Columns every ``step_mm`` along x, with a
    column on every crown boundary (the notches), rows denser near the edge; triangles face out."""
    xb = np.asarray(TOOTH_X_MM) * width
    xs = np.unique(np.round(np.concatenate([np.arange(0.0, xb[-1], step_mm), xb]), 6))
    xs = np.concatenate([-xs[:0:-1], xs])  # symmetric, midline once
    ax = np.abs(xs)
    tooth = np.clip(np.searchsorted(xb, ax, side="right") - 1, 0, len(TOOTH_EDGE_MM) - 1)
    lift = np.asarray(TOOTH_EDGE_MM)[tooth].copy()
    c_lo, c_hi = xb[2], xb[3]  # the canine: a cusp at its middle
    on_c = tooth == 2
    lift[on_c] += CANINE_CUSP_MM * np.abs(ax[on_c] - 0.5 * (c_lo + c_hi)) / (0.5 * (c_hi - c_lo))
    d_b = np.min(np.abs(ax[:, None] - xb[None, :-1]), axis=1)  # distance to the nearest crown boundary
    lift += NOTCH_MM * np.clip(1.0 - d_b / (NOTCH_HALF_MM * width), 0.0, 1.0)
    rows_mm = np.array([0.0, 0.4, 1.2, 3.0, 6.0, CROWN_MM])
    X = xs / 1000.0
    nu, nv = len(xs), len(rows_mm)
    v = np.empty((nv, nu, 3))
    for j, h in enumerate(rows_mm):
        hh = np.maximum(h, lift) if j else lift  # the notch's top never rises above the row above it
        v[j, :, 0] = X
        v[j, :, 1] = edge_y + hh / 1000.0
        v[j, :, 2] = front_z - arch * X**2 - PROCLINE * hh / 1000.0
    v = v.reshape(-1, 3)
    t = _grid_tris(nu, nv)
    t = orient_outward(v, t, np.array([0.0, edge_y + 0.005, front_z - 0.03]))
    p = Part("teeth", v, t, np.tile(swatch_uv("teeth"), (len(v), 1)), cull=False, spec=0.3)
    p.extra["boundary"] = np.tile(d_b < 0.3 * width, nv)  # vertices on a crown boundary (shaded darker)
    return p


LASH_MM = 2.6  # upper lashes at the middle of the lid (shorter towards the corners; x 0.8-1.4 by the lash code)


def lashes(upper: np.ndarray, lower_open: np.ndarray, upper_open: np.ndarray, openness: float, length: float) -> Part:
    """A fringe of upper lashes on the lid margin (head frame): a strip from the margin, forward and
    up over an open eye, forward and down over a closed one (the lashes turn with the lid). ``upper``:
    the margin now (n, 3), corners first/last; ``*_open``: the margins with the lids open (direction)."""
    n = len(upper)
    t = np.sin(np.linspace(0.0, np.pi, n)) ** 0.7
    opening = upper_open - lower_open
    opening /= np.linalg.norm(opening, axis=1, keepdims=True) + 1e-12
    d = np.array([0.0, 0.0, 1.0]) * 0.75 + opening * (2.0 * float(openness) - 1.0) * 0.65
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    L = (LASH_MM / 1000.0) * length * t
    root = upper + np.array([0.0, 0.0, 0.0003])
    tip = root + d * L[:, None]
    v = np.concatenate([root, tip])
    tri = [q for i in range(n - 1) for q in ((i, i + 1, n + i + 1), (i, n + i + 1, n + i))]
    return Part("lashes", v, np.array(tri, np.int64), np.tile(swatch_uv("lash"), (2 * n, 1)), cull=False, spec=0.2)


def eyeball(centre, R, iris_r_m=0.0059, nu=20, nv=12) -> tuple[Part, np.ndarray]:
    """Sphere with +z optical axis; uv in EYE_RECT by angle from the axis, scaled so that the iris keeps
    its physical radius (``iris_r_m``) on a ball of radius R (the atlas paints it for a 12 mm ball).
    Returns (part, alpha)."""
    al = np.linspace(0, np.pi * 0.75, nv)  # angle from the axis (back hidden anyway)
    ph = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    A, P = np.meshgrid(al, ph, indexing="ij")
    d = np.stack([np.sin(A) * np.cos(P), np.sin(A) * np.sin(P), np.cos(A)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 0, R]], d[nu:] * R])  # pole shared
    A = A.ravel()[nu - 1:]
    P = P.ravel()[nu - 1:]
    A[0] = 0
    t = []
    for i in range(nu):
        t.append((0, 1 + i, 1 + (i + 1) % nu))
    for j in range(1, nv - 1):
        for i in range(nu):
            a = 1 + (j - 1) * nu + i
            b = 1 + (j - 1) * nu + (i + 1) % nu
            t += [(a, a + nu, b + nu), (a, b + nu, b)]
    t = orient_outward(v, np.array(t), (0, 0, 0))
    cx, cy, s = EYE_RECT[0] + EYE_RECT[2] / 2, EYE_RECT[1] + EYE_RECT[2] / 2, EYE_RECT[2] / 2 - 2
    scale = np.arcsin(iris_r_m / 0.012) / np.arcsin(min(iris_r_m / R, 1.0))
    rad = np.minimum(A * scale / (np.pi * 0.75), 1.0) * s
    uv = np.stack([cx + rad * np.cos(P), cy + rad * np.sin(P)], 1)
    return Part("eyeball", v + centre, t, uv, spec=1.2), A


# ---------------------------------------------------------------- skull, ears, hair, neck
def skull_params(v: np.ndarray) -> dict:
    """An ellipsoid around the scalp of model vertices ``v`` (every vertex of the head above the eye
    line inside it): where caps, glasses temples and the phone sit."""
    m = FM.load()
    P = v[np.concatenate([m.part_vertices["head"], m.part_vertices["face"]])]
    scalp = P[P[:, 1] > 0.0]
    c = np.array([0.0, -0.004, 0.5 * (scalp[:, 2].max() + scalp[:, 2].min())])
    r = np.array([np.abs(scalp[:, 0]).max(), scalp[:, 1].max() - c[1], 0.5 * (scalp[:, 2].max() - scalp[:, 2].min())])
    k = float(np.sqrt((((scalp - c) / r) ** 2).sum(1)).max())
    return {"c": c, "r": r * max(1.0, k), "ry_down": 0.080}


def head_radius(v: np.ndarray, sp: dict, d: np.ndarray, cone_deg: float = 7.0) -> np.ndarray:
    """Distance from the skull centre to the head surface along unit directions ``d`` (..., 3): the
    farthest model vertex within a small cone around each direction (the ellipsoid where none is)."""
    m = FM.load()
    P = v[np.concatenate([m.part_vertices["head"], m.part_vertices["face"]])] - sp["c"]
    rp = np.linalg.norm(P, axis=1)
    u = P / rp[:, None]
    flat = d.reshape(-1, 3)
    cosc = np.cos(np.radians(cone_deg))
    out = _ell_radius(flat, sp).astype(np.float64)
    for i in range(0, len(flat), 256):
        dots = flat[i:i + 256] @ u.T
        near = dots > cosc
        cols = np.flatnonzero(near.any(0))  # the vertices inside some direction's cone: the max is over them
        if not len(cols):
            continue
        near = near[:, cols]
        r = np.where(near, rp[cols][None, :] * dots[:, cols], 0.0).max(1)
        has = near.any(1)
        out[i:i + 256][has] = r[has]
    return out.reshape(d.shape[:-1])


def _ell_radius(d: np.ndarray, sp: dict) -> np.ndarray:
    r = sp["r"].copy()
    ry = np.where(d[..., 1] > 0, r[1], sp["ry_down"])
    return 1.0 / np.sqrt((d[..., 0] / r[0]) ** 2 + (d[..., 1] / ry) ** 2 + (d[..., 2] / r[2]) ** 2)


def _dir(theta, phi):
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)


def hair(v_head: np.ndarray, sp: dict, code: dict) -> Part | None:
    length, vol = code["hair_length"], code["hair_volume"]
    rec = code["hair_recession"]
    if length < 0.003 and vol < 0.004:
        return None
    nth, nph = 30, 40
    # front hairline: polar angle from +z where hair starts at the top; lower at the sides
    th = np.linspace(0.0, np.pi, nth)
    ph = np.linspace(-np.pi, np.pi, nph, endpoint=False)
    TH, PH = np.meshgrid(th, ph, indexing="ij")
    d = _dir(TH, PH)
    r = head_radius(v_head, sp, d)  # the shell follows this identity's scalp, smoothed (ears make no spikes)
    rp = np.concatenate([r[:, -3:], r, r[:, :3]], 1).astype(np.float32)  # wrap round the head
    rp = cv2.blur(cv2.dilate(rp, np.ones((5, 5), np.uint8)), (5, 5))
    r = rp[:, 3:-3].astype(np.float64) + vol
    P = sp["c"] + d * r[..., None]
    # hair covers points above a hairline surface
    y_rel = P[..., 1] - sp["c"][1]
    front = d[..., 2]
    hairline_front = 0.036 + 0.014 * rec - 0.03 * code["hair_fringe"] * (length > 0.05)
    # a side parting sweeps the front hair down on one side: the hairline tilts across the brow
    # (hair_part -1..1, subject's right..left; up to 7 mm either side of the midline on longer hair)
    tilt = -0.014 * code["hair_part"] * d[..., 0] * min(1.0, length / 0.06)
    # the hairline by the angle round the head from the front (phi, at the point itself): forehead, the
    # temples (receding with age in men), the sideburns in front of the ear, above the ear (over it
    # for long hair), the nape
    phi = np.degrees(np.arctan2(np.abs(P[..., 0]), P[..., 2] - sp["c"][2]))
    temple = 0.012 + 0.02 * rec
    over_ear = 0.026 if length < 0.08 else -0.045
    nape = -0.035 - 0.5 * length
    yline = np.interp(phi, [0, 20, 40, 47, 53, 62, 90, 180],
                      [hairline_front, hairline_front, temple, -0.012, over_ear, over_ear, nape, nape])
    yline = yline + tilt * (phi < 40)
    cov = (P[..., 1] > yline - 0.0) | ((front < -0.1) & (P[..., 1] > -0.06 - length))
    if rec > 0.6:  # crown balding
        cov &= ~((d[..., 1] > 0.75) & (rec > 0.8))
    # long hair falls: points below the equator on the back/sides get pushed out and down
    hang = np.clip(length - 0.06, 0, None)
    side = np.abs(d[..., 0]) > 0.5
    low = (P[..., 1] < 0.0) & ((front < 0.15) | side)
    P = P.copy()
    drop = np.clip(-y_rel / 0.08, 0, 1)
    P[..., 1] -= low * drop * hang * 1.6
    P[..., 0] += low * drop * np.sign(d[..., 0]) * 0.012
    cov |= low & (hang > 0) & (front < 0.35)
    # smooth hairline: where coverage changes between neighbours along a meridian because of the
    # hairline height, the first bare vertex moves onto the hairline (no grid staircase on the brow)
    f = P[..., 1] - yline
    for i in range(nth - 1):
        for src, dst in ((i, i + 1), (i + 1, i)):
            edge = cov[src] & ~cov[dst] & (f[src] > 0) & (f[dst] <= 0)
            if edge.any():
                w = (f[src] / (f[src] - f[dst] + 1e-12))[edge][:, None]
                P[dst][edge] = P[src][edge] + w * (P[dst][edge] - P[src][edge])
                cov[dst][edge] = True
    v = P.reshape(-1, 3)
    t = _grid_tris(nph, nth, True)
    # transpose layout: grid built as (th rows, ph cols)
    keep = cov.reshape(-1)[t].all(1)
    t = t[keep]
    t = orient_outward(v, t, sp["c"])
    uv = np.stack([HAIR_RECT[0] + 4 + (PH.ravel() + np.pi) / (2 * np.pi) * 120, HAIR_RECT[1] + 4 + TH.ravel() / np.pi * 120], 1)
    return Part("hair", v, t, uv, cull=False, spec=0.5, occluder=True)


def neck_and_torso(clothing: float, head_size: float) -> list[Part]:
    """World-frame (x left, y up, z forward; origin = head pivot at neutral pose) torso: a collar round the
    base of the face model's neck, shoulders, chest."""
    parts = []
    rings = [(-0.098, 0.078, 0.075), (-0.118, 0.11, 0.095), (-0.145, 0.165, 0.10), (-0.19, 0.205, 0.115), (-0.30, 0.215, 0.12), (-0.75, 0.20, 0.12)]
    nu = 20
    ang = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = []
    for y, a, b in rings:
        v.append(np.stack([a * np.cos(ang), np.full(nu, y), b * np.sin(ang) - 0.015], 1))
    v = np.concatenate(v)
    t = orient_outward(v, _grid_tris(nu, len(rings), True), np.array([0, -0.35, -0.015]))
    uv = np.tile(swatch_uv("cloth"), (len(v), 1))
    parts.append(Part("torso", v, t, uv, frame="world", spec=0.05))
    return parts


# ---------------------------------------------------------------- accessories
# Frames of glasses, one style per identity (renderer 0.11.0; before it every wearer had the same thick dark
# oval). Acetate rims are ~2-4.5 mm bands around the lens, metal rims ~1-1.7 mm wires (GLASSES_RIM times the
# lens half-width); lens widths of 46-56 mm and heights of 30-42 mm (half-axes in glasses_style) span common
# adult frames; the shape runs from an oval (superellipse exponent 2) to a rounded rectangle (4). Colours
# are sRGB of the frame swatch.
GLASSES_MATERIAL = {"acetate": 0.55, "metal": 0.45}
GLASSES_COLOURS = {
    "acetate": ((30, 28, 28), (75, 52, 38), (40, 42, 58), (110, 30, 35)),  # black, tortoise brown, navy, burgundy
    "metal": ((175, 175, 180), (165, 138, 82), (85, 85, 92)),  # silver, gold, gunmetal
}
GLASSES_RIM = {"acetate": (0.09, 0.16), "metal": (0.035, 0.06)}  # rim band, share of the lens half-width
GLASSES_TUBE_R = {"acetate": 0.0019, "metal": 0.0009}  # bridge and temple radius, metres


def glasses_style(tex_seed: float) -> dict:
    """The frame an identity wears (glasses and sunglasses alike), from its texture seed (a mixup
    identity: its dominant parent's): material, sRGB colour, lens half-width / half-height (m), shape
    exponent, rim band (share of the half-width). Recorded in ``params.render.glasses``."""
    r = np.random.default_rng([int(tex_seed), 0x6C5])
    mats = list(GLASSES_MATERIAL)
    mat = mats[int(r.choice(len(mats), p=list(GLASSES_MATERIAL.values())))]
    cols = GLASSES_COLOURS[mat]
    return {"material": mat, "colour": list(cols[int(r.integers(len(cols)))]),
            "half_width_m": round(float(r.uniform(0.023, 0.028)), 5), "half_height_m": round(float(r.uniform(0.015, 0.021)), 5),
            "shape_exponent": round(float(r.uniform(2.0, 4.0)), 3), "rim": round(float(r.uniform(*GLASSES_RIM[mat])), 4)}


def glasses(face: np.ndarray, sp: dict, dark: bool, style: dict) -> list[Part]:
    """``face``: the 468 landmarks (head frame); ``style``: :func:`glasses_style`."""
    parts = []
    ring_v, ring_t = [], []
    lens_v, lens_t = [], []
    n = 32
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ex = 2.0 / float(style["shape_exponent"])
    cs, sn = np.cos(ang), np.sin(ang)
    ux, uy = np.sign(cs) * np.abs(cs) ** ex, np.sign(sn) * np.abs(sn) ** ex  # superellipse
    zl = max(face[[159, 386, 105, 334, 6], 2].max(), face[[168], 2].max() - 0.004) + 0.010
    tube_r = GLASSES_TUBE_R[style["material"]]
    for side, up in (("right", T.R_EYE_UPPER), ("left", T.L_EYE_UPPER)):
        c = face[list(up)].mean(0)
        cx = c[0] * 1.05
        cy = c[1] - 0.001
        ax = float(style["half_width_m"])
        ay = float(style["half_height_m"]) + (0.003 if dark else 0.0)
        e = np.stack([cx + ax * ux, cy + ay * uy - 0.003 * (sn < 0), np.full(n, zl)], 1)
        # wrap: outer side bends back
        e[:, 2] -= 0.12 * np.clip(np.abs(e[:, 0]) - 0.03, 0, None)
        outer = e.copy()
        outer[:, :2] = (e[:, :2] - [cx, cy]) * (1.0 + float(style["rim"])) + [cx, cy]
        b = len(ring_v) * n
        ring_v += [e, outer + [0, 0, 0.001]]
        ring_t += [(b + i, b + (i + 1) % n, b + n + (i + 1) % n) for i in range(n)]
        ring_t += [(b + i, b + n + (i + 1) % n, b + n + i) for i in range(n)]
        lb = len(lens_v) * (n + 1)
        lens_v.append(np.concatenate([e, [[cx, cy, zl + 0.002]]]))
        lens_t += [(lb + i, lb + (i + 1) % n, lb + n) for i in range(n)]
    rv = np.concatenate(ring_v)
    spec = 0.8 if style["material"] == "acetate" else 1.0
    frame = Part("glasses_frame", rv, np.array(ring_t), np.tile(swatch_uv("frame"), (len(rv), 1)), cull=False, spec=spec, occluder=True)
    parts.append(frame)
    # bridge and temples
    rx0 = ring_v[1][np.argmax(ring_v[1][:, 0])]
    lx0 = ring_v[3][np.argmin(ring_v[3][:, 0])]
    parts.append(tube(rx0 + [0, 0.004, 0], lx0 + [0, 0.004, 0], tube_r, tube_r, n=6, sw="frame", name="glasses_bridge", spec=spec, occluder=True))
    for e, s in ((ring_v[1], -1), (ring_v[3], 1)):
        p0 = e[np.argmax(s * e[:, 0])] + [0, 0.004, 0]
        p1 = np.array([s * (sp["r"][0] + 0.004), p0[1] - 0.004, sp["c"][2] + 0.01])
        parts.append(tube(p0, p1, 1.2 * tube_r, tube_r, n=6, sw="frame", name="glasses_temple", spec=0.75 * spec, occluder=True))
    lv = np.concatenate(lens_v)
    lens = Part("lens", lv, np.array(lens_t), np.tile(swatch_uv("lens_dark" if dark else "lens_clear"), (len(lv), 1)), cull=False)
    parts.append(lens)
    return parts


def cap(sp: dict) -> list[Part]:
    c, r = sp["c"], sp["r"] + 0.012
    nth, nph = 8, 24
    th = np.linspace(0, 1.15, nth)  # from the top pole
    ph = np.linspace(0, 2 * np.pi, nph, endpoint=False)
    TH, PH = np.meshgrid(th, ph, indexing="ij")
    d = np.stack([np.sin(TH) * np.cos(PH), np.cos(TH), np.sin(TH) * np.sin(PH)], -1)
    tilt = np.deg2rad(12)  # cap sits tilted forward: front lower
    Rx = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    v = (d * r).reshape(-1, 3) @ Rx.T + c + [0, 0.004, 0]
    t = orient_outward(v, _grid_tris(nph, nth, True), c)
    crown = Part("cap", v, t, np.tile(swatch_uv("cap"), (len(v), 1)), cull=False, spec=0.05, occluder=True)
    # visor (baseball cap): from the crown's lower front edge, 7 cm forward at the centre, tapering
    # to nothing at about +-56 deg round the head, curved down at its sides
    front = v.reshape(nth, nph, 3)[-1]
    ang = np.arctan2(front[:, 0] - c[0], front[:, 2] - c[2])  # 0 = straight ahead
    sel = np.abs(ang) < np.deg2rad(56)
    o = np.argsort(ang[sel])
    fr, a = front[sel][o], ang[sel][o]
    outer = fr.copy()
    dirs = fr - [c[0], fr[:, 1].mean(), c[2]]
    dirs[:, 1] = 0
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    ext = 0.07 * np.clip(np.cos(a * 1.6), 0, None) ** 0.8
    outer += dirs * ext[:, None] + np.stack([np.zeros_like(ext), -0.004 - 0.012 * (1 - np.cos(a)), np.zeros_like(ext)], 1)
    bv = np.concatenate([fr, outer])
    m = len(fr)
    bt = np.array([q for i in range(m - 1) for q in ((i, i + 1, m + i + 1), (i, m + i + 1, m + i))])
    brim = Part("cap_brim", bv, bt, np.tile(swatch_uv("cap"), (len(bv), 1)), cull=False, spec=0.05, occluder=True)
    return [crown, brim]


SKIN_UV = (SKIN_RECT[0] + 64.0, SKIN_RECT[1] + 64.0)
FINGERS = (  # (base x, length m) index, middle, ring, little; thumb side at +x for a right hand
    (0.025, 0.074), (0.008, 0.081), (-0.009, 0.077), (-0.025, 0.062))
PHALANX = (0.48, 0.30, 0.22)  # share of a finger's length per phalanx


def _skin(p: Part) -> Part:
    p.uv = np.tile(np.array(SKIN_UV), (len(p.v), 1))
    return p


def hand(centre, R, side: str = "right", curl: float = 0.3, spread: float = 0.15, name: str = "hand") -> list[Part]:
    """A hand (see ``hand_pieces``) as one part: the pieces' geometry is built once per (side, curl,
    spread) and only moved here."""
    v, t, uv = _hand_mesh(side, round(float(curl), 4), round(float(spread), 4))
    return [Part(name, v @ np.asarray(R).T + centre, t, uv, occluder=True, spec=0.1)]


_HAND: dict = {}


def _hand_mesh(side: str, curl: float, spread: float):
    key = (side, curl, spread)
    if key not in _HAND:
        ps = hand_pieces(np.zeros(3), np.eye(3), side, curl, spread)
        offs = np.cumsum([0] + [len(p.v) for p in ps])
        _HAND[key] = (np.concatenate([p.v for p in ps]), np.concatenate([p.t + o for p, o in zip(ps, offs)]),
                      np.concatenate([p.uv for p in ps]))
    return _HAND[key]


def hand_pieces(centre, R, side: str = "right", curl: float = 0.3, spread: float = 0.15, name: str = "hand") -> list[Part]:
    """A hand: palm, four three-phalanx fingers with rounded tips and a two-segment thumb. Local axes
    (``R`` maps them to the parent frame, ``centre`` is the palm's centre): x across the palm, y along
    the fingers, z out of the palm (the palm faces +z); a right hand's thumb is on +x, a left hand's
    on -x. ``curl`` 0 (flat) .. 1 (fist) bends every finger joint towards the palm; ``spread`` fans
    the fingers (radians across the hand)."""
    sx = 1.0 if side == "right" else -1.0
    palm = ellipsoid(np.zeros(3), np.ones(3), nu=16, nv=10, name=name, occluder=True, spec=0.1)
    d = palm.v
    r = (np.abs(d[:, 0]) ** 3.5 + np.abs(d[:, 1]) ** 3.5 + np.abs(d[:, 2]) ** 2.2) ** (-1 / 3.0)  # a rounded slab
    palm.v = d * np.minimum(r, 1.6)[:, None] * np.array([0.040, 0.046, 0.012]) + np.array([0.0, 0.0, -0.002])
    parts = [_skin(palm)]
    fl = np.radians(18 + 62 * curl)  # flexion per joint

    def rx(a):
        c, s_ = np.cos(a), np.sin(a)
        return np.array([[1, 0, 0], [0, c, -s_], [0, s_, c]])

    def rz(a):
        c, s_ = np.cos(a), np.sin(a)
        return np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])

    for k, (bx, length) in enumerate(FINGERS):
        p = np.array([sx * bx, 0.041 - 0.004 * abs(k - 1.5), 0.0])
        d = rz(-sx * spread * (k - 1.5) / 1.5) @ np.array([0.0, 1.0, 0.0])
        r0 = 0.0088 - 0.0007 * k
        for j, share in enumerate(PHALANX):
            d = rx(fl * (0.5 if j == 0 else 1.0)) @ d  # bend towards the palm (+z)
            q = p + d * length * share
            r1 = r0 * 0.9
            parts.append(_skin(tube(p, q, r0, r1, n=8, name=name, occluder=True, spec=0.1)))
            p, r0 = q, r1
        parts.append(_skin(ellipsoid(p, np.full(3, r0), nu=8, nv=5, name=name, occluder=True, spec=0.1)))
    # thumb: from the heel of the palm on the thumb side, out and up, bending across the palm
    p = np.array([sx * 0.030, -0.012, 0.006])
    d = np.array([sx * 0.62, 0.72, 0.30])
    d /= np.linalg.norm(d)
    r0 = 0.0105
    for j, ln in enumerate((0.040, 0.030)):
        q = p + d * ln
        parts.append(_skin(tube(p, q, r0, r0 * 0.85, n=8, name=name, occluder=True, spec=0.1)))
        p, r0 = q, r0 * 0.85
        d = rz(sx * 0.35 * (0.5 + curl)) @ d
        d = d + np.array([0, 0, 0.25 * (0.5 + curl)])
        d /= np.linalg.norm(d)
    parts.append(_skin(ellipsoid(p, np.full(3, r0), nu=8, nv=5, name=name, occluder=True, spec=0.1)))
    for part in parts:
        part.v = part.v @ np.asarray(R).T + centre
    return parts
