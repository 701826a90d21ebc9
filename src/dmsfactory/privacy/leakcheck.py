"""``dmsfactory leakcheck INPUT --gallery DIR [--gallery DIR ...] [--report PATH]``: the standalone gate.

INPUT is a shard directory (``*.tar`` with ``jpg``/``png`` + ``json`` per key, searched recursively;
quarantine shards included) or a plain directory of images (searched recursively; the first
sub-directory level, if any, is taken as the identity). Every image is checked from its pixels:
descriptors stored in shard JSON are ignored, so a reviewer does not have to trust the producer.

Exit codes: 0 clean, 1 at least one image leaked a gallery identity (or, with ``fail_on_duplicates``,
two synthetic identities are the same face), 2 bad input (missing/empty input, missing gallery, a
gallery without a single usable face). Unreadable or faceless gallery files are listed in the report.
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dmsfactory.errors import UserError
from dmsfactory.privacy.descriptors import IMAGE_EXTENSIONS, ImageError, load_image
from dmsfactory.sample import FaceSample, is_quarantined

EXIT_CLEAN, EXIT_LEAK, EXIT_BAD_INPUT = 0, 1, 2


class InputError(UserError, ValueError):
    pass


def _wds_split(name: str) -> tuple[str, str]:
    """webdataset's key/extension split: the extension starts at the first dot of the basename."""
    d, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext.lower()


