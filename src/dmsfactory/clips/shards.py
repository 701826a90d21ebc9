"""Clip shards: one WebDataset sample per clip, frames as an ordered set of images.

Layout (under the dataset directory, next to the single-image shards)::

    DIR/clips/train-000000.tar ...          accepted clips of that batch
    DIR/clips/quarantine/train-000000.tar   rejected clips, with their reasons in the json
    DIR/clips/.progress/train-000000.json   written last: the batch is finished (keys, sha256)

A sample is ``<clip key>.json`` (:meth:`ClipSample.to_json`: clip params, temporal labels -- per
frame, per window, events, blinks, summary -- and every frame's FaceSample JSON) plus one image per
frame, ``<clip key>.f00000.jpg``, ``<clip key>.f00001.jpg``, ... (zero-padded frame index, so the
lexical order is the frame order). Plain ``webdataset`` reads it: a sample dict has keys ``json``,
``f00000.jpg``, ... Frames are stored as images, not mp4: no encoder in the environment writes a
codec that every reader decodes losslessly and frame-exactly (cv2's mp4v is lossy and its frame
count is not guaranteed on read), and per-frame images keep labels and pixels aligned by index.
Tars are written with mtime 0, so the same clips give byte-identical shards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from dmsfactory.datasets.shards import ShardRecord, decode_image, encode_image, write_split_batch
from dmsfactory.labelers.temporal import window_labels

if TYPE_CHECKING:
    import webdataset as wds

CLIPS_DIR = "clips"
QUARANTINE_DIR = "quarantine"
PROGRESS_DIR = ".progress"
_FRAME_RE = re.compile(r"^f(\d{5,})\.(jpg|png)$")


def clips_dir(dataset_dir: str | Path) -> Path:
    """``DIR/clips`` of a dataset directory; a directory that holds the clip tars itself is used as is."""
    d = Path(dataset_dir)
    return d / CLIPS_DIR if (d / CLIPS_DIR).is_dir() else d


def _clip_records(clips: list, fmt: str, quality: int) -> Iterator[dict[str, Any]]:
    for c in clips:
        rec: dict[str, Any] = {"__key__": c.key, "json": json.dumps(c.to_json(), sort_keys=True).encode()}
        for i, f in enumerate(c.frames):
            if f.image is not None:
                rec[f"f{i:05d}.{fmt}"] = encode_image(f.image, fmt, quality)
        yield rec


def write_clip_shard(
    out_dir: str | Path,
    name: str,
    clips: list,
    *,
    fmt: str = "jpg",
    quality: int = 90,
    max_bytes: int = 1 << 30,
    planned_keys: list[str] | None = None,
    spec_hash: str | None = None,
) -> ShardRecord:
    """Write a batch of ClipSamples: accepted to ``DIR/clips/<name>.tar``, rejected to ``DIR/clips/quarantine/``.

    ``name`` is ``<split>-<shard:06d>``. Returns the batch record (also written to ``.progress``).
    """
    if not re.fullmatch(r"(train|val|test)-\d{6}", name):
        raise ValueError(f"clip shard name must look like 'train-000000' (got {name!r})")
    if fmt not in ("jpg", "png"):
        raise ValueError(f"format must be 'jpg' or 'png' (got {fmt!r})")
    split = name.rsplit("-", 1)[0]
    wrong = [c.key for c in clips if c.split != split]
    if wrong:
        raise ValueError(f"clip shard {name}: clips of another split, e.g. {wrong[0]}")
    if planned_keys is not None:
        missing = set(planned_keys) - {c.key for c in clips}
        if missing:
            raise RuntimeError(f"clip shard {name}: {len(missing)} planned clips vanished, e.g. {sorted(missing)[:3]}")
    return write_split_batch(
        out_dir, name, clips, lambda group: _clip_records(group, fmt, quality), subdir=CLIPS_DIR,
        spec_hash=spec_hash, planned_keys=planned_keys or [c.key for c in clips], max_bytes=max_bytes,
        hint="lower clips.clips_per_shard", extra_counts=lambda ok: {"frames": sum(len(c.frames) for c in ok)},
    )


def clip_shard_paths(dataset_dir: str | Path, split: str | None = None, quarantine: bool = False) -> list[Path]:
    base = clips_dir(dataset_dir)
    if quarantine:
        base = base / QUARANTINE_DIR
    pat = f"{split}-*.tar" if split else "*.tar"
    return sorted(base.glob(pat))


def _decode_clip(sample: dict[str, Any], with_frames: bool = True) -> dict[str, Any]:
    doc = json.loads(sample["json"])
    frame_keys = sorted((k for k in sample if _FRAME_RE.match(k)), key=lambda k: int(_FRAME_RE.match(k).group(1)))
    out = {"__key__": sample["__key__"], "json": doc, "frames": None}
    if with_frames and frame_keys:
        if len(frame_keys) != len(doc["frames"]):
            raise ValueError(f"clip {sample['__key__']}: {len(frame_keys)} images for {len(doc['frames'])} frames")
        out["frames"] = np.stack([decode_image(sample[k]) for k in frame_keys])
    return out


def open_clip_shards(dataset_dir: str | Path, split: str | None = "train", *, with_frames: bool = True,
                     quarantine: bool = False) -> wds.WebDataset:
    """A WebDataset over the clip shards of ``split`` (None: all); each item is
    ``{"__key__", "json": clip document, "frames": uint8 (T, H, W, 3) or None}``."""
    paths = clip_shard_paths(dataset_dir, split, quarantine)
    if not paths:
        raise FileNotFoundError(f"no clip shards{'' if split is None else f' for split {split!r}'} in {clips_dir(dataset_dir)}")
    import webdataset as wds  # heavy: torch (webdataset.filters imports it); only where a WebDataset is made

    ds = wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False)
    return ds.map(lambda s: _decode_clip(s, with_frames))


def frame_windows(
    source: str | Path | Iterable[dict[str, Any]],
    length: int,
    stride: int | None = None,
    *,
    split: str | None = "train",
    drop_last: bool = True,
) -> Iterator[dict[str, Any]]:
    """Fixed-length frame windows for sequence models.

    ``source``: a dataset directory or an iterable of decoded clips (:func:`open_clip_shards` items).
    Yields ``{"clip_key", "start", "frames": (length, H, W, 3), "labels": {"per_frame": {...},
    "events": [...overlapping events]}, "state": the last frame's state}``. ``stride`` defaults to
    ``length`` (no overlap); with ``drop_last=False`` a clip's tail gives one more window ending at
    its last frame (overlapping the previous one).
    """
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive number of frames (got {length!r})")
    stride = length if stride is None else stride
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive number of frames (got {stride!r})")
    clips = open_clip_shards(source, split) if isinstance(source, (str, Path)) else source
    for c in clips:
        doc = c["json"]
        frames = c.get("frames")
        tl = doc["labels"]["temporal"]
        n = len(doc["frames"])
        starts = list(range(0, n - length + 1, stride))
        if not drop_last and n >= length and (not starts or starts[-1] + length < n):
            starts.append(n - length)
        for s in starts:
            wl = window_labels(tl, s, length)
            yield {
                "clip_key": doc["key"],
                "start": s,
                "frames": frames[s : s + length] if frames is not None else None,
                "labels": wl,
                "state": wl["per_frame"]["state"][-1],
            }
