"""Geometry the MediaPipe mesh lacks, plus expressions.

Head frame: x = subject's left, y = up, z = out of the face; origin = midpoint of the outer eye
corners (33, 263); metres. Every builder returns a :class:`Part` (vertices, triangles, uv in atlas
pixels, material). Triangles are counter-clockwise seen from outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import topology as T

ATLAS = 512
# atlas regions (x0, y0, size) in pixels
FACE_RECT = (0, 0, 384)
SKIN_RECT = (384, 0, 128)
HAIR_RECT = (384, 128, 128)
EYE_RECT = (384, 256, 128)
SWATCH_RECT = (384, 384, 128)  # 8x8 swatches of 16 px
SWATCHES = {"mouth": 0, "teeth": 1, "socket": 2, "cloth": 3, "frame": 4, "lens_dark": 5, "mask": 6, "cap": 7,
            "phone": 8, "screen": 9, "sleeve": 10, "seat": 11, "lens_clear": 12, "tongue": 13}


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
MOUTH_CONTOUR = np.array(T.UPPER_LIP_INNER + T.LOWER_LIP_INNER[1:-1][::-1])


def eye_geometry(v: np.ndarray, side: str) -> tuple[np.ndarray, float]:
    """Eyeball centre and radius for one eye of face vertices v (head frame)."""
    up = np.array(T.R_EYE_UPPER if side == "right" else T.L_EYE_UPPER)
    lo = np.array(T.R_EYE_LOWER if side == "right" else T.L_EYE_LOWER)
    c = 0.5 * (v[up].mean(0) + v[lo].mean(0))
    width = np.linalg.norm(v[up[0]] - v[up[-1]])
    R = 0.012 * width / 0.028
    R = float(np.clip(R, 0.0105, 0.0130))
    zfront = max(v[up[3:6], 2].max(), v[lo[3:6], 2].max())
    centre = np.array([c[0], c[1] + 0.0005, zfront - R + 0.0012])
    return centre, R


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


def eyeball(centre, R, iris_r_m=0.0059, nu=20, nv=12) -> tuple[Part, np.ndarray]:
    """Sphere with +z optical axis; uv in EYE_RECT by angle from the axis. Returns (part, alpha)."""
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
    rad = A / (np.pi * 0.75) * s
    uv = np.stack([cx + rad * np.cos(P), cy + rad * np.sin(P)], 1)
    return Part("eyeball", v + centre, t, uv, spec=1.2), A


# ---------------------------------------------------------------- skull, ears, hair, neck
def skull_params(face: np.ndarray) -> dict:
    half_w = 0.5 * abs(face[454, 0] - face[234, 0])
    top = face[10]
    rx = half_w + 0.009
    rz = 0.098 * (half_w / 0.066)
    cz = max(face[9, 2], face[10, 2]) + 0.004 - rz
    cy = -0.004
    ry_up = max(0.112, np.hypot(top[1] - cy, 0) + 0.035)
    return {"c": np.array([0.0, cy, cz]), "r": np.array([rx, ry_up, rz]), "ry_down": 0.080}


def _ell_radius(d: np.ndarray, sp: dict) -> np.ndarray:
    r = sp["r"].copy()
    ry = np.where(d[..., 1] > 0, r[1], sp["ry_down"])
    return 1.0 / np.sqrt((d[..., 0] / r[0]) ** 2 + (d[..., 1] / ry) ** 2 + (d[..., 2] / r[2]) ** 2)


def _dir(theta, phi):
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)


def skull(face: np.ndarray, sp: dict, K: int = 9) -> Part:
    oval = np.array(T.FACE_OVAL)
    q = face[oval] - sp["c"]
    rq = np.linalg.norm(q, axis=1)
    th0 = np.arccos(np.clip(q[:, 2] / rq, -1, 1))
    ph = np.arctan2(q[:, 1], q[:, 0])
    n = len(oval)
    verts = [face[oval]]
    for k in range(1, K):
        f = k / K
        th = th0 + (np.pi - th0) * f
        d = _dir(th, ph)
        blend = min(1.0, f * 2.5)
        r = (1 - blend) * rq + blend * _ell_radius(d, sp)
        verts.append(sp["c"] + d * r[:, None])
    back = sp["c"] + np.array([0, 0, -sp["r"][2]])
    v = np.concatenate(verts + [back[None]])
    t = list(_grid_tris(n, K, True))
    t += [((K - 1) * n + i, (K - 1) * n + (i + 1) % n, K * n) for i in range(n)]
    t = orient_outward(v, np.array(t), sp["c"])
    # uv: plain skin patch, by meridian angle and ring
    ring = np.repeat(np.arange(K), n) / K
    phi = np.tile(np.arange(n) / n, K)
    uv = np.stack([SKIN_RECT[0] + 4 + phi * 120, SKIN_RECT[1] + 4 + ring * 120], 1)
    uv = np.concatenate([uv, [[SKIN_RECT[0] + 64, SKIN_RECT[1] + 124]]])
    p = Part("skull", v, t, uv)
    p.extra["oval_vertices"] = oval
    return p


def ear(face: np.ndarray, sp: dict, side: str, size: float, angle: float) -> Part:
    s = -1.0 if side == "right" else 1.0
    anchor = face[234 if side == "right" else 454]
    h, w = 0.060 * size, 0.033 * size
    centre = np.array([s * (sp["r"][0] - 0.004), anchor[1] - 0.006, anchor[2] - 0.024])
    nu, nv = 14, 5
    ang = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    rr = np.linspace(0.0, 1.0, nv)
    A, Rr = np.meshgrid(ang, rr)
    # local coords: a = back/forward (in plane), b = up, c = lateral (out)
    a = w * 0.5 * Rr * np.cos(A) - 0.004
    b = h * 0.5 * Rr * np.sin(A)
    b = np.where(b < 0, b * 0.85, b)
    c = 0.004 * np.exp(-((Rr - 0.85) / 0.12) ** 2) - 0.003 * np.exp(-(Rr / 0.45) ** 2)
    # ear plane: lateral normal rotated backwards by `angle` (protrusion)
    nrm = np.array([s * np.cos(angle), 0.0, -np.sin(angle) * 0.2])
    nrm /= np.linalg.norm(nrm)
    up = np.array([0.0, 1.0, 0.0])
    fwd = np.cross(nrm, up) * s
    fwd = fwd * (1 if fwd[2] > 0 else -1)
    # hinge: the front edge (a max) attaches at the head, the back edge sticks out
    out = (a - a.min()) / (a.max() - a.min())
    lat = c + out * np.sin(angle) * 0.018
    v = centre + a.reshape(-1, 1) * np.array([0, 0, 1.0]) * 1.0 + b.reshape(-1, 1) * up + lat.reshape(-1, 1) * np.array([s, 0, 0])
    v = v.reshape(-1, 3)
    v[:, 2] = centre[2] - a.reshape(-1) * 1.0 - 0.0  # backwards is -z
    t = _grid_tris(nu, nv, True)
    t = orient_outward(v, t, centre - np.array([s * 0.02, 0, 0]))
    uv = np.stack([SKIN_RECT[0] + 64 + 50 * Rr.ravel() * np.cos(A.ravel()), SKIN_RECT[1] + 64 + 50 * Rr.ravel() * np.sin(A.ravel())], 1)
    return Part(f"ear_{side}", v, t, uv, cull=False)


def hair(face: np.ndarray, sp: dict, code: dict) -> Part | None:
    length, vol = code["hair_length"], code["hair_volume"]
    rec = code["hair_recession"]
    if length < 0.003 and vol < 0.004:
        return None
    nth, nph = 36, 48
    # front hairline: polar angle from +z where hair starts at the top; lower at the sides
    th = np.linspace(0.0, np.pi, nth)
    ph = np.linspace(-np.pi, np.pi, nph, endpoint=False)
    TH, PH = np.meshgrid(th, ph, indexing="ij")
    d = _dir(TH, PH)
    r = _ell_radius(d, sp) + vol
    P = sp["c"] + d * r[..., None]
    # hair covers points above a hairline surface
    y_rel = P[..., 1] - sp["c"][1]
    front = d[..., 2]
    hairline_front = 0.036 + 0.014 * rec - 0.03 * code["hair_fringe"] * (length > 0.05)
    # a side parting sweeps the front hair down on one side: the hairline tilts across the brow
    # (hair_part -1..1, subject's right..left; up to 7 mm either side of the midline on longer hair)
    tilt = -0.014 * code["hair_part"] * d[..., 0] * min(1.0, length / 0.06)
    yline = np.where(front > 0.2, hairline_front + tilt, 0.005)  # sides: above the ear top
    yline = np.where(front < -0.3, -0.035 - 0.5 * length, yline)
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
    """World-frame (x left, y up, z forward; origin = head pivot at neutral pose) torso and neck base."""
    parts = []
    rings = [(-0.085, 0.058, 0.058), (-0.12, 0.08, 0.075), (-0.15, 0.16, 0.10), (-0.19, 0.205, 0.115), (-0.30, 0.215, 0.12), (-0.75, 0.20, 0.12)]
    nu = 20
    ang = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = []
    for y, a, b in rings:
        v.append(np.stack([a * np.cos(ang), np.full(nu, y), b * np.sin(ang) - 0.06], 1))
    v = np.concatenate(v)
    t = orient_outward(v, _grid_tris(nu, len(rings), True), np.array([0, -0.35, -0.06]))
    uv = np.tile(swatch_uv("cloth"), (len(v), 1))
    parts.append(Part("torso", v, t, uv, frame="world", spec=0.05))
    return parts


def neck(face: np.ndarray, sp: dict, Rw_h: np.ndarray, tw_h: np.ndarray, tris: np.ndarray | None = None) -> Part:
    """Neck tube: top ring in head frame (under the skull), bottom ring fixed in the world frame."""
    nu = 16
    ang = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    top_c = np.array([0.0, -0.075, sp["c"][2] + 0.005])
    top = top_c + np.stack([0.052 * np.cos(ang), np.zeros(nu), 0.055 * np.sin(ang)], 1)
    mid_c = np.array([0.0, -0.10, sp["c"][2] - 0.005])
    mid = mid_c + np.stack([0.055 * np.cos(ang), np.zeros(nu), 0.056 * np.sin(ang)], 1)
    top_w = top @ Rw_h.T + tw_h
    mid_w = mid @ Rw_h.T + tw_h
    bot_w = np.stack([0.060 * np.cos(ang), np.full(nu, -0.12), 0.058 * np.sin(ang) - 0.05], 1)
    low_w = np.stack([0.075 * np.cos(ang), np.full(nu, -0.16), 0.07 * np.sin(ang) - 0.05], 1)
    v = np.concatenate([top_w, mid_w, bot_w, low_w])
    t = orient_outward(v, _grid_tris(nu, 4, True), v.mean(0)) if tris is None else tris
    k = np.repeat(np.arange(4), nu)
    uv = np.stack([SKIN_RECT[0] + 8 + np.tile(np.arange(nu), 4) * 7, SKIN_RECT[1] + 20 + k * 25], 1).astype(float)
    return Part("neck", v, t, uv, frame="world")


# ---------------------------------------------------------------- accessories
def glasses(face: np.ndarray, sp: dict, dark: bool) -> list[Part]:
    parts = []
    ring_v, ring_t = [], []
    lens_v, lens_t = [], []
    n = 24
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    zl = max(face[[159, 386, 105, 334, 6], 2].max(), face[[168], 2].max() - 0.004) + 0.010
    for side, up in (("right", T.R_EYE_UPPER), ("left", T.L_EYE_UPPER)):
        c = face[list(up)].mean(0)
        cx = c[0] * 1.05
        cy = c[1] - 0.001
        ax, ay = 0.026, 0.019 if not dark else 0.022
        e = np.stack([cx + ax * np.cos(ang), cy + ay * np.sin(ang) - 0.003 * (np.sin(ang) < 0), np.full(n, zl)], 1)
        # wrap: outer side bends back
        e[:, 2] -= 0.12 * np.clip(np.abs(e[:, 0]) - 0.03, 0, None)
        outer = e.copy()
        outer[:, :2] = (e[:, :2] - [cx, cy]) * 1.12 + [cx, cy]
        b = len(ring_v) * n
        ring_v += [e, outer + [0, 0, 0.001]]
        ring_t += [(b + i, b + (i + 1) % n, b + n + (i + 1) % n) for i in range(n)]
        ring_t += [(b + i, b + n + (i + 1) % n, b + n + i) for i in range(n)]
        lb = len(lens_v) * (n + 1)
        lens_v.append(np.concatenate([e, [[cx, cy, zl + 0.002]]]))
        lens_t += [(lb + i, lb + (i + 1) % n, lb + n) for i in range(n)]
    rv = np.concatenate(ring_v)
    frame = Part("glasses_frame", rv, np.array(ring_t), np.tile(swatch_uv("frame"), (len(rv), 1)), cull=False, spec=0.8, occluder=True)
    parts.append(frame)
    # bridge and temples
    rx0 = ring_v[1][np.argmax(ring_v[1][:, 0])]
    lx0 = ring_v[3][np.argmin(ring_v[3][:, 0])]
    parts.append(tube(rx0 + [0, 0.004, 0], lx0 + [0, 0.004, 0], 0.0018, 0.0018, n=6, sw="frame", name="glasses_bridge", spec=0.8, occluder=True))
    for e, s in ((ring_v[1], -1), (ring_v[3], 1)):
        p0 = e[np.argmax(s * e[:, 0])] + [0, 0.004, 0]
        p1 = np.array([s * (sp["r"][0] + 0.004), p0[1] - 0.004, sp["c"][2] + 0.01])
        parts.append(tube(p0, p1, 0.0022, 0.0018, n=6, sw="frame", name="glasses_temple", spec=0.6, occluder=True))
    lv = np.concatenate(lens_v)
    lens = Part("lens", lv, np.array(lens_t), np.tile(swatch_uv("lens_dark" if dark else "lens_clear"), (len(lv), 1)), cull=False)
    parts.append(lens)
    return parts


def surgical_mask(face: np.ndarray, normals: np.ndarray, tris: np.ndarray) -> Part:
    y_top = face[6, 1] - 0.004
    sel = (face[:, 1] < y_top) & (np.abs(face[:, 0]) < 0.068)
    t = tris[sel[tris].all(1)]
    used = np.unique(t)
    remap = -np.ones(len(face), np.int64)
    remap[used] = np.arange(len(used))
    v = face[used] + normals[used] * 0.004
    # smooth: the mask spans the nose-cheek and lip concavities
    nb = [[] for _ in used]
    for a, b, c in remap[t]:
        nb[a] += [b, c]
        nb[b] += [a, c]
        nb[c] += [a, b]
    base = v.copy()
    for _ in range(10):
        avg = np.array([v[x].mean(0) if x else v[i] for i, x in enumerate(nb)])
        v = 0.5 * v + 0.5 * avg
        # stay outside the skin
        dz = (base - v) * normals[used]
        push = np.clip(dz.sum(1), 0, None)
        v += normals[used] * push[:, None]
    v[:, 2] += 0.002
    yy = (v[:, 1] - v[:, 1].min()) / max(1e-6, np.ptp(v[:, 1]))
    uv = np.stack([np.full(len(v), swatch_uv("mask")[0]) + (v[:, 0] * 80), np.full(len(v), swatch_uv("mask")[1]) + 0 * yy], 1)
    uv[:, 0] = np.clip(uv[:, 0], SWATCH_RECT[0] + 6 * 16 + 1, SWATCH_RECT[0] + 7 * 16 - 1)
    return Part("mask", v, remap[t], uv, cull=False, spec=0.05, occluder=True)


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


def hand(centre, R, skin_uv=True, name="hand") -> list[Part]:
    """Palm + fingers block + thumb, local axes: x across the palm, y along the fingers, z palm normal."""
    parts = []
    palm = ellipsoid(np.zeros(3), np.array([0.042, 0.05, 0.016]), nu=12, nv=8, name=name, occluder=True, spec=0.1)
    fingers = ellipsoid(np.array([0.0, 0.075, 0.004]), np.array([0.040, 0.038, 0.013]), nu=12, nv=8, name=name, occluder=True, spec=0.1)
    thumb = ellipsoid(np.array([0.045, 0.02, 0.012]), np.array([0.011, 0.032, 0.011]), nu=8, nv=6, name=name, occluder=True, spec=0.1)
    for p in (palm, fingers, thumb):
        p.v = p.v @ R.T + centre
        parts.append(p)
    return parts
