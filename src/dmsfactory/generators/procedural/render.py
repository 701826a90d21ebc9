"""The procedural renderer: plan entry -> image + exact geometry labels.

Frames (right-handed, metres):
- head frame: x = subject's left, y = up, z = out of the face; origin = midpoint of the outer eye
  corners (33, 263) of the identity's neutral shape.
- car (world) frame: x = driver's left, y = up, z = forward (driving direction); origin = the head
  pivot (upper neck) at the neutral pose. The head pivot sits at ``PIVOT_IN_HEAD`` in the head frame.
- camera frame: OpenCV (x right in the image, y down, z along the optical axis).

Euler convention (car frame and camera frame alike): R = Ry(yaw) @ Rx(-pitch) @ Rz(-roll), applied
to head-frame vectors; yaw > 0 turns the face towards the subject's left, pitch > 0 looks up,
roll > 0 tilts the head towards the subject's left shoulder. In the camera frame the angles are
those of R_rel = F^T @ R_cam_head with F = diag(1, -1, -1) (a head facing the camera squarely, upright
in the image, has yaw = pitch = roll = 0).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from threadpoolctl import ThreadpoolController

from dmsfactory.geometry import F as F_FLIP  # the pose conventions live in dmsfactory.geometry
from dmsfactory.geometry import camera_euler
from dmsfactory.geometry import matrix_from_euler as euler_to_R
from dmsfactory.geometry import rx as Rx
from dmsfactory.geometry import ry as Ry
from dmsfactory.geometry import rz as Rz
from dmsfactory.landmarks import LIPS_INNER, LIPS_OUTER
from dmsfactory.plan_entry import PlanEntryError  # noqa: F401  (re-exported)
from dmsfactory.plan_entry import check_plan_entry as validate

from . import facemodel as FM
from . import parts as P
from .config import ProceduralConfig
from .identity import identity_code, identity_shape
from .raster import Fragments, interpolate, rasterize, vertex_normals
from .texture import build_atlas, part_uv

RENDERER_VERSION = "procedural-0.11.0"  # 0.4.0: ICT-FaceKit head (identity modes, blendshapes, mouth interior), new hand;
# 0.4.1: records lip_points (pixels unchanged); 0.4.2: ambient occlusion dims the ambient light only;
# 0.5.0: face-priority auto-exposure (render info "exposure"); records eye_points
# 0.6.0: corneal glints (catchlights) instead of the eyeball sheen on the cornea
# 0.7.0: per-identity teeth, tongue and cavity colours (identity code id-v4)
# 0.8.0: lips sealed at rest (LIP_SEAL); mouth_opening_mm is the lips' vertical gap
# 0.9.0: glossy upper eyelids (LID_GLOSS_MAX; render info "lid_gloss")
# 0.10.0: the upper front teeth as one band under the lip (parts.upper_teeth; identity code id-v5)
# 0.11.0: one frame style per identity for glasses and sunglasses (parts.glasses_style; render info "glasses")
PIVOT_IN_HEAD = np.array([0.0, -0.065, -0.075])
LIPS = list(LIPS_OUTER + LIPS_INNER)

MOUNTS = {  # direction from the head towards the camera in the car frame (x left, y up, z forward)
    "steering_column": (0.0, -0.33, 1.0),
    "rearview_mirror": (-0.62, 0.22, 1.0),
    "a_pillar": (0.62, 0.18, 1.0),
    "center_stack": (-0.55, -0.50, 1.0),
}


# plan entries are validated by the typed contract (dmsfactory.plan_entry.PlanEntry), once, in render()


# ----------------------------------------------------------------------------- model-level geometry
PART_NAMES = {"face": "face", "head": "skull", "socket": "mouth", "gums": "tongue", "teeth": "teeth"}
PART_AO = {"socket": 0.22, "gums": 0.42, "teeth": 0.75}
NECK_CUT_Y = -0.175  # head frame: the model's neck below this is inside the torso
LID_SPREAD_M = 0.006  # a lid-margin correction fades out over this distance
MEET = 0.2  # closed lids meet this far up from the lower lid (share of the open gap): the upper lid travels most
LOOK_UP_DEG, LOOK_DOWN_DEG, LOOK_SIDE_DEG = 25.0, 25.0, 30.0  # eye rotation at which eyeLook* = 1


def _rings(nb: list, start, depth: int) -> dict:
    dist = {int(x): 0 for x in start}
    front = list(dist)
    for k in range(1, depth + 1):
        nxt = []
        for x in front:
            for y in nb[x]:
                if y not in dist:
                    dist[y] = k
                    nxt.append(y)
        front = nxt
    return dist


@lru_cache(maxsize=1)
def model_geometry() -> dict:
    """Everything about the face model that does not depend on the identity (computed once)."""
    m = FM.load()
    V = m.n_vertices
    g: dict = {"parts": {}}
    for k in FM.PARTS:
        pv = m.part_vertices[k]
        loc = -np.ones(V, np.int64)
        loc[pv] = np.arange(len(pv))
        t = m.tris[k]
        if k in ("face", "head"):  # the model's neck ends inside the torso's collar (its flare to the shoulders goes)
            t = t[(m.mean[t][:, :, 1] > NECK_CUT_Y).all(1)]
        if k == "teeth":  # the lower row only: the upper front teeth are our own band (parts.upper_teeth)
            lm = m.landmarks(m.mean)
            upper = m.mean[:, 1] > 0.5 * (lm[13, 1] + lm[14, 1])  # above the mean head's lip line
            t = t[~upper[t].any(1)]
            g["upper_teeth"] = pv[upper[pv]]  # the model's upper row: where the band goes (_upper_teeth)
            g["upper_teeth_width"] = float(np.ptp(m.mean[g["upper_teeth"], 0]))
        g["parts"][k] = (pv, loc[t])
    g["weld"] = np.concatenate([m.tris[k] for k in FM.PARTS])
    tf = np.concatenate([m.tris["face"], m.tris["head"]])
    nb: list = [set() for _ in range(V)]
    for a, b, c in tf.tolist():
        nb[a] |= {b, c}
        nb[b] |= {a, c}
        nb[c] |= {a, b}
    nb = [sorted(x) for x in nb]
    g["nb"] = nb
    eye_ring = {s: _rings(nb, m.eyes[s]["loop"], 6) for s in ("right", "left")}
    mouth_ring = _rings(nb, m.mouth["loop"], 9)
    g["mouth_inner"] = np.array(sorted(k for k, d in mouth_ring.items() if d <= 5), np.int64)
    # two-sided triangles: the lid margins' and lips' inner surfaces are seen from below/inside (culling
    # them showed the eyeball through the upper lid's underside)
    inner = np.zeros(V, bool)
    for side in ("right", "left"):
        inner[[k for k, d in eye_ring[side].items() if d <= 2]] = True
    inner[[k for k, d in mouth_ring.items() if d <= 8]] = True
    pv, lt = g["parts"]["face"]
    g["face_two_sided"] = inner[pv][lt].any(1)
    # ambient occlusion per vertex: concavity at a ~1 cm scale (3 rounds of neighbour averaging)
    v = m.mean
    n = _normals(v, tf)
    s = v.copy()
    deg = np.array([max(1, len(x)) for x in nb], np.float64)
    rows = np.repeat(np.arange(V), [len(x) for x in nb])
    cols = np.concatenate([np.array(x, np.int64) for x in nb if x] or [np.zeros(0, np.int64)])
    for _ in range(3):
        acc = np.zeros_like(s)
        np.add.at(acc, rows, s[cols])
        s = np.where(deg[:, None] > 0, acc / deg[:, None], s)
    conc = ((s - v) * n).sum(1)
    ao = 1 - np.clip(conc / 0.0015, 0, 1) * 0.45
    for side in ("right", "left"):
        for k, d in eye_ring[side].items():
            if d <= 1:
                ao[k] *= 0.55
    for k, d in mouth_ring.items():
        if d <= 6:
            ao[k] *= 0.45 + 0.09 * d
    # the mouth interior: dark, and darker the deeper it lies behind the lips (teeth at the front catch light)
    z_lips = v[m.mouth["loop"], 2].mean()
    for k, a in PART_AO.items():
        pv_ = m.part_vertices[k]
        ao[pv_] = a * np.clip(1.0 - (z_lips - v[pv_, 2]) / 0.035, 0.25, 1.0)
    g["ao"] = ao
    g["eye_margin_vertices"] = {s: np.array(sorted(k for k, d in eye_ring[s].items() if d <= 3), np.int64) for s in ("right", "left")}
    # lid closing: each lid vertex near an eye follows the margin correction of its two nearest columns
    g["lid"] = {}
    for side in ("right", "left"):
        U, L = m.eyes[side]["upper"], m.eyes[side]["lower"]
        near = np.array(sorted(eye_ring[side]), np.int64)
        out = {}
        for lid, M_, other in (("upper", U, L), ("lower", L, U)):
            du = np.linalg.norm(v[near][:, None] - v[M_][None], axis=2)
            do = np.linalg.norm(v[near][:, None] - v[other][None], axis=2).min(1)
            mine = du.min(1) <= do
            mine[np.isin(near, other)] = False
            mine[np.isin(near, M_)] = True
            idx = near[mine]
            d = du[mine]
            o2 = np.argsort(d, 1, kind="stable")[:, :2]
            d1, d2 = np.take_along_axis(d, o2, 1).T
            a = np.where(d1 + d2 > 0, d2 / np.maximum(d1 + d2, 1e-12), 1.0)
            f = np.clip(1 - d1 / LID_SPREAD_M, 0, 1) ** 1.5
            out[lid] = (idx, o2, np.stack([a, 1 - a], 1) * f[:, None])
        g["lid"][side] = out
        g["lid"][side]["push"] = np.unique(np.concatenate([out["upper"][0], out["lower"][0]]))
    # the neck below the jaw bends towards the torso (linear blend skinning weight 1 = moves with the head)
    y, z = v[:, 1], v[:, 2]
    sline = y - (-0.115 + 0.367 * (0.06 - z))
    t = np.clip((sline + 0.045) / 0.045, 0, 1)
    w = t * t * (3 - 2 * t)
    w[np.concatenate([m.part_vertices[k] for k in ("socket", "gums", "teeth")])] = 1.0
    w[np.unique(m.lm_index)] = 1.0
    w[np.unique(m.ibug_index)] = 1.0
    g["head_weight"] = w
    g["expr_names"] = {k: i for i, k in enumerate(m.expressions)}
    g["expr_stack"] = np.stack([m.expressions[k].reshape(-1) for k in m.expressions]).astype(np.float64)
    return g


def _skinned(v: np.ndarray, w: np.ndarray, R: np.ndarray, pivot: np.ndarray, R_cw: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Camera-frame positions of head-frame points ``v`` when the head turns by ``R`` (car frame) about
    ``pivot``: points with weight 1 turn fully, weight w by the rotation of w times the angle about the
    same axis (the neck twists; a linear blend would collapse it)."""
    p = v - pivot
    out = p @ (R_cw @ R).T
    part = w < 1
    if part.any():
        rv, _ = cv2.Rodrigues(np.asarray(R, np.float64))
        ang = float(np.linalg.norm(rv))
        q = p[part]
        if ang > 1e-12:
            k = rv.ravel() / ang
            th = (w[part] * ang)[:, None]
            q = q * np.cos(th) + np.cross(k, q) * np.sin(th) + k * (q @ k)[:, None] * (1 - np.cos(th))
        out[part] = q @ R_cw.T
    return out - R_cw @ C