def _iter_groups(tar_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream (key, {ext: bytes}) groups; webdataset writes a key's members next to each other."""
    with tarfile.open(tar_path, "r|*") as tf:
        key, parts = None, {}
        for m in tf:
            if not m.isfile():
                continue
            k, ext = _wds_split(m.name)
            if k != key and parts:
                yield key, parts
                parts = {}
            key = k
            f = tf.extractfile(m)
            if f is not None:
                parts[ext] = f.read()
        if parts:
            yield key, parts


def iter_shard_samples(tars: list[Path]) -> Iterator[tuple[FaceSample | None, str, str | None]]:
    """(sample, ref, error) per key in the shards (streamed); the image is decoded, the JSON parsed if present."""
    for t in tars:
        try:
            for key, parts in _iter_groups(t):
                ref = f"{t.name}:{key}"
                img_ext = next((e for e in ("jpg", "jpeg", "png", "webp") if e in parts), None)
                if img_ext is None:
                    continue  # e.g. a manifest-only member
                try:
                    img = load_image(parts[img_ext], name=f"{ref}.{img_ext}")
                except ImageError as e:
                    yield None, ref, str(e)
                    continue
                doc: dict[str, Any] = {}
                if "json" in parts:
                    try:
                        doc = json.loads(parts["json"])
                    except ValueError:
                        doc = {}
                try:
                    s = FaceSample.from_json(doc, image=img) if doc.get("key") is not None and doc.get("index") is not None else None
                except (KeyError, TypeError, ValueError):
                    s = None
                if s is None:
                    s = FaceSample(key=key, index=0, params={}, image=img)
                # re-check from pixels: forget what the producer's privacy stage stored
                s.verdicts = [v for v in s.verdicts if v.get("stage") != "privacy"]
                s.arrays.pop("face_descriptor", None)
                s.arrays.pop("phash", None)
                yield s, ref, None
        except (tarfile.TarError, OSError) as e:
            yield None, t.name, f"unreadable shard: {e}"


def _collect(input_path: Path) -> tuple[str, list[Path]]:
    if not input_path.exists():
        raise InputError(f"INPUT {str(input_path)!r} does not exist")
    if not input_path.is_dir():
        raise InputError(f"INPUT {str(input_path)!r} is not a directory (give a shard directory or an image directory)")
    tars = sorted(input_path.rglob("*.tar"))
    if tars:
        return "shards", tars
    imgs = sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not imgs:
        raise InputError(f"INPUT {str(input_path)!r} contains no .tar shards and no images ({', '.join(IMAGE_EXTENSIONS)})")
    return "images", imgs


def leakcheck(
    input_path: str | Path,
    galleries: list[str | Path],
    report_path: str | Path | None = None,
    threshold: float | None = None,
    config: Any | None = None,
    fail_on_duplicates: bool = False,
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
) -> int:
    """Check every image in ``input_path`` against ``galleries``; write the report; return the exit code."""
    from pydantic import ValidationError

    from dmsfactory.privacy.config import PrivacyConfig
    from dmsfactory.privacy.leakage import GalleryError
    from dmsfactory.privacy.report import build_report
    from dmsfactory.privacy.stage import PrivacyStage

    say = log or (lambda m: print(m, file=sys.stderr))
    input_path = Path(input_path)
    report_path = Path(report_path) if report_path else Path("privacy_report.json")
    if not galleries:
        say("leakcheck: at least one --gallery DIR is required")
        return EXIT_BAD_INPUT
    try:
        base = config.model_dump() if config is not None else {}
        base.update(enabled=True, galleries=[str(g) for g in galleries])
        if threshold is not None:
            base["threshold"] = threshold
        cfg = PrivacyConfig(**base)
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "gallery"
            say(f"leakcheck: {loc}: {err['msg'].removeprefix('Value error, ')}")
        return EXIT_BAD_INPUT
    try:
        mode, paths = _collect(input_path)
    except InputError as e:
        say(f"leakcheck: {e}")
        return EXIT_BAD_INPUT
    if report_path.exists() and report_path.is_dir():
        say(f"leakcheck: --report {str(report_path)!r} is a directory; give a file path such as privacy_report.json")
        return EXIT_BAD_INPUT

    def progress(what: str, done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            say(f"leakcheck: {what}: {done}/{total} files described (cached files are reused)")

    stage = PrivacyStage(cfg, progress=progress)
    try:
        stage.setup()
    except GalleryError as e:
        say(f"leakcheck: {str(e).replace('privacy.galleries', '--gallery')}")
        return EXIT_BAD_INPUT

    records: list[dict[str, Any]] = []
    input_problems: list[dict[str, str]] = []
    where: dict[str, tuple[str, Any]] = {}  # key -> how to re-read the image for thumbnails

    def samples() -> Iterator[FaceSample]:
        if mode == "shards":
            for s, ref, err in iter_shard_samples(paths):
                if err:
                    input_problems.append({"file": ref, "problem": err})
                else:
                    where[s.key] = ("tar", ref)
                    yield s
        else:
            for i, p in enumerate(paths):
                rel = p.relative_to(input_path).as_posix()
                try:
                    img = load_image(p, name=rel)
                except ImageError as e:
                    input_problems.append({"file": rel, "problem": str(e)})
                    continue
                parts = rel.split("/")
                where[rel] = ("file", p)
                yield FaceSample(key=rel, index=i, params={}, image=img, identity=parts[0] if len(parts) > 1 else None)

    batch: list[FaceSample] = []
    seen_keys: set[str] = set()

    def flush() -> None:
        for s in stage.process(batch):
            records.append(s.to_json())
        batch.clear()

    for s in samples():
        if s.key in seen_keys:  # same key in two shards: keep both, disambiguated
            orig = s.key
            s.key = f"{s.key}#{len(records) + len(batch)}"
            where[s.key] = where[orig]
        seen_keys.add(s.key)
        batch.append(s)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if not records:
        say(f"leakcheck: no readable image in {str(input_path)!r} ({len(input_problems)} unreadable)")
        return EXIT_BAD_INPUT

    redacted = {r["key"] for r in records if is_quarantined(r, check="leakage")}

    from dmsfactory.privacy.report import shard_image_lookup
    from dmsfactory.privacy.stage import mosaic

    in_shards = shard_image_lookup(input_path)

    def lookup(key: str) -> np.ndarray | None:
        w = where.get(key)
        if w is None:
            return None
        try:
            img = load_image(w[1]) if w[0] == "file" else in_shards(w[1].split(":", 1)[1])
        except ImageError:
            return None
        return mosaic(img) if (img is not None and key in redacted) else img

    sec = build_report(records, cfg, stage.galleries, lookup, title="Privacy leak check")
    sec.data["input"] = {"path": str(input_path), "mode": mode, "files": len(paths), "problems": input_problems}
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(sec.data, indent=2, default=_json_default))
    report_path.with_suffix(".md").write_text(f"# {sec.title}\n\n{sec.markdown}")
    for rel, blob in sec.files.items():
        out = report_path.parent / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)

    v = sec.data["verdicts"]
    dup = len(sec.data["memorisation"]["identity_pairs_same_face"])
    say(
        f"leakcheck: {len(records)} images, leaked {v['leaked']}, clean {v['clean']}, no face {v['no_face'] + v['faceless_quarantined']}, "
        f"no descriptor {v['no_descriptor']}; identity pairs same face {dup}; report {report_path}"
    )
    if v["leaked"]:
        return EXIT_LEAK
    if fail_on_duplicates and dup:
        return EXIT_LEAK
    return EXIT_CLEAN


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def leakcheck_main(argv: list[str] | None = None) -> int:
    """A self-contained argparse front end (the project CLI may wrap :func:`leakcheck` instead)."""
    import argparse

    ap = argparse.ArgumentParser(prog="dmsfactory leakcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="shard directory or image directory")
    ap.add_argument("--gallery", action="append", default=[], required=True, help="real gallery directory (repeatable)")
    ap.add_argument("--report", default="privacy_report.json", help="report JSON path (markdown + PNGs next to it)")
    ap.add_argument("--threshold", type=float, default=None, help="same-person distance threshold (default 0.6)")
    ap.add_argument("--fail-on-duplicates", action="store_true", help="exit 1 also when two synthetic identities are one face")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return EXIT_BAD_INPUT if e.code else EXIT_CLEAN
    return leakcheck(a.input, a.gallery, a.report, a.threshold, fail_on_duplicates=a.fail_on_duplicates)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(leakcheck_main())
