"""Reading a dataset back: a thin layer over plain ``webdataset`` for training jobs.

``open_shards(DIR, split="train")`` returns a ``webdataset.WebDataset`` (a torch
``IterableDataset``) yielding dicts ``{"__key__", "image": uint8 HxWx3 RGB, "json": dict}``; pass it
to a ``torch.utils.data.DataLoader`` (with ``batch_size=None`` or a ``collate_fn``) or map it.
Shards are listed from ``manifest.json`` when present, so a partially written directory is never
read as a dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from dmsfactory.datasets.shards import QUARANTINE_DIR, decode_image, iter_tar_docs, iter_tar_groups, load_doc

if TYPE_CHECKING:
    import webdataset as wds


def load_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    p = Path(dataset_dir) / "manifest.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no manifest; is {dataset_dir} a finished dmsfactory dataset (run `dmsfactory run`)?")
    return json.loads(p.read_text())


def shard_entries(dataset_dir: str | Path, quarantine: bool = False) -> list[tuple[Path, str]]:
    """(tar path, split) of every shard (``quarantine``: of every quarantine shard, with the split its
    batch was planned for) in reading order: the manifest's; without a manifest, sorted file names,
    the split being the name's head (``train-000003.tar``)."""
    d = Path(dataset_dir)
    try:
        m = load_manifest(d)
    except FileNotFoundError:
        base = d / QUARANTINE_DIR if quarantine else d
        return [(p, p.name.partition("-")[0]) for p in sorted(base.glob("*.tar"))]
    return [(d / e["path"], e["split"]) for e in m["quarantine" if quarantine else "shards"]]


def shard_paths(dataset_dir: str | Path, split: str | None = None, quarantine: bool = False) -> list[Path]:
    return [p for p, s in shard_entries(dataset_dir, quarantine) if split is None or s == split]


def _decode(sample: dict[str, Any]) -> dict[str, Any]:
    raw = sample.get("jpg") or sample.get("png")
    return {
        "__key__": sample["__key__"],
        "image": decode_image(raw) if raw is not None else None,
        "json": load_doc(sample["json"]),
    }


def open_shards(
    dataset_dir: str | Path,
    split: str = "train",
    *,
    shuffle: int = 0,
    transform: Callable[[dict[str, Any]], Any] | None = None,
) -> wds.WebDataset:
    """A WebDataset over one split's shards, decoding images (cv2) and labels (json)."""
    paths = shard_paths(dataset_dir, split)
    if not paths:
        raise FileNotFoundError(f"no '{split}' shards in {dataset_dir}")
    import webdataset as wds  # heavy: torch (webdataset.filters imports it); only where a WebDataset is made

    ds = wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False)
    if shuffle:
        ds = ds.shuffle(shuffle)
    ds = ds.map(_decode)
    if transform is not None:
        ds = ds.map(transform)
    return ds


def iter_records(
    dataset_dir: str | Path, *, include_quarantine: bool = True, with_images: bool = False
) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
    """Every written sample's JSON document (and image if asked), accepted then quarantined."""
    for p in shard_paths(dataset_dir):
        yield from iter_tar_docs(p, with_images)
    if include_quarantine:
        for p in shard_paths(dataset_dir, quarantine=True):
            yield from iter_tar_docs(p, with_images)


def iter_raw(dataset_dir: str | Path, *, include_quarantine: bool = True) -> Iterator[tuple[dict[str, Any], bytes | None, bool]]:
    """Every written sample as (json doc, encoded image bytes or None, quarantined?), streamed one
    sample at a time: decode only the images you need (``decode_image``)."""
    for doc, raw, quarantined, _split in iter_raw_split(dataset_dir, include_quarantine=include_quarantine):
        yield doc, raw, quarantined


def iter_raw_split(dataset_dir: str | Path, *, include_quarantine: bool = True) -> Iterator[tuple[dict[str, Any], bytes | None, bool, str]]:
    """:func:`iter_raw` with the split of each sample's shard (:func:`shard_entries`), in the same order:
    the accepted shards of every split in manifest order, then the quarantine shards; within a shard,
    the written order."""
    for quarantined in (False, True) if include_quarantine else (False,):
        for p, split in shard_entries(dataset_dir, quarantine=quarantined):
            for _key, parts in iter_tar_groups(p):
                if "json" in parts:
                    yield load_doc(parts["json"]), parts.get("jpg") or parts.get("png"), quarantined, split
