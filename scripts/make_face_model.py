"""Build the procedural renderer's face model (``face_model.npz``) from an ICT-FaceKit checkout.

    python scripts/make_face_model.py ICT_CHECKOUT            # writes src/dmsfactory/generators/procedural/data/face_model.npz
    python scripts/make_face_model.py --verify ICT_CHECKOUT   # rebuilds in memory, compares the content hash

ICT-FaceKit (github ``ICT-VGL/ICT-FaceKit``, commit da5f95a607f5e6b37755b38d3385d7f2853732e5, MIT licence,
(c) 2020 USC Institute for Creative Technologies) is a linear face model: a generic neutral mesh
(26,719 vertices), 100 identity modes (``identityNNN.obj`` = neutral + one mode at +1 sd; codes are
sampled N(0, 1)) and 53 ARKit-named expression shapes (``eyeBlink_L.obj`` = neutral + that shape at
weight 1). Its raw files are never copied into this repository; this script derives a compact file
from them. Steps (deterministic; single-threaded numpy, no randomness):

1. Read the neutral mesh, the 100 identity shapes and the expression shapes in ``EXPRESSIONS``;
   modes = shape - neutral. Units: ICT's cm -> m.
2. Parts kept: face (ICT vertices 0-9408: face, ears, front of the neck), the back of the head and
   neck (9409-11247), the mouth socket (11248-13293), gums and tongue (14062-17038) and the teeth
   (17039-21450). Quads are split along their shorter diagonal; triangles face outwards.
3. Rigid part of each identity mode removed: the small rotation + translation that best explains a
   mode on the face region (up to 1.5 deg of head pitch per sd: scan alignment, not face shape).
4. Lid margins and lip contact lines: the face region has a hole per eye and one at the mouth. Per
   boundary vertex a column of vertices walks outwards (rings of the mesh graph); the lid margin is
   the point of each column nearest the opening (lowest on the upper lid, highest on the lower lid),
   the lip line the point of each lip column nearest the other lip. The eye corners are the hole's
   corners. The upper and lower lid margins have the same number of columns (paired for closing).
5. MediaPipe's 468 landmarks on this surface: a template in MediaPipe's topology
   (``scripts/mediapipe_template.npz``: MediaPipe face mesh's 3D output on two photos, averaged;
   only *which part of a face each index names* is taken from it, no geometry of it reaches a render)
   is similarity-aligned to the ICT neutral face on the inner iBUG points, then fitted non-rigidly
   (landmark-guided non-rigid ICP: smoothness on MediaPipe's tessellation, point-to-plane data term,
   stiffness annealed) with these landmark constraints: the 16 eye-contour points of each eye on the
   lid margins (corners at the canthi, the others at the template's position along the eye), the
   20 inner-lip points on the lip lines, nose and outer-lip points on ICT's iBUG-68 vertices, the
   nose tip (1) on the most forward midline point, the midline (self-mirrored indices) on x = 0 and the
   face outline softly on ICT's iBUG jaw vertices. The result is mirror-symmetrised and every point is
   put on the surface (closest point; contour points exactly on their margin).
6. iBUG-68: the inner 51 are the MediaPipe points of ``topology.IBUG68_FROM_MEDIAPIPE``; the jaw
   (0-16) are ICT's Multi-PIE jaw vertices (README of ICT-FaceKit).
7. Decimation to the triangle budget: quadric error half-edge collapses (every kept vertex is an ICT
   vertex, so modes and expressions stay exact there) with the quadrics summed over the neutral, the
   expressions and +-2 sd of the first identity modes; the holes' boundaries, the lid margins, the lip
   lines and ICT's landmark vertices are kept.
8. Landmarks become barycentric points on the decimated surface (closest point on the neutral).
9. Stored: mean (= ICT's generic neutral) vertices (float32, m, head frame: origin at the midpoint
   of the outer eye corners 33/263), triangles per part, identity modes and expression shapes
   (float16, mm), landmarks (vertex triples + weights), lid/lip columns, the MIT notice and this
   provenance (source repo + commit, steps, SHA-256 of every input file and of the content).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from dmsfactory.generators.procedural.facemodel import content_hash, file_content_hash  # noqa: E402
OUT = ROOT / "src/dmsfactory/generators/procedural/data/face_model.npz"
TEMPLATE = Path(__file__).resolve().parent / "mediapipe_template.npz"
ICT_REPO = "ICT-VGL/ICT-FaceKit"
ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
FORMAT = "dmsfactory-face-model-1"
CM = 0.01  # ICT units (cm) -> m

REGIONS = {"face": (0, 9409), "head": (9409, 11248), "socket": (11248, 13294), "gums": (14062, 17039),
           "teeth": (17039, 21451)}
# triangle budget per part after decimation (the whole head; see docs/renderer.md for the speed)
BUDGET = {"face": 4600, "head": 500, "socket": 200, "gums": 260, "teeth": 320}
EXPRESSIONS = (
    "eyeBlink_L", "eyeBlink_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthStretch_L", "mouthStretch_R", "mouthLowerDown_L", "mouthLowerDown_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "mouthSmile_L", "mouthSmile_R", "mouthPress_L", "mouthPress_R", "browInnerUp_L",
    "browInnerUp_R", "browOuterUp_L", "browOuterUp_R", "browDown_L", "browDown_R", "cheekSquint_L",
    "cheekSquint_R", "noseSneer_L", "noseSneer_R",
)
N_IDENTITY = 100
# ICT-FaceKit README: Multi-PIE 68-point landmark vertices (0-indexed), iBUG order
ICT_LM68 = (1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443, 268,
            493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147, 4269, 3360,
            1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081, 0, 4275, 6200,
            6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966)
MIT_NOTICE = """ICT-FaceKit: MIT License

