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

import cv2
import numpy as np

from dmsfactory.conditions import ACCESSORIES, LIGHTING

from . import parts as P
from . import topology as T
from .config import ProceduralConfig
from .identity import identity_code, identity_shape
from .raster import Fragments, interpolate, rasterize
from .texture import build_atlas, face_uv

RENDERER_VERSION = "procedural-0.3.1"  # 0.3.1: vergence, side parting, anthropometric IPD
PIVOT_IN_HEAD = np.array([0.0, -0.065, -0.075])
F_FLIP = np.diag([1.0, -1.0, -1.0])

MOUNTS = {  # direction from the head towards the camera in the car frame (x left, y up, z forward)
    "steering_column": (0.0, -0.33, 1.0),
    "rearview_mirror": (-0.62, 0.22, 1.0),
    "a_pillar": (0.62, 0.18, 1.0),
    "center_stack": (-0.55, -0.50, 1.0),
}
YAWNS = ("none", "yawning_without_hand", "yawning_with_hand")


class PlanEntryError(ValueError):
    """An invalid plan entry; ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, msg: str):
        super().__init__(f"{field}: {msg}")
        self.field = field


# ----------------------------------------------------------------------------- rotations
def Rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def Ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def Rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def euler_to_R(yaw: float, pitch: float, roll: float) -> np.ndarray:
    d = math.radians
    return Ry(d(yaw)) @ Rx(-d(pitch)) @ Rz(-d(roll))


def R_to_euler(R: np.ndarray) -> tuple[float, float, float]:
    p_ = math.asin(float(np.clip(-R[1, 2], -1, 1)))
    r_ = math.atan2(R[1, 0], R[1, 1])
    y = math.atan2(R[0, 2], R[2, 2])
    return math.degrees(y), -math.degrees(p_), -math.degrees(r_)


def camera_euler(R_cam_head: np.ndarray) -> tuple[float, float, float]:
    return R_to_euler(F_FLIP.T @ R_cam_head)


# ----------------------------------------------------------------------------- validation
def _num(e, path, lo=None, hi=None):
    cur = e
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise PlanEntryError(path, "missing")
        cur = cur[k]
    try:
        x = float(cur)
    except (TypeError, ValueError):
        raise PlanEntryError(path, f"not a number: {cur!r}") from None
    if not math.isfinite(x):
        raise PlanEntryError(path, f"must be finite, got {cur!r}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise PlanEntryError(path, f"{x} outside [{lo}, {hi}]")
    return x


def validate(entry: dict) -> None:
    """Raise :class:`PlanEntryError` (a ValueError) naming the field; called before rendering."""
    if not isinstance(entry, dict):
        raise PlanEntryError("entry", "plan entry must be a dict")
    for k in ("identity_seed", "sample_seed"):
        if not isinstance(entry.get(k), int) or isinstance(entry.get(k), bool):
            raise PlanEntryError(k, f"must be an int, got {entry.get(k)!r}")
    if entry.get("lighting") not in LIGHTING:
        raise PlanEntryError("lighting", f"unknown {entry.get('lighting')!r}; allowed {LIGHTING}")
    if entry.get("accessory", "none") not in ACCESSORIES:
        raise PlanEntryError("accessory", f"unknown {entry.get('accessory')!r}; allowed {ACCESSORIES}")
    cam = entry.get("camera")
    if not isinstance(cam, dict):
        raise PlanEntryError("camera", "missing")
    if cam.get("mount") not in MOUNTS:
        raise PlanEntryError("camera.mount", f"unknown {cam.get('mount')!r}; allowed {tuple(MOUNTS)}")
    _num(entry, "camera.fov_deg", 10, 120)
    _num(entry, "camera.distance_m", 0.2, 3.0)
    size = _num(entry, "camera.image_size", 32, 4096)
    if size != int(size):
        raise PlanEntryError("camera.image_size", "must be an integer")
    for k in ("eye_openness_left", "eye_openness_right", "mouth_open", "brow_raise", "smile"):
        _num(entry, f"state.{k}", 0.0, 1.0)
    if entry["state"].get("yawn", "none") not in YAWNS:
        raise PlanEntryError("state.yawn", f"unknown {entry['state'].get('yawn')!r}")
    for a, lim in (("yaw", 90), ("pitch", 60), ("roll", 60)):
        _num(entry, f"head_pose_car.{a}", -lim, lim)
    for a in ("yaw", "pitch"):
        _num(entry, f"gaze_in_head.{a}", -45, 45)
    if entry["gaze_in_head"].get("distance_m") is not None:
        _num(entry, "gaze_in_head.distance_m", 0.2, 100.0)
    ip = entry.get("identity_params")
    if not isinstance(ip, dict):
        raise PlanEntryError("identity_params", "missing")
    if ip.get("sex") not in ("female", "male"):
        raise PlanEntryError("identity_params.sex", f"unknown {ip.get('sex')!r}")
    _num(entry, "identity_params.age", 10, 100)
    if ip.get("skin_tone") not in (1, 2, 3, 4, 5, 6):
        raise PlanEntryError("identity_params.skin_tone", f"must be 1..6, got {ip.get('skin_tone')!r}")
    mix = ip.get("mixup")
    if mix is not None:
        if not isinstance(mix, dict):
            raise PlanEntryError("identity_params.mixup", "must be a dict or null")
        _num(entry, "identity_params.mixup.lam", 0.0, 1.0)
        for k in ("a_seed", "b_seed"):
            if not isinstance(mix.get(k), int):
                raise PlanEntryError(f"identity_params.mixup.{k}", "must be an int")
    ph = entry.get("phone")
    if ph is not None:
        if not isinstance(ph, dict) or ph.get("hand") not in ("left", "right") or ph.get("use") not in ("call", "texting"):
            raise PlanEntryError("phone", f"must be null or {{hand: left|right, use: call|texting}}, got {ph!r}")


# ----------------------------------------------------------------------------- identity cache
class IdentityModel:
    """Everything that depends only on the identity, built once and cached (LRU) per worker."""

    def __init__(self, seed: int, params: dict):
        self.code, self.info = identity_code(seed, params)
        self.face0 = identity_shape(self.code)
        self.rgb, self.nir = build_atlas(self.code)
        self.atlas_f = {"rgb": self.rgb.astype(np.float32) / 255.0, "nir": self.nir.astype(np.float32)[..., None] / 255.0}
        self.sp = P.skull_params(self.face0)
        self.ears = [P.ear(self.face0, self.sp, s, self.code["ear_size"], self.code["ear_angle"]) for s in ("right", "left")]
        self.hair = P.hair(self.face0, self.sp, self.code)
        self.hair_under_cap = None
        if self.hair is not None:
            h = self.hair
            keep = h.v[h.t].mean(1)[:, 1] < self.sp["c"][1] + 0.035
            self.hair_under_cap = P.Part("hair", h.v, h.t[keep], h.uv, cull=False, spec=0.5, occluder=True)
        self.eyes = {s: P.eye_geometry(self.face0, s) for s in ("right", "left")}
        self.eyeballs = {s: P.eyeball(np.zeros(3), R)[0] for s, (c, R) in self.eyes.items()}
        self.lid = _lid_weights(self.face0)
        self.lid_push = {}
        for side in ("right", "left"):
            U, L, iu, il = self.lid[side]
            idx = list(U) + [k for k, _, _ in iu]
            wts = [1.0] * len(U) + [w for _, _, w in iu]
            self.lid_push[side] = (np.array(idx), np.array(wts))
        self.skull0 = P.skull(self.face0, self.sp)
        self.oval = np.array(T.FACE_OVAL)
        self.fans = {}
        for side, contour in (("right", P.EYE_R_CONTOUR), ("left", P.EYE_L_CONTOUR)):
            self.fans[side] = P.fan(self.face0, contour, 0.010, "socket", "socket")
        m = P.fan(self.face0, P.MOUTH_CONTOUR, 0.022, "mouth", "mouth")
        m.uv[1:10] = P.swatch_uv("teeth")
        self.fans["mouth"] = m
        self._acc: dict = {}
        self._neck_t = None

    def skull(self, face: np.ndarray) -> "P.Part":
        d = face[self.oval] - self.face0[self.oval]
        sk = self.skull0
        if not d.any():
            return sk
        n = len(self.oval)
        K = (len(sk.v) - 1) // n
        w = np.maximum(0.0, 1.0 - np.arange(K) / K * 2.5)
        v = sk.v.copy()
        v[: K * n] += (w[:, None, None] * d[None]).reshape(-1, 3)
        return P.Part("skull", v, sk.t, sk.uv)

    def fan(self, key: str, face: np.ndarray, contour: np.ndarray, depth: float) -> "P.Part":
        f = self.fans[key]
        pts = face[contour]
        v = np.concatenate([pts, (pts.mean(0) + np.array([0, 0, -depth]))[None]])
        return P.Part(f.name, v, f.t, f.uv, cull=False)

    def accessory(self, acc: str, face: np.ndarray, face_n: np.ndarray) -> list:
        if acc == "mask":
            if "mask" not in self._acc:
                self._acc["mask"] = _mask_model(self.face0)
            return [_mask_part(self._acc["mask"], face, face_n)]
        if acc not in self._acc:
            if acc in ("glasses", "sunglasses"):
                self._acc[acc] = P.glasses(self.face0, self.sp, acc == "sunglasses")
            elif acc == "cap":
                self._acc[acc] = P.cap(self.sp)
            else:
                self._acc[acc] = []
        return self._acc[acc]


def _mask_model(face0: np.ndarray) -> dict:
    """Vertex selection + neighbour-averaging matrix of the surgical mask (identity-level cache)."""
    tris = T.triangles()
    y_top = face0[6, 1] - 0.004
    sel = (face0[:, 1] < y_top) & (np.abs(face0[:, 0]) < 0.068)
    t = tris[sel[tris].all(1)]
    used = np.unique(t)
    remap = -np.ones(len(face0), np.int64)
    remap[used] = np.arange(len(used))
    tl = remap[t]
    n = len(used)
    A = np.zeros((n, n))
    for a, b, c in tl:
        A[a, b] += 1; A[a, c] += 1; A[b, a] += 1; A[b, c] += 1; A[c, a] += 1; A[c, b] += 1
    deg = A.sum(1)
    A[deg == 0, deg == 0] = 1.0
    A /= A.sum(1, keepdims=True)
    uvx = np.full(n + 1, P.swatch_uv("mask")[0])
    # the face mesh has a hole at the mouth: close it with a fan around an extra centre vertex (n)
    mc = remap[P.MOUTH_CONTOUR]
    mc = mc[mc >= 0]
    fan = np.array([(mc[i], mc[(i + 1) % len(mc)], n) for i in range(len(mc))], np.int64)
    return {"used": used, "t": np.concatenate([tl, fan]), "A": A, "uvx": uvx, "mouth": mc}


def _mask_part(m: dict, face: np.ndarray, normals: np.ndarray) -> "P.Part":
    used, A = m["used"], m["A"]
    nu = normals[used]
    base = face[used] + nu * 0.004
    v = base.copy()
    for _ in range(10):  # smooth: the mask spans the nose-cheek and lip concavities, staying outside the skin
        v = 0.5 * v + 0.5 * (A @ v)
        push = np.clip(((base - v) * nu).sum(1), 0, None)
        v += nu * push[:, None]
    v = np.concatenate([v, v[m["mouth"]].mean(0, keepdims=True) + [0.0, 0.0, 0.002]])
    v[:, 2] += 0.002
    uv = np.stack([np.clip(m["uvx"] + v[:, 0] * 80, P.SWATCH_RECT[0] + 6 * 16 + 1, P.SWATCH_RECT[0] + 7 * 16 - 1),
                   np.full(len(v), P.swatch_uv("mask")[1])], 1)
    return P.Part("mask", v, m["t"], uv, cull=False, spec=0.05, occluder=True)


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
def _lid_weights(face: np.ndarray) -> dict:
    """For each eye: upper/lower interior contour indices and per-vertex (index, contour j, weight)."""
    out = {}
    brows = set(T.R_BROW + T.L_BROW)
    for side, up, lo in (("right", T.R_EYE_UPPER, T.R_EYE_LOWER), ("left", T.L_EYE_UPPER, T.L_EYE_LOWER)):
        U = np.array(up[1:-1])
        L = np.array(lo[1:-1])
        contour = set(up) | set(lo)
        items_u, items_l = [], []
        for k in range(468):
            if k in contour or k in brows:
                continue
            du = np.linalg.norm(face[U] - face[k], axis=1)
            j = int(np.argmin(du))
            if face[k, 1] > face[U[j], 1] and du[j] < 0.0095:
                items_u.append((k, j, (1 - du[j] / 0.0095) ** 1.5))
            dl = np.linalg.norm(face[L] - face[k], axis=1)
            j = int(np.argmin(dl))
            if face[k, 1] < face[L[j], 1] and dl[j] < 0.005:
                items_l.append((k, j, (1 - dl[j] / 0.005) ** 2))
        out[side] = (U, L, items_u, items_l)
    return out


def _jaw_weights() -> np.ndarray:
    v = T.mean_shape()["vertices"]
    yl = -0.0566
    s = np.clip((yl - v[:, 1] - 0.0008) / 0.010, 0, 1)
    w = s * s * (3 - 2 * s) * (1 - 0.35 * np.clip((np.abs(v[:, 0]) - 0.04) / 0.025, 0, 1))
    w[list(T.LOWER_LIP_INNER[1:-1])] = 1.0
    w[list(T.UPPER_LIP_INNER[1:-1])] = 0.0
    w[[78, 308]] = 0.45
    w[[61, 291]] = 0.35
    return w


_JAW = None


def apply_expression(face0: np.ndarray, st: dict, im: IdentityModel) -> np.ndarray:
    global _JAW
    if _JAW is None:
        _JAW = _jaw_weights()
    v = face0.copy()
    hs = im.code.get("head_size", 1.0)
    m = st["mouth_open"]
    if m > 0:
        ang = m * 0.40
        piv = np.array([0.0, -0.035, -0.075]) * hs
        rot = Rx(ang)
        moved = (v - piv) @ rot.T + piv
        v = v + _JAW[:, None] * (moved - v)
    sm = st["smile"]
    if sm > 0:
        for c, s in ((61, -1), (291, 1)):
            d = np.linalg.norm(face0 - face0[c], axis=1)
            w = np.exp(-(d**2) / (2 * 0.012**2))
            v += sm * w[:, None] * np.array([s * 0.004, 0.0035, -0.002])
            ck = face0[c] + np.array([s * 0.012, 0.02, 0.0])
            d = np.linalg.norm(face0 - ck, axis=1)
            v += sm * np.exp(-(d**2) / (2 * 0.013**2))[:, None] * np.array([0.0, 0.002, 0.0012])
    b = st["brow_raise"]
    if b > 0:
        y = face0[:, 1] / hs
        s_ = np.clip((y - 0.009) / 0.009, 0, 1)
        w = s_ * s_ * (3 - 2 * s_) * np.exp(-np.clip(y - 0.025, 0, None) / 0.025)
        v += b * w[:, None] * np.array([0.0, 0.006, 0.0006])
    rest = float(im.code.get("lid_rest", 1.0))  # openness 1 = this identity's relaxed lid height
    for side, o in (("right", st["eye_openness_right"] * rest), ("left", st["eye_openness_left"] * rest)):
        if o >= 1.0:
            continue
        U, L, iu, il = im.lid[side]
        gap = v[U] - v[L]
        bulge = np.sin(np.linspace(1, len(U), len(U)) / (len(U) + 1) * np.pi)[:, None] * np.array([0, 0, 0.0028])
        M = v[L] + 0.12 * gap + bulge
        Du = (1 - o) * (M - v[U])
        Dl = (1 - o) * (M - v[L])
        for k, j, w in iu:
            v[k] += w * Du[j] * np.array([1, 0.85, 1])
        for k, j, w in il:
            v[k] += w * Dl[j]
        v[U] += Du
        v[L] += Dl
        # lids slide over the eyeball: keep the moving lid (and the skin it drags) outside the
        # sphere + 0.6 mm, so the closed lid hides the whole eyeball (no sclera at the corners)
        c, R = im.eyes[side]
        idx, wts = im.lid_push[side]
        d = v[idx] - c
        r = np.linalg.norm(d, axis=1)
        out = np.maximum(R + 0.0006 - r, 0.0) * wts * min(1.0, (1.0 - o) * 4.0)
        v[idx] += d / r[:, None] * out[:, None]
    return v


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


def _normals(v: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (one bincount per axis)."""
    a, b, c = v[t[:, 0]], v[t[:, 1]], v[t[:, 2]]
    e1, e2 = b - a, c - a
    fn = np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1], e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                   e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], 1)
    flat = t.ravel()
    n = np.stack([np.bincount(flat, np.repeat(fn[:, k], 3), minlength=len(v)) for k in range(3)], 1)
    n /= np.sqrt((n * n).sum(1, keepdims=True)) + 1e-12
    return n


