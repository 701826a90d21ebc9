"""Identity space: a code of named floats per identity, sampled from (identity_seed, identity_params).

Shape: the 100 identity modes of the ICT-FaceKit face model (``facemodel.py``; codes ``ict00``-``ict99``,
N(0, 1) as the model was built), with the sexes separated along one direction of that space (below)
and two age fields of ours (``sag``: the lower face drops, up to 3 mm at 80; ``hood``: the upper-lid
skin above the crease droops over it, up to 1.6 mm). Appearance (skin, lips, irises, brows, lashes,
hair, facial hair, freckles, wrinkles, ...) is our procedural texture code. Everything is a float,
so SynFace mixup is ``(1 - lam) * a + lam * b`` on the code (exact at lam = 0 and lam = 1; the model
is linear, so a mixed code is a mixed face); discrete choices derived from floats (hair style) flip
at lam = 0.5.

Sex: ICT-FaceKit's modes pool both sexes. The male-female difference is the smallest code offset
``delta`` (min-norm, least squares on the model's Jacobian at its mean) that moves six adult
anthropometric distances by their male-female differences (Farkas 1994, rounded: face width zy-zy
(234-454) 8 mm, nasion-chin n-gn (168-152) 9 mm, outer eye corners ex-ex (33-263) 3.5 mm, inner
eye corners en-en (133-362) 1.5 mm, nose width al-al (64-294) 3.5 mm, mouth width ch-ch (61-291) 4 mm).
A man's code is ``+delta/2``, a woman's ``-delta/2``, plus N(0, 1) whose component along ``delta``
is scaled by ``sqrt(1 - |delta|^2 / 4)``: the two sexes pooled then have the model's own N(0, I)
distribution (|delta| = 1.53), and each sex has its within-sex spread.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from . import facemodel as FM

CODE_VERSION = "id-v5"  # id-v4: id-v3's draws (same stream, same values) + the mouth interior's colours;
# id-v5: + how far the upper incisors show below the lip
BASE_STREAM = "id-v3"  # the stream of every draw before id-v4; a new code draws on its own stream after it
N_MODES = FM.N_IDENTITY
SHAPE_KEYS = tuple(f"ict{k:02d}" for k in range(N_MODES))
# anthropometric distances (MediaPipe landmark pairs) and their male - female differences in mm
SEX_MEASURES = {"zy-zy": (234, 454), "n-gn": (168, 152), "ex-ex": (33, 263), "en-en": (133, 362), "al-al": (64, 294),
                "ch-ch": (61, 291)}
SEX_DIFF_MM = {"zy-zy": 8.0, "n-gn": 9.0, "ex-ex": 3.5, "en-en": 1.5, "al-al": 3.5, "ch-ch": 4.0}
SAG_MM, HOOD_MM = 3.0, 1.6

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


def measure(lm: np.ndarray, name: str) -> float:
    a, b = SEX_MEASURES[name]
    return float(np.linalg.norm(lm[a] - lm[b]) * 1000)


@lru_cache(maxsize=1)
def sex_direction() -> np.ndarray:
    """(100,) code offset man - woman (see the module docstring)."""
    m = FM.load()
    names = list(SEX_MEASURES)
    base = np.array([measure(m.landmarks(m.mean), n) for n in names])
    J = np.empty((len(names), N_MODES))
    for k in range(N_MODES):
        e = np.zeros(N_MODES)
        e[k] = 1.0
        lm = m.landmarks(m.shape(e))
        J[:, k] = np.array([measure(lm, n) for n in names]) - base
    return np.linalg.pinv(J) @ np.array([SEX_DIFF_MM[n] for n in names])


@lru_cache(maxsize=1)
def age_fields() -> dict[str, np.ndarray]:
    """(V, 3) displacement fields (m per unit code) on the model's mean: ``sag`` and ``hood``."""
    m = FM.load()
    v = m.mean
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    front = np.zeros(len(v))
    front[m.part_vertices["face"]] = 1.0
    front *= _smooth(z, -0.03, 0.0)
    lower = _smooth(-y, 0.03, 0.08)
    sag = np.stack([0 * x, -SAG_MM / 1000 * _smooth(-y, 0.01, 0.06) * _smooth(np.abs(x), 0.0, 0.03) * front,
                    -0.5 / 1000 * lower * front], 1)
    hood = np.zeros_like(v)
    for side in ("right", "left"):
        U = m.eyes[side]["upper"]
        mu = v[U]
        order = np.argsort(mu[:, 0])
        xs, ys = mu[order, 0], mu[order, 1]
        inside = (x > xs[0]) & (x < xs[-1])
        ym = np.interp(x, xs, ys)
        h = y - ym  # height above the upper lid margin
        span = (xs[-1] - xs[0]) / 2
        cx = (xs[-1] + xs[0]) / 2
        taper = np.clip(1 - ((x - cx) / span) ** 2, 0, 1)
        w = np.exp(-((h - 0.0065) / 0.003) ** 2) * _smooth(h, 0.002, 0.004) * taper * inside * front
        hood += w[:, None] * np.array([0.0, -HOOD_MM / 1000, 0.5 / 1000])
    return {"sag": sag, "hood": hood}