Copyright (c) 2020 USC Institute for Creative Technologies

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


# ----------------------------------------------------------------------------- reading
def read_obj_vertices(path: Path) -> np.ndarray:
    data = path.read_bytes()
    rows = [ln.split()[1:4] for ln in data.split(b"\n") if ln.startswith(b"v ")]
    return np.array(rows, dtype=np.float64)


def read_obj_faces(path: Path) -> list[tuple[int, ...]]:
    out = []
    for ln in path.read_bytes().split(b"\n"):
        if ln.startswith(b"f "):
            out.append(tuple(int(p.split(b"/")[0]) - 1 for p in ln.split()[1:]))
    return out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ICT:
    """The parts of an ICT-FaceKit checkout this script reads."""

    def __init__(self, checkout: Path):
        d = Path(checkout) / "FaceXModel"
        if not (d / "generic_neutral_mesh.obj").is_file():
            raise SystemExit(f"{checkout}: no FaceXModel/generic_neutral_mesh.obj; pass the root of an ICT-FaceKit checkout")
        self.dir = d
        self.files = ["generic_neutral_mesh.obj"] + [f"identity{k:03d}.obj" for k in range(N_IDENTITY)] + [f"{e}.obj" for e in EXPRESSIONS]
        missing = [f for f in self.files if not (d / f).is_file()]
        if missing:
            raise SystemExit(f"{d}: missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        self.neutral = read_obj_vertices(d / "generic_neutral_mesh.obj")
        self.faces = read_obj_faces(d / "generic_neutral_mesh.obj")
        self.identity = np.stack([read_obj_vertices(d / f"identity{k:03d}.obj") - self.neutral for k in range(N_IDENTITY)])
        self.expr = np.stack([read_obj_vertices(d / f"{e}.obj") - self.neutral for e in EXPRESSIONS])
        lic = Path(checkout) / "LICENSE"
        self.licence_sha = sha256_file(lic) if lic.is_file() else None

    def input_hashes(self) -> dict[str, str]:
        return {f: sha256_file(self.dir / f) for f in self.files}


# ----------------------------------------------------------------------------- mesh helpers
def triangulate(faces, v: np.ndarray) -> np.ndarray:
    """Quads split along the shorter diagonal (deterministic), triangles kept."""
    out = []
    for f in faces:
        if len(f) == 3:
            out.append(f)
        elif len(f) == 4:
            a, b, c, d = f
            if np.linalg.norm(v[a] - v[c]) <= np.linalg.norm(v[b] - v[d]):
                out += [(a, b, c), (a, c, d)]
            else:
                out += [(a, b, d), (b, c, d)]
        else:
            out += [(f[0], f[k], f[k + 1]) for k in range(1, len(f) - 1)]
    return np.array(out, np.int64)


def face_normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])


def vertex_normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    fn = face_normals(v, t)
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


def neighbours(t: np.ndarray, n: int) -> list[set[int]]:
    nb: list[set[int]] = [set() for _ in range(n)]
    for a, b, c in t.tolist():
        nb[a] |= {b, c}
        nb[b] |= {a, c}
        nb[c] |= {a, b}
    return nb


