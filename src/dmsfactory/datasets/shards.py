"""WebDataset shard writing with crash-safe resume.

Layout of a dataset directory::

    DIR/train-000000.tar ...   accepted samples, one tar per planned batch, per split
    DIR/val-000000.tar ...
    DIR/quarantine/train-000000.tar ...   rejected samples of that batch, with their reasons
    DIR/.progress/train-000000.json       written last: the batch is finished
    DIR/manifest.json  DIR/README.md (dataset card)  DIR/card/*.png

Each sample is ``<key>.jpg`` (or ``.png``) + ``<key>.json`` (:meth:`FaceSample.to_json`) +
``<key>.params.txt`` (the exact JSON text of ``params``, for readers that need declared column types:
Hugging Face keeps it as a string column; docs/readers.md).
A batch is written to ``*.tar.partial`` and renamed atomically; its progress record (keys,
counts, sha256 of the tar files, spec hash) is written after the rename. On a rerun a batch is
skipped only if its record exists, matches the spec hash and planned keys, and the files still
hash to the recorded values; anything else (a SIGKILL mid-write, a corrupted file) is rewritten.
Every planned key therefore ends up exactly once in the dataset, in a shard or in quarantine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NotRequired, TypedDict

import cv2
import numpy as np
import orjson  # a label document is ~30 kB of JSON (landmarks, arrays): orjson reads it ~1.4x faster, writes it ~10x

from dmsfactory.datasets.record_schema import PARAMS_MEMBER, dumps_sorted, params_member, plain_json
from dmsfactory.fileio import sha256_file  # noqa: F401  (re-exported: readers and the remote store use it)
from dmsfactory.sample import FaceSample

if TYPE_CHECKING:
    import webdataset as wds

PROGRESS_DIR = ".progress"
QUARANTINE_DIR = "quarantine"


class TarInfo(TypedDict):
    """One written tar: what :func:`write_tar` returns, plus its path relative to the dataset."""

    name: str
    count: int
    bytes: int
    sha256: str
    path: NotRequired[str]


class BatchCounts(TypedDict):
    accepted: int
    quarantined: int
    frames: NotRequired[int]  # clip batches: frames of the accepted clips


class ShardRecord(TypedDict):
    """The record of one finished batch (image or clip shard): returned by :func:`write_batch` and
    :func:`dmsfactory.clips.shards.write_clip_shard`, stored as ``.progress/<name>.json``, read back
    by :func:`finished_record` on resume and by the manifest, the card and the run summary."""

    name: str  # "<split>-<shard:06d>"
    split: str
    spec_hash: str | None
    planned_keys: list[str]
    shard: TarInfo | None  # accepted samples; None when all were quarantined
    quarantine: TarInfo | None  # quarantined samples; None when there were none
    counts: BatchCounts
    quarantine_reasons: dict[str, list[str]]
    resumed: NotRequired[bool]  # set by the runner: kept from an earlier run, not written now
    cached: NotRequired[bool]  # set by the Prefect flow: a task-cache hit


def encode_image(image: np.ndarray, fmt: str, quality: int) -> bytes:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError(f"cv2 failed to encode a {fmt} image")
    return buf.tobytes()


def encode_sample(s: FaceSample, fmt: str, quality: int) -> bytes:
    """``s.image`` encoded as the shard stores it, encoded once: the privacy gate judges these bytes
    and the writer writes them. The cache holds the array it was made from and is used only while
    ``s.image`` is still that array (a stage that replaces the image, e.g. the gate's mosaic, voids it)."""
    c = s.encoded
    if c is not None and c[0] == fmt and c[1] == int(quality) and c[2] is s.image:
        return c[3]
    data = encode_image(s.image, fmt, quality)
    s.encoded = (fmt, int(quality), s.image, data)
    return data


def decode_image(data: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ValueError("undecodable image bytes")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def write_tar(path: Path, records: Iterable[dict[str, Any]], max_bytes: int, hint: str) -> TarInfo:
    """Write webdataset ``records`` ({"__key__", ext: bytes, ...}) to ``path`` atomically.

    Written to ``*.partial``, fsynced, size-checked (``hint`` says what to lower), then renamed.
    """
    import webdataset as wds  # heavy: torch (webdataset.filters imports it); not needed to read shards

    tmp = path.with_name(path.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as stream:
        # fixed mtime: the same samples give byte-identical shards (sha256 in the manifest); an integer, as
        # a float one (0.0) made tarfile add a pax header to every member: 1 kB more per member, and
        # reading a shard back took twice as long
        with wds.TarWriter(stream, mtime=0) as tw:
            count = 0
            for rec in records:
                tw.write(rec)
                count += 1
        stream.flush()
        os.fsync(stream.fileno())
    size = tmp.stat().st_size
    if size > max_bytes:
        tmp.unlink()
        raise ValueError(f"shard {path.name} would be {size} bytes > max_bytes={max_bytes}; {hint}")
    os.replace(tmp, path)
    return {"name": str(path.name), "count": count, "bytes": size, "sha256": sha256_file(path)}


def write_json_atomic(path: Path, data: Any, indent: int | None = None) -> None:
    """Write a JSON document via ``*.partial`` + rename (progress records, manifest, reports)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=indent))
    os.replace(tmp, path)


def sample_doc_bytes(s: FaceSample) -> tuple[bytes, bool]:
    """The JSON document of ``s`` as written to its shard, and whether orjson may write it (finite numbers
    only: the landmarks and arrays, most of a document's numbers, are checked as arrays; the rest, as
    :func:`~dmsfactory.datasets.record_schema.plain_json`)."""
    doc = s.to_json()
    plain = s.numbers_finite() and plain_json({k: v for k, v in doc.items() if k not in ("landmarks", "arrays")})
    return dumps_sorted(doc, plain=plain), plain


def _sample_records(samples: list[FaceSample], fmt: str, quality: int) -> Iterator[dict[str, Any]]:
    for s in samples:
        doc, plain = sample_doc_bytes(s)
        rec: dict[str, Any] = {"__key__": s.key, "json": doc,
                               # exact params for typed readers; a document that is not plain may still have
                               # plain params, so those are checked alone
                               PARAMS_MEMBER: params_member(s.params, plain=True if plain else None)}
        if s.image is not None:
            rec[fmt] = encode_sample(s, fmt, quality)
        yield rec


def progress_path(out_dir: Path, name: str, subdir: str = "") -> Path:
    return Path(out_dir) / subdir / PROGRESS_DIR / f"{name}.json"


def finished_record(
    out_dir: Path, name: str, spec_hash: str, keys: list[str], subdir: str = ""
) -> ShardRecord | None:
    """The batch's progress record if the batch is complete and intact, else None.

    ``subdir`` is where the batch's ``.progress`` lives (``"clips"`` for clip shards)."""
    p = progress_path(out_dir, name, subdir)
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if rec.get("spec_hash") != spec_hash or rec.get("planned_keys") != keys:
        return None
    for part in ("shard", "quarantine"):
        info = rec.get(part)
        if info is None:
            continue
        f = Path(out_dir) / info["path"]
        if not f.is_file() or sha256_file(f) != info["sha256"]:
            return None
    return rec


def write_split_batch(
    out_dir: Path,
    name: str,
    items: list,
    records: Callable[[list], Iterable[dict[str, Any]]],
    *,
    subdir: str = "",
    spec_hash: str | None,
    planned_keys: list[str],
    max_bytes: int,
    hint: str,
    extra_counts: Callable[[list], dict[str, int]] | None = None,
) -> ShardRecord:
    """The one batch writer, for images and clips: accepted ``items`` to ``DIR/<subdir>/<name>.tar``,
    quarantined ones to ``DIR/<subdir>/quarantine/<name>.tar``, then the progress record.

    ``items`` carry ``key``, ``quarantined`` and ``quarantine_reasons`` (:class:`~dmsfactory.sample.Verdicts`);
    ``records(group)`` yields their webdataset records; ``hint`` says what to lower when a tar
    exceeds ``max_bytes``; ``extra_counts(accepted)`` adds counts (clips: frames)."""
    out_dir = Path(out_dir)
    root = out_dir / subdir if subdir else out_dir
    ok = [s for s in items if not s.quarantined]
    bad = [s for s in items if s.quarantined]
    rec: ShardRecord = {  # type: ignore[typeddict-item]  (counts and reasons are added below)
        "name": name,
        "split": name.rsplit("-", 1)[0],
        "spec_hash": spec_hash,
        "planned_keys": list(planned_keys),
        "shard": None,
        "quarantine": None,
    }
    for sub, group, part in (("", ok, "shard"), (QUARANTINE_DIR, bad, "quarantine")):
        path = root / sub / f"{name}.tar" if sub else root / f"{name}.tar"
        if group:
            info = write_tar(path, records(group), max_bytes, hint)
            info["path"] = str(path.relative_to(out_dir))
            rec[part] = info  # type: ignore[literal-required]
        elif path.exists():  # left over from an earlier, different attempt
            path.unlink()
    rec["counts"] = {"accepted": len(ok), "quarantined": len(bad), **(extra_counts(ok) if extra_counts else {})}  # type: ignore[typeddict-item]
    rec["quarantine_reasons"] = {s.key: s.quarantine_reasons for s in bad}
    write_json_atomic(progress_path(out_dir, name, subdir), rec)
    return rec


def write_batch(
    out_dir: Path,
    name: str,
    samples: list[FaceSample],
    *,
    spec_hash: str,
    planned_keys: list[str],
    fmt: str = "jpg",
    quality: int = 95,
    max_bytes: int = 1 << 30,
) -> ShardRecord:
    """Write one batch: accepted samples to ``DIR/<name>.tar``, rejected to ``DIR/quarantine/<name>.tar``."""
    planned = set(planned_keys)
    roots = {s.source_key or s.key for s in samples}
    missing = planned - roots
    if missing:  # the stage contract was broken somewhere: fail loudly rather than lose samples
        raise RuntimeError(f"batch {name}: {len(missing)} planned samples vanished, e.g. {sorted(missing)[:3]}")
    return write_split_batch(out_dir, name, samples, lambda group: _sample_records(group, fmt, quality),
                             spec_hash=spec_hash, planned_keys=planned_keys, max_bytes=max_bytes,
                             hint="lower shards.size")


def clean_partials(out_dir: Path) -> int:
    """Remove ``*.partial`` files left by a killed run. Returns how many were removed."""
    n = 0
    for p in Path(out_dir).rglob("*.partial"):
        p.unlink()
        n += 1
    return n


def iter_tar_groups(path: Path):
    """Stream ``(key, {ext: bytes})`` per sample of one shard (webdataset writes a key's members next
    to each other), holding one sample at a time, whatever the shard size."""
    import tarfile

    with tarfile.open(path, "r|*") as tf:
        key, parts = None, {}
        for m in tf:
            if not m.isfile():
                continue
            k, _, ext = m.name.partition(".")
            if k != key and parts:
                yield key, parts
                parts = {}
            key = k
            f = tf.extractfile(m)
            parts[ext] = f.read() if f is not None else b""
        if parts:
            yield key, parts


def load_doc(raw: bytes) -> dict[str, Any]:
    """One sample's JSON document, as ``json.loads`` reads it (orjson; ``json`` for what orjson refuses,
    e.g. NaN or integers beyond 64 bits)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def iter_tar_docs(path: Path, with_images: bool = False):
    """Yield (json doc, image or None) from one shard, streamed (no decoding pipeline)."""
    for _key, parts in iter_tar_groups(path):
        if "json" not in parts:
            continue
        doc = load_doc(parts["json"])
        img = None
        if with_images:
            raw = parts.get("jpg") or parts.get("png")
            img = decode_image(raw) if raw else None
        yield doc, img
