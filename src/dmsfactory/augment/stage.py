"""The augmentation stage: several seeded, replayable, landmark-consistent views per source sample."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np

from dmsfactory.augment.config import OP_NAMES, AugmentConfig, image_keys, view_key
from dmsfactory.augment.ops import ALB, OPS, View, copy_labels
from dmsfactory.errors import ErrorPolicy, check_policy
from dmsfactory.sample import FaceSample

STAGE = "augment"


def view_seed(seed: int, key: str, view: int) -> int:
    """Per-view seed: a function of (spec seed, sample key, view index) only, so the same sample
    gets the same views whatever batch or worker it is processed in."""
    h = hashlib.sha256(f"{int(seed)}:{key}:{int(view)}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def _bbox_corners(b) -> np.ndarray | None:
    if b is None:
        return None
    x0, y0, x1, y1 = (float(v) for v in b)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _to_view(s: FaceSample) -> View:
    if s.image is None:
        raise ValueError(f"sample {s.key}: image is missing")
    img = np.asarray(s.image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"sample {s.key}: image must be uint8 HxWx3 (got {img.dtype} {img.shape})")
    lm = None if s.landmarks is None else np.array(s.landmarks, np.float64).reshape(-1, 2)
    vis = None
    if lm is not None:
        vis = np.ones(len(lm), bool) if s.visibility is None else np.asarray(s.visibility, bool).copy()
        if len(vis) != len(lm):
            raise ValueError(f"sample {s.key}: visibility has {len(vis)} entries for {len(lm)} landmarks")
    # no pixel copy: ops return new arrays, and in-place writers take view.writable_image() first
    return View(image=img, landmarks=lm, visibility=vis, corners=_bbox_corners(s.bbox),
                labels=copy_labels(s.labels), arrays=dict(s.arrays), source_image=img)


def _bbox_from_corners(c: np.ndarray | None, h: int, w: int):
    if c is None:
        return None
    x0, y0 = c.min(0)
    x1, y1 = c.max(0)
    x0, x1 = float(np.clip(x0, 0, w)), float(np.clip(x1, 0, w))
    y0, y1 = float(np.clip(y0, 0, h)), float(np.clip(y1, 0, h))
    return (x0, y0, x1, y1)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def run_ops(view: View, ops: list[dict]) -> View:
    for entry in ops:
        name = entry["op"]
        if name not in OPS:
            raise ValueError(f"unknown augmentation op {name!r} in aug record (known: {', '.join(OPS)})")
        OPS[name][1](view, entry["params"])
    return view


def _finish(src: FaceSample, view: View, key: str, ops: list[dict]) -> FaceSample:
    h, w = view.hw
    # params: a view shares the source's nested parameter values (stages never edit them in place; a
    # stage that must, copies first); only the top level is its own. aug/verdicts: new lists, the
    # source's entries shared the same way. labels, image and geometry are the view's own.
    out = FaceSample(
        key=key,
        index=src.index,
        params=dict(src.params),
        image=view.owned_image(),
        labels=view.labels,
        landmarks=None if view.landmarks is None else view.landmarks.astype(np.float32),
        visibility=view.visibility,
        bbox=_bbox_from_corners(view.corners, h, w),
        arrays=view.arrays,
        aug=list(src.aug) + ops,
        verdicts=[dict(v) for v in src.verdicts],
        split=src.split,
        identity=src.identity,
        source_key=src.key,
    )
    if view.notes:
        out.aug.append({"stage": STAGE, "op": "notes", "params": {"notes": list(view.notes)}})
    return out


class AugmentStage:
    """``process`` returns the sources (when ``keep_originals``) plus ``views_per_image`` views each,
    keyed ``f"{key}_a{j}"``, with the same index, split and identity and ``source_key`` set."""

    name = STAGE

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0, on_error: ErrorPolicy = "quarantine"):
        self.config = config or AugmentConfig()
        if not isinstance(self.config, AugmentConfig):
            raise TypeError(f"augment config must be an AugmentConfig (got {type(self.config).__name__})")
        self.seed = int(seed)
        self.on_error = check_policy(on_error)  # dmsfactory.errors: quarantine | raise

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # deterministic and fair on a shared box; once per process

    def _ops_for(self, src: FaceSample, j: int, view: View) -> list[dict]:
        cfg = self.config
        rng = np.random.default_rng(view_seed(self.seed, src.key, j))
        recorded = [{"stage": STAGE, "view": j, "op": "view",
                     "params": {"seed": self.seed, "source_key": src.key, "policy": cfg.policy,
                                "strength": cfg.strength, "impl": ALB}}]
        # all firing draws and per-op seeds in two vector draws: every op gets the same draws whether
        # or not it (or any other op) fires, so changing one op's probability leaves the others alone
        names = list(OPS)
        u = rng.random(len(names))
        seeds = rng.integers(0, 2**63 - 1, len(names))
        for i, name in enumerate(names):
            if not u[i] < cfg.probability(name):
                continue
            params = OPS[name][0](np.random.default_rng(int(seeds[i])), cfg, view)
            if params is None:
                recorded.append({"stage": STAGE, "view": j, "op": "skipped", "params": {"op": name}})
                continue
            params = _jsonable(params)
            OPS[name][1](view, params)
            recorded.append({"stage": STAGE, "view": j, "op": name, "params": params})
        return recorded

    def augment_one(self, src: FaceSample, j: int) -> FaceSample:
        view = _to_view(src)
        ops = self._ops_for(src, j, view)
        return _finish(src, view, view_key(src.key, j), ops)

    def process(self, batch: list[FaceSample]) -> list[FaceSample]:
        cfg = self.config
        out: list[FaceSample] = []
        for s in batch:
            if cfg.keep_originals:
                out.append(s)
            if s.quarantined:
                continue
            for j in range(cfg.views_per_image):
                try:
                    out.append(self.augment_one(s, j))
                except ValueError as e:
                    if self.on_error == "raise":
                        raise
                    v = s.copy()
                    v.key, v.source_key = view_key(s.key, j), s.key
                    v.quarantine(STAGE, f"cannot augment: {e}", check="augment")
                    out.append(v)
        return out

    @staticmethod
    def replay(sample_source: FaceSample, aug_record: list[dict]) -> FaceSample:
        """Re-apply a view's recorded ops to its source; gives the same image, geometry and labels.

        ``aug_record``: the view's ``aug`` list (entries of other stages and the source's own
        entries are skipped) or just its augment entries."""
        src_len = len(sample_source.aug)
        rec = aug_record[src_len:] if aug_record[:src_len] == sample_source.aug else aug_record
        ops = [e for e in rec if e.get("stage") == STAGE and e.get("op") in OPS]
        views = {e.get("view") for e in rec if e.get("stage") == STAGE and e.get("op") == "view"}
        j = next(iter(views)) if len(views) == 1 else 0
        view = run_ops(_to_view(sample_source), ops)
        kept = [e for e in rec if e.get("stage") == STAGE and e.get("op") in ("view", "skipped")]
        order = {id(e): i for i, e in enumerate(rec)}
        recorded = sorted(ops + kept, key=lambda e: order[id(e)])
        return _finish(sample_source, view, f"{sample_source.key}_a{j}", copy.deepcopy(recorded))


__all__ = ["AugmentStage", "AugmentConfig", "OP_NAMES", "view_seed", "run_ops", "view_key", "image_keys"]