def boundary_loops(t: np.ndarray) -> list[list[int]]:
    cnt: dict[tuple[int, int], int] = defaultdict(int)
    for tr in t.tolist():
        for i in range(3):
            a, b = tr[i], tr[(i + 1) % 3]
            cnt[(min(a, b), max(a, b))] += 1
    nb: dict[int, list[int]] = defaultdict(list)
    for (a, b), c in sorted(cnt.items()):
        if c == 1:
            nb[a].append(b)
            nb[b].append(a)
    seen: set[int] = set()
    loops = []
    for s in sorted(nb):
        if s in seen:
            continue
        loop, prev, cur = [s], None, s
        seen.add(s)
        while True:
            nx = [x for x in sorted(nb[cur]) if x != prev and x not in seen]
            if not nx:
                break
            prev, cur = cur, nx[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(loop)
    return loops


def rings(nb: list[set[int]], start: list[int], depth: int) -> dict[int, int]:
    dist = {x: 0 for x in start}
    front = list(start)
    for k in range(1, depth + 1):
        nxt = []
        for x in front:
            for y in sorted(nb[x]):
                if y not in dist:
                    dist[y] = k
                    nxt.append(y)
        front = nxt
    return dist


def closest_point_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest points on triangles (a, b, c) (each (M, 3)) to points p (M, 3): (point, barycentric (M, 3))."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < 1e-30, 1e-30, denom)
    v = vb / denom
    w = vc / denom
    bary = np.stack([1 - v - w, v, w], 1)
    # regions (Ericson, Real-Time Collision Detection 5.1.5)
    def setb(mask, val):
        bary[mask] = val[mask] if isinstance(val, np.ndarray) and val.ndim == 2 else val

    m = (d1 <= 0) & (d2 <= 0)
    setb(m, np.array([1.0, 0, 0]))
    m2 = (d3 >= 0) & (d4 <= d3) & ~m
    setb(m2, np.array([0, 1.0, 0]))
    m3 = (d6 >= 0) & (d5 <= d6) & ~m & ~m2
    setb(m3, np.array([0, 0, 1.0]))
    done = m | m2 | m3
    m4 = (vc <= 0) & (d1 >= 0) & (d3 <= 0) & ~done
    t4 = d1 / np.where(np.abs(d1 - d3) < 1e-30, 1e-30, d1 - d3)
    setb(m4, np.stack([1 - t4, t4, 0 * t4], 1))
    done |= m4
    m5 = (vb <= 0) & (d2 >= 0) & (d6 <= 0) & ~done
    t5 = d2 / np.where(np.abs(d2 - d6) < 1e-30, 1e-30, d2 - d6)
    setb(m5, np.stack([1 - t5, 0 * t5, t5], 1))
    done |= m5
    m6 = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0) & ~done
    t6 = (d4 - d3) / np.where(np.abs((d4 - d3) + (d5 - d6)) < 1e-30, 1e-30, (d4 - d3) + (d5 - d6))
    setb(m6, np.stack([0 * t6, 1 - t6, t6], 1))
    q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:3] * c
    return q, bary


class Surface:
    """Closest-point queries on a triangle mesh (candidate triangles from a KD-tree of centroids)."""

    def __init__(self, v: np.ndarray, t: np.ndarray, k: int = 24):
        from scipy.spatial import cKDTree

        self.v, self.t, self.k = v, t, min(k, len(t))
        self.tree = cKDTree(v[t].mean(1))

    def closest(self, p: np.ndarray):
        """(points (N,3), triangle index (N,), barycentric (N,3))."""
        p = np.asarray(p, np.float64)
        _, cand = self.tree.query(p, k=self.k)
        cand = cand.reshape(len(p), -1)
        n, k = cand.shape
        tri = self.t[cand.ravel()]
        q, b = closest_point_triangles(np.repeat(p, k, 0), self.v[tri[:, 0]], self.v[tri[:, 1]], self.v[tri[:, 2]])
        d = ((q - np.repeat(p, k, 0)) ** 2).sum(1).reshape(n, k)
        j = np.argmin(d, 1)
        sel = np.arange(n) * k + j
        return q[sel], cand[np.arange(n), j], b[sel]


# ----------------------------------------------------------------------------- lid margins, lip lines
def split_loop(loop: list[int], v: np.ndarray) -> tuple[list[int], list[int]]:
    """A hole's boundary loop -> (upper arc, lower arc), each from the min-x corner to the max-x corner."""
    x = v[loop, 0]
    i0, i1 = int(np.argmin(x)), int(np.argmax(x))
    r = loop[i0:] + loop[:i0]
    j = r.index(loop[i1])
    a1, a2 = r[: j + 1], [r[0]] + r[j:][::-1]
    return (a1, a2) if v[a1, 1].mean() > v[a2, 1].mean() else (a2, a1)


def columns(arc: list[int], dist: dict[int, int], nb: list[set[int]], v: np.ndarray, depth: int) -> list[list[int]]:
    """Per boundary vertex, a chain of vertices walking outwards one mesh ring at a time."""
    by_ring: dict[int, list[int]] = defaultdict(list)
    for x, d in sorted(dist.items()):
        by_ring[d].append(x)
    out = []
    for a in arc:
        col, cur = [a], a
        for k in range(1, depth + 1):
            cand = [y for y in sorted(nb[cur]) if dist.get(y) == k] or by_ring[k]
            cur = min(cand, key=lambda y: (float(np.linalg.norm(v[y] - v[cur])), y))
            col.append(cur)
        out.append(col)
    return out


def eye_margins(loop: list[int], v: np.ndarray, nb: list[set[int]], depth: int = 5) -> dict:
    """Upper/lower lid margins (vertex per column, corners = the hole's corners) and the columns."""
    up, lo = split_loop(loop, v)
    if len(up) != len(lo):
        raise SystemExit(f"eye hole: upper/lower arcs differ ({len(up)} vs {len(lo)} vertices); the closing pairs need equal counts")
    dist = rings(nb, loop, depth)
    cu, cl = columns(up, dist, nb, v, depth), columns(lo, dist, nb, v, depth)
    mu = [c[0] if i in (0, len(cu) - 1) else min(c[:5], key=lambda k: (v[k, 1], k)) for i, c in enumerate(cu)]
    ml = [c[0] if i in (0, len(cl) - 1) else max(c[:5], key=lambda k: (v[k, 1], -k)) for i, c in enumerate(cl)]
    return {"loop": loop, "upper": mu, "lower": ml, "upper_cols": cu, "lower_cols": cl}


