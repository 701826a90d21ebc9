"""The data-driven head: a compact file derived from ICT-FaceKit (MIT) by ``scripts/make_face_model.py``.

``data/face_model.npz`` holds (see the script's docstring for how it is made):
- ``mean`` (V, 3) float32, metres, head frame (x subject's left, y up, z out of the face; origin the
  midpoint of landmarks 33/263): ICT-FaceKit's generic neutral mesh = the mean of its population
  (identity codes are N(0, 1) around it), decimated to the renderer's triangle budget;
- triangles per part: ``tri_face`` (face, ears, front of the neck), ``tri_head`` (back of the head and
  neck), ``tri_socket`` (mouth cavity), ``tri_gums`` (gums and tongue), ``tri_teeth``;
- ``identity_modes_mm`` (100, V, 3) float16 and ``expressions_mm`` (K, V, 3) float16 (ARKit names in
  ``expression_names``): linear shape modes in mm per unit weight;
- ``landmark_index``/``landmark_weight`` (468, 3): MediaPipe's 468 mesh landmarks as barycentric
  points on the surface; ``ibug68_index``/``ibug68_weight`` (68, 3) the iBUG-68 points (inner 51 =
  the MediaPipe points of ``topology.IBUG68_FROM_MEDIAPIPE``, jaw = ICT's Multi-PIE jaw vertices);
- eye holes (``eye_<side>_loop``) and lid margins (``eye_<side>_upper``/``_lower``, paired columns,
  corners first/last), the mouth hole and the lip contact lines;
- ``licence`` (ICT-FaceKit's MIT notice) and ``provenance_json`` (source repo + commit, steps,
  input and content SHA-256).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "face_model.npz"
PARTS = ("face", "head", "socket", "gums", "teeth")
N_IDENTITY = 100


@dataclass
class FaceModel:
    mean: np.ndarray  # (V, 3) float64, m
    tris: dict[str, np.ndarray]  # part -> (F, 3) int64 into mean
    identity_modes: np.ndarray  # (100, V*3) float32, m per unit code
    expressions: dict[str, np.ndarray]  # name -> (V, 3) float32, m at weight 1
    lm_index: np.ndarray  # (468, 3) int64
    lm_weight: np.ndarray  # (468, 3) float64
    ibug_index: np.ndarray  # (68, 3)
    ibug_weight: np.ndarray  # (68, 3)
    eyes: dict[str, dict[str, np.ndarray]]  # side -> loop, upper, lower
    mouth: dict[str, np.ndarray]  # loop, upper, lower
    provenance: dict
    licence: str
    part_vertices: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return len(self.mean)

    def landmarks(self, v: np.ndarray) -> np.ndarray:
        """The 468 MediaPipe landmarks (head frame) of model vertices ``v`` (V, 3)."""
        return np.einsum("lk,lkc->lc", self.lm_weight, v[self.lm_index])

    def ibug68(self, v: np.ndarray) -> np.ndarray:
        return np.einsum("lk,lkc->lc", self.ibug_weight, v[self.ibug_index])

    def shape(self, coeffs: np.ndarray) -> np.ndarray:
        """mean + sum_k coeffs[k] * mode_k, (V, 3) float64 (model frame, not re-centred)."""
        c = np.zeros(N_IDENTITY, np.float32)
        c[: len(coeffs)] = np.asarray(coeffs, np.float32)[:N_IDENTITY]
        return self.mean + (c @ self.identity_modes).reshape(-1, 3).astype(np.float64)


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the model's arrays (name, dtype, shape, bytes; sorted by name), the provenance's
    ``content_sha256``: what ``scripts/make_face_model.py --verify`` compares."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype.str).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes() if a.dtype.kind != "U" else "\0".join(a.tolist()).encode())
    return h.hexdigest()


def file_content_hash(path: str | Path | None = None) -> str:
    """``content_hash`` of the arrays stored in a face model file (licence and provenance excluded)."""
    with np.load(Path(path) if path else DATA, allow_pickle=False) as d:
        return content_hash({k: d[k] for k in d.files if k not in ("provenance_json", "licence")})


@lru_cache(maxsize=2)
def load(path: str | None = None) -> FaceModel:
    p = Path(path) if path else DATA
    if not p.is_file():
        raise FileNotFoundError(f"{p}: the face model file is missing; build it with "
                                "`python scripts/make_face_model.py ICT_CHECKOUT` (docs/renderer.md)")
    with np.load(p, allow_pickle=False) as d:
        files = set(d.files)
        need = {"mean", "identity_modes_mm", "expressions_mm", "expression_names", "landmark_index", "landmark_weight",
                "licence", "provenance_json"} | {f"tri_{k}" for k in PARTS}
        missing = sorted(need - files)
        if missing:
            raise ValueError(f"{p}: not a face model file (missing {', '.join(missing)})")
        prov = json.loads(str(d["provenance_json"]))
        mean = d["mean"].astype(np.float64)
        V = len(mean)
        modes = (d["identity_modes_mm"].astype(np.float32) / 1000.0).reshape(-1, V * 3)
        ex = d["expressions_mm"].astype(np.float32) / 1000.0
        m = FaceModel(
            mean=mean,
            tris={k: d[f"tri_{k}"].astype(np.int64) for k in PARTS},
            identity_modes=modes,
            expressions={str(n): ex[i] for i, n in enumerate(d["expression_names"])},
            lm_index=d["landmark_index"].astype(np.int64),
            lm_weight=d["landmark_weight"].astype(np.float64),
            ibug_index=d["ibug68_index"].astype(np.int64),
            ibug_weight=d["ibug68_weight"].astype(np.float64),
            eyes={s: {k: d[f"eye_{s}_{k}"].astype(np.int64) for k in ("loop", "upper", "lower")} for s in ("right", "left")},
            mouth={"loop": d["mouth_loop"].astype(np.int64), "upper": d["lip_upper"].astype(np.int64), "lower": d["lip_lower"].astype(np.int64)},
            provenance=prov,
            licence=str(d["licence"]),
        )
    for k, t in m.tris.items():
        m.part_vertices[k] = np.unique(t)
    return m