def _face_ao() -> np.ndarray:
    global _AO
    if _AO is None:
        v = T.mean_shape()["vertices"]
        t = T.triangles()
        n = _normals(v, t)
        e = T.edges()
        acc = np.zeros_like(v)
        cnt = np.zeros(len(v))
        np.add.at(acc, e[:, 0], v[e[:, 1]])
        np.add.at(acc, e[:, 1], v[e[:, 0]])
        np.add.at(cnt, e[:, 0], 1)
        np.add.at(cnt, e[:, 1], 1)
        lap = acc / cnt[:, None] - v
        conc = (lap * n).sum(1)  # > 0: concave
        ao = 1 - np.clip(conc / 0.0012, 0, 1) * 0.35
        ao[[2, 98, 327, 94, 19, 64, 294, 60, 290, 79, 309]] *= 0.8  # nostrils / under the nose
        _AO = ao
    return _AO


_AO = None
WRAP = np.float32(0.5)  # wrapped diffuse (n.l + w) / (1 + w): light bleeds past the terminator as in skin
_EYE_AO = 0.18  # occlusion at an open eye's lid margin (none once the lids meet)


def _eye_ao(ao: np.ndarray, st: dict) -> np.ndarray:
    """Darken the lid margins by the eye's openness: an open eye's margin sits in the socket's shadow,
    a closed lid is smooth skin (a dark band there reads as a narrow open eye)."""
    ao = ao.copy()
    for side, up, lo in (("right", T.R_EYE_UPPER, T.R_EYE_LOWER), ("left", T.L_EYE_UPPER, T.L_EYE_LOWER)):
        ao[list(up) + list(lo)] *= 1.0 - _EYE_AO * min(1.0, float(st[f"eye_openness_{side}"]))
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
        bg = bg.mean(2, keepdims=True)
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
SELF_PARTS = {"face", "socket", "eyeball", "mouth", "skull", "ear_right", "ear_left"}


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