def lip_lines(loop: list[int], v: np.ndarray, nb: list[set[int]], depth: int = 10) -> dict:
    """Upper/lower lip contact lines: per column the vertex nearest the other lip (corners = hole corners)."""
    up, lo = split_loop(loop, v)
    dist = rings(nb, loop, depth)
    cu, cl = columns(up, dist, nb, v, depth), columns(lo, dist, nb, v, depth)
    Pu = np.array(sorted({k for c in cu for k in c}))
    Pl = np.array(sorted({k for c in cl for k in c}))

    def nearest(cols, other):
        out = []
        for i, c in enumerate(cols):
            if i in (0, len(cols) - 1):
                out.append(c[0])
                continue
            d = [float(np.linalg.norm(v[other] - v[k], axis=1).min()) for k in c]
            out.append(c[int(np.argmin(d))])
        return out

    return {"loop": loop, "upper": nearest(cu, Pl), "lower": nearest(cl, Pu), "upper_cols": cu, "lower_cols": cl}


def polyline_at(v: np.ndarray, idx: list[int], s: float) -> tuple[int, int, float]:
    """Point at fractional index s along a vertex polyline: (i, j, t) = (1-t) v[i] + t v[j]."""
    s = float(np.clip(s, 0, len(idx) - 1))
    i = min(int(np.floor(s)), len(idx) - 2)
    return idx[i], idx[i + 1], s - i


def param_for_x(v: np.ndarray, idx: list[int], f: float) -> float:
    """Fractional index along a polyline whose x has moved the fraction f from its first to its last point."""
    x = v[idx, 0]
    target = x[0] + f * (x[-1] - x[0])
    xs = np.maximum.accumulate(x) if x[-1] > x[0] else -np.maximum.accumulate(-x)
    order = xs if x[-1] > x[0] else -xs
    tt = target if x[-1] > x[0] else -target
    k = int(np.clip(np.searchsorted(order, tt), 1, len(idx) - 1))
    a, b = order[k - 1], order[k]
    return float(k - 1 + (0.0 if b == a else np.clip((tt - a) / (b - a), 0, 1)))


# ----------------------------------------------------------------------------- MediaPipe topology fit
R_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
R_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
L_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
L_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# iBUG-68 as MediaPipe indices (kept identical to topology.IBUG68_FROM_MEDIAPIPE; inner 51 used here)
IBUG68_FROM_MEDIAPIPE = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300, 168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
)
ANCHOR_IBUG = tuple(range(27, 36)) + tuple(range(48, 60))  # nose and outer lips (ICT's iBUG vertices)
JAW_IBUG = tuple(range(0, 17))


def tessellation_edges() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return np.array(sorted({tuple(sorted(e)) for e in FACEMESH_TESSELATION}), np.int64)


def similarity(src: np.ndarray, dst: np.ndarray):
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(a.T @ b)
    dd = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    R = u @ dd @ vt
    sc = (s * np.diag(dd)).sum() / (a**2).sum()
    return lambda x: sc * (np.asarray(x) - ms) @ R + md


def contour_targets(v: np.ndarray, T: np.ndarray, eyes: dict, lips: dict) -> dict[int, tuple[int, int, float]]:
    """Exact surface positions (i, j, t) of the eye-contour and inner-lip landmarks on the margins.

    Eye pairs (upper k, lower k) share one parameter along the paired columns, so a closed eye puts them
    on the same point; the parameter is where the template has the pair along the eye (x fraction)."""
    out: dict[int, tuple[int, int, float]] = {}
    for side, up, lo in (("right", R_EYE_UPPER, R_EYE_LOWER), ("left", L_EYE_UPPER, L_EYE_LOWER)):
        e = eyes[side]
        U, L = e["upper"], e["lower"]
        # margins run min-x -> max-x; the template's contours run outer -> inner corner
        c0, c1 = (up[0], up[-1]) if T[up[0], 0] < T[up[-1], 0] else (up[-1], up[0])
        for k in range(len(up)):
            a, b = up[k], lo[k]
            if k in (0, len(up) - 1):
                i = 0 if a == c0 else len(U) - 1
                out[a] = (U[i], U[i], 0.0)
                continue
            f = 0.5 * ((T[a, 0] - T[c0, 0]) + (T[b, 0] - T[c0, 0])) / (T[c1, 0] - T[c0, 0])
            mid = [0.5 * (v[U[i]] + v[L[i]]) for i in range(len(U))]
            s = param_for_x(np.array(mid), list(range(len(U))), f)
            out[a] = polyline_at(v, U, s)
            out[b] = polyline_at(v, L, s)
    U, L = lips["upper"], lips["lower"]
    c0, c1 = (78, 308) if T[78, 0] < T[308, 0] else (308, 78)
    for seq, line in ((UPPER_LIP_INNER, U), (LOWER_LIP_INNER, L)):
        for k, a in enumerate(seq):
            if k in (0, len(seq) - 1):
                out[a] = (line[0], line[0], 0.0) if a == c0 else (line[-1], line[-1], 0.0)
                continue
            if abs(T[a, 0]) < 1e-9:  # midline: the line's x = 0 point
                s = param_for_x(v, line, 0.5)
            else:
                s = param_for_x(v, line, (T[a, 0] - T[c0, 0]) / (T[c1, 0] - T[c0, 0]))
            out[a] = polyline_at(v, line, s)
    return out


