"""Byte-level fingerprint of a small run of the demo spec (used by tests/test_golden.py).

The fingerprint is the sha256 of every member of every shard (accepted and quarantined: images,
``<key>.json``, ``<key>.params.txt``), of every tar file, and of each top-level field of every
``<key>.json`` (``labels``, ``params``, ``landmarks``, ``verdicts``, ``aug``, ...), so that a failing
comparison says *what* changed (pixels, labels, a verdict) rather than only that something did.

A refactor must leave the fingerprint unchanged. A deliberate change of what the factory writes (a
renderer, label, augmentation or privacy change, a new label field) changes it: regenerate the
fixture from the new code and commit it with that change, saying why in the commit message::

    PYTHONPATH=src .venv/bin/python tests/golden_run.py --write

The runs are ``specs/demo.yaml`` (augment, verify and privacy on, as in ``make demo``) with
``limit=12`` renders and the reference gallery of :mod:`dmsfactory.privacy.testgallery` written to a
temporary directory, and ``specs/clips-demo.yaml`` shortened to 14 s clips at 2 fps and 64 px, three
clips (one per split; members under ``clips-demo/``). Hashes depend on the pinned wheels (numpy, OpenCV's libjpeg, MediaPipe, dlib);
a different pin can change them, which is then a real change to look at.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

try:
    import conftest  # noqa: F401  the test run's environment (OMP_NUM_THREADS=1, ...): results depend on it
except ImportError:  # writing the fixture from an older checkout (PYTHONPATH=OLD/src) that lacks dmsfactory.env
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "demo.yaml"
CLIP_SPEC = ROOT / "specs" / "clips-demo.yaml"
FIXTURE = Path(__file__).resolve().parent / "golden" / "fingerprint.json"
LIMIT = 12
CLIP_LIMIT = 3


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def fingerprint_dir(out: Path) -> dict[str, Any]:
    """Hashes of every shard (tar) under ``out`` and of each of their members."""
    tars: dict[str, str] = {}
    members: dict[str, str] = {}
    json_fields: dict[str, dict[str, str]] = {}
    for p in sorted(out.rglob("*.tar")):
        rel = p.relative_to(out).as_posix()
        tars[rel] = _sha(p.read_bytes())
        with tarfile.open(p) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                data = tf.extractfile(m).read()  # type: ignore[union-attr]
                name = f"{rel}/{m.name}"
                members[name] = _sha(data)
                if m.name.endswith(".json"):
                    doc = json.loads(data)
                    json_fields[name] = {k: _sha(json.dumps(v, sort_keys=True).encode()) for k, v in sorted(doc.items())}
    return {"tars": tars, "members": members, "json_fields": json_fields}


def _clip_spec() -> dict[str, Any]:
    """specs/clips-demo.yaml with short, small clips (14 s at 2 fps, 64 px): every scenario still fits."""
    d = yaml.safe_load(CLIP_SPEC.read_text())
    d["clips"].update({"duration_s": 14, "fps": 2, "image_size": 64})
    d["output"]["dir"] = "clips-ds"
    return d


def run_and_fingerprint(work: Path) -> dict[str, Any]:
    """Run the demo spec (``limit=LIMIT``) and the short clip spec (``CLIP_LIMIT`` clips) in ``work``."""
    from dmsfactory import pipeline
    from dmsfactory.privacy.testgallery import write_reference_gallery
    from dmsfactory.spec import parse_spec

    d = yaml.safe_load(SPEC.read_text())
    # relative paths: the spec hash (and with it every sample key) must not depend on where ``work`` is
    d["privacy"]["galleries"] = ["gallery"]
    d["output"]["dir"] = "ds"
    cwd = os.getcwd()
    os.chdir(work)
    try:
        write_reference_gallery("gallery")
        spec = parse_spec(d, source=str(SPEC))
        pipeline.run_plain(spec, "ds", limit=LIMIT)
        clip_spec = parse_spec(_clip_spec(), source=str(CLIP_SPEC))
        for name, batch in pipeline.clip_jobs(clip_spec, CLIP_LIMIT):
            pipeline.process_clip_shard(clip_spec, name, batch, "clips-ds")
    finally:
        os.chdir(cwd)
    fp = fingerprint_dir(work / "ds")
    clips = fingerprint_dir(work / "clips-ds")
    for part in ("tars", "members", "json_fields"):
        fp[part].update({f"clips-demo/{k}": v for k, v in clips[part].items()})
    fp["spec"] = f"specs/demo.yaml, limit={LIMIT}; specs/clips-demo.yaml (14 s, 2 fps, 64 px), {CLIP_LIMIT} clips"
    return fp


def compare(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Human-readable differences (empty when identical)."""
    out: list[str] = []
    for part in ("tars", "members"):
        e, g = expected[part], got[part]
        for k in sorted(set(e) | set(g)):
            if k not in g:
                out.append(f"{part}: {k} missing now")
            elif k not in e:
                out.append(f"{part}: {k} new")
            elif e[k] != g[k]:
                detail = ""
                if k in expected["json_fields"] and k in got["json_fields"]:
                    ef, gf = expected["json_fields"][k], got["json_fields"][k]
                    changed = sorted(f for f in set(ef) | set(gf) if ef.get(f) != gf.get(f))
                    detail = f" (fields changed: {', '.join(changed)})"
                out.append(f"{part}: {k} differs{detail}")
    return out


def main(argv: list[str]) -> int:
    """``--write``: record the fixture; ``--out FILE``: write this run's fingerprint there; else compare."""
    write = "--write" in argv
    with tempfile.TemporaryDirectory() as tmp:
        fp = run_and_fingerprint(Path(tmp))
    if "--out" in argv:
        Path(argv[argv.index("--out") + 1]).write_text(json.dumps(fp, sort_keys=True))
        return 0
    if write:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
        print(f"wrote {FIXTURE}: {len(fp['tars'])} shards, {len(fp['members'])} members")
        return 0
    diffs = compare(json.loads(FIXTURE.read_text()), fp)
    print("\n".join(diffs) if diffs else "identical")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
