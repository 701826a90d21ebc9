"""A tiny drawn stand-in dataset for tests and smoke runs (no renderer needed).

Faces are drawn with OpenCV: an ellipse head, two eyes whose height follows the eye openness, a mouth
whose height follows the yawn, a phone rectangle at the ear for 'phone', the head shifted sideways for
'distracted'. ``domain="real"`` changes the style (darker, grey "NIR-like", noisier, different
background) so the two sets differ in domain as our renders and real frames would. Labels follow the
lead's schema for the keys the classifier reads.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np

from dmsfactory.sample import FaceSample

CLASSES = ("alert", "mild_fatigue", "moderate_fatigue", "severe_fatigue", "distracted", "phone")
FATIGUE = {"alert": "alert", "mild_fatigue": "mild", "moderate_fatigue": "moderate", "severe_fatigue": "severe",
           "distracted": "alert", "phone": "alert"}
OPENNESS = {"alert": (0.7, 1.0), "mild_fatigue": (0.45, 0.7), "moderate_fatigue": (0.2, 0.45),
            "severe_fatigue": (0.0, 0.12), "distracted": (0.7, 1.0), "phone": (0.7, 1.0)}


def _draw(cls: str, openness: float, yawn: str, ident: np.random.Generator, rng: np.random.Generator,
          size: int, domain: str) -> tuple[np.ndarray, tuple]:
    skin = ident.uniform(120, 230, 3)
    if domain == "real":
        g = float(skin.mean()) * 0.6
        skin = np.array([g, g, g])
        bg = rng.uniform(10, 40, 3)
    else:
        bg = rng.uniform(60, 200, 3)
    img = np.empty((size, size, 3), np.float32)
    img[:] = bg
    cx = size / 2 + rng.normal(0, size * 0.02) + (size * 0.18 * rng.choice([-1, 1]) if cls == "distracted" else 0)
    cy = size / 2 + rng.normal(0, size * 0.02)
    rx, ry = size * ident.uniform(0.22, 0.28), size * ident.uniform(0.3, 0.36)
    cv2.ellipse(img, (int(cx), int(cy)), (int(rx), int(ry)), 0, 0, 360, skin.tolist(), -1)
    ew, eh = rx * 0.28, max(1.0, ry * 0.16 * openness)
    for sx in (-1, 1):
        ex, ey = cx + sx * rx * 0.45, cy - ry * 0.2
        cv2.ellipse(img, (int(ex), int(ey)), (int(ew), int(max(1, eh))), 0, 0, 360, (255, 255, 255), -1)
        if openness > 0.15:
            cv2.circle(img, (int(ex), int(ey)), max(1, int(eh * 0.8)), (30, 30, 30), -1)
    mh = ry * (0.35 if yawn != "none" else 0.06)
    cv2.ellipse(img, (int(cx), int(cy + ry * 0.5)), (int(rx * 0.35), int(max(1, mh))), 0, 0, 360, (90, 20, 30), -1)
    if cls == "phone":
        px = int(cx + rx * 0.95)
        cv2.rectangle(img, (px, int(cy - ry * 0.3)), (px + int(size * 0.08), int(cy + ry * 0.3)), (20, 20, 20), -1)
    noise = 14 if domain == "real" else 4
    img += rng.normal(0, noise, img.shape)
    bbox = (cx - rx, cy - ry, cx + rx, cy + ry)
    return np.clip(img, 0, 255).astype(np.uint8), bbox


def make_toy_samples(n_identities: int, per_identity: int, seed: int, domain: str = "synthetic",
                     size: int = 64, split: str = "train", prefix: str = "t") -> list[FaceSample]:
    out = []
    root = np.random.default_rng(seed)
    for i in range(n_identities):
        iseed = int(root.integers(2**31))
        for j in range(per_identity):
            ident = np.random.default_rng(iseed)
            rng = np.random.default_rng([iseed, j])
            cls = CLASSES[int(rng.integers(len(CLASSES)))]
            lo, hi = OPENNESS[cls]
            o = float(rng.uniform(lo, hi))
            yawn = "yawning_without_hand" if cls in ("moderate_fatigue", "severe_fatigue") and rng.random() < 0.6 else "none"
            img, bbox = _draw(cls, o, yawn, ident, rng, size, domain)
            state = "close" if o <= 0.2 else "open"
            key = f"{prefix}{seed % 10000:04d}-{i:04d}-{j:03d}"
            labels = {
                "class": cls,
                "fatigue_level": FATIGUE[cls],
                "eyes": {s: {"state": state, "openness": o, "visible": True} for s in ("left", "right")},
                "mouth": {"yawn": yawn},
                "distracted": cls == "distracted",
                "phone": {"present": cls == "phone"},
                "uses_phone": cls == "phone",
            }
            out.append(FaceSample(key=key, index=len(out), params={"toy": True, "domain": domain}, image=img,
                                  labels=labels, bbox=bbox, split=split, identity=f"{prefix}{i:04d}"))
    return out


def write_toy_shards(out_dir: str | Path, samples: list[FaceSample]) -> Path:
    """Write samples as ``{split}-000000.tar`` (png + json), one shard per split."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    by: dict[str, list[FaceSample]] = {}
    for s in samples:
        by.setdefault(s.split or "train", []).append(s)
    for split, ss in by.items():
        with tarfile.open(d / f"{split}-000000.tar", "w") as tf:
            for s in ss:
                ok, png = cv2.imencode(".png", cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR))
                for ext, data in (("png", png.tobytes()), ("json", json.dumps(s.to_json()).encode())):
                    ti = tarfile.TarInfo(f"{s.key}.{ext}")
                    ti.size = len(data)
                    ti.mtime = 0
                    tf.addfile(ti, io.BytesIO(data))
    return d


def make_toy_dataset(root: str | Path, seed: int = 0, size: int = 64, syn_ids: int = 24, real_ids: int = 16,
                     per_id: int = 10) -> tuple[Path, Path]:
    """Synthetic (train/test) and 'real' (train/test) toy sets with disjoint identities per split."""
    root = Path(root)
    syn = (make_toy_samples(syn_ids, per_id, seed, "synthetic", size, "train", "s")
           + make_toy_samples(max(2, syn_ids // 4), per_id, seed + 1, "synthetic", size, "test", "u"))
    real = (make_toy_samples(real_ids, per_id, seed + 2, "real", size, "train", "r")
            + make_toy_samples(max(2, real_ids // 2), per_id, seed + 3, "real", size, "test", "q"))
    return write_toy_shards(root / "synthetic", syn), write_toy_shards(root / "real", real)