def fit_template(v: np.ndarray, t_face: np.ndarray, eyes: dict, lips: dict, avoid: set[int], log=print) -> dict:
    """Landmark-guided non-rigid ICP of MediaPipe's topology (the template) onto the ICT neutral face.

    Returns {"points": (468,3) on the surface, "exact": contour targets}."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    tpl = np.load(TEMPLATE)
    T0, mirror = tpl["vertices"].astype(np.float64) / CM, tpl["mirror"].astype(np.int64)
    edges = tessellation_edges()
    lm = np.array(ICT_LM68)
    inner = [i for i in range(17, 68)]
    align = similarity(T0[[IBUG68_FROM_MEDIAPIPE[i] for i in inner]], v[lm[inner]])
    T = align(T0)
    exact = contour_targets(v, T, eyes, lips)
    anchors: dict[int, tuple[np.ndarray, float]] = {}
    for k, (i, j, tt) in exact.items():
        anchors[k] = ((1 - tt) * v[i] + tt * v[j], 20.0)
    for i in ANCHOR_IBUG:
        anchors.setdefault(IBUG68_FROM_MEDIAPIPE[i], (v[lm[i]], 3.0))
    for i in JAW_IBUG:
        anchors.setdefault(IBUG68_FROM_MEDIAPIPE[i], (v[lm[i]], 0.3))
    face_vertices = np.unique(t_face)
    mid = face_vertices[np.abs(v[face_vertices, 0]) < 1e-9]
    tip = int(mid[np.argmax(v[mid, 2])])
    anchors[1] = (v[tip], 20.0)
    # surface for the data term: the face without the inner lid/lip surfaces (landmarks stay on the skin)
    keep_t = ~np.isin(t_face, np.array(sorted(avoid))).any(1)
    surf = Surface(v, t_face[keep_t])
    n = len(T)
    # graph Laplacian of the tessellation (smoothness of the displacement)
    rows = np.concatenate([np.arange(len(edges)), np.arange(len(edges))])
    cols = np.concatenate([edges[:, 0], edges[:, 1]])
    vals = np.concatenate([np.ones(len(edges)), -np.ones(len(edges))])
    Dm = sp.csr_matrix((vals, (rows, cols)), shape=(len(edges), n))
    L = (Dm.T @ Dm).tocsr()
    self_m = mirror == np.arange(n)
    X = T.copy()
    for it, ws in enumerate((50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.2)):
        P, _, _ = surf.closest(X)
        nrm = vertex_normals_at(surf, X)
        # unknowns: displacement D (n x 3) from T, solved per coordinate with a coupled point-to-plane term
        A = ws * sp.kron(L, sp.identity(3), format="csr")
        b = np.zeros(3 * n)
        # data: point-to-plane (n n^T) + 0.05 point-to-point
        blocks = []
        for i in range(n):
            if i in anchors:
                blocks.append(np.zeros((3, 3)))
                continue
            M = np.outer(nrm[i], nrm[i]) + 0.05 * np.eye(3)
            blocks.append(M)
            b[3 * i:3 * i + 3] += M @ (P[i] - T[i])
        A = A + sp.block_diag(blocks, format="csr")
        for i, (q, w) in anchors.items():
            A = A + sp.csr_matrix((np.full(3, w), (np.arange(3 * i, 3 * i + 3), np.arange(3 * i, 3 * i + 3))), shape=(3 * n, 3 * n))
            b[3 * i:3 * i + 3] += w * (q - T[i])
        ix = np.nonzero(self_m)[0]  # midline: x = 0
        A = A + sp.csr_matrix((np.full(len(ix), 10.0), (3 * ix, 3 * ix)), shape=(3 * n, 3 * n))
        b[3 * ix] += 10.0 * (0.0 - T[ix, 0])
        D = spsolve(A.tocsc(), b).reshape(n, 3)
        X = T + D
        # mirror-symmetrise (the ICT mean and the template are symmetric)
        X = 0.5 * (X + (X * [-1, 1, 1])[mirror])
        P, _, _ = surf.closest(X)
        log(f"  fit iteration {it}: stiffness {ws}, distance to surface median {np.median(np.linalg.norm(X - P, axis=1)) * 10:.2f} mm, "
            f"max {np.linalg.norm(X - P, axis=1).max() * 10:.2f} mm")
    P, _, _ = surf.closest(X)
    for k, (i, j, tt) in exact.items():
        P[k] = (1 - tt) * v[i] + tt * v[j]
    return {"points": P, "exact": exact, "template_aligned": T}


def vertex_normals_at(surf: Surface, X: np.ndarray) -> np.ndarray:
    """Normal of the surface at the closest point to each X (interpolated vertex normals)."""
    if not hasattr(surf, "_vn"):
        surf._vn = vertex_normals(surf.v, surf.t)
    _, tri, b = surf.closest(X)
    n = (surf._vn[surf.t[tri]] * b[:, :, None]).sum(1)
    return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


# ----------------------------------------------------------------------------- decimation
def plane_quadrics(pos: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(n, 4, 4) area-weighted plane quadrics per vertex (Garland & Heckbert 1997)."""
    fn = face_normals(pos, t)
    area = np.linalg.norm(fn, axis=1)
    nrm = fn / np.maximum(area, 1e-18)[:, None]
    d = -(nrm * pos[t[:, 0]]).sum(1)
    p = np.concatenate([nrm, d[:, None]], 1)
    K = (p[:, :, None] * p[:, None, :]) * (0.5 * area)[:, None, None]
    Q = np.zeros((len(pos), 4, 4))
    for k in range(3):
        np.add.at(Q, t[:, k], K)
    return Q


