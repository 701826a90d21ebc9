"""Read shards into tensors for training: images cropped/resized, labels encoded per head.

Reads with :func:`dmsfactory.datasets.open_shards` when it exists, else with a small tar reader
(``DIR/{split}-*.tar``: ``<key>.jpg|png`` + ``<key>.json``). Quarantined samples are skipped.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from dmsfactory.datasets.shards import load_doc
from dmsfactory.sample import is_quarantined

HEAD_VALUES: dict[str, tuple[str, ...]] = {
    "class": ("alert", "mild_fatigue", "moderate_fatigue", "severe_fatigue", "distracted", "phone"),
    "fatigue": ("alert", "mild", "moderate", "severe"),
    "eye_left": ("open", "closing", "close", "opening", "undefined"),
    "eye_right": ("open", "closing", "close", "opening", "undefined"),
    "yawn": ("none", "yawning_without_hand", "yawning_with_hand"),
    "distracted": ("no", "yes"),
    "phone": ("no", "yes"),
}
IGNORE = -100


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def encode_labels(labels: dict, heads: tuple[str, ...]) -> np.ndarray:
    """Label dict (the lead's schema) -> int per head (IGNORE where missing)."""
    phone = labels.get("uses_phone", labels.get("phone"))
    if isinstance(phone, dict):  # the lead's schema: phone = {present, hand, use, location}
        phone = phone.get("present")

    def eye(side: str):
        # an eye hidden (e.g. by sunglasses in visible light) has no observable state: no label
        if _get(labels, "eyes", side, "visible") is False:
            return None
        return _get(labels, "eyes", side, "state")

    raw = {
        "class": labels.get("class"),
        "fatigue": labels.get("fatigue_level"),
        "eye_left": eye("left"),
        "eye_right": eye("right"),
        "yawn": _get(labels, "mouth", "yawn"),
        "distracted": labels.get("distracted"),
        "phone": phone,
    }
    out = np.full(len(heads), IGNORE, dtype=np.int64)
    for i, h in enumerate(heads):
        v = raw[h]
        if isinstance(v, bool):
            v = "yes" if v else "no"
        if v is None:
            continue
        if v not in HEAD_VALUES[h]:
            raise ValueError(f"label {h}={v!r} is not one of {HEAD_VALUES[h]}")
        out[i] = HEAD_VALUES[h].index(v)
    return out


def preprocess(image: np.ndarray, bbox, size: int, crop: str, scale: float = 1.6) -> np.ndarray:
    """uint8 HxWx3 -> uint8 3xSxS (square face crop ×``scale`` around the bbox, or the full frame)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    img = image
    if crop == "face" and bbox is not None:
        x0, y0, x1, y1 = (float(v) for v in bbox)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = max(x1 - x0, y1 - y0) * scale / 2
        if half >= 2:
            h, w = img.shape[:2]
            a, b = int(round(cx - half)), int(round(cy - half))
            s = int(round(2 * half))
            pad = max(0, -a, -b, a + s - w, b + s - h)
            if pad:
                img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
                a, b = a + pad, b + pad
            img = img[b : b + s, a : a + s]
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    img = cv2.resize(img, (size, size), interpolation=interp)
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _iter_tar(dataset_dir: Path, split: str) -> Iterator[dict]:
    files = sorted(dataset_dir.glob(f"{split}-*.tar"))
    for f in files:
        groups: dict[str, dict[str, bytes]] = {}
        order: list[str] = []
        with tarfile.open(f) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                name = Path(m.name).name
                key, _, ext = name.partition(".")
                if key not in groups:
                    groups[key] = {}
                    order.append(key)
                groups[key][ext] = tf.extractfile(m).read()
        for key in order:
            g = groups[key]
            if "json" not in g:
                raise ValueError(f"{f}: sample {key!r} has no .json")
            raw = g.get("jpg") or g.get("jpeg") or g.get("png")
            if raw is None:
                raise ValueError(f"{f}: sample {key!r} has no image (jpg/png)")
            bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{f}: sample {key!r}: image does not decode")
            yield {"__key__": key, "image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "json": load_doc(g["json"])}


def iter_samples(dataset_dir: str | Path, split: str) -> Iterator[dict]:
    d = Path(dataset_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {d}")
    try:
        from dmsfactory.datasets import open_shards  # heavy: webdataset, torch
    except ImportError:
        open_shards = None
    if open_shards is not None:
        yield from open_shards(d, split=split)
    else:
        yield from _iter_tar(d, split)


@dataclass
class TensorSet:
    x: np.ndarray  # (N, 3, S, S) uint8
    y: np.ndarray  # (N, H) int64, IGNORE where missing
    identity: list[str]
    keys: list[str]
    heads: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx) -> "TensorSet":
        idx = np.asarray(idx, dtype=np.int64)
        return TensorSet(self.x[idx], self.y[idx], [self.identity[i] for i in idx], [self.keys[i] for i in idx], self.heads)


def load_split(
    dataset_dir: str | Path,
    split: str,
    heads: tuple[str, ...],
    size: int = 64,
    crop: str = "face",
    limit: int | None = None,
    crop_scale: float = 1.6,
) -> TensorSet:
    xs, ys, ids, keys = [], [], [], []
    for rec in iter_samples(dataset_dir, split):
        doc = rec["json"]
        if is_quarantined(doc):
            continue
        img = rec.get("image")
        if img is None:
            raise ValueError(f"{dataset_dir}: sample {doc.get('key')!r} has no decoded image")
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        try:
            y = encode_labels(doc.get("labels") or {}, heads)
        except ValueError as e:
            raise ValueError(f"{dataset_dir}: sample {doc.get('key')!r}: {e}") from None
        xs.append(preprocess(img.astype(np.uint8), doc.get("bbox"), size, crop, crop_scale))
        ys.append(y)
        ids.append(str(doc.get("identity")))
        keys.append(str(doc.get("key")))
        if limit is not None and len(xs) >= limit:
            break
    if not xs:
        x = np.zeros((0, 3, size, size), np.uint8)
        y = np.zeros((0, len(heads)), np.int64)
    else:
        x, y = np.stack(xs), np.stack(ys)
    # canonical order (reader order may depend on shard listing): sort by key
    order = np.argsort(np.asarray(keys, dtype=object)) if keys else np.zeros(0, np.int64)
    ts = TensorSet(x, y, ids, keys, tuple(heads))
    return ts.subset(order) if len(order) else ts