def sample_code(seed: int, params: dict) -> dict[str, float]:
    """The identity code (all floats) of a base identity."""
    sex = params.get("sex", "female")
    age = float(params.get("age", 35))
    tone = int(params.get("skin_tone", 3))
    r = _rng("identity", BASE_STREAM, int(seed))
    z = r.normal(size=N_MODES)
    d = sex_direction()
    u = d / np.linalg.norm(d)
    s = np.sqrt(max(0.0, 1.0 - float(d @ d) / 4))
    z = z - (1 - s) * (z @ u) * u + (0.5 if sex == "male" else -0.5) * d
    c: dict[str, float] = {k: float(z[i]) for i, k in enumerate(SHAPE_KEYS)}
    a01 = np.clip((age - 16) / 64, 0, 1)
    c["sag"] = float(abs(r.normal()) * 0.3 + 1.6 * a01) / 1.9  # 1 = SAG_MM
    c["hood"] = float(np.clip(1.2 * a01 + 0.25 * r.normal() - 0.15, 0, 1))
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
    c["clothing"] = float(r.uniform())
    c["tex_seed"] = float(r.integers(0, 2**31 - 1))
    c["lid_rest"] = float(np.clip(0.9 + 0.06 * r.normal(), 0.78, 1.0))  # relaxed upper-lid height (fraction of the model's aperture)
    c.update(mouth_interior_code(seed, a01))
    c.update(teeth_code(seed, a01, sex))
    return {k: float(v) for k, v in c.items()}


def mouth_interior_code(seed: int, a01: float) -> dict[str, float]:
    """The colours inside the mouth differ between people (id-v4): until id-v3 every identity had the same
    teeth, tongue and cavity, the one appearance a yawn model could learn as "open mouth". Teeth: value
    (x the former near-white) falling and yellowing rising with age (``a01``: 0 at 16, 1 at 80 years);
    tongue: value and a whitish coating; cavity: value. Spreads set a priori around the former constants
    (:func:`texture.mouth_colours`), not fitted to any real set. Own stream: the id-v3 draws stay as they were."""
    m = _rng("identity", "mouth-v1", int(seed))
    return {
        "teeth_value": float(np.clip(0.88 - 0.12 * a01 + 0.07 * m.normal(), 0.6, 1.0)),
        "teeth_yellow": float(np.clip(0.25 + 0.4 * a01 + 0.2 * m.normal(), 0, 1)),
        "tongue_value": float(np.clip(1.0 + 0.1 * m.normal(), 0.75, 1.25)),
        "tongue_coat": float(np.clip(0.15 + 0.15 * m.normal(), 0, 0.6)),
        "cavity_value": float(np.clip(1.0 + 0.15 * m.normal(), 0.7, 1.3)),
    }


def teeth_code(seed: int, a01: float, sex: str) -> dict[str, float]:
    """How far the upper central incisors' edge lies below the upper lip at rest (id-v5), in mm: the
    "incisor display" of dentistry, about 3.4 mm under 30 years of age falling to about 0 after 60,
    and about 1.5 mm more in women than in men (Vig and Brundo 1978, maxillary incisor exposure with the
    lips at rest); here 3.8 - 5.5 x ``a01`` (0 at 16, 1 at 80 years) +/- 0.75 by sex, sd 1 mm, clipped to
    -1..5 (negative: the edge hides behind the lip). Own stream: the id-v4 draws stay as they were."""
    m = _rng("identity", "teeth-v1", int(seed))
    mean = 3.8 - 5.5 * a01 + (0.75 if sex == "female" else -0.75)
    return {"incisor_show_mm": float(np.clip(mean + m.normal(), -1.0, 5.0))}


def identity_code(identity_seed: int, identity_params: dict) -> tuple[dict[str, float], dict]:
    """(code, info). For mixup, code = (1-lam)*code(a) + lam*code(b); info records the recipe."""
    mix = identity_params.get("mixup")
    if not mix:
        return sample_code(identity_seed, identity_params), {"code_version": CODE_VERSION, "identity_seed": int(identity_seed)}
    lam = float(mix["lam"])
    ca = sample_code(int(mix["a_seed"]), mix.get("a_params") or identity_params)
    cb = sample_code(int(mix["b_seed"]), mix.get("b_params") or identity_params)
    code = {k: (1.0 - lam) * ca[k] + lam * cb[k] for k in ca}
    # discrete parts: texture noise seed from the dominant parent
    code["tex_seed"] = ca["tex_seed"] if lam < 0.5 else cb["tex_seed"]
    return code, {"code_version": CODE_VERSION, "identity_seed": int(identity_seed), "mixup": {
        "a": mix.get("a"), "b": mix.get("b"), "a_seed": int(mix["a_seed"]), "b_seed": int(mix["b_seed"]), "lam": lam,
        "a_tex_seed": ca["tex_seed"], "b_tex_seed": cb["tex_seed"]}}


def shape_coefficients(code: dict[str, float]) -> np.ndarray:
    return np.array([code.get(k, 0.0) for k in SHAPE_KEYS], np.float64)


def identity_shape(code: dict[str, float]) -> np.ndarray:
    """(V, 3) neutral head of this identity (every model vertex: face, head, mouth interior), head
    frame, metres: the model's mean + modes, the age fields, then moved so that the midpoint of the
    outer eye corners (landmarks 33, 263) is the origin. Code 0 everywhere gives the model's mean."""
    m = FM.load()
    v = m.shape(shape_coefficients(code))
    f = age_fields()
    for k in ("sag", "hood"):
        if code.get(k):
            v = v + code[k] * f[k]
    lm = m.landmarks(v)
    return v - 0.5 * (lm[33] + lm[263])
