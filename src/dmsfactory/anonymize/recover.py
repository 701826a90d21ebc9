"""``dmsfactory recover DIR --key KEYFILE --out OUT``: the original frames, bit-exact.

All records are authenticated and decrypted before anything is written; every restored frame is
checked against the original's sha256 from its record; the frames go to a temporary directory that
becomes ``OUT`` only when all of them succeeded. A wrong key (``WrongKeyError``), a modified record
(``TamperedRecordError``) or an anonymised frame that changed since (``RecoveryMismatchError``)
therefore restores nothing.

Output: images as ``OUT/<relative path>.png`` (the decoded original pixels; a JPEG source's pixels,
not its file bytes), videos as ``OUT/<relative path>.mkv`` (FFV1, lossless, the source's frame rate).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dmsfactory.anonymize.keys import (Record, RecoveryError, RecoveryMismatchError, TamperedRecordError, frame_hash,
                                       load_key, open_record, read_records, restore)
from dmsfactory.anonymize.media import VideoWriter, encode_png, iter_video
from dmsfactory.datasets.shards import decode_image


class NotAnonymizedError(RecoveryError):
    """The directory is not an anonymised output with recovery records."""


def _load_manifest(d: Path) -> dict[str, Any]:
    m = d / "manifest.json"
    if not m.is_file():
        raise NotAnonymizedError(f"{d}: no manifest.json; is this the --out directory of `dmsfactory anonymize`?")
    man = json.loads(m.read_text())
    if man.get("kind") != "dmsfactory-anonymized":
        raise NotAnonymizedError(f"{d}: manifest.json is not an anonymisation manifest")
    if not man.get("anonymize", {}).get("keyed"):
        raise NotAnonymizedError(f"{d}: anonymised without --key: there are no recovery records")
    return man


def _frames_shards(d: Path, man: dict) -> list[tuple[dict, np.ndarray]]:
    out = []
    for sh in man["shards"]:
        parts: dict[str, dict[str, bytes]] = defaultdict(dict)
        with tarfile.open(d / sh["path"]) as tf:
            for m in tf:
                if m.isfile():
                    key, _, ext = m.name.partition(".")
                    parts[key][ext] = tf.extractfile(m).read()  # type: ignore[union-attr]
        for key, p in parts.items():
            out.append((json.loads(p["json"]), decode_image(p["png"])))
    return out


def _frames_media(d: Path, man: dict) -> list[tuple[dict, np.ndarray | None]]:
    out: list[tuple[dict, np.ndarray | None]] = []
    for s in man["sources"]:
        if s["kind"] == "image":
            p = d / s["path"]
            p = p.with_suffix(".png") if p.suffix.lower() != ".png" else p
            if not p.is_file():
                raise RecoveryMismatchError(f"{p}: anonymised image missing")
            out.append((json.loads(p.with_suffix(".json").read_text()), decode_image(p.read_bytes())))
        else:
            sub = (d / s["path"]).parent
            cands = list(sub.glob(Path(s["path"]).name + ".labels.jsonl"))
            if not cands:
                raise RecoveryMismatchError(f"{d / s['path']}: labels file of the anonymised video missing")
            labels = cands[0]
            docs = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()]
            vids = [p for p in sub.glob(Path(s["path"]).stem + ".*") if p.suffix.lower() in (".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm")]
            frames = {i: img for i, _, img in iter_video(vids[0])} if vids else {}
            for doc in docs:
                out.append((doc, frames.get(doc["params"]["source"]["frame_index"])))
    return out


def recover_path(d: str | Path, key_path: str | Path, out: str | Path) -> dict[str, Any]:
    d, out = Path(d), Path(out)
    key = load_key(key_path)
    man = _load_manifest(d)
    if out.exists() and any(out.iterdir()):
        raise RecoveryError(f"{out}: exists and is not empty; choose an empty --out")
    # 1. authenticate + decrypt every record before touching the output
    recs: dict[str, Record] = {}
    files = sorted((d / "recovery").glob("*.rec"))
    if not files:
        raise NotAnonymizedError(f"{d / 'recovery'}: no recovery records")
    for f in files:
        for i, blob in read_records(f):
            r = open_record(key, blob, f"{f.name} record {i}")
            recs[r.header["frame"]] = r
    frames = _frames_shards(d, man) if man["format"] == "shards" else _frames_media(d, man)
    missing = [doc["key"] for doc, _ in frames if doc["key"] not in recs]
    if missing:
        raise TamperedRecordError(f"{len(missing)} frame(s) have no recovery record, e.g. {missing[:3]}; nothing was restored")
    # 2. restore into a temporary directory
    tmp = out.parent / f".{out.name}.recover-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    n = 0
    try:
        videos: dict[str, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        for doc, anon in frames:
            rec = recs[doc["key"]]
            src = doc["params"]["source"]
            if rec.header.get("full_frame"):
                img = _full(rec, doc["key"])
            else:
                if anon is None:
                    raise RecoveryMismatchError(f"{doc['key']}: anonymised frame missing from the output")
                img = restore(rec, anon, doc["key"])
            if src["kind"] == "image":
                p = tmp / src["path"]
                p = p.with_suffix(".png")
                p.parent.mkdir(parents=True, exist_ok=True)
                _write_png(p, img)
            else:
                videos[src["path"]].append((int(src["frame_index"]), img, float(src.get("fps") or 25.0)))
            n += 1
        for rel, fr in videos.items():
            fr.sort(key=lambda x: x[0])
            vw = VideoWriter((tmp / rel).with_suffix(".mkv"), fr[0][2], (fr[0][1].shape[1], fr[0][1].shape[0]), True)
            for _, img, _ in fr:
                vw.write(img)
            vw.commit()
        out.mkdir(parents=True, exist_ok=True)
        for p in tmp.iterdir():
            shutil.move(str(p), str(out / p.name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"frames": n, "records": len(recs), "out": str(out), "videos": len(videos)}


def _full(rec: Record, where: str) -> np.ndarray:
    img = rec.regions[0]
    if list(img.shape) != list(rec.header["shape"]) or frame_hash(img) != rec.header["sha256_original"]:
        raise RecoveryMismatchError(f"{where}: full-frame record does not hash to the original's sha256")
    return img


def _write_png(p: Path, rgb: np.ndarray) -> None:
    p.write_bytes(encode_png(rgb))