def decimate(poses: list[np.ndarray], t: np.ndarray, locked: np.ndarray, target: int, log=print) -> np.ndarray:
    """Quadric-error half-edge collapses until ``target`` triangles remain; returns the triangles (indices
    into the original vertices). Locked vertices never move or disappear; a collapse that would flip a
    triangle (in any pose), make a sliver (neutral pose) or break the manifold (link condition) is refused."""
    import heapq

    n = len(poses[0])
    Qs = np.stack([plane_quadrics(p, t) for p in poses], 1)  # (n, P, 4, 4)
    H = np.stack([np.concatenate([p, np.ones((n, 1))], 1) for p in poses], 1)  # (n, P, 4)
    tris = [list(x) for x in t.tolist()]
    alive = [True] * len(tris)
    vt: list[set[int]] = [set() for _ in range(n)]
    for i, tr in enumerate(tris):
        for a in tr:
            vt[a].add(i)
    stamp = [0] * n
    gone = np.zeros(n, bool)
    locked = np.asarray(locked, bool)

    def nbrs(a: int) -> set[int]:
        return {b for ti in vt[a] for b in tris[ti] if b != a}

    def cost(u: int, v: int) -> float:
        q = Qs[u] + Qs[v]
        h = H[v]
        return float(np.einsum("pi,pij,pj->", h, q, h))

    def push(heap, u):
        if locked[u] or gone[u]:
            return
        for v in sorted(nbrs(u)):
            heapq.heappush(heap, (cost(u, v), u, v, stamp[u], stamp[v]))

    heap: list = []
    for u in range(n):
        if vt[u]:
            push(heap, u)
    count = sum(alive)

    def valid(u: int, v: int) -> bool:
        shared = vt[u] & vt[v]
        if len(nbrs(u) & nbrs(v)) != len(shared):
            return False
        for ti in vt[u] - shared:
            tr = tris[ti]
            new = [v if x == u else x for x in tr]
            for P in poses:
                n0 = np.cross(P[tr[1]] - P[tr[0]], P[tr[2]] - P[tr[0]])
                n1 = np.cross(P[new[1]] - P[new[0]], P[new[2]] - P[new[0]])
                a1 = np.linalg.norm(n1)
                if a1 < 1e-12 or n0 @ n1 <= 0.2 * np.linalg.norm(n0) * a1:
                    return False
            P = poses[0]
            e = [np.linalg.norm(P[new[(k + 1) % 3]] - P[new[k]]) for k in range(3)]
            if np.linalg.norm(np.cross(P[new[1]] - P[new[0]], P[new[2]] - P[new[0]])) < 0.1 * max(e) ** 2:  # sliver
                return False
        return True

    while count > target and heap:
        c, u, v, su, sv = heapq.heappop(heap)
        if gone[u] or gone[v] or su != stamp[u] or sv != stamp[v]:
            continue
        if not valid(u, v):
            continue
        shared = vt[u] & vt[v]
        for ti in shared:
            alive[ti] = False
            for x in tris[ti]:
                vt[x].discard(ti)
            count -= 1
        for ti in list(vt[u]):
            tris[ti] = [v if x == u else x for x in tris[ti]]
            vt[v].add(ti)
        vt[u] = set()
        gone[u] = True
        Qs[v] += Qs[u]
        stamp[v] += 1
        for w in sorted(nbrs(v) | {v}):
            stamp[w] += 1
        for w in sorted(nbrs(v) | {v}):
            push(heap, w)
    log(f"  decimated {len(t)} -> {count} triangles")
    return np.array([tris[i] for i in range(len(tris)) if alive[i]], np.int64)


