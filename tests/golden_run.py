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

**Another CPU.** The hashes also depend on the CPU's instruction set: OpenBLAS, numpy, torch and
MediaPipe pick their kernels by it (AVX2 or AVX-512, ...), whose float results differ in the last
bits. That moves label floats by ~1e-10, a few pixels of a few images by 1-3 grey levels, and the
pixel checks and privacy distances measured on them by more (a verify estimate can flip to another
solution; a different view can decide an identity's distance): all seen here by running the same code
with another OpenBLAS kernel (``OPENBLAS_CORETYPE=Sandybridge``). The fixture therefore records the
machine it was made on (:func:`machine`) and, in ``portable.json.gz``, a machine-independent summary:
every JSON document except its ``verdicts`` (measurements, not generation) with floats to 6
significant digits and long number arrays as (count, sum, sum of |x|, two fixed random projections),
and each image as 16 x 16 block means. On the recording machine the comparison is exact (hashes); on
another it compares the summary, within float noise (:func:`compare_portable`), and says so.
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
PORTABLE = FIXTURE.with_name("portable.json.gz")
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


def machine() -> dict[str, Any]:
    """What picks the float kernels: the CPU features numpy dispatches on, OpenBLAS's core type,
    torch's CPU capability. Two machines with the same record compute the same bits."""
    import platform

    import numpy as np

    from numpy._core._multiarray_umath import __cpu_features__ as feats

    rec: dict[str, Any] = {"arch": platform.machine(), "numpy_cpu": sorted(k for k, v in feats.items() if v)}
    try:
        from threadpoolctl import threadpool_info

        rec["blas"] = sorted({f"{i.get('internal_api')}:{i.get('architecture')}" for i in threadpool_info() if i.get("user_api") == "blas"})
    except ImportError:  # pragma: no cover
        rec["blas"] = []
    try:
        import torch

        rec["torch_cpu"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:  # pragma: no cover
        rec["torch_cpu"] = None
    rec["numpy"] = np.__version__
    return rec


_PROJ: dict[int, Any] = {}


def _numbers(x: Any) -> list[float] | None:
    """The numbers of a (nested) list of numbers, flattened; None if it holds anything else."""
    out: list[float] = []
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            return None
    return out


def summarize(x: Any) -> Any:
    """A machine-independent summary of a JSON value (see the module docstring)."""
    import numpy as np

    if isinstance(x, dict):
        return {k: summarize(v) for k, v in x.items()}
    if isinstance(x, list):
        nums = _numbers(x)
        if nums is not None and len(nums) > 8:
            a = np.array(nums)
            if len(a) not in _PROJ:
                _PROJ[len(a)] = np.random.default_rng(len(a)).normal(size=(2, len(a)))
            p = _PROJ[len(a)] @ a
            return {"~n": len(a), "~sum": float(a.sum()), "~abs": float(np.abs(a).sum()), "~p": [float(p[0]), float(p[1])]}
        return [summarize(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.6g}")
    return x


def _thumb(data: bytes) -> list[list[float]]:
    import io

    import numpy as np
    from PIL import Image

    g = np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32)
    bh, bw = max(1, g.shape[0] // 16), max(1, g.shape[1] // 16)
    g = g[: bh * 16, : bw * 16].reshape(16, bh, 16, bw).mean((1, 3))
    return np.round(g, 2).tolist()


def portable_dir(out: Path) -> dict[str, Any]:
    """Per shard member: the summary of a JSON document (without ``verdicts``) or an image's block means."""
    res: dict[str, Any] = {}
    for p in sorted(out.rglob("*.tar")):
        rel = p.relative_to(out).as_posix()
        with tarfile.open(p) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                data = tf.extractfile(m).read()  # type: ignore[union-attr]
                if m.name.endswith(".json"):
                    doc = json.loads(data)
                    doc.pop("verdicts", None)
                    res[f"{rel}/{m.name}"] = summarize(doc)
                elif m.name.rsplit(".", 1)[-1] in ("jpg", "jpeg", "png", "webp"):
                    res[f"{rel}/{m.name}"] = _thumb(data)
    return res


FLOAT_TOL = 1e-4  # relative (of max(1, |x|)): 6-significant-digit rounding and last-bit noise
SUM_TOL = 1e-5  # of (sum |x| + count), for the summaries of number arrays
PIXEL_TOL = 0.5  # grey levels, per 16 x 16 block mean (seen: <= 0.125 from another BLAS kernel)


def _close(e: Any, g: Any, path: str, out: list[str]) -> None:
    if isinstance(e, dict) and "~n" in e:
        if not (isinstance(g, dict) and g.get("~n") == e["~n"]):
            out.append(f"{path}: array length {e['~n']} -> {g.get('~n') if isinstance(g, dict) else g!r}")
            return
        tol = SUM_TOL * (e["~abs"] + e["~n"])
        for k, a, b in (("sum", e["~sum"], g["~sum"]), ("abs", e["~abs"], g["~abs"]), ("p0", e["~p"][0], g["~p"][0]), ("p1", e["~p"][1], g["~p"][1])):
            if abs(a - b) > tol:
                out.append(f"{path}: array {k} {a:.6g} -> {b:.6g} (tolerance {tol:.2g})")
                return
    elif isinstance(e, dict):
        if not isinstance(g, dict) or set(e) != set(g):
            out.append(f"{path}: keys changed")
            return
        for k in e:
            _close(e[k], g[k], f"{path}/{k}", out)
    elif isinstance(e, list):
        if not isinstance(g, list) or len(e) != len(g):
            out.append(f"{path}: list changed")
            return
        for i, (a, b) in enumerate(zip(e, g)):
            _close(a, b, f"{path}[{i}]", out)
    elif isinstance(e, float) or isinstance(g, float):
        if not isinstance(g, (int, float)) or abs(e - g) > FLOAT_TOL * max(1.0, abs(e)):
            out.append(f"{path}: {e!r} -> {g!r}")
    elif e != g:
        out.append(f"{path}: {e!r} -> {g!r}")


def compare_portable(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Differences beyond float noise between two :func:`portable_dir` summaries (empty when none)."""
    out: list[str] = []
    for k in sorted(set(expected) | set(got)):
        if k not in got:
            out.append(f"portable: {k} missing now")
        elif k not in expected:
            out.append(f"portable: {k} new")
        elif isinstance(expected[k], list) and expected[k] and isinstance(expected[k][0], list):  # image block means
            import numpy as np

            d = float(np.abs(np.array(expected[k]) - np.array(got[k])).max())
            if d > PIXEL_TOL:
                out.append(f"portable: {k} pixels differ (block mean by {d:.2f} > {PIXEL_TOL})")
        else:
            found: list[str] = []
            _close(expected[k], got[k], "", found)
            out.extend(f"portable: {k}{f}" for f in found[:5])
    return out


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
    fp["machine"] = machine()
    fp["portable"] = {**portable_dir(work / "ds"), **{f"clips-demo/{k}": v for k, v in portable_dir(work / "clips-ds").items()}}
    return fp


def load_fixture() -> dict[str, Any]:
    """The recorded fingerprint, with its portable summary (``portable.json.gz``) under ``portable``."""
    import gzip

    fp = json.loads(FIXTURE.read_text())
    fp["portable"] = json.loads(gzip.decompress(PORTABLE.read_bytes())) if PORTABLE.is_file() else {}
    return fp


def check(expected: dict[str, Any], got: dict[str, Any]) -> tuple[str, list[str]]:
    """("exact", differences) on the machine the fixture was recorded on, else ("portable", ...)."""
    if expected.get("machine") == got.get("machine"):
        return "exact", compare(expected, got)
    return "portable", compare_portable(expected.get("portable", {}), got["portable"])


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
        import gzip

        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        portable = fp.pop("portable")
        FIXTURE.write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
        PORTABLE.write_bytes(gzip.compress(json.dumps(portable, sort_keys=True, separators=(",", ":")).encode(), 9, mtime=0))
        print(f"wrote {FIXTURE} and {PORTABLE.name}: {len(fp['tars'])} shards, {len(fp['members'])} members")
        return 0
    mode, diffs = check(load_fixture(), fp)
    print(f"{mode} comparison: " + ("\n".join(diffs) if diffs else "identical"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