def _rasterize_scene(xy: np.ndarray, z: np.ndarray, TR: np.ndarray, S: int, cull: np.ndarray, is_eyeball: np.ndarray) -> Fragments:
    """Rasterise the scene; eyeballs are seen only through the eye openings.

    An eyeball is a sphere behind the lids; where a thin lower lid or a sunken cheek lets the
    sphere poke through the skin, a z-buffer alone would show sclera outside the eye. So the
    eyeballs are rasterised separately and win a pixel only inside the projected eye contour
    (face vertices 0-467 come first in ``xy``) and in front of the rest of the scene there."""
    rest = np.nonzero(~is_eyeball)[0]
    eb = np.nonzero(is_eyeball)[0]
    fa = rasterize(xy, z, TR[rest], S, S, cull[rest])
    fa.tri = rest[fa.tri]
    if not len(eb):
        return fa
    fb = rasterize(xy, z, TR[eb], S, S, cull[eb])
    mask = np.zeros((S, S), np.uint8)
    for contour in (P.EYE_R_CONTOUR, P.EYE_L_CONTOUR):
        cv2.fillPoly(mask, [np.round(xy[contour] * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    da = fa.depth_image().reshape(-1)
    win = (mask.reshape(-1)[fb.pix] > 0) & (fb.depth < da[fb.pix])
    if not win.any():
        return fa
    keep = np.ones(len(fa.pix), bool)
    owner = np.full(S * S, -1, np.int64)
    owner[fa.pix] = np.arange(len(fa.pix))
    o = owner[fb.pix[win]]
    keep[o[o >= 0]] = False
    pix = np.concatenate([fa.pix[keep], fb.pix[win]])
    order = np.argsort(pix, kind="stable")
    return Fragments(pix[order], np.concatenate([fa.tri[keep], eb[fb.tri[win]]])[order],
                     np.concatenate([fa.b[keep], fb.b[win]])[order], np.concatenate([fa.depth[keep], fb.depth[win]])[order], S, S)


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


def render(entry: dict, config: ProceduralConfig | None = None) -> RenderResult:
    config = config or ProceduralConfig()
    validate(entry)
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
    st = entry["state"]
    hs = im.code.get("head_size", 1.0)
    face = apply_expression(im.face0, st, im)
    hp = entry["head_pose_car"]
    R_wh = euler_to_R(float(hp["yaw"]), float(hp["pitch"]), float(hp["roll"]))
    t_wh = -R_wh @ (PIVOT_IN_HEAD * hs)
    R_cw, C = cam["R_cw"], cam["C"]
    R_ch = R_cw @ R_wh
    t_ch = R_cw @ (t_wh - C)
    Rg_eye = eye_rotations(im.eyes, entry["gaze_in_head"])
    acc = entry.get("accessory", "none")
    ftris = T.triangles()

    parts: list[P.Part] = [P.Part("face", face, ftris, face_uv(), spec=0.22)]
    parts.append(im.skull(face))
    parts += im.ears
    if im.hair is not None:
        parts.append(im.hair if acc != "cap" else im.hair_under_cap)
    eye_pts = {}
    for side, contour in (("right", P.EYE_R_CONTOUR), ("left", P.EYE_L_CONTOUR)):
        parts.append(im.fan(side, face, contour, 0.010))
        c, R = im.eyes[side]
        tpl = im.eyeballs[side]
        o = float(st[f"eye_openness_{side}"])
        sink = np.array([0.0, 0.0, -0.0015 * (1.0 - o) ** 2])  # a closing eye's ball never pokes through the lid skin
        parts.append(P.Part("eyeball", tpl.v @ Rg_eye[side].T + c + sink, tpl.t, tpl.uv, spec=tpl.spec))
        eye_pts[side] = iris_points(c, R, Rg_eye[side])
    parts.append(im.fan("mouth", face, P.MOUTH_CONTOUR, 0.022))
    if acc == "mask":
        parts += im.accessory(acc, face, _normals(face, ftris))
    elif acc != "none":
        parts += im.accessory(acc, face, None)
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
            parts += P.hand(pc + lat * 0.022 + np.array([0, -0.045, 0.0]), Rh)
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
            world_parts += P.hand(pc - nrm * 0.02 + np.array([0, -0.02, 0]), Rp)
            world_parts.append(P.tube(pc - nrm * 0.02 + np.array([0, -0.06, -0.03]), np.array([s * 0.2, -0.75, -0.05]), 0.03, 0.045, name="arm", occluder=True))
    if st.get("yawn") == "yawning_with_hand":
        s = -1.0 if srng.uniform() < 0.6 else 1.0
        lip = face[[13, 14]].mean(0)
        Rh = np.stack([np.array([0.0, 1.0, 0]), np.array([-s, 0.3, 0]) / np.linalg.norm([1, 0.3]), np.array([0, 0, -1.0])], 1)
        Rh[:, 0] = np.cross(Rh[:, 1], Rh[:, 2])
        hc = lip + np.array([s * 0.02, -0.005, 0.038])
        parts += P.hand(hc, Rh)
        parts.append(P.tube(hc + np.array([s * 0.05, -0.03, 0.0]), hc + np.array([s * 0.12, -0.30, -0.02]), 0.028, 0.04, name="arm", occluder=True))
    if im._neck_t is None:  # triangle orientation from the neutral pose (order-independent cache)
        im._neck_t = P.neck(im.face0, im.sp, np.eye(3), -PIVOT_IN_HEAD * hs).t
    neck = P.neck(face, im.sp, R_wh, t_wh, tris=im._neck_t)
    world_parts.append(neck)
    world_parts += _torso_parts(hs)

    # ---- assemble in the camera frame (one array per attribute)
    Vs, UVs, Ts, pid, cull, spec, aos = [], [], [], [], [], [], []
    lens_parts = []
    names: list[str] = []
    off = 0
    tc_h, tc_w = t_ch, -R_cw @ C
    for p, head in [(p, True) for p in parts] + [(p, False) for p in world_parts]:
        if p.name == "lens":
            lens_parts.append(p)
            continue
        Vs.append(p.v @ (R_ch if head else R_cw).T + (tc_h if head else tc_w))
        if p.name not in names:
            names.append(p.name)
        UVs.append(p.uv)
        Ts.append(p.t + off)
        nf = len(p.t)
        pid.append(np.full(nf, names.index(p.name), np.int16))
        cull.append(np.full(nf, p.cull))
        spec.append(np.full(nf, p.spec, np.float32))
        aos.append(_eye_ao(_face_ao(), st) if p.name == "face" else np.full(len(p.v), 0.9 if p.name in ("socket", "mouth") else 1.0))
        off += len(p.v)
    V = np.concatenate(Vs)
    UV = np.concatenate(UVs)
    TR = np.concatenate(Ts)
    PID = np.concatenate(pid)
    CULL = np.concatenate(cull)
    SPEC = np.concatenate(spec)
    AO = np.concatenate(aos)
    N = _normals(V, TR)
    # face/skull seam: shared normals along the face oval (skull ring 0 = face oval)
    oval = im.oval
    m = N[oval] + N[468:468 + len(oval)]
    m /= np.linalg.norm(m, axis=1, keepdims=True) + 1e-12
    N[oval] = m
    N[468:468 + len(oval)] = m
    xy = _project(V, K)
    fr = _rasterize_scene(xy, V[:, 2], TR, S, CULL, PID == names.index("eyeball"))
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
        cx, cy = P.EYE_RECT[0] + P.EYE_RECT[2] / 2, P.EYE_RECT[1] + P.EYE_RECT[2] / 2
        rpx = np.hypot(uvp[:, 0] - cx, uvp[:, 1] - cy) / (P.EYE_RECT[2] / 2 - 2) * np.pi * 0.75
        tex[sel & (rpx < math.asin(0.0022 / 0.012)), :] = 0.85
    # shading: hemispheric ambient (sky and roof lining above, footwell below) + wrapped Lambert lights
    up_c = (R_cw @ np.array([0.0, 1.0, 0.0])).astype(np.float32)
    hemi = np.float32(0.62) + np.float32(0.38) * np.clip(0.5 + 0.5 * (nrm @ up_c), 0, 1)
    shade = hemi[:, None] * light["ambient"].astype(np.float32)[None]
    specl = np.zeros(len(fr.pix), np.float32)
    for Lw, col in light["dir"]:
        Lc = (R_cw @ Lw).astype(np.float32)
        d = np.clip((nrm @ Lc + WRAP) / (1 + WRAP), 0, None)
        shade += d[:, None] * col.astype(np.float32)
        h = Lc[None] + view
        hn = np.einsum("pc,pc->p", nrm, h) / np.sqrt(np.einsum("pc,pc->p", h, h))
        specl += (np.clip(hn, 0, None) ** 24) * np.float32(np.mean(col)) * (d > 0)
    if ir:
        dist = np.sqrt(np.einsum("pc,pc->p", pos, pos))
        att = (0.6 / dist) ** 2 * np.float32(light["point_gain"])
        d = np.clip(np.einsum("pc,pc->p", nrm, view), 0, None)  # light at the camera: L = view
        shade += (d * att)[:, None]
        specl += (d ** 30) * att
    shade *= aop[:, None]
    if ir:
        tex, shade = tex[:, :1], shade[:, :1]
    colr = tex * shade + (SPEC[fr.tri] * specl * 0.35)[:, None]
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
    img = img.reshape(S, S, -1)
    # ---- post
    if glow is not None:
        img = img + glow
    gain = 255.0 * light.get("exposure", 1.0)
    img = cv2.GaussianBlur(img, (0, 0), 0.55 * ss)
    if img.ndim == 2:
        img = img[..., None]
    if ss > 1:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        if img.ndim == 2:
            img = img[..., None]
    noise = _noise(entry, size, 1 if ir else 3)
    out = img * np.float32(gain) + noise * np.float32(light["noise"]) + np.float32(0.5)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    # ---- landmarks
    lm_head = np.concatenate([face, eye_pts["right"], eye_pts["left"]])
    lm_cam = lm_head @ R_ch.T + t_ch
    lm_ss = _project(lm_cam, K)
    lm = (lm_ss / ss).astype(np.float32)
    ix = np.floor(lm_ss[:, 0]).astype(int)
    iy = np.floor(lm_ss[:, 1]).astype(int)
    inside = (ix >= 0) & (iy >= 0) & (ix < S) & (iy < S) & (lm_cam[:, 2] > 0)
    ixc, iyc = ix.clip(0, S - 1), iy.clip(0, S - 1)
    t_at = tri_img[iyc, ixc]
    zb = zbuf[iyc, ixc]
    part_at = PID[t_at.clip(0)]
    self_ids = np.array([names.index(n) for n in SELF_PARTS if n in names])
    eb_id = names.index("eyeball")
    z = lm_cam[:, 2]
    is_self = np.isin(part_at, self_ids)
    vis = (is_self & (zb > z - 0.005)) | (zb > z)
    vis[468:] = (part_at[468:] == eb_id) & (zb[468:] > z[468:] - 0.004)
    vis = inside & ((t_at < 0) | vis)
    if lens_parts and lens_T is not None and lens_T < 0.5:
        lt = lf.tri_image()[iyc, ixc]
        ld = lf.depth_image()[iyc, ixc]
        vis &= ~((lt >= 0) & (ld < z))
    pts = lm[:468]
    x0, y0 = np.clip(pts.min(0), 0, size)
    x1, y1 = np.clip(pts.max(0), 0, size)
    depth = zbuf if ss == 1 else cv2.resize(zbuf, (size, size), interpolation=cv2.INTER_NEAREST)
    part_ids = PID[tri_img.clip(0)].astype(np.int16)
    part_ids[tri_img < 0] = -1
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
        "mouth_opening_mm": float(np.linalg.norm(face[13] - face[14]) * 1000),
        "identity": {**im.info, "code": {k: round(v, 6) for k, v in im.code.items()}},
        "lighting": {"mode": light["mode"], "bright_pupil": bool(light.get("bright_pupil", False)), "noise_sigma": float(light["noise"])},
        "lens_transmittance": lens_T,
        "supersample": ss,
    }
    return RenderResult(out, lm, vis, lm_cam.astype(np.float32), (float(x0), float(y0), float(x1), float(y1)),
                        depth.astype(np.float32), info, lm_head.astype(np.float32), part_ids, tuple(names))