# ----------------------------------------------------------------------------- build
def remove_rigid(modes: np.ndarray, ref: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Subtract from each mode the small rotation + translation that best explains it on vertices ``on``."""
    P = ref[on] - ref[on].mean(0)
    A = np.zeros((len(P) * 3, 6))
    A[0::3, 1], A[0::3, 2] = P[:, 2], -P[:, 1]
    A[1::3, 0], A[1::3, 2] = -P[:, 2], P[:, 0]
    A[2::3, 0], A[2::3, 1] = P[:, 1], -P[:, 0]
    A[0::3, 3] = A[1::3, 4] = A[2::3, 5] = 1.0
    pinv = np.linalg.pinv(A)
    out = modes.copy()
    Pall = ref - ref[on].mean(0)
    for k in range(len(modes)):
        x = pinv @ modes[k][on].ravel()
        w, tr = x[:3], x[3:]
        out[k] -= np.cross(w, Pall) + tr
    return out


def orient_outward(v: np.ndarray, t: np.ndarray, centre: np.ndarray) -> np.ndarray:
    fn = face_normals(v, t)
    if ((v[t].mean(1) - centre) * fn).sum() < 0:
        return t[:, ::-1].copy()
    return t


def part_triangles(ict: ICT) -> dict[str, np.ndarray]:
    """Triangles per kept part; a triangle joins the part of its highest-index vertex's region."""
    v = ict.neutral
    def region(i):
        for name, (a, b) in REGIONS.items():
            if a <= i < b:
                return name
        return None
    groups: dict[str, list] = defaultdict(list)
    for f in ict.faces:
        r = region(max(f))
        if r is not None and all(region(x) is not None for x in f):
            groups[r].append(f)
    centre = v[REGIONS["head"][0]:REGIONS["head"][1]].mean(0)
    out = {}
    for name in REGIONS:
        t = triangulate(groups[name], v)
        out[name] = orient_outward(v, t, centre if name in ("face", "head") else v[np.unique(t)].mean(0))
    return out


def build(checkout: Path, log=print) -> tuple[dict[str, np.ndarray], dict]:
    ict = ICT(checkout)
    v = ict.neutral
    log(f"read {len(ict.files)} OBJ files from {checkout}")
    tris = part_triangles(ict)
    tface = tris["face"]
    nb = neighbours(tface, len(v))
    loops = boundary_loops(tface)
    small = sorted([L for L in loops if len(L) < 60], key=lambda L: v[L, 0].mean())
    if len(small) != 2:
        raise SystemExit(f"expected two eye holes in the face region, found {len(small)}")
    eyes = {"right": eye_margins(small[0], v, nb), "left": eye_margins(small[1], v, nb)}
    mouth_loop = [L for L in loops if 60 <= len(L) < 150]
    if len(mouth_loop) != 1:
        raise SystemExit("expected one mouth hole in the face region")
    lips = lip_lines(mouth_loop[0], v, nb)
    avoid: set[int] = set()
    for e in eyes.values():
        avoid |= set(rings(nb, e["loop"], 1))
    avoid |= set(rings(nb, lips["loop"], 5))
    log("fitting MediaPipe's topology onto the neutral face")
    fit = fit_template(v, tface, eyes, lips, avoid, log)
    # ---- decimation
    E = list(EXPRESSIONS)
    both = lambda a, b: ict.expr[E.index(a)] + ict.expr[E.index(b)]
    poses = [v, v + ict.expr[E.index("jawOpen")], v + both("eyeBlink_L", "eyeBlink_R"), v + both("mouthSmile_L", "mouthSmile_R"),
             v + ict.expr[E.index("mouthFunnel")], v + both("browInnerUp_L", "browInnerUp_R")]
    poses += [v + s * ict.identity[k] for k in range(3) for s in (-2.0, 2.0)]
    kept_t = {}
    for name, t in tris.items():
        locked = np.zeros(len(v), bool)
        for L in boundary_loops(t):
            locked[L] = True
        if name == "face":  # the lid margins, lip lines and ICT's landmark vertices stay exact
            for e in eyes.values():
                locked[e["upper"] + e["lower"]] = True
            locked[lips["upper"] + lips["lower"]] = True
            locked[list(ICT_LM68)] = True
        log(f"decimating {name}")
        kept_t[name] = decimate(poses, t, locked, BUDGET[name], log)
    used = np.unique(np.concatenate([t.ravel() for t in kept_t.values()]))
    remap = -np.ones(len(v), np.int64)
    remap[used] = np.arange(len(used))
    # ---- landmarks on the decimated face
    face_t = remap[kept_t["face"]]
    vd = v[used]
    surf = Surface(vd, face_t)
    q, tri, bary = surf.closest(fit["points"])
    lm_idx = face_t[tri].astype(np.int32)
    lm_w = bary.astype(np.float64)
    for k, (i, j, tt) in fit["exact"].items():
        lm_idx[k] = (remap[i], remap[j], remap[j])
        lm_w[k] = (1 - tt, tt, 0.0)
    if (lm_idx < 0).any():
        raise SystemExit("a landmark lost its vertex in decimation")
    dev = np.linalg.norm(q - fit["points"], axis=1)
    log(f"landmarks on the decimated surface: median {np.median(dev) * 10:.3f} mm, max {dev.max() * 10:.3f} mm from the full mesh")
    ib_idx = lm_idx[list(IBUG68_FROM_MEDIAPIPE)].copy()
    ib_w = lm_w[list(IBUG68_FROM_MEDIAPIPE)].copy()
    for i in JAW_IBUG:
        ib_idx[i] = remap[ICT_LM68[i]]
        ib_w[i] = (1.0, 0.0, 0.0)
    # ---- head frame: origin at the midpoint of the outer eye corners (33, 263) of the mean, metres
    lm_pos = (vd[lm_idx] * lm_w[:, :, None]).sum(1)
    origin = 0.5 * (lm_pos[33] + lm_pos[263])
    mean_m = (vd - origin) * CM
    face_rows = np.arange(*REGIONS["face"])
    id_modes = remove_rigid(ict.identity, v, face_rows)[:, used] * (CM * 1000)  # mm
    expr = ict.expr[:, used] * (CM * 1000)
    arrays = {
        "mean": mean_m.astype(np.float32),
        "ict_index": used.astype(np.int32),
        "identity_modes_mm": id_modes.astype(np.float16),
        "expression_names": np.array(EXPRESSIONS),
        "expressions_mm": expr.astype(np.float16),
        "landmark_index": lm_idx.astype(np.int32),
        "landmark_weight": lm_w.astype(np.float32),
        "ibug68_index": ib_idx.astype(np.int32),
        "ibug68_weight": ib_w.astype(np.float32),
    }
    for name, t in kept_t.items():
        arrays[f"tri_{name}"] = remap[t].astype(np.int32)
    for side, e in eyes.items():
        arrays[f"eye_{side}_loop"] = remap[e["loop"]].astype(np.int32)
        arrays[f"eye_{side}_upper"] = remap[e["upper"]].astype(np.int32)
        arrays[f"eye_{side}_lower"] = remap[e["lower"]].astype(np.int32)
    arrays["mouth_loop"] = remap[lips["loop"]].astype(np.int32)
    arrays["lip_upper"] = remap[lips["upper"]].astype(np.int32)
    arrays["lip_lower"] = remap[lips["lower"]].astype(np.int32)
    for k, a in arrays.items():
        if a.dtype.kind == "i" and (a < 0).any():
            raise SystemExit(f"{k}: a vertex was lost in decimation")
    prov = {
        "format": FORMAT,
        "source": {"repo": f"github.com/{ICT_REPO}", "commit": ICT_COMMIT, "licence": "MIT",
                   "licence_file_sha256": ict.licence_sha, "files_sha256": ict.input_hashes()},
        "template": {"file": "scripts/mediapipe_template.npz", "sha256": sha256_file(TEMPLATE)},
        "script": "scripts/make_face_model.py",
        "steps": steps(),
        "budget_triangles": BUDGET,
        "counts": {"vertices": int(len(used)), **{f"triangles_{k}": int(len(t)) for k, t in kept_t.items()}},
        "units": {"mean": "m, head frame (x subject's left, y up, z out of the face; origin midpoint of landmarks 33/263)",
                  "identity_modes_mm": "mm per unit code (codes ~ N(0, 1))", "expressions_mm": "mm at weight 1"},
    }
    return arrays, prov


def steps() -> list[str]:
    """The numbered steps of this docstring, one string each (recorded in the provenance)."""
    import re

    body = __doc__.split("Steps", 1)[1].split(":", 1)[1]
    return [" ".join(x.split()) for x in re.split(r"\n(?=\d+\. )", body.strip())]


def save(arrays: dict[str, np.ndarray], prov: dict, path: Path) -> str:
    """Deterministic npz (fixed zip timestamps, sorted members) with the licence and provenance inside."""
    digest = content_hash(arrays)
    prov = {**prov, "content_sha256": digest}
    members = dict(arrays)
    members["provenance_json"] = np.array(json.dumps(prov, indent=1, sort_keys=True))
    members["licence"] = np.array(MIT_NOTICE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for k in sorted(members):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(members[k]), allow_pickle=False)
            zi = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return digest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", help="root of an ICT-FaceKit checkout (contains FaceXModel/)")
    ap.add_argument("--verify", action="store_true", help="rebuild in memory and compare with the committed file")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    arrays, prov = build(Path(a.checkout))
    digest = content_hash(arrays)
    if a.verify:
        with np.load(a.out) as d:
            stored = json.loads(str(d["provenance_json"]))
        have = file_content_hash(a.out)
        ok = digest == stored["content_sha256"] == have
        print(json.dumps({"rebuilt_sha256": digest, "stored_sha256": stored["content_sha256"], "file_content_sha256": have, "match": ok}))
        return 0 if ok else 1
    d = save(arrays, prov, Path(a.out))
    print(json.dumps({"written": str(a.out), "content_sha256": d, "bytes": Path(a.out).stat().st_size, **prov["counts"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
