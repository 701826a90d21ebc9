"""Identity space: a code of named floats per identity, sampled from (identity_seed, identity_params).

Shape: a linear, left/right-symmetric deformation basis on the mean shape (each field is the
displacement for one standard deviation; codes are ~N(0, 1) with sex/age offsets). Appearance:
skin/lip/iris/hair colours, brow/lash/facial-hair/freckle/wrinkle strengths, hair geometry.
Everything is a float, so SynFace mixup is ``(1 - lam) * a + lam * b`` on the code (exact at
lam = 0 and lam = 1); discrete choices derived from floats (hair style) flip at lam = 0.5.

Documented ranges (per basis unit; named codes are drawn with sd 1.4 (eye_size/eye_tilt/eye_depth
1.25), random fields with sd 1.25; the mean-shape is an adult of neither sex):
head_size 3.5 % (+3 % male, -3 % female) | face_width 5 % | face_length 4 % | face_depth 6 %
jaw_width 10 % of lower-face width | chin_length 5 mm | chin_protrusion 4 mm | cheekbone 3 mm
cheek_fat 4 mm | brow_ridge 3 mm | forehead_slope 4.6 deg | nose_length 4 mm | nose_width 3 mm/side
nose_bridge 3 mm | nose_protrusion 4 mm | nose_tip_up 2 mm | lip_upper / lip_lower 2 mm
mouth_width 8 % | eye_size 8 % | eye_spacing: IPD 63.4 mm + 2 mm (x head_size; see identity_shape) |
eye_tilt 4 deg | eye_depth 2 mm
sag 3 mm at age 80 | 16 random smooth symmetric fields of 2.5 mm each (15-30 mm support) |
40 local symmetric fields of 2.5 mm (8-14 mm support) centred on nose, mouth, jaw, cheek and brow
vertices (none on the eye aperture: they would turn open-eye EAR into identity noise) |
lid_rest 0.78-1.0 (relaxed upper-lid height; openness 1 = this height).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from .parts import eye_geometry
from .topology import mean_shape

CODE_VERSION = "id-v2"
IPD_MM, IPD_MM_PER_UNIT = 63.4, 2.0  # eyeball-centre distance at head_size 1, and per unit of eye_spacing
IPD_MAX_MOVE_MM = 10.0  # the most the eye regions move (both together): the narrowest faces keep narrow-set eyes
ORBIT_FIELD = "_orbit_x"  # basis entry without a code: moves the eye regions apart to set the IPD
SHAPE_SD = 1.4  # sd of the named shape codes (eye codes: 1.25, see EYE_KEYS)
RBF_SD = 1.25  # sd of the random smooth fields (rbf*, loc*)
N_LOCAL = 40  # local feature fields (nose, mouth, jaw, cheeks, brows)
LOC_MM = 2.5  # amplitude of one local field at 1 code unit
EYE_KEYS = ("eye_size", "eye_tilt", "eye_depth")

SHAPE_KEYS = (
    "face_width", "face_length", "face_depth", "jaw_width", "chin_length", "chin_protrusion", "cheekbone",
    "cheek_fat", "brow_ridge", "forehead_slope", "nose_length", "nose_width", "nose_bridge", "nose_protrusion",
    "nose_tip_up", "lip_upper", "lip_lower", "mouth_width", "eye_size", "eye_spacing", "eye_tilt", "eye_depth",
    "sag",
) + tuple(f"rbf{i:02d}" for i in range(16)) + tuple(f"loc{i:02d}" for i in range(N_LOCAL))

SKIN_FITZPATRICK = {  # sRGB albedo-ish base colours
    1: (238, 204, 186), 2: (226, 184, 156), 3: (200, 154, 118), 4: (162, 114, 82), 5: (118, 78, 54), 6: (74, 48, 34),
}
HAIR_COLOURS = np.array([
    (22, 18, 16), (48, 34, 26), (84, 58, 38), (128, 92, 60), (190, 155, 105), (140, 66, 36), (130, 128, 124), (205, 203, 198),
], np.float64)


def _rng(*parts) -> np.random.Generator:
    h = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _smooth(a, lo, hi):
    t = np.clip((a - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


@lru_cache(maxsize=1)
def shape_basis() -> dict[str, np.ndarray]:
    """Displacement fields (468, 3) in metres per unit code, all left/right symmetric. ``eye_spacing`` has
    no field of its own: it sets the inter-pupillary distance through ``ORBIT_FIELD`` (identity_shape)."""
    v = mean_shape()["vertices"]
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    ax, sx = np.abs(x), np.sign(x)
    B: dict[str, np.ndarray] = {}

    def F(dx=0.0, dy=0.0, dz=0.0):
        return np.stack([np.broadcast_to(dx, x.shape), np.broadcast_to(dy, x.shape), np.broadcast_to(dz, x.shape)], 1).astype(np.float64)

    def g2(cx, cy, cz, s):  # symmetric gaussian bump pair
        return np.exp(-((ax - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s))

    B["face_width"] = F(dx=0.05 * x)
    B["face_length"] = F(dy=0.04 * (y + 0.03))
    B["face_depth"] = F(dz=0.06 * z)
    lower = _smooth(-y, 0.03, 0.08)
    B["jaw_width"] = F(dx=0.10 * x * lower)
    wchin = _smooth(-y, 0.065, 0.095) * np.exp(-(x**2) / (2 * 0.03**2))
    B["chin_length"] = F(dy=-0.005 * wchin)
    B["chin_protrusion"] = F(dz=0.004 * wchin)
    w = g2(0.05, -0.015, 0.0, 0.015)
    B["cheekbone"] = F(dx=0.002 * sx * w, dz=0.002 * w)
    w = g2(0.042, -0.045, 0.01, 0.018)
    B["cheek_fat"] = F(dx=0.003 * sx * w, dz=0.0025 * w)
    w = g2(0.025, 0.02, 0.015, 0.012)
    B["brow_ridge"] = F(dy=0.0008 * w, dz=0.003 * w)
    B["forehead_slope"] = F(dz=-0.08 * np.clip(y - 0.015, 0, None))
    wn = np.exp(-(x**2 + (y + 0.03) ** 2 + (z - 0.04) ** 2) / (2 * 0.014**2))
    B["nose_length"] = F(dy=-0.004 * wn)
    w = g2(0.016, -0.035, 0.028, 0.008)
    B["nose_width"] = F(dx=0.003 * sx * w)
    w = np.exp(-(x**2 + (y + 0.008) ** 2) / (2 * 0.009**2)) * _smooth(z, 0.015, 0.025)
    B["nose_bridge"] = F(dz=0.003 * w)
    B["nose_protrusion"] = F(dz=0.004 * wn)
    B["nose_tip_up"] = F(dy=0.002 * np.exp(-(x**2 + (y + 0.034) ** 2 + (z - 0.045) ** 2) / (2 * 0.008**2)))
    wu = np.exp(-(x**2 / (2 * 0.018**2) + (y + 0.052) ** 2 / (2 * 0.005**2)))
    B["lip_upper"] = F(dy=0.0012 * wu, dz=0.002 * wu)
    wl = np.exp(-(x**2 / (2 * 0.018**2) + (y + 0.063) ** 2 / (2 * 0.005**2)))
    B["lip_lower"] = F(dy=-0.0012 * wl, dz=0.002 * wl)
    wm = np.exp(-((y + 0.057) ** 2) / (2 * 0.01**2)) * (ax < 0.045)
    B["mouth_width"] = F(dx=0.08 * x * wm)
    ec = np.array([0.031, 0.002, 0.004])  # eye centre (left eye; mirrored by |x|)
    we = np.exp(-((ax - ec[0]) ** 2 + (y - ec[1]) ** 2) / (2 * 0.011**2))
    B["eye_size"] = F(dx=0.08 * (ax - ec[0]) * sx * we, dy=0.08 * (y - ec[1]) * we)
    B["eye_tilt"] = F(dy=0.07 * (ax - ec[0]) * we)
    B["eye_depth"] = F(dz=-0.002 * we)
    ro = np.sqrt((ax - ec[0]) ** 2 + ((y - ec[1]) * 1.3) ** 2)
    wo = 1.0 - _smooth(ro, 0.016, 0.026)  # the eye opening and lids move as one piece; the skin around takes up the shift
    B[ORBIT_FIELD] = F(dx=0.001 * sx * wo)  # both eye regions outwards, 1 mm per unit
    B["sag"] = F(dy=-0.003 * _smooth(-y, 0.01, 0.06) * _smooth(ax, 0.0, 0.03), dz=-0.0005 * lower)
    r = np.random.default_rng(20240512)  # fixed: the random fields are part of the model, not of an identity
    for i in range(16):
        c = v[r.integers(0, 468)]
        s = r.uniform(0.015, 0.03)
        d = r.normal(size=3)
        d /= np.linalg.norm(d)
        g1 = np.exp(-((v - c) ** 2).sum(1) / (2 * s * s))
        cm = c * np.array([-1, 1, 1])
        g2_ = np.exp(-((v - cm) ** 2).sum(1) / (2 * s * s))
        f = 0.0025 * (g1[:, None] * d + g2_[:, None] * (d * np.array([-1, 1, 1])))
        B[f"rbf{i:02d}"] = f
    # local fields on the features a face-recognition network keys on (eye region, nose, mouth,
    # jaw/chin, cheeks, brows): smaller support (8-14 mm), 2 mm each, symmetric
    # (no local fields on the eye aperture itself: they would make the open-eye EAR identity-noise)
    feat = {"nose": [1, 4, 5, 195, 197, 98, 327, 48, 278, 64, 294],
            "mouth": [0, 17, 61, 291, 37, 267, 84, 314, 13, 14], "jaw": [152, 148, 377, 172, 397, 136, 365, 150, 379],
            "cheek": [50, 280, 123, 352, 116, 345, 205, 425], "brow": [70, 300, 105, 334, 107, 336, 46, 276]}
    keys = list(feat)
    for i in range(N_LOCAL):
        grp = feat[keys[i % len(keys)]]
        c = v[grp[r.integers(0, len(grp))]]
        s = r.uniform(0.008, 0.014)
        d = r.normal(size=3)
        d /= np.linalg.norm(d)
        g1 = np.exp(-((v - c) ** 2).sum(1) / (2 * s * s))
        cm = c * np.array([-1, 1, 1])
        g2_ = np.exp(-((v - cm) ** 2).sum(1) / (2 * s * s))
        if abs(c[0]) < 1e-6:
            g2_ = 0 * g2_
        B[f"loc{i:02d}"] = LOC_MM * 0.001 * (g1[:, None] * d + g2_[:, None] * (d * np.array([-1, 1, 1])))
    return B


SEX_OFFSETS = {
    "male": {"jaw_width": 0.8, "brow_ridge": 1.0, "nose_width": 0.6, "nose_length": 0.4, "chin_length": 0.5,
             "lip_upper": -0.4, "lip_lower": -0.3, "eye_size": -0.3, "forehead_slope": 0.7, "face_width": 0.3},
    "female": {"jaw_width": -0.6, "brow_ridge": -0.8, "nose_width": -0.5, "lip_upper": 0.4, "lip_lower": 0.4,
               "eye_size": 0.3, "cheek_fat": 0.3, "face_width": -0.3},
}


def sample_code(seed: int, params: dict) -> dict[str, float]:
    """The identity code (all floats) of a base identity."""
    sex = params.get("sex", "female")
    age = float(params.get("age", 35))
    tone = int(params.get("skin_tone", 3))
    r = _rng("identity", CODE_VERSION, int(seed))
    c: dict[str, float] = {}
    for k in SHAPE_KEYS:
        c[k] = float(r.normal() * (RBF_SD if k.startswith(("rbf", "loc")) else 1.25 if k in EYE_KEYS else SHAPE_SD))
    for k, off in SEX_OFFSETS.get(sex, {}).items():
        c[k] += off
    a01 = np.clip((age - 16) / 64, 0, 1)
    c["sag"] = float(abs(c["sag"]) * 0.3 + 1.6 * a01)
    c["lip_upper"] -= 0.8 * a01
    c["lip_lower"] -= 0.6 * a01
    c["head_size"] = float(1.0 + 0.035 * r.normal() + (0.03 if sex == "male" else -0.03))
    base = np.array(SKIN_FITZPATRICK[tone], np.float64)
    skin = base * (1 + 0.06 * r.normal(size=3)) * (1 + 0.07 * r.normal())
    c.update(skin_r=skin[0], skin_g=skin[1], skin_b=skin[2])
    c["skin_redness"] = float(np.clip(0.35 + 0.25 * r.normal(), 0, 1))
    c["freckles"] = float(np.clip(r.normal() * 0.5 + (0.3 if tone <= 2 else -0.4), 0, 1))
    c["moles"] = float(r.uniform(0, 1))
    c["blemish"] = float(r.uniform(0, 1))
    lip = np.array([180, 100, 100]) * (base / 230) ** 0.6 * (1 + 0.08 * r.normal(size=3))
    makeup = float(sex == "female" and r.uniform() < 0.45)
    if makeup:
        lip = np.array([170 + 40 * r.uniform(), 40 + 40 * r.uniform(), 60 + 40 * r.uniform()])
    c.update(lip_r=lip[0], lip_g=lip[1], lip_b=lip[2], makeup=makeup)
    c["brow_thick"] = float(np.clip((0.6 if sex == "male" else 0.4) + 0.18 * r.normal(), 0.15, 1))
    c["brow_arch"] = float(np.clip((0.25 if sex == "male" else 0.6) + 0.25 * r.normal(), 0, 1))
    c["brow_density"] = float(np.clip(0.7 + 0.2 * r.normal(), 0.2, 1))
    c["lash"] = float(np.clip((0.8 if makeup else 0.4) + 0.15 * r.normal(), 0, 1))
    iris_choices = np.array([(60, 38, 24), (95, 62, 34), (110, 95, 55), (70, 100, 70), (80, 110, 140), (110, 140, 170)], float)
    ip = np.array([6, 3, 1, 0.3, 0.2, 0.1]) if tone >= 4 else np.array([2, 2, 1, 1, 1.5, 1.2])
    iris = iris_choices[r.choice(6, p=ip / ip.sum())] * (1 + 0.1 * r.normal(size=3))
    c.update(iris_r=iris[0], iris_g=iris[1], iris_b=iris[2])
    hp = np.array([5, 3, 2, 1, 1, 0.4, 0, 0]) if tone <= 3 else np.array([8, 3, 0.5, 0.1, 0, 0.05, 0, 0])
    hp = hp / hp.sum()
    hair = HAIR_COLOURS[r.choice(8, p=hp)] * (1 + 0.08 * r.normal()) * (1 + 0.025 * r.normal(size=3))  # keep the hue
    grey = float(np.clip((age - 40) / 40 + 0.2 * r.normal(), 0, 1))
    hair = hair * (1 - grey) + HAIR_COLOURS[6 + int(r.uniform() < 0.4)] * grey
    c.update(hair_r=hair[0], hair_g=hair[1], hair_b=hair[2])
    if sex == "female":
        length = float(r.choice([0.04, 0.12, 0.22, 0.30], p=[0.1, 0.25, 0.35, 0.3]) + 0.02 * r.normal())
    else:
        length = float(r.choice([0.0, 0.015, 0.04, 0.10], p=[0.1, 0.45, 0.35, 0.1]) + 0.005 * r.normal())
    c["hair_length"] = max(0.0, length)
    c["hair_volume"] = float(np.clip(0.012 + 0.006 * r.normal(), 0.004, 0.03)) if length > 0.01 else 0.003
    c["hair_fringe"] = float(np.clip(r.uniform() * (1.0 if sex == "female" else 0.6), 0, 1))
    c["hair_part"] = float(r.uniform(-1, 1))
    c["hair_recession"] = float(np.clip((a01 * 1.2 + 0.3 * r.normal()) if sex == "male" else 0.1 * r.uniform(), 0, 1))
    if sex == "male":
        style = r.choice(4, p=[0.35, 0.3, 0.2, 0.15])  # clean, stubble, beard, moustache
        c["stubble"] = float(0.6 + 0.4 * r.uniform()) if style == 1 else float(0.15 * r.uniform())
        c["beard"] = float(0.6 + 0.4 * r.uniform()) if style == 2 else 0.0
        c["moustache"] = float(0.6 + 0.4 * r.uniform()) if style in (2, 3) else 0.0
    else:
        c["stubble"] = c["beard"] = c["moustache"] = 0.0
    c["wrinkles"] = float(np.clip(a01 * 1.1 + 0.15 * r.normal() - 0.15, 0, 1))
    c["eye_bags"] = float(np.clip(a01 * 0.8 + 0.2 * r.uniform(), 0, 1))
    c["ear_size"] = float(1.0 + 0.08 * r.normal() + 0.1 * a01)
    c["ear_angle"] = float(np.clip(0.35 + 0.15 * r.normal(), 0.05, 0.8))
    c["clothing"] = float(r.uniform())
    c["tex_seed"] = float(r.integers(0, 2**31 - 1))
    c["lid_rest"] = float(np.clip(0.9 + 0.06 * r.normal(), 0.78, 1.0))  # neutral upper-lid height (fraction of the mesh aperture)
    return {k: float(v) for k, v in c.items()}


def identity_code(identity_seed: int, identity_params: dict) -> tuple[dict[str, float], dict]:
    """(code, info). For mixup, code = (1-lam)*code(a) + lam*code(b); info records the recipe."""
    mix = identity_params.get("mixup")
    if not mix:
        return sample_code(identity_seed, identity_params), {"code_version": CODE_VERSION, "identity_seed": int(identity_seed)}
    lam = float(mix["lam"])
    ca = sample_code(int(mix["a_seed"]), mix.get("a_params") or identity_params)
    cb = sample_code(int(mix["b_seed"]), mix.get("b_params") or identity_params)
    code = {k: (1.0 - lam) * ca[k] + lam * cb[k] for k in ca}
    # discrete parts: texture noise seed and clothing from the dominant parent
    code["tex_seed"] = ca["tex_seed"] if lam < 0.5 else cb["tex_seed"]
    return code, {"code_version": CODE_VERSION, "identity_seed": int(identity_seed), "mixup": {
        "a": mix.get("a"), "b": mix.get("b"), "a_seed": int(mix["a_seed"]), "b_seed": int(mix["b_seed"]), "lam": lam,
        "a_tex_seed": ca["tex_seed"], "b_tex_seed": cb["tex_seed"]}}


def _eye_centre_distance(v: np.ndarray) -> float:
    """Distance along x between the two eyeball centres (parts.eye_geometry)."""
    return float(eye_geometry(v, "left")[0][0] - eye_geometry(v, "right")[0][0])


def identity_shape(code: dict[str, float]) -> np.ndarray:
    """468x3 neutral face of this identity, head frame, metres.

    The inter-pupillary distance is set, not summed: face width and the random fields alone spread
    it with an 8 mm sd (44-85 mm; adults: 63.4 mm, sd 3.8 mm, Dodgson 2004), so after the other fields
    the eye regions are moved sideways, as one piece each, towards ``IPD_MM + IPD_MM_PER_UNIT *
    eye_spacing`` by at most ``IPD_MAX_MOVE_MM``, then scaled by head_size: over many identities
    mean 63.5 mm, sd 4.0 mm, 1-99 % 54-73 mm, women 61.5 / men 65.6 mm."""
    B = shape_basis()
    v = mean_shape()["vertices"].copy()
    for k in SHAPE_KEYS:
        c = code.get(k, 0.0)
        if c and k != "eye_spacing":
            v += c * B[k]
    d0 = _eye_centre_distance(v)
    per_unit = _eye_centre_distance(v + B[ORBIT_FIELD]) - d0  # linear in the field's weight
    move = (IPD_MM + IPD_MM_PER_UNIT * code.get("eye_spacing", 0.0)) / 1000 - d0
    move = float(np.clip(move, -IPD_MAX_MOVE_MM / 1000, IPD_MAX_MOVE_MM / 1000))  # very narrow/wide faces keep some
    v += move / per_unit * B[ORBIT_FIELD]
    return v * code.get("head_size", 1.0)