def model_normals(v: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals of the welded model (all parts) for model vertices ``v``."""
    return vertex_normals(v, model_geometry()["weld"])


# ----------------------------------------------------------------------------- identity cache
class IdentityModel:
    """Everything that depends only on the identity, built once and cached (LRU) per worker."""

    def __init__(self, seed: int, params: dict):
        m = FM.load()
        self.code, self.info = identity_code(seed, params)
        self.code_rounded = {k: round(v, 6) for k, v in self.code.items()}  # as recorded in params.render
        self.v0 = identity_shape(self.code)  # (V, 3) every model vertex, head frame
        self.face0 = m.landmarks(self.v0)  # (468, 3) neutral landmarks
        zy = np.linalg.norm(self.face0[234] - self.face0[454])
        ml = m.landmarks(m.mean)
        self.head_size = float(zy / np.linalg.norm(ml[234] - ml[454]))
        self.glasses_style = P.glasses_style(self.code["tex_seed"])  # the frame this person wears (0.11.0)
        self.rgb, self.nir = build_atlas(self.code)
        self.atlas_f = {"rgb": self.rgb.astype(np.float32) / 255.0, "nir": self.nir.astype(np.float32)[..., None] / 255.0}
        self.sp = P.skull_params(self.v0)
        self.hair = P.hair(self.v0, self.sp, self.code)
        self.hair_under_cap = None
        if self.hair is not None:
            h = self.hair
            h.extra["n_head"] = _normals(h.v, h.t)
            keep = h.v[h.t].mean(1)[:, 1] < self.sp["c"][1] + 0.035
            self.hair_under_cap = P.Part("hair", h.v, h.t[keep], h.uv, cull=False, spec=0.5, occluder=True)
            self.hair_under_cap.extra["n_head"] = _normals(h.v, h.t[keep])
        self.eyes = {s: P.eye_geometry(self.v0, s) for s in ("right", "left")}
        self.eyeballs = {s: P.eyeball(np.zeros(3), R)[0] for s, (c, R) in self.eyes.items()}
        self.fans = {s: P.fan(self.v0, m.eyes[s]["loop"], 0.010, "socket", "socket") for s in ("right", "left")}
        self.upper_teeth = _upper_teeth(self.v0, self.face0, self.code)
        self._acc: dict = {}

    def fan(self, key: str, v: np.ndarray, contour: np.ndarray, depth: float) -> "P.Part":
        f = self.fans[key]
        pts = v[contour]
        return P.Part(f.name, np.concatenate([pts, (pts.mean(0) + np.array([0, 0, -depth]))[None]]), f.t, f.uv, cull=False)

    def accessory(self, acc: str, v: np.ndarray, lm: np.ndarray) -> list:
        if acc == "mask":
            if "mask" not in self._acc:
                self._acc["mask"] = _mask_model(self.v0, self.face0)
            return [_mask_part(self._acc["mask"], v)]
        if acc not in self._acc:
            if acc in ("glasses", "sunglasses"):
                self._acc[acc] = P.glasses(self.face0, self.sp, acc == "sunglasses", self.glasses_style)
            elif acc == "cap":
                self._acc[acc] = P.cap(self.sp)
            else:
                self._acc[acc] = []
        return self._acc[acc]


UPPER_TEETH_ARCH = 40.0  # 1/m: the model's upper row recedes 12.6 mm by 18 mm to the side (mean head)


def _upper_teeth(v0: np.ndarray, lm0: np.ndarray, code: dict) -> P.Part:
    """The identity's upper front teeth (``parts.upper_teeth``), head frame: the labial face where the
    model's central incisors have it, the arch as wide as the model's upper row (relative to the mean
    head's), and the central incisors' edge ``incisor_show_mm`` below the upper lip's inner line at rest
    (identity code id-v5; 0 for codes before it: the edge at the lip line)."""
    m = FM.load()
    geo = model_geometry()
    up = v0[geo["upper_teeth"]]
    front_z = float(up[np.abs(up[:, 0]) < 0.003, 2].max())
    width = float(np.ptp(up[:, 0]) / geo["upper_teeth_width"])
    edge_y = float(lm0[13, 1]) - float(code.get("incisor_show_mm", 0.0)) / 1000.0
    p = P.upper_teeth(edge_y, front_z, UPPER_TEETH_ARCH / width**2, width)
    z_lips = float(v0[m.mouth["loop"], 2].mean())
    ao = PART_AO["teeth"] * np.clip(1.0 - (z_lips - p.v[:, 2]) / 0.035, 0.25, 1.0)
    p.extra["ao"] = np.where(p.extra.pop("boundary"), 0.6 * ao, ao)
    return p


def _mask_model(v0: np.ndarray, lm0: np.ndarray) -> dict:
    """The surgical mask's vertex selection (face skin from the nose bridge to under the chin, cheek to
    cheek), its holes closed by fans (mouth, nostrils) and a neighbour-averaging matrix (identity cache)."""
    import scipy.sparse as sp  # heavy: scipy (sparse matrices, the mask model only)

    m = FM.load()
    g = model_geometry()
    t = m.tris["face"]
    y_top, y_bot = lm0[6, 1] - 0.004, lm0[152, 1] - 0.022
    zcut = 0.5 * (lm0[234, 2] + lm0[454, 2]) - 0.004
    sel = (v0[:, 1] < y_top) & (v0[:, 1] > y_bot) & (np.abs(v0[:, 0]) < 0.068) & (v0[:, 2] > zcut)
    sel[g["mouth_inner"]] = False
    t = t[sel[t].all(1)]
    used = np.unique(t)
    remap = -np.ones(len(v0), np.int64)
    remap[used] = np.arange(len(used))
    tl = remap[t]
    n = len(used)
    # holes: every boundary loop but the outer one gets a fan around a new centre vertex
    from collections import defaultdict

    cnt: dict = defaultdict(int)
    for tr in tl.tolist():
        for i in range(3):
            a, b = tr[i], tr[(i + 1) % 3]
            cnt[(min(a, b), max(a, b))] += 1
    bn: dict = defaultdict(list)
    for (a, b), c in sorted(cnt.items()):
        if c == 1:
            bn[a].append(b)
            bn[b].append(a)
    loops, seen = [], set()
    for s0 in sorted(bn):
        if s0 in seen:
            continue
        loop, prev, cur = [s0], None, s0
        seen.add(s0)
        while True:
            nx = [x for x in bn[cur] if x != prev and x not in seen]
            if not nx:
                break
            prev, cur = cur, nx[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(loop)
    loops.sort(key=len)
    fans, centres = [], []
    for loop in loops[:-1]:
        c = n + len(centres)
        centres.append(loop)
        fans += [(loop[i], loop[(i + 1) % len(loop)], c) for i in range(len(loop))]
    A = sp.csr_matrix((np.ones(6 * len(tl)), (np.repeat(tl, 2, 1).ravel(), tl[:, [1, 2, 0, 2, 0, 1]].ravel())), shape=(n, n))
    A.data[:] = 1.0
    deg = np.asarray(A.sum(1)).ravel()
    A = sp.diags(1.0 / np.maximum(deg, 1)) @ A
    allt = np.concatenate([tl, np.array(fans, np.int64).reshape(-1, 3)])
    return {"used": used, "t": allt, "A": A.tocsr(), "holes": centres}


def _mask_part(mm: dict, v: np.ndarray) -> "P.Part":
    used, A = mm["used"], mm["A"]
    nu = model_normals(v)[used]
    base = v[used] + nu * 0.004
    x = base.copy()
    for _ in range(10):  # smooth: the mask spans the nose-cheek and lip concavities, staying outside the skin
        x = 0.5 * x + 0.5 * (A @ x)
        push = np.clip(((base - x) * nu).sum(1), 0, None)
        x += nu * push[:, None]
    x = np.concatenate([x] + [x[h].mean(0, keepdims=True) + [0.0, 0.0, 0.002] for h in mm["holes"]])
    x[:, 2] += 0.002
    ux = np.full(len(x), P.swatch_uv("mask")[0])
    uv = np.stack([np.clip(ux + x[:, 0] * 80, P.SWATCH_RECT[0] + 6 * 16 + 1, P.SWATCH_RECT[0] + 7 * 16 - 1),
                   np.full(len(x), P.swatch_uv("mask")[1])], 1)
    return P.Part("mask", x, mm["t"], uv, cull=False, spec=0.05, occluder=True)


_CACHE: "OrderedDict[str, IdentityModel]" = OrderedDict()


def identity_model(seed: int, params: dict) -> IdentityModel:
    key = json.dumps([seed, params], sort_keys=True, default=str)
    m = _CACHE.get(key)
    if m is None:
        m = IdentityModel(seed, params)
        _CACHE[key] = m
        if len(_CACHE) > 64:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return m


# ----------------------------------------------------------------------------- expressions
def _side_suffix(side: str) -> str:
    return "_L" if side == "left" else "_R"


# A mouth at rest is closed (most adults' lips meet at rest); the face model's neutral lips are parted
# 0.2-1.8 mm. Non-yawning openings below LIP_SEAL_OPEN press the lips together (mouthPress up to
# LIP_SEAL at 0, mouthClose against the jaw's drop) and part them gradually up to it.
LIP_SEAL, LIP_SEAL_OPEN = 0.6, 0.12
# A yawn's lips: mouthUpperUp and mouthStretch weights times the opening. Drawn per yawn since 0.10.0
# (``state.yawn_lips``: clips and stills, ranges in ``clips.drivers.YAWN``); these, every yawn's until
# then, where a plan entry has none.
YAWN_LIPS_DEFAULT = {"upper_lip_raise": 0.35, "lip_stretch": 0.55}


def expression_weights(st: dict, eye_rot: dict | None = None) -> dict[str, float]:
    """ARKit blendshape weights (ICT names) for a state. Eye openness -> eyeBlink (its exact value is set
    by the lid closing, see ``apply_expression``) + some eyeSquint; each eye's rotation -> eyeLook*
    (the lids follow the eyeball); a yawn -> jawOpen + mouthStretch/UpperUp/LowerDown with squinting
    eyes, raised inner brows and upper lip; an open mouth without a yawn (talking, half-open) -> a smaller jaw
    drop with the lips parting (mouthLowerDown/UpperUp); smile -> mouthSmile + cheekSquint; brow raise
    -> browInnerUp + browOuterUp."""
    w: dict[str, float] = {}

    def add(k, x):
        if x:
            w[k] = w.get(k, 0.0) + float(x)

    mo = float(st["mouth_open"])
    yawn = st.get("yawn", "none") != "none"
    sm, br = float(st["smile"]), float(st["brow_raise"])
    squint = 0.45 * sm + (0.5 * mo if yawn else 0.0)
    if yawn:
        lips = {**YAWN_LIPS_DEFAULT, **(st.get("yawn_lips") or {})}  # drawn per yawn since 0.10.0
        add("jawOpen", 0.95 * mo)
        add("noseSneer_L", 0.2 * mo)
        add("noseSneer_R", 0.2 * mo)
        for s in ("_L", "_R"):
            add("mouthStretch" + s, float(lips["lip_stretch"]) * mo)
            add("mouthLowerDown" + s, 0.35 * mo)
            add("mouthUpperUp" + s, float(lips["upper_lip_raise"]) * mo)
            add("browInnerUp" + s, 0.35 * mo)
    else:  # lips at rest are sealed: pressed together at 0, parting fully only from LIP_SEAL_OPEN on
        seal = max(0.0, 1.0 - mo / LIP_SEAL_OPEN)
        add("jawOpen", 0.55 * mo)
        add("mouthClose", 0.55 * mo * seal)  # the lips stay together over a slightly dropped jaw
        add("mouthFunnel", 0.12 * mo)
        for s in ("_L", "_R"):
            add("mouthPress" + s, LIP_SEAL * seal)
            add("mouthLowerDown" + s, 0.6 * mo * (1.0 - seal))
            add("mouthUpperUp" + s, 0.35 * mo * (1.0 - seal))
    for s in ("_L", "_R"):
        add("mouthSmile" + s, sm)
        add("cheekSquint" + s, 0.6 * sm)
        add("browInnerUp" + s, br)
        add("browOuterUp" + s, 0.8 * br)
    for side in ("right", "left"):
        sx = _side_suffix(side)
        o = float(st[f"eye_openness_{side}"])
        add("eyeSquint" + sx, min(1.0, squint + 0.3 * (1.0 - o)))
        if eye_rot is not None:
            g = eye_rot[side] @ np.array([0.0, 0.0, 1.0])
            yaw, pitch = math.degrees(math.atan2(g[0], g[2])), math.degrees(math.asin(float(np.clip(g[1], -1, 1))))
            add("eyeLookUp" + sx, np.clip(pitch / LOOK_UP_DEG, 0, 1))
            add("eyeLookDown" + sx, np.clip(-pitch / LOOK_DOWN_DEG, 0, 1))
            inward = yaw if side == "right" else -yaw  # towards the nose
            add("eyeLookIn" + sx, np.clip(inward / LOOK_SIDE_DEG, 0, 1))
            add("eyeLookOut" + sx, np.clip(-inward / LOOK_SIDE_DEG, 0, 1))
    return {k: min(1.0, v) for k, v in w.items()}


def mouth_opening_mm(face: np.ndarray) -> float:
    """How far the lips are apart: the upper lip's contact point (13) above the lower one's (14) along
    the head's vertical axis, in mm; 0 where they meet or overlap (pressed lips cross slightly). The
    3D distance counted the lips' front-back offset as an opening (1-3 mm on a closed mouth)."""
    return max(0.0, float(face[13, 1] - face[14, 1]) * 1000)


def apply_expression(v0: np.ndarray, st: dict, im: IdentityModel, eye_rot: dict | None = None) -> tuple[np.ndarray, dict]:
    """(V, 3) expressed model vertices and the blendshape weights used.

    Blendshapes first (``expression_weights`` and eyeBlink = 1 - openness x lid_rest), then the lids are
    closed exactly: for each pair of margin columns the open position (every shape but the blink) and a
    meeting point 20 % up the open gap give the target ``meet + o (open - meet)``; the margins go there
    and the lid skin within 6 mm follows (distance-weighted), so openness 0 puts the upper margin on the
    lower one (aperture 0) whatever the identity, gaze or squint. The moving lid is then kept outside
    the eyeball sphere (it slides over the ball)."""
    m = FM.load()
    g = model_geometry()
    w = expression_weights(st, eye_rot)
    rest = float(im.code.get("lid_rest", 1.0))
    oe = {s: float(st[f"eye_openness_{s}"]) * rest for s in ("right", "left")}
    for s in ("right", "left"):
        if oe[s] < 1.0:
            w["eyeBlink" + _side_suffix(s)] = 1.0 - oe[s]
    names = g["expr_names"]
    ks = [names[k] for k in w]
    v = v0 + (np.array(list(w.values())) @ g["expr_stack"][ks]).reshape(-1, 3) if ks else v0.copy()
    for side in ("right", "left"):
        o = oe[side]
        e = m.eyes[side]
        U, L = e["upper"], e["lower"]
        blink = m.expressions["eyeBlink" + _side_suffix(side)]
        wb = w.get("eyeBlink" + _side_suffix(side), 0.0)
        U0, L0 = v[U] - wb * blink[U], v[L] - wb * blink[L]
        meet = L0 + MEET * (U0 - L0)
        cu = meet + o * (U0 - meet) - v[U]
        cl = meet + o * (L0 - meet) - v[L]
        for lid, c in (("upper", cu), ("lower", cl)):
            idx, cols, wt = g["lid"][side][lid]
            v[idx] += wt[:, :1] * c[cols[:, 0]] + wt[:, 1:] * c[cols[:, 1]]
        if o < 1.0:
            cen, R = im.eyes[side]
            idx = g["lid"][side]["push"]
            d = v[idx] - cen
            r = np.linalg.norm(d, axis=1)
            out = np.maximum(R + 0.0002 - r, 0.0) * min(1.0, (1.0 - o) * 4.0)
            v[idx] += d / r[:, None] * out[:, None]
    return v, w


# ----------------------------------------------------------------------------- result
@dataclass
class RenderResult:
    image: np.ndarray
    landmarks: np.ndarray  # (478, 2) float32
    visibility: np.ndarray  # (478,) bool
    landmarks_3d: np.ndarray  # (478, 3) camera frame, metres
    bbox: tuple[float, float, float, float]
    depth: np.ndarray  # (H, W) float32 camera z, inf = background
    render_info: dict
    landmarks_head: np.ndarray = field(default=None)  # (478, 3) head frame (exact model for PnP)
    part_ids: np.ndarray | None = None  # (H, W) int16 part index (-1 background)
    part_names: tuple = ()
    ibug68: np.ndarray | None = None  # (68, 2) float32 iBUG-68 points (inner 51 = MediaPipe points; jaw on the surface)
    ibug68_visibility: np.ndarray | None = None  # (68,) bool
    ibug68_3d: np.ndarray | None = None  # (68, 3) camera frame, metres


def _normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (compiled; ``raster.vertex_normals``)."""
    return vertex_normals(v, t)


WRAP = np.float32(0.5)  # wrapped diffuse (n.l + w) / (1 + w): light bleeds past the terminator as in skin
_EYE_AO = 0.18  # occlusion at an open eye's lid margin (none once the lids meet)


def _eye_ao(ao: np.ndarray, st: dict) -> np.ndarray:
    """Darken the lid margins by the eye's openness: an open eye's margin sits in the socket's shadow,
    a closed lid is smooth skin (a dark band there reads as a narrow open eye)."""
    ao = ao.copy()
    g = model_geometry()
    for side in ("right", "left"):
        ao[g["eye_margin_vertices"][side]] *= 1.0 - _EYE_AO * min(1.0, float(st[f"eye_openness_{side}"]))
    return ao


# ----------------------------------------------------------------------------- camera + light
def camera_setup(entry: dict) -> dict:
    cam = entry["camera"]
    size = int(cam["image_size"])
    f = (size / 2) / math.tan(math.radians(float(cam["fov_deg"])) / 2)
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    target = -PIVOT_IN_HEAD
    d = np.array(MOUNTS[cam["mount"]], float)
    d /= np.linalg.norm(d)
    C = target + d * float(cam["distance_m"])
    z = target - C
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return {"K": K, "size": size, "C": C, "R_cw": np.stack([x, y, z])}


def light_setup(entry: dict, rng: np.random.Generator) -> dict:
    mode = entry["lighting"]
    lux = float(entry.get("illuminance_lux", 1000.0) or 1000.0)
    if mode == "daylight":
        side = rng.choice([-1.0, 1.0])
        L = np.array([side * rng.uniform(0.2, 1.0), rng.uniform(0.3, 0.9), rng.uniform(0.5, 1.0)])
        return {"mode": mode, "dir": [(L / np.linalg.norm(L), np.array([1.0, 0.97, 0.92]) * rng.uniform(0.75, 1.05))],
                "ambient": np.array([0.42, 0.44, 0.48]) * rng.uniform(0.8, 1.1), "bg": rng.uniform(0.75, 1.0), "noise": 1.5,
                "window": np.array([235, 240, 245.0]), "interior": np.array([70, 68, 66.0]) * rng.uniform(0.7, 1.2), "lux": lux}
    if mode == "tunnel":
        L = np.array([rng.uniform(-0.4, 0.4), 1.0, rng.uniform(0.2, 0.8)])
        return {"mode": mode, "dir": [(L / np.linalg.norm(L), np.array([1.0, 0.72, 0.42]) * rng.uniform(0.6, 0.85))],
                "ambient": np.array([0.20, 0.15, 0.10]) * rng.uniform(0.8, 1.2), "bg": 0.3, "noise": 4.0,
                "window": np.array([120, 80, 40.0]), "interior": np.array([30, 24, 18.0]), "exposure": 1.35, "lux": lux}
    if mode == "backlight":
        L = np.array([rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.6), -1.0])
        return {"mode": mode, "dir": [(L / np.linalg.norm(L), np.array([1.0, 0.98, 0.95]) * 1.4),
                                      (np.array([0.0, 0.3, 1.0]) / np.linalg.norm([0, 0.3, 1.0]), np.array([0.9, 0.92, 1.0]) * rng.uniform(0.15, 0.3))],
                "ambient": np.array([0.30, 0.31, 0.34]) * rng.uniform(0.8, 1.1), "bg": 1.0, "noise": 2.5,
                "window": np.array([255, 255, 255.0]), "interior": np.array([60, 60, 62.0]), "lux": lux}
    if mode == "night_cabin":
        # visible-light camera at night: the instrument cluster / centre screen glows from below and in
        # front (cool white), a street lamp sometimes shines in from above and the side (sodium or LED);
        # auto-exposure lifts the dim image, so sensor noise is high
        Ls = np.array([rng.uniform(-0.35, 0.35), -rng.uniform(0.35, 0.7), 1.0])
        dirs = [(Ls / np.linalg.norm(Ls), np.array([0.78, 0.86, 1.0]) * rng.uniform(0.30, 0.45))]
        if rng.uniform() < 0.6:
            Lp = np.array([rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0), rng.uniform(0.5, 1.0), rng.uniform(-0.2, 0.6)])
            lamp = np.array([1.0, 0.72, 0.42]) if rng.uniform() < 0.5 else np.array([0.95, 0.96, 1.0])
            dirs.append((Lp / np.linalg.norm(Lp), lamp * rng.uniform(0.15, 0.45)))
        return {"mode": mode, "dir": dirs, "ambient": np.array([0.07, 0.07, 0.09]) * rng.uniform(0.8, 1.2), "bg": 0.12,
                "noise": rng.uniform(5.0, 9.0), "window": np.array([22, 24, 34.0]), "interior": np.array([12, 12, 14.0]),
                "exposure": rng.uniform(1.5, 1.9), "lux": lux}
    if mode != "night_ir":
        raise ValueError(f"lighting {mode!r} has no light setup in the procedural renderer (render.light_setup)")
    # night_ir: active illuminator at the camera, inverse-square fall-off
    return {"mode": mode, "dir": [], "point_gain": rng.uniform(1.1, 1.4), "ambient": np.array([0.03, 0.03, 0.03]),
            "bg": 0.25, "noise": rng.uniform(3.0, 6.0), "window": np.array([20, 20, 20.0]), "interior": np.array([28, 28, 28.0]),
            "bright_pupil": bool(entry["camera"]["mount"] == "steering_column" and rng.uniform() < 0.3), "lux": lux}


def _project(Xc: np.ndarray, K: np.ndarray) -> np.ndarray:
    z = np.maximum(Xc[:, 2:3], 1e-6)
    return (Xc[:, :2] / z) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


def paint_background(S: int, cam: dict, K: np.ndarray, light: dict, rng: np.random.Generator) -> np.ndarray:
    """Cabin behind the driver (S x S x 3 float32 in [0, 1]); painted at half resolution (it is
    out of focus) and upsampled."""
    s2 = max(16, S // 2)
    k = s2 / S
    K2 = K.copy()
    K2[:2] *= k
    yy = np.linspace(0, 1, s2, dtype=np.float32)[:, None, None]
    img = np.empty((s2, s2, 3), np.float32)
    img[:] = (light["interior"] / 255.0).astype(np.float32) * (1.15 - 0.5 * yy)
    R, C = cam["R_cw"], cam["C"]

    def poly(pts_w, col):
        Xc = (np.asarray(pts_w, float) - C) @ R.T
        if (Xc[:, 2] < 0.05).any():
            return
        uv = _project(Xc, K2)
        cv2.fillPoly(img, [np.round(uv * 4).astype(np.int32)], tuple(float(c) / 255.0 for c in col), cv2.LINE_AA, shift=2)

    win = light["window"] * light["bg"]
    # side window on the driver's left door, rear window, roof lining
    poly([(0.50, -0.05, 0.5), (0.50, -0.05, -0.6), (0.45, 0.40, -0.5), (0.45, 0.40, 0.4)], win * rng.uniform(0.85, 1.0))
    poly([(0.52, -0.6, 0.6), (0.52, -0.05, 0.6), (0.52, -0.05, -0.7), (0.52, -0.6, -0.7)], light["interior"] * 0.8)
    poly([(-0.5, 0.05, -1.5), (0.5, 0.05, -1.5), (0.45, 0.35, -1.4), (-0.45, 0.35, -1.4)], win * 0.9)
    poly([(-0.9, -0.10, 0.5), (-0.9, -0.10, -0.6), (-0.85, 0.38, -0.5), (-0.85, 0.38, 0.4)], win * 0.8)
    poly([(-1, 0.45, 0.8), (1, 0.45, 0.8), (1, 0.45, -1.6), (-1, 0.45, -1.6)], light["interior"] * 1.25)
    # seat back and headrest (behind the driver)
    seat = np.array([45, 44, 46.0]) * (0.6 + 0.8 * rng.uniform()) * (light["interior"].mean() / 60)
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    poly(np.stack([0.27 * np.cos(ang), -0.45 + 0.33 * np.sin(ang), np.full(20, -0.24)], 1), seat)
    poly(np.stack([0.13 * np.cos(ang), 0.06 + 0.09 * np.sin(ang), np.full(20, -0.21)], 1), seat * 1.1)
    img *= 1 + 0.06 * cv2.resize(rng.normal(size=(8, 8)).astype(np.float32), (s2, s2))[..., None]
    return cv2.resize(img, (S, S), interpolation=cv2.INTER_LINEAR)


_BG_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
BG_BUCKETS = 16


def _background(entry: dict, S: int, ss: int, R_cw: np.ndarray, C: np.ndarray, K: np.ndarray):
    """Cached cabin background (+ backlight veiling glow) per (size, camera, lighting mode, seed
    bucket): the cabin does not depend on the driver, so a dataset reuses a few hundred of them.
    The camera distance is quantised to 2.5 cm for the key only (the cabin is out of focus)."""
    cam = entry["camera"]
    mode = entry["lighting"]
    bucket = int(entry["sample_seed"]) % BG_BUCKETS
    key = (S, ss, cam["mount"], round(float(cam["fov_deg"]), 2), round(float(cam["distance_m"]) / 0.025), mode, bucket)
    hit = _BG_CACHE.get(key)
    if hit is not None:
        _BG_CACHE.move_to_end(key)
        return hit
    r = np.random.default_rng(int.from_bytes(hashlib.sha256(repr(("bg", key)).encode()).digest()[:8], "little"))
    bl = light_setup(entry, r)
    qcam = camera_setup({"camera": {**cam, "distance_m": key[4] * 0.025}})  # the key alone defines the image
    bg = paint_background(S, {"R_cw": qcam["R_cw"], "C": qcam["C"]}, K, bl, r)
    if mode == "night_ir":
        bg = _channel_mean(bg)[..., None]
    glow = None
    if mode == "backlight":
        glow = cv2.GaussianBlur((bg > 0.9).astype(np.float32) * 0.25, (0, 0), 6 * ss)
        if glow.ndim == 2:
            glow = glow[..., None]
    bg.setflags(write=False)
    _BG_CACHE[key] = (bg, glow)
    if len(_BG_CACHE) > 48:
        _BG_CACHE.popitem(last=False)
    return bg, glow


_NOISE_BANK: dict = {}


def _noise(entry: dict, size: int, ch: int) -> np.ndarray:
    """Unit Gaussian sensor noise (size, size, ch): a random window (offset, flips) of a fixed
    per-worker bank of 2*size x 2*size normals, chosen by ``sample_seed`` (deterministic, and
    ~20x cheaper than drawing fresh normals)."""
    n = max(2 * size, 64)
    bank = _NOISE_BANK.get(n)
    if bank is None:
        bank = _NOISE_BANK[n] = np.random.default_rng(1234567).standard_normal((n, n, 3), dtype=np.float32)
    r = _srng(entry, "noise")
    oy, ox = (int(v) for v in r.integers(0, n - size + 1, 2))
    w = bank[oy:oy + size, ox:ox + size, :ch]
    if r.uniform() < 0.5:
        w = w[::-1]
    if r.uniform() < 0.5:
        w = w[:, ::-1]
    return w


def _srng(entry: dict, tag: str) -> np.random.Generator:
    h = hashlib.sha256(f"{tag}:{entry['sample_seed']}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


# ----------------------------------------------------------------------------- render
SELF_PARTS = {"face", "socket", "eyeball", "mouth", "skull", "tongue", "teeth", "lashes"}


def _gaze_R(gy: float, gp: float) -> np.ndarray:
    return Ry(math.radians(gy)) @ Rx(-math.radians(gp))


def eye_rotations(eyes: dict, gaze: dict) -> dict:
    """Each eyeball's rotation (head frame) for a gaze label. ``yaw``/``pitch`` give the direction from
    the midpoint of the two eyeball centres; ``distance_m`` (absent or None: far away, parallel eyes)
    puts the fixation point both eyes turn to, so near targets make them converge."""
    Rg = _gaze_R(float(gaze["yaw"]), float(gaze["pitch"]))
    dist = gaze.get("distance_m")
    if dist is None:
        return {"right": Rg, "left": Rg}
    target = (eyes["right"][0] + eyes["left"][0]) / 2 + float(dist) * (Rg @ np.array([0.0, 0.0, 1.0]))
    out = {}
    for side in ("right", "left"):
        v = target - eyes[side][0]
        v = v / np.linalg.norm(v)  # = _gaze_R(y, p) @ z = (cos p sin y, sin p, cos p cos y)
        out[side] = _gaze_R(math.degrees(math.atan2(v[0], v[2])), math.degrees(math.asin(float(np.clip(v[1], -1, 1)))))
    return out


def iris_points(centre: np.ndarray, R: float, Rg: np.ndarray, r_iris: float = 0.0059) -> np.ndarray:
    """Centre + 4 ring points (head frame) in MediaPipe's refined order: centre, +x (subject's left),
    up, -x, down (checked against face mesh's refined output on our renders)."""
    d = math.sqrt(R * R - r_iris * r_iris)
    loc = np.array([[0, 0, d], [r_iris, 0, d], [0, r_iris, d], [-r_iris, 0, d], [0, -r_iris, d]])
    return centre + loc @ Rg.T


def _torso_parts(hs: float) -> list:
    key = round(float(hs), 6)
    m = _TORSO.get(key)
    if m is None:
        m = _TORSO[key] = P.neck_and_torso(0.0, hs)
        if len(_TORSO) > 64:
            _TORSO.pop(next(iter(_TORSO)))
    return m


_TORSO: dict = {}


def _rasterize_scene(xy: np.ndarray, z: np.ndarray, TR: np.ndarray, S: int, cull: np.ndarray, is_eyeball: np.ndarray,
                     openings: list) -> Fragments:
    """Rasterise the scene; eyeballs are seen only through the eye openings.

    An eyeball is a sphere behind the lids; where a thin lower lid or a sunken cheek lets the
    sphere poke through the skin, a z-buffer alone would show sclera outside the eye. So the
    eyeballs are rasterised separately and win a pixel only inside the projected eye openings
    (``openings``: image polygons of the face's eye holes) and in front of the rest of the scene there."""
    rest = np.nonzero(~is_eyeball)[0]
    eb = np.nonzero(is_eyeball)[0]
    fa = rasterize(xy, z, TR[rest], S, S, cull[rest])
    fa.tri = rest[fa.tri]
    if not len(eb):
        return fa
    fb = rasterize(xy, z, TR[eb], S, S, cull[eb])
    mask = np.zeros((S, S), np.uint8)
    for poly in openings:
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    da = fa.depth_image().reshape(-1)
    win = (mask.reshape(-1)[fb.pix] > 0) & (fb.depth < da[fb.pix])
    if not win.any():
        return fa
    # per pixel, the index of the winning fragment in [fa's fragments, fb's fragments] (pixel order kept)
    src = np.full(S * S, -1, np.int64)
    src[fa.pix] = np.arange(len(fa.pix))
    wi = np.nonzero(win)[0]
    src[fb.pix[wi]] = len(fa.pix) + wi
    pix = np.nonzero(src >= 0)[0]
    idx = src[pix]
    return Fragments(pix, np.concatenate([fa.tri, eb[fb.tri]])[idx], np.concatenate([fa.b, fb.b])[idx],
                     np.concatenate([fa.depth, fb.depth])[idx], S, S)


def _sample_tex(atlas: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear atlas lookup at (u, v) atlas pixels (centres at integer + 0.5), float32 (N, C)."""
    n = len(u)
    w = 256
    rows = max(1, -(-n // w))
    mx = np.full(rows * w, -10, np.float32)
    my = np.full(rows * w, -10, np.float32)
    mx[:n] = u - 0.5
    my[:n] = v - 0.5
    out = cv2.remap(atlas, mx.reshape(rows, w), my.reshape(rows, w), cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return out.reshape(rows * w, -1)[:n]


@dataclass
class _Scene:
    """The posed head, its parts and the camera, before anything is drawn (render()'s first step)."""

    entry: dict
    ss: int
    cam: dict
    size: int
    S: int
    K: np.ndarray
    light: dict
    ir: bool
    im: Any
    fm: Any
    st: dict
    hp: dict
    R_cw: np.ndarray
    C: np.ndarray
    R_ch: np.ndarray
    t_ch: np.ndarray
    Rg_eye: dict
    v: np.ndarray
    expr_w: dict
    face: np.ndarray
    acc: str
    Vm: np.ndarray
    mouth_mm: float
    parts: list
    world_parts: list
    eye_pts: dict


@dataclass
class _Mesh:
    """Every part in the camera frame, one array per attribute (render()'s second step)."""

    V: np.ndarray
    UV: np.ndarray
    TR: np.ndarray
    PID: np.ndarray
    CULL: np.ndarray
    SPEC: np.ndarray
    AO: np.ndarray
    N: np.ndarray
    names: list
    lens_parts: list


@dataclass
class _Raster:
    """What shading leaves for the landmark visibility test: fragments, depth and triangle buffers,
    the lens layer (if any)."""

    fr: Fragments
    zbuf: np.ndarray
    tri_img: np.ndarray
    lens_T: float | None
    lf: Fragments | None


def render(entry: dict, config: ProceduralConfig | None = None) -> RenderResult:
    """Plan entry -> image + exact geometry labels, in five steps: scene (pose, expression, parts),
    mesh (one camera-frame array per attribute), shading (raster, texture, lights, lenses), finish
    (blur, resample, noise, 8 bits), landmarks (projection and visibility), then the recorded info."""
    config = config or ProceduralConfig()
    validate(entry)
    with _one_blas_thread():
        sc = _build_scene(entry, config)
        mesh = _assemble_mesh(sc)
        img, glow, ras = _shade(sc, mesh)
        part_px = mesh.PID[ras.tri_img.clip(0)].astype(np.int16)  # part per supersampled pixel (-1 background)
        part_px[ras.tri_img < 0] = -1
        out, exposure = _finish(sc, img, glow, part_px == mesh.names.index("face"))
        res = _landmarks_and_info(sc, mesh, ras, out, part_px)
        res.render_info["exposure"] = exposure
        return res


_BLAS: ThreadpoolController | None = None


def _one_blas_thread():
    """BLAS on one thread for the block. A multi-threaded BLAS splits a matrix product differently and
    sums in another order, so the head model's products (and from them landmarks and pixels) depended
    on OMP_NUM_THREADS / the core count: other bytes at 2 threads than at 1 (measured). Made once, at
    the first render, when numpy's and scipy's BLAS are loaded; entering the limit costs ~5 us."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _build_scene(entry: dict, config: ProceduralConfig) -> _Scene:
    """Camera, lights, the identity posed and expressed, and every part (head, eyes, accessories, hands, phone, torso)."""
    ss = int(config.supersample)
    cam = camera_setup(entry)
    size = cam["size"]
    S = size * ss
    K = cam["K"].copy()
    K[:2] *= ss
    rng = _srng(entry, "scene")
    light = light_setup(entry, rng)
    ir = light["mode"] == "night_ir"
    im = identity_model(int(entry["identity_seed"]), entry["identity_params"])
    fm = FM.load()
    geo = model_geometry()
    st = entry["state"]
    hs = im.head_size
    hp = entry["head_pose_car"]
    R_wh = euler_to_R(float(hp["yaw"]), float(hp["pitch"]), float(hp["roll"]))
    t_wh = -R_wh @ (PIVOT_IN_HEAD * hs)
    R_cw, C = cam["R_cw"], cam["C"]
    R_ch = R_cw @ R_wh
    t_ch = R_cw @ (t_wh - C)
    Rg_eye = eye_rotations(im.eyes, entry["gaze_in_head"])
    v, expr_w = apply_expression(im.v0, st, im, Rg_eye)
    face = fm.landmarks(v)  # (468, 3) head frame
    acc = entry.get("accessory", "none")
    # the model in the camera frame: the head turns rigidly about the pivot, the neck below the jaw turns
    # by a share of that rotation (weight 1 -> 0 towards the torso; a twist, no linear-blend collapse)
    Vm = _skinned(v, geo["head_weight"], R_wh, PIVOT_IN_HEAD * hs, R_cw, C)
    Nm = model_normals(Vm)
    uvp = part_uv()
    ao_m = _eye_ao(geo["ao"], st)
    parts: list[P.Part] = []
    mouth_mm = mouth_opening_mm(face)
    for k in FM.PARTS:
        if k in ("gums", "teeth") and mouth_mm < 1.5:  # hidden behind closed lips (the dark cavity stays)
            continue
        pv, lt = geo["parts"][k]
        pp = P.Part(PART_NAMES[k], Vm[pv], lt, uvp[k], frame="camera", spec=0.22 if k == "face" else 0.3 if k == "teeth" else 0.15,
                    cull=k in ("face", "head"))
        pp.extra["n"] = Nm[pv]
        if k == "face":
            pp.extra["cull"] = ~geo["face_two_sided"]
        pp.extra["ao"] = ao_m[pv]
        parts.append(pp)
    if im.hair is not None:
        parts.append(im.hair if acc != "cap" else im.hair_under_cap)
    eye_pts = {}
    for side in ("right", "left"):
        parts.append(im.fan(side, v, fm.eyes[side]["loop"], 0.010))
        e = fm.eyes[side]
        parts.append(P.lashes(v[e["upper"]], im.v0[e["lower"]], im.v0[e["upper"]], float(st[f"eye_openness_{side}"]),
                              0.8 + 0.6 * float(im.code.get("lash", 0.5))))
        c, R = im.eyes[side]
        tpl = im.eyeballs[side]
        o = float(st[f"eye_openness_{side}"])
        sink = np.array([0.0, 0.0, -0.0015 * (1.0 - o) ** 2])  # a closing eye's ball never pokes through the lid skin
        parts.append(P.Part("eyeball", tpl.v @ Rg_eye[side].T + c + sink, tpl.t, tpl.uv, spec=tpl.spec))
        eye_pts[side] = iris_points(c, R, Rg_eye[side])
    if mouth_mm >= 1.5:  # as the model's lower teeth: hidden behind closed lips
        parts.append(im.upper_teeth)
    if acc != "none":
        parts += im.accessory(acc, v, face)
    srng = _srng(entry, "props")
    phone = entry.get("phone")
    world_parts: list[P.Part] = []
    if phone:
        s = 1.0 if phone["hand"] == "left" else -1.0
        if phone["use"] == "call":
            ax = np.array([0.0, 1.0, -0.8])
            ax /= np.linalg.norm(ax)
            lat = np.array([s, 0.0, 0.0])
            Rp = np.stack([np.cross(ax, lat), ax, lat], 1)
            pc = np.array([s * (im.sp["r"][0] + 0.014), -0.035, im.sp["c"][2] + 0.06])
            parts.append(P.box(pc, (0.072, 0.15, 0.009), Rp, "phone", name="phone", occluder=True, spec=0.6))
            Rh = np.stack([np.cross(ax, -lat), ax, -lat], 1)
            parts += P.hand(pc + lat * 0.022 + np.array([0, -0.045, 0.0]), Rh, side=phone["hand"], curl=0.5)
            wrist = pc + lat * 0.03 + np.array([0, -0.10, 0.01])
            parts.append(P.tube(wrist, wrist + np.array([s * 0.10, -0.22, 0.12]), 0.028, 0.04, sw="sleeve", name="arm", occluder=True))
        else:
            pc = np.array([s * 0.07, -0.34, 0.24])
            nrm = np.array([-s * 0.06, 0.4, -0.15])
            nrm /= np.linalg.norm(nrm)
            ax = np.cross(nrm, [1.0, 0, 0])
            ax /= np.linalg.norm(ax)
            Rp = np.stack([np.cross(ax, nrm), ax, nrm], 1)
            world_parts.append(P.box(pc, (0.072, 0.15, 0.009), Rp, "phone", name="phone", occluder=True, spec=0.6))
            world_parts.append(P.box(pc + nrm * 0.0047, (0.064, 0.135, 0.001), Rp, "screen", name="phone", occluder=True, spec=0.8))
            world_parts += P.hand(pc - nrm * 0.02 + np.array([0, -0.02, 0]), Rp, side=phone["hand"], curl=0.6)
            world_parts.append(P.tube(pc - nrm * 0.02 + np.array([0, -0.06, -0.03]), np.array([s * 0.2, -0.75, -0.05]), 0.03, 0.045, name="arm", occluder=True))
    if st.get("yawn") == "yawning_with_hand":
        # a hand over the yawn: palm towards the mouth, fingers across it towards the other cheek
        s = -1.0 if srng.uniform() < 0.6 else 1.0  # -1: the right hand (from the subject's right)
        lip = face[[13, 14]].mean(0)
        yl = np.array([-s, 0.3, 0.0]) / np.linalg.norm([1, 0.3])
        zl = np.array([0.0, 0.0, -1.0])
        Rh = np.stack([np.cross(yl, zl), yl, zl], 1)
        hc = lip + np.array([s * 0.012, 0.002, 0.036])
        parts += P.hand(hc, Rh, side="right" if s < 0 else "left", curl=0.25, spread=0.05)
        wrist = hc - yl * 0.05 + np.array([0.0, -0.01, 0.0])
        parts.append(P.tube(wrist, wrist + np.array([s * 0.10, -0.28, -0.03]), 0.026, 0.04, name="arm", occluder=True))
    world_parts += _torso_parts(hs)

    return _Scene(entry=entry, ss=ss, cam=cam, size=size, S=S, K=K, light=light, ir=ir, im=im, fm=fm, st=st, hp=hp,
                  R_cw=R_cw, C=C, R_ch=R_ch, t_ch=t_ch, Rg_eye=Rg_eye, v=v, expr_w=expr_w, face=face, acc=acc, Vm=Vm,
                  mouth_mm=mouth_mm, parts=parts, world_parts=world_parts, eye_pts=eye_pts)


def _assemble_mesh(sc: _Scene) -> _Mesh:
    """Head-frame and car-frame parts into the camera frame, concatenated; normals where not given."""
    parts, world_parts, R_ch, R_cw, t_ch, C = sc.parts, sc.world_parts, sc.R_ch, sc.R_cw, sc.t_ch, sc.C
    # ---- assemble in the camera frame (one array per attribute)
    Vs, UVs, Ts, nfs, pid, cull, spec, aos, given = [], [], [], [], [], [], [], [], []
    prefix = True
    lens_parts = []
    names: list[str] = []
    off = 0
    tc_h, tc_w = t_ch, -R_cw @ C
    for p, head in [(p, True) for p in parts] + [(p, False) for p in world_parts]:
        if p.name == "lens":
            lens_parts.append(p)
            continue
        Vs.append(p.v if p.frame == "camera" else p.v @ (R_ch if head else R_cw).T + (tc_h if head else tc_w))
        if p.name not in names:
            names.append(p.name)
        UVs.append(p.uv)
        Ts.append(p.t + off)
        nfs.append(len(p.t))
        pid.append(names.index(p.name))
        cull.append(p.extra["cull"] if "cull" in p.extra else np.full(len(p.t), p.cull))
        spec.append(p.spec)
        aos.append(p.extra["ao"] if "ao" in p.extra else np.full(len(p.v), 0.9 if p.name == "socket" else 1.0))
        # parts with known normals (the model's: the welded mesh's, no seams between parts; the hair's, cached
        # in the head frame) come first in the list; the rest get one normals pass
        if prefix and ("n" in p.extra or "n_head" in p.extra):
            given.append((off, sum(nfs[:-1]), p.extra["n"] if "n" in p.extra else p.extra["n_head"] @ R_ch.T))
        else:
            prefix = False
        off += len(p.v)
    V = np.concatenate(Vs)
    UV = np.concatenate(UVs)
    TR = np.concatenate(Ts)
    PID = np.repeat(np.array(pid, np.int16), nfs)
    CULL = np.concatenate(cull)
    SPEC = np.repeat(np.array(spec, np.float32), nfs)
    AO = np.concatenate(aos)
    v_given = given[-1][0] + len(given[-1][2]) if given else 0
    t_given = given[-1][1] + nfs[len(given) - 1] if given else 0
    N = np.empty_like(V)
    if len(V) > v_given:
        N[v_given:] = _normals(V[v_given:], TR[t_given:] - v_given)
    for o_, _, n_ in given:
        N[o_:o_ + len(n_)] = n_
    return _Mesh(V=V, UV=UV, TR=TR, PID=PID, CULL=CULL, SPEC=SPEC, AO=AO, N=N, names=names, lens_parts=lens_parts)


# Corneal reflections (0.6.0). The cornea is a wet mirror: every bright source in front of the eye
# shows on it as a small sharp glint (the catchlight of a photograph; in a NIR cabin the illuminator's
# glint that eye trackers find), not as the broad sheen of the rest of the eyeball. Modelled as a
# Blinn-Phong lobe of exponent GLINT_SHINE on the eyeball sphere's normal (the cornea's stronger
# curvature is ignored) over the cornea (the iris disc plus a rim), for each directional light, the
# IR illuminator at the camera, and in daylight and backlight the windshield: a wide bright source
# up and ahead of the driver, seen as a broad soft reflection. A glint narrower than GLINT_MIN_PX
# pixels is widened to that size with its energy kept (the peak scaled by (n' + 1) / (n + 1)), so
# that a render pixel integrates it as a camera pixel would, instead of a point sample that hits or
# misses it.
CORNEA_ANGLE = math.asin(0.0059 / 0.012) + 0.06  # angle from the optical axis on the 12 mm ball (iris + 0.7 mm)
GLINT_SHINE = 400.0
GLINT_GAIN = 2.5  # x the light's mean colour: the peak overexposes, as catchlights do
GLINT_GAIN_IR = 2.0  # x the illuminator's irradiance at the eye
GLINT_MIN_PX = 0.7  # half-width (pixels of the raster) below which a glint is widened
WINDSHIELD = (np.array([0.0, 0.35, 1.0]) / np.linalg.norm([0.0, 0.35, 1.0]), 150.0, 0.35)  # direction (car), exponent, gain
EYE_BALL_M = 0.012


# Glossy upper eyelids (0.9.0). The upper lid is thin, often moist or oily skin stretched over the
# cornea's bulge, and on a closed eye it shows a small highlight where an open eye would show its
# catchlight; real closed eyes that a synthetic-only eye model read as open had one much more often
# than those it read right (docs/renderer.md). Without it the face's broad sheen (SPEC 0.22, exponent
# 24) left every rendered lid matte. A Blinn-Phong lobe of exponent LID_SHINE over the face's skin
# within LID_RADIUS eye widths of each eye opening's centre, fading out below the opening's centre
# line (the upper lid and the brow bone, not the lower lid or the cheek), for each directional light,
# the windshield in daylight and backlight, and the IR illuminator; its strength is drawn per render,
# uniform in [0, LID_GLOSS_MAX] (matte to glossy lids; render info "lid_gloss").
LID_GLOSS_MAX = 2.0
LID_SHINE = 60.0
LID_RADIUS = 0.6  # x the eye opening's width, from its centre
LID_FADE = 0.08  # x the width: below the centre line the gloss fades out over this distance


def lid_gloss(entry: dict) -> float:
    """This render's eyelid gloss (its own seeded draw)."""
    return float(_srng(entry, "lid_gloss").uniform(0.0, LID_GLOSS_MAX))


def _lid_sheen(sc: "_Scene", face_frag: np.ndarray, pos: np.ndarray, nrm: np.ndarray, view: np.ndarray,
               ir_att: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(fragment indices, specular term) of the glossy upper lids; ``face_frag``: fragments of the face's
    skin; ``ir_att``: the IR illuminator's irradiance at each fragment (None without it)."""
    gain = lid_gloss(sc.entry)
    face = np.flatnonzero(face_frag)  # only the face's skin can be a lid: the rest weighs nothing
    if gain <= 0:
        return face[:0], np.zeros(0, np.float32)
    weight = np.zeros(len(face), np.float32)
    fpos = pos[face]
    up = (sc.R_ch @ np.array([0.0, 1.0, 0.0])).astype(np.float32)
    for side in ("right", "left"):
        loop = sc.Vm[sc.fm.eyes[side]["loop"]]
        c = loop.mean(0).astype(np.float32)
        width = float(np.linalg.norm(loop.max(0) - loop.min(0)))
        d = fpos - c
        near = np.clip(1.0 - np.sqrt(np.einsum("pc,pc->p", d, d)) / (LID_RADIUS * width), 0, 1) ** 0.5
        above = np.clip((d @ up) / (LID_FADE * width) + 0.5, 0, 1)
        weight = np.maximum(weight, near * above)
    keep = np.flatnonzero(weight > 0)
    sel, weight = face[keep], weight[keep]
    n, v = nrm[sel], view[sel]
    lobe = np.zeros(len(sel), np.float32)
    for Lw, col in sc.light["dir"]:
        L = (sc.R_cw @ Lw).astype(np.float32)
        lobe += np.clip(_half_cos(n, v, L), 0, None) ** LID_SHINE * np.float32(np.mean(col)) * (n @ L > 0)
    if sc.light["mode"] in ("daylight", "backlight"):
        w = (sc.R_cw @ WINDSHIELD[0]).astype(np.float32)
        lobe += np.clip(_half_cos(n, v, w), 0, None) ** np.float32(40.0) * np.float32(0.5 * float(sc.light["bg"]))
    if ir_att is not None:
        lobe += np.clip(np.einsum("pc,pc->p", n, v), 0, None) ** LID_SHINE * ir_att[sel]
    return sel, (weight * lobe * np.float32(gain)).astype(np.float32)


def _axis_angle(uv: np.ndarray) -> np.ndarray:
    """Angle from the optical axis (radians, on the 12 mm ball the eye atlas is painted for) of eyeball
    atlas coordinates (parts.eyeball's mapping inverted)."""
    cx, cy = P.EYE_RECT[0] + P.EYE_RECT[2] / 2, P.EYE_RECT[1] + P.EYE_RECT[2] / 2
    return np.hypot(uv[:, 0] - cx, uv[:, 1] - cy) / (P.EYE_RECT[2] / 2 - 2) * np.pi * 0.75


def _half_cos(nrm: np.ndarray, view: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Cosine between each fragment's normal and the half vector of the light direction ``L`` and its
    view vector (Blinn-Phong)."""
    h = L[None] + view
    return np.einsum("pc,pc->p", nrm, h) / np.sqrt(np.einsum("pc,pc->p", h, h))


def _lobe(hn: np.ndarray, shine: float, mpp: np.ndarray) -> np.ndarray:
    """Blinn-Phong lobe hn**n of peak 1 at a cap of ``shine`` and widened (energy kept) where its half
    width on the ball (about R sqrt(2 ln 2 / n)) is under GLINT_MIN_PX pixels of ``mpp`` metres each."""
    n_max = 2 * math.log(2) / np.square(GLINT_MIN_PX * mpp / EYE_BALL_M)
    n = np.minimum(np.float32(shine), n_max).astype(np.float32)
    return np.power(np.clip(hn, 0, 1), n) * ((n + 1) / np.float32(shine + 1))  # integral 2 pi / (n + 1)


def _corneal_glints(nrm: np.ndarray, view: np.ndarray, depth: np.ndarray, focal_px: float, light: dict, R_cw: np.ndarray,
                    ir_att: np.ndarray | None) -> np.ndarray:
    """Specular term of cornea fragments (normals, view vectors, camera-frame depths; the raster's
    focal length in pixels; the IR illuminator's irradiance at each, None without it)."""
    g = np.zeros(len(nrm), np.float32)
    mpp = depth / np.float32(focal_px)  # metres per raster pixel at each fragment

    def add(L: np.ndarray, shine: float, gain: float) -> None:
        g[:] += _lobe(_half_cos(nrm, view, L), shine, mpp) * np.float32(gain) * (nrm @ L > 0)

    for Lw, col in light["dir"]:
        add((R_cw @ Lw).astype(np.float32), GLINT_SHINE, GLINT_GAIN * float(np.mean(col)))
    if light["mode"] in ("daylight", "backlight"):
        w, shine, gain = WINDSHIELD
        add((R_cw @ w).astype(np.float32), shine, gain * float(light["bg"]))
    if ir_att is not None:
        g += _lobe(np.einsum("pc,pc->p", nrm, view), GLINT_SHINE, mpp) * ir_att * np.float32(GLINT_GAIN_IR)
    return g


def _shade(sc: _Scene, mesh: _Mesh) -> tuple[np.ndarray, np.ndarray | None, _Raster]:
    """Rasterise, texture (RGB or NIR), light (ambient, directional, IR point source), background, lenses."""
    entry, ss, S, K, light, ir, im, fm = sc.entry, sc.ss, sc.S, sc.K, sc.light, sc.ir, sc.im, sc.fm
    R_cw, C, R_ch, t_ch, acc, Vm = sc.R_cw, sc.C, sc.R_ch, sc.t_ch, sc.acc, sc.Vm
    V, UV, TR, PID, CULL, SPEC, AO, N = mesh.V, mesh.UV, mesh.TR, mesh.PID, mesh.CULL, mesh.SPEC, mesh.AO, mesh.N
    names, lens_parts = mesh.names, mesh.lens_parts
    lf = None
    xy = _project(V, K)
    openings = [_project(Vm[fm.eyes[s]["loop"]], K) for s in ("right", "left")]
    fr = _rasterize_scene(xy, V[:, 2], TR, S, CULL, PID == names.index("eyeball"), openings)
    ip = interpolate(fr, TR, np.concatenate([UV, N, V, AO[:, None]], 1).astype(np.float32))
    uvp, nrm, pos, aop = ip[:, 0:2], ip[:, 2:5], ip[:, 5:8], ip[:, 8]
    nrm /= np.sqrt(np.einsum("pc,pc->p", nrm, nrm))[:, None] + 1e-12
    view = -pos / np.sqrt(np.einsum("pc,pc->p", pos, pos))[:, None]
    ndv = np.einsum("pc,pc->p", nrm, view)
    nrm[ndv < 0] *= -1
    # texture
    tex = _sample_tex(im.atlas_f["nir" if ir else "rgb"], uvp[:, 0], uvp[:, 1])
    part_of_frag = PID[fr.tri]
    if ir and light.get("bright_pupil"):
        eb = names.index("eyeball")
        sel = part_of_frag == eb
        tex[sel & (_axis_angle(uvp) < math.asin(0.0022 / 0.012)), :] = 0.85
    # shading: hemispheric ambient (sky and roof lining above, footwell below) + wrapped Lambert lights;
    # ambient occlusion dims the ambient term only: a light reaches what it shines on (no cast shadows),
    # so a wide-open mouth shows its tongue under the sun or the illuminator at the camera (0.4.2)
    up_c = (R_cw @ np.array([0.0, 1.0, 0.0])).astype(np.float32)
    hemi = np.float32(0.62) + np.float32(0.38) * np.clip(0.5 + 0.5 * (nrm @ up_c), 0, 1)
    shade = (hemi * aop)[:, None] * light["ambient"].astype(np.float32)[None]
    specl = np.zeros(len(fr.pix), np.float32)
    for Lw, col in light["dir"]:
        Lc = (R_cw @ Lw).astype(np.float32)
        d = np.clip((nrm @ Lc + WRAP) / (1 + WRAP), 0, None)
        shade += d[:, None] * col.astype(np.float32)
        specl += (np.clip(_half_cos(nrm, view, Lc), 0, None) ** 24) * np.float32(np.mean(col)) * (d > 0)
    if ir:
        dist = np.sqrt(np.einsum("pc,pc->p", pos, pos))
        att = (0.6 / dist) ** 2 * np.float32(light["point_gain"])
        d = np.clip(np.einsum("pc,pc->p", nrm, view), 0, None)  # light at the camera: L = view
        shade += (d * att)[:, None]
        specl += (d ** 30) * att
    sheen = SPEC[fr.tri] * specl * np.float32(0.35)
    lid, lid_term = _lid_sheen(sc, part_of_frag == names.index("face"), pos, nrm, view, att if ir else None)
    sheen[lid] += lid_term
    cornea = np.flatnonzero(part_of_frag == names.index("eyeball"))
    if len(cornea):
        cornea = cornea[_axis_angle(uvp[cornea]) < CORNEA_ANGLE]
        sheen[cornea] = _corneal_glints(nrm[cornea], view[cornea], pos[cornea, 2], K[0, 0], light, R_cw,
                                        att[cornea] if ir else None)
    if ir:
        tex, shade = tex[:, :1], shade[:, :1]
    colr = tex * shade + sheen[:, None]
    bg, glow = _background(entry, S, ss, R_cw, C, K)
    img = bg.reshape(S * S, -1).copy()
    img[fr.pix] = colr
    zbuf = fr.depth_image()
    tri_img = fr.tri_image()
    # ---- lenses (transparent layer)
    lens_T = None
    if lens_parts:
        dark = acc == "sunglasses"
        lrng = _srng(entry, "lens")
        if ir:
            lens_T = float(lrng.uniform(0.7, 0.95)) if (not dark or lrng.uniform() < 0.85) else float(lrng.uniform(0.05, 0.15))
        else:
            lens_T = 0.12 if dark else 0.93
        lv = [(p.v @ R_ch.T + t_ch, p.t) for p in lens_parts]
        Lv = np.concatenate([a for a, _ in lv])
        Lt = np.concatenate([t + sum(len(a) for a, _ in lv[:i]) for i, (_, t) in enumerate(lv)])
        lf = rasterize(_project(Lv, K), Lv[:, 2], Lt, S, S, None)
        front = lf.depth < zbuf.reshape(-1)[lf.pix]
        pix = lf.pix[front]
        tint = (np.array([0.10, 0.11, 0.12]) if dark else np.array([0.85, 0.9, 0.95])) * (0.6 if not ir else 0.5)
        if ir:
            tint = tint[:1]
        refl = 0.06 * (light["bg"] if not ir else 0.2)
        img[pix] = img[pix] * lens_T + ((1 - lens_T) * tint * float(np.mean(light["ambient"]) + 0.3) + refl).astype(np.float32)
    return img, glow, _Raster(fr=fr, zbuf=zbuf, tri_img=tri_img, lens_T=lens_T, lf=lf)


# Auto-exposure with face priority, as a DMS camera's is driven (the face box steers the exposure): the
# metered level is 80 % the face's mean luminance and 20 % the frame's, brought to a mid-grey target drawn
# per sample; the gain may move from the lighting's nominal exposure by AE_RANGE at most, so the darkest
# cabins stay dark and a backlit face stays darker than the window behind it. Sensor noise grows with the
# square root of the gain ratio (read noise is amplified, shot noise follows the light gathered).
AE_FACE_WEIGHT = 0.8
AE_TARGET = (100.0, 135.0)  # 8-bit level of the metered mean
AE_RANGE = (0.4, 4.0)  # gain / nominal gain


def _channel_mean(img: np.ndarray) -> np.ndarray:
    """``img.mean(axis=2)`` of an (H, W, 3) float32 image, bit for bit ((c0 + c1) + c2, then / 3 in
    float32: the order NumPy sums a short last axis in, `tests/test_renderer.py` holds it to NumPy's),
    ~20x faster: NumPy reduces a length-3 last axis with strided passes (2 ms for a 256 x 256 image)."""
    return ((img[..., 0] + img[..., 1]) + img[..., 2]) / np.float32(3)


def _auto_exposure(entry: dict, img: np.ndarray, face_px: np.ndarray, nominal: float) -> dict:
    luma = _channel_mean(img) if img.shape[2] == 3 else img[..., 0]
    frame = float(luma.mean())
    metered = AE_FACE_WEIGHT * float(luma[face_px].mean()) + (1 - AE_FACE_WEIGHT) * frame if face_px.any() else frame
    target = float(_srng(entry, "exposure").uniform(*AE_TARGET))
    ratio = float(np.clip(target / max(metered * nominal, 1e-6), *AE_RANGE))
    return {"mode": "face_priority", "target": round(target, 2), "metered": round(metered * nominal, 2),
            "gain_ratio": round(ratio, 4), "limited": bool(ratio in AE_RANGE)}


def _finish(sc: _Scene, img: np.ndarray, glow: np.ndarray | None, face_px: np.ndarray) -> tuple[np.ndarray, dict]:
    """Supersampled float image -> the uint8 image and its exposure record: auto-exposure, blur,
    resample, sensor noise."""
    entry, ss, S, size, light, ir = sc.entry, sc.ss, sc.S, sc.size, sc.light, sc.ir
    img = img.reshape(S, S, -1)
    # ---- post
    if glow is not None:
        img = img + glow
    nominal = 255.0 * light.get("exposure", 1.0)
    ae = _auto_exposure(entry, img, face_px, nominal)
    gain = nominal * ae["gain_ratio"]
    img = cv2.GaussianBlur(img, (0, 0), 0.55 * ss)
    if img.ndim == 2:
        img = img[..., None]
    if ss > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[..., None]
    noise = _noise(entry, size, 1 if ir else 3)
    out = img * np.float32(gain) + noise * np.float32(light["noise"] * math.sqrt(ae["gain_ratio"])) + np.float32(0.5)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out, ae


def _landmarks_and_info(sc: _Scene, mesh: _Mesh, ras: _Raster, out: np.ndarray, part_ids: np.ndarray) -> RenderResult:
    """478 + iBUG-68 landmarks projected with visibility, bbox, depth, part ids, and the recorded render info."""
    entry, ss, S, size, K, cam, light, im, fm = sc.entry, sc.ss, sc.S, sc.size, sc.K, sc.cam, sc.light, sc.im, sc.fm
    hp, R_cw, C, R_ch, t_ch, Rg_eye, v = sc.hp, sc.R_cw, sc.C, sc.R_ch, sc.t_ch, sc.Rg_eye, sc.v
    expr_w, face, mouth_mm, eye_pts = sc.expr_w, sc.face, sc.mouth_mm, sc.eye_pts
    PID, names, lens_parts = mesh.PID, mesh.names, mesh.lens_parts
    zbuf, tri_img, lens_T, lf = ras.zbuf, ras.tri_img, ras.lens_T, ras.lf
    # ---- landmarks (478 MediaPipe refined order) and the iBUG-68 points, with visibility
    lm_head = np.concatenate([face, eye_pts["right"], eye_pts["left"]])
    ib_head = fm.ibug68(v)
    self_ids = np.array([names.index(n) for n in SELF_PARTS if n in names])
    eb_id = names.index("eyeball")
    lens_img = (lf.tri_image(), lf.depth_image()) if (lens_parts and lens_T is not None and lens_T < 0.5) else None

    def project_and_test(pts_head: np.ndarray, n_surface: int):
        pc = pts_head @ R_ch.T + t_ch
        pss = _project(pc, K)
        ix = np.floor(pss[:, 0]).astype(int)
        iy = np.floor(pss[:, 1]).astype(int)
        inside = (ix >= 0) & (iy >= 0) & (ix < S) & (iy < S) & (pc[:, 2] > 0)
        ixc, iyc = ix.clip(0, S - 1), iy.clip(0, S - 1)
        t_at = tri_img[iyc, ixc]
        zb = zbuf[iyc, ixc]
        part_at = PID[t_at.clip(0)]
        z = pc[:, 2]
        vis = (np.isin(part_at, self_ids) & (zb > z - 0.005)) | (zb > z)
        vis[n_surface:] = (part_at[n_surface:] == eb_id) & (zb[n_surface:] > z[n_surface:] - 0.004)
        # hidden by something that is not the face itself (hand, mask, phone, hair), as opposed to the
        # face hiding its own far side in a turned head
        covered = inside & (t_at >= 0) & ~np.isin(part_at, self_ids) & ~(zb > z)
        vis = inside & ((t_at < 0) | vis)
        if lens_img is not None:
            lt, ld = lens_img[0][iyc, ixc], lens_img[1][iyc, ixc]
            vis &= ~((lt >= 0) & (ld < z))
        return pc, (pss / ss).astype(np.float32), vis, covered

    lm_cam, lm, vis, covered = project_and_test(lm_head, 468)
    ib_cam, ib, ib_vis, _ = project_and_test(ib_head, 68)
    pts = lm[:468]
    x0, y0 = np.clip(pts.min(0), 0, size)
    x1, y1 = np.clip(pts.max(0), 0, size)
    depth = zbuf if ss == 1 else cv2.resize(zbuf, (size, size), interpolation=cv2.INTER_NEAREST)
    if ss > 1:
        part_ids = cv2.resize(part_ids, (size, size), interpolation=cv2.INTER_NEAREST)
    # ---- labels
    y_c, p_c, r_c = camera_euler(R_ch)
    gaze = {}
    for side in ("left", "right"):
        gh = Rg_eye[side] @ np.array([0, 0, 1.0])
        gc = R_ch @ gh
        rel = F_FLIP.T @ gc
        gaze[side] = [float(x) for x in gc]
        gaze[f"{side}_yaw_pitch_deg"] = [math.degrees(math.atan2(rel[0], rel[2])), math.degrees(math.asin(np.clip(rel[1], -1, 1)))]
    ap = {"right": float(np.linalg.norm(face[159] - face[145]) * 1000), "left": float(np.linalg.norm(face[386] - face[374]) * 1000)}
    info = {
        "renderer_version": RENDERER_VERSION,
        "head_pose_camera": {"yaw": y_c, "pitch": p_c, "roll": r_c, "rotation_matrix": R_ch.tolist(), "translation_m": t_ch.tolist()},
        "head_pose_car": {k: float(hp[k]) for k in ("yaw", "pitch", "roll")},
        "euler_convention": "R = Ry(yaw) Rx(-pitch) Rz(-roll); camera angles from F^T R_cam_head, F = diag(1,-1,-1)",
        "intrinsics": {"K": cam["K"].tolist(), "image_size": size, "fov_deg": float(entry["camera"]["fov_deg"])},
        "camera_pose_car": {"position_m": C.tolist(), "R_cam_car": R_cw.tolist(), "mount": entry["camera"]["mount"]},
        "gaze_camera": gaze,
        "eye_aperture_mm": ap,
        "mouth_opening_mm": mouth_mm,
        # the 40 lip landmarks (outer + inner contour): how many are visible and how many are covered by
        # something that is not the face (a hand over the mouth, a mask); those a turned head hides
        # behind its own far side are neither (labels.mouth.visible)
        "lip_points": {"of": len(LIPS), "visible": int(vis[LIPS].sum()), "covered": int(covered[LIPS].sum())},
        # each eye's 16 lid-contour landmarks, counted alike: those outside the frame, behind the head's own
        # far side, hair, a hand, a phone or a dark lens are not visible (labels.eyes.<side>.visible)
        "eye_points": {side: {"of": len(c), "visible": int(vis[c].sum()), "covered": int(covered[c].sum())}
                       for side, c in (("right", P.EYE_R_CONTOUR), ("left", P.EYE_L_CONTOUR))},
        "expression": {k: round(float(x), 4) for k, x in sorted(expr_w.items())},
        "face_model": {"source": "ICT-FaceKit", "commit": fm.provenance["source"]["commit"], "content_sha256": fm.provenance.get("content_sha256")},
        "identity": {**im.info, "code": dict(im.code_rounded)},
        "lighting": {"mode": light["mode"], "bright_pupil": bool(light.get("bright_pupil", False)), "noise_sigma": float(light["noise"])},
        "lens_transmittance": lens_T,
        "glasses": dict(im.glasses_style) if entry.get("accessory") in ("glasses", "sunglasses") else None,
        "lid_gloss": round(lid_gloss(entry), 4),
        "supersample": ss,
    }
    return RenderResult(out, lm, vis, lm_cam.astype(np.float32), (float(x0), float(y0), float(x1), float(y1)),
                        depth.astype(np.float32), info, lm_head.astype(np.float32), part_ids, tuple(names),
                        ib, ib_vis, ib_cam.astype(np.float32))
