"""``wids`` shard indexes: random access to the shards for map-style training.

``DIR/wids-<split>.json`` (and ``wids-quarantine.json``, ``wids-clips-<split>.json``) are wids
dataset descriptions (``wids_version`` 1): a ``shardlist`` of ``{"url", "nsamples", "filesize",
"sha256"}`` with URLs relative to the index file, so the directory can be moved or uploaded as is.
They are written from the manifest (no shard is read)::

    import wids
    ds = wids.ShardListDataset("out/demo/wids-train.json", localname=lambda u: u)
    ds[17]   # {"__key__", ".jpg": bytes, ".json": bytes, ".params.txt": bytes, ...} (wids 0.1.11)

``localname=lambda u: u`` reads local shards in place; without it wids 0.1.11 copies every shard
into ``/tmp/_wids_cache`` first (DESIGN.md). For shards at a URL, leave it out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmsfactory.datasets.shards import write_json_atomic

SPLITS = ("train", "val", "test")
KIND = "wids-shard-index-v1"


def shard_index(name: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A wids description of ``entries`` (manifest shard entries: path, count, bytes, sha256)."""
    return {
        "__kind__": KIND,
        "wids_version": 1,
        "name": name,
        "shardlist": [
            {"url": e["path"], "nsamples": int(e["count"]), "filesize": int(e["bytes"]), "sha256": e["sha256"]}
            for e in entries
        ],
    }


def index_sets(manifest: dict[str, Any]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """file name -> (dataset name, shard entries) for every non-empty index of the dataset."""
    name = manifest.get("name", "dataset")
    clips = manifest.get("clips") or {}
    out: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for split in SPLITS:
        for fname, entries in ((f"wids-{split}.json", manifest.get("shards") or []),
                               (f"wids-clips-{split}.json", clips.get("shards") or [])):
            sel = [e for e in entries if e.get("split") == split and e.get("count")]
            if sel:
                out[fname] = (f"{name}-{fname[5:-5]}", sel)
    for fname, entries in (("wids-quarantine.json", manifest.get("quarantine") or []),
                           ("wids-clips-quarantine.json", clips.get("quarantine") or [])):
        sel = [e for e in entries if e.get("count")]
        if sel:
            out[fname] = (f"{name}-{fname[5:-5]}", sel)
    return out


def write_wids_indexes(out_dir: str | Path, manifest: dict[str, Any]) -> list[str]:
    """Write the indexes next to the shards; remove stale ones. Returns the file names written."""
    out = Path(out_dir)
    sets = index_sets(manifest)
    for old in out.glob("wids-*.json"):
        if old.name not in sets:
            old.unlink()
    for fname, (name, entries) in sets.items():
        write_json_atomic(out / fname, shard_index(name, entries), indent=1)
    return sorted(sets)
