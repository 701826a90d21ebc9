"""``dmsfactory leakcheck INPUT --gallery DIR [--gallery DIR ...] [--report DIR] [--mode M]``: the gate, re-run.

INPUT is a shard directory (``*.tar`` with ``jpg``/``png`` + ``json`` per key, searched recursively;
quarantine shards included) or a plain directory of images (searched recursively; the first
sub-directory level, if any, is taken as the identity). Everything is checked from the bytes on disk:
descriptors stored in shard JSON are ignored, so a reviewer does not have to trust the producer.

**It reproduces the gate, in the gate's mode** (docs/privacy.md). The gate judges an identity on a
few views and records, on every image of the identity, the views that decided and the sha256 of the
exact bytes it judged. ``--mode auto`` (default) re-describes exactly those views from the shards
(checking their sha256) and gives the identity's images that verdict; every other image is judged on
its own pixels, as the gate did. Face presence is re-checked on every image. Detector settings and
thresholds are the dataset's own (``manifest.json``: ``spec.privacy``) unless overridden; galleries are
the ``--gallery`` directories. Each image's verdict is then compared with the gate's recorded one
(``agreement`` in the report) whenever the galleries (content hash) and thresholds are the gate's.
``--mode image`` is a **per-image audit**: every image is described on its own, and an image within
the threshold of a gallery face is reported as an audit finding (and a leak), whatever its identity's
verdict. ``--mode identity`` is ``auto`` that fails (exit 2) when the input holds no identity verdicts.

It only **flags**: the dataset is never changed. Exit codes: 0 clean (and, where comparable, every
verdict reproduced); 1 at least one image leaked a gallery identity (accepted or quarantine shard),
or, with ``fail_on_duplicates``, two synthetic identities are the same face; 2 bad input (missing or
empty input, missing gallery, a gallery without a single usable face); 3 no leak, but some of the
gate's verdicts were not reproduced (listed in the report). The report goes to
``INPUT/leakcheck/`` (``privacy_report.json``, ``privacy_report.md``, ``privacy/*.png``) or ``--report
DIR``, never to the working directory.
"""

from __future__ import annotations

import json
import sys
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dmsfactory.errors import UserError
from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.descriptors import IMAGE_EXTENSIONS, ImageError, load_image
from dmsfactory.privacy.leakage import GalleryError
from dmsfactory.privacy.report import PrivacyReport, _pv, fetch_images, sample_verdict
from dmsfactory.privacy.stage import PrivacyStage
from dmsfactory.sample import FaceSample, is_quarantined

EXIT_CLEAN, EXIT_LEAK, EXIT_BAD_INPUT, EXIT_DISAGREE = 0, 1, 2, 3
MODES = ("auto", "identity", "image")
REPORT_DIR = "leakcheck"


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


def _img_ext(parts: dict[str, Any]) -> str | None:
    return next((e for e in ("jpg", "jpeg", "png", "webp") if e in parts), None)


def iter_shard_samples(tars: list[Path]) -> Iterator[tuple[FaceSample | None, str, str | None, dict[str, Any]]]:
    """(sample, ref, error, original doc) per key in the shards (streamed): the image decoded (its
    bytes kept as the sample's ``encoded`` cache, for their sha256), the JSON parsed if present, the
    producer's privacy verdicts, descriptor and hash removed from the sample (not from the doc)."""
    for t in tars:
        try:
            for key, parts in _iter_groups(t):
                ref = f"{t.name}:{key}"
                img_ext = _img_ext(parts)
                if img_ext is None:
                    continue  # e.g. a manifest-only member
                try:
                    img = load_image(parts[img_ext], name=f"{ref}.{img_ext}")
                except ImageError as e:
                    yield None, ref, str(e), {}
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
                s.encoded = ("disk", 0, img, parts[img_ext])
                # re-check from pixels: forget what the producer's privacy stage stored
                s.verdicts = [v for v in s.verdicts if v.get("stage") != "privacy"]
                s.arrays.pop("face_descriptor", None)
                s.arrays.pop("phash", None)
                yield s, ref, None, doc
        except (tarfile.TarError, OSError) as e:
            yield None, t.name, f"unreadable shard: {e}", {}


class RecordedViews:
    """The gate's identity views as recorded in the shards (a :class:`ViewSource` for the stage).

    :meth:`scan` reads every JSON member once (no image is decoded): for each identity the gate
    judged at identity level, the view keys it names (in the order they decided) with the sha256 of
    the bytes the gate judged, and where each view's image lies in the shards (read back on demand)."""

    def __init__(self) -> None:
        self.views: dict[str, list[dict[str, Any]]] = {}  # identity -> [{key, sha256, distance}]
        self.gate: dict[str, dict[str, Any]] = {}  # identity -> the gate's leakage scores
        self._wanted: set[str] = set()
        self._where: dict[str, tuple[Path, int, int]] = {}  # key -> (tar, offset, size) of its image
        self._bbox: dict[str, Any] = {}
        self.missing: list[str] = []

    @classmethod
    def scan(cls, tars: list[Path]) -> "RecordedViews":
        rv = cls()
        for t in tars:
            last_img: dict[str, tuple[int, int]] = {}
            try:
                with tarfile.open(t) as tf:
                    for m in tf:
                        if not m.isfile():
                            continue
                        key, ext = _wds_split(m.name)
                        if ext in ("jpg", "jpeg", "png", "webp"):
                            if key in rv._wanted:
                                rv._where[key] = (t, m.offset_data, m.size)
                            else:
                                last_img = {key: (m.offset_data, m.size)}
                            continue
                        if ext != "json":
                            continue
                        f = tf.extractfile(m)
                        try:
                            doc = json.loads(f.read()) if f else {}
                        except ValueError:
                            continue
                        rv._register(doc)
                        if key in rv._wanted and key in last_img:
                            rv._where[key] = (t, *last_img[key])
                        if key in rv._wanted:
                            rv._bbox[key] = doc.get("bbox")
            except (tarfile.TarError, OSError):
                continue
        return rv

    def _register(self, doc: dict[str, Any]) -> None:
        for v in doc.get("verdicts", []):
            if v.get("stage") == "privacy" and v.get("check") == "leakage":
                sc = v.get("scores") or {}
                ident = sc.get("identity")
                if sc.get("mode") == "identity" and ident and ident not in self.views and sc.get("views") is not None:
                    self.views[ident] = list(sc["views"])
                    self.gate[ident] = sc
                    self._wanted.update(x["key"] for x in sc["views"])

    @property
    def identities(self) -> int:
        return len(self.views)

    # ---- ViewSource
    def judges(self, identity: str) -> bool:
        return identity in self.views

    def candidates(self, identity: str) -> list[str]:
        return [v["key"] for v in self.views.get(identity, [])]

    def render(self, key: str) -> FaceSample:
        w = self._where.get(key)
        s = FaceSample(key=key, index=0, params={})
        if w is None:
            self.missing.append(key)
            return s
        with open(w[0], "rb") as f:
            f.seek(w[1])
            data = f.read(w[2])
        try:
            s.image = load_image(data, name=f"{w[0].name}:{key}")
        except ImageError:
            self.missing.append(key)
            return s
        s.bbox = tuple(self._bbox[key]) if self._bbox.get(key) else None
        s.encoded = ("disk", 0, s.image, data)
        return s


def _collect(input_path: Path, exclude: Path | None) -> tuple[str, list[Path]]:
    if not input_path.exists():
        raise InputError(f"INPUT {str(input_path)!r} does not exist")
    if not input_path.is_dir():
        raise InputError(f"INPUT {str(input_path)!r} is not a directory (give a shard directory or an image directory)")

    if exclude is not None and input_path.resolve() not in exclude.resolve().parents:
        exclude = None  # the report goes elsewhere: nothing of the input to skip

    def outside(p: Path) -> bool:  # a report written inside the input (INPUT/leakcheck) is not input
        return exclude is None or exclude.resolve() not in p.resolve().parents

    tars = sorted(p for p in input_path.rglob("*.tar") if outside(p))
    if tars:
        return "shards", tars
    imgs = sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and outside(p))
    if not imgs:
        raise InputError(f"INPUT {str(input_path)!r} contains no .tar shards and no images ({', '.join(IMAGE_EXTENSIONS)})")
    return "images", imgs


def report_location(input_path: Path, report: str | Path | None) -> tuple[Path, Path]:
    """(directory, JSON file) of the report: ``INPUT/leakcheck/`` by default, ``--report DIR``, or a
    ``*.json`` file path (its directory then holds the markdown and plots)."""
    if report is None:
        d = Path(input_path) / REPORT_DIR
        return d, d / "privacy_report.json"
    r = Path(report)
    if r.suffix.lower() == ".json":
        return r.parent, r
    return r, r / "privacy_report.json"


def _dataset_privacy(input_path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The producer's privacy settings (manifest.json) and gate report (privacy_report.json), if any."""
    spec_priv = gate = None
    try:
        spec_priv = json.loads((input_path / "manifest.json").read_text())["spec"]["privacy"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        gate = json.loads((input_path / "privacy_report.json").read_text())
    except (OSError, ValueError):
        pass
    return spec_priv, gate


def leakcheck(
    input_path: str | Path,
    galleries: list[str | Path],
    report_path: str | Path | None = None,
    threshold: float | None = None,
    config: Any | None = None,
    fail_on_duplicates: bool = False,
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
    mode: str = "auto",
) -> int:
    """Check every image in ``input_path`` against ``galleries``; write the report; return the exit code."""
    from pydantic import ValidationError

    say = log or (lambda m: print(m, file=sys.stderr))
    input_path = Path(input_path)
    if mode not in MODES:
        say(f"leakcheck: --mode: {mode!r} is not one of {', '.join(MODES)}")
        return EXIT_BAD_INPUT
    if not galleries:
        say("leakcheck: at least one --gallery DIR is required")
        return EXIT_BAD_INPUT
    report_dir, report_file = report_location(input_path, report_path)
    if report_file.exists() and report_file.is_dir():
        say(f"leakcheck: --report {str(report_file)!r} is a directory; give a directory such as out/review or a .json path")
        return EXIT_BAD_INPUT
    spec_priv, gate_report = _dataset_privacy(input_path) if input_path.is_dir() else (None, None)
    try:
        if config is not None:
            base, source = config.model_dump(), "caller"
        elif spec_priv is not None:
            base, source = dict(spec_priv), "dataset manifest.json (spec.privacy)"
        else:
            base, source = {}, "defaults"
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
        kind, paths = _collect(input_path, report_dir)
    except InputError as e:
        say(f"leakcheck: {e}")
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

    recorded = RecordedViews.scan(paths) if kind == "shards" and mode != "image" else RecordedViews()
    if mode == "identity" and not recorded.identities:
        say(f"leakcheck: --mode identity: {str(input_path)!r} holds no identity-level gate verdicts "
            "(use --mode auto or image)")
        return EXIT_BAD_INPUT
    if recorded.identities:
        stage.views, stage.mode = recorded, "identity"
    run_mode = ("identity (the gate's recorded views, re-described from the shards)" if recorded.identities
                else "image (every image on its own pixels)")
    if mode == "image":
        run_mode = "image: per-image audit (every image on its own pixels, whatever its identity's verdict)"

    # ---- can this run's verdicts be compared with the gate's?
    why_not = None
    if kind != "shards":
        why_not = "an image directory carries no gate verdicts"
    elif spec_priv is None and gate_report is None:
        why_not = "no manifest.json / privacy_report.json: not a dmsfactory dataset"
    else:
        if gate_report is not None:
            theirs = sorted(g.get("content_hash") for g in gate_report.get("galleries", []))
            ours = sorted(g.content_hash for g in stage.galleries)
            if theirs != ours:
                why_not = (f"the galleries differ from the gate's (content hashes {[h[:12] for h in ours]} vs "
                           f"{[h[:12] for h in theirs if h]}): verdicts are this check's own")
        if why_not is None and spec_priv is not None:
            diff = [k for k in ("threshold", "low_res_face_px", "low_res_threshold", "quarantine_faceless",
                                "expect_visible_fraction", "presence_detectors", "descriptor_detectors")
                    if k in spec_priv and spec_priv[k] != getattr(cfg, k)]
            if diff:
                why_not = f"settings differ from the gate's: {', '.join(diff)}"
    comparable = why_not is None

    rep = PrivacyReport(cfg, [g.summary_with_low_res(cfg.low_res_face_px) for g in stage.galleries],
                        title="Privacy leak check", action="flagged", gallery_objects=stage.galleries)
    input_problems: list[dict[str, str]] = []
    where: dict[str, Path] = {}  # image-directory mode: key -> file (for thumbnails)
    agree: Counter = Counter()
    table: dict[str, Counter] = defaultdict(Counter)
    examples: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    leaks_accepted = leaks_quarantine = 0
    n_images = 0
    seen_keys: set[str] = set()

    def samples() -> Iterator[tuple[FaceSample, dict[str, Any]]]:
        if kind == "shards":
            for s, ref, err, doc in iter_shard_samples(paths):
                if err:
                    input_problems.append({"file": ref, "problem": err})
                else:
                    yield s, doc
        else:
            for i, p in enumerate(paths):
                rel = p.relative_to(input_path).as_posix()
                try:
                    img = load_image(p, name=rel)
                except ImageError as e:
                    input_problems.append({"file": rel, "problem": str(e)})
                    continue
                parts = rel.split("/")
                where[rel] = p
                yield FaceSample(key=rel, index=i, params={}, image=img, identity=parts[0] if len(parts) > 1 else None), {}

    def flush(batch: list[tuple[FaceSample, dict[str, Any]]]) -> None:
        nonlocal leaks_accepted, leaks_quarantine
        docs = {s.key: d for s, d in batch}
        for s in stage.process([s for s, _ in batch]):
            doc = docs[s.key]
            gate_quarantined = is_quarantined(doc)
            s.landmarks = s.visibility = None  # the report needs verdicts, params and hashes, not geometry
            s.arrays.pop("landmarks_3d", None)
            rec = s.to_json()
            rep.add(rec)
            ours = sample_verdict(rec)
            if ours == "leaked":
                if gate_quarantined:
                    leaks_quarantine += 1
                else:
                    leaks_accepted += 1
            gate = sample_verdict(doc) if doc else "not_checked"
            if gate == "not_checked":
                agree["not_compared"] += 1
                continue
            table[gate][ours] += 1
            if mode == "image" and ours == "leaked" and gate != "leaked":
                findings.append(_row(s.key, rec, doc, gate, ours))
            if not comparable:
                continue
            if gate == "leaked" and ours != "leaked":
                agree["redacted"] += 1  # the gate quarantined it and mosaicked its pixels: nothing left to match
            elif gate == ours:
                agree["agree"] += 1
            elif mode == "image":
                agree["differs_per_image_audit"] += 1
            else:
                agree["disagree"] += 1
                if len(examples) < 50:
                    examples.append(_row(s.key, rec, doc, gate, ours))

    batch: list[tuple[FaceSample, dict[str, Any]]] = []
    for s, doc in samples():
        if s.key in seen_keys:  # same key in two shards: keep both, disambiguated
            s.key = f"{s.key}#{n_images}"
        seen_keys.add(s.key)
        n_images += 1
        batch.append((s, doc))
        if len(batch) >= batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    if not rep.n:
        say(f"leakcheck: no readable image in {str(input_path)!r} ({len(input_problems)} unreadable)")
        return EXIT_BAD_INPUT

    # identity level: the views this run described against what the gate recorded
    ident_rows = []
    max_dd = 0.0
    bytes_differ: list[str] = []
    reproduced = redacted_ids = 0
    for ident, gate_views in recorded.views.items():
        v = stage._identities.get(ident)
        if v is None:
            continue
        if recorded.gate[ident].get("leaked"):
            redacted_ids += 1  # its views are mosaics on disk: the gate's distance cannot be measured again
            continue
        ours = {x.key: x for x in v.views}
        for gv in gate_views:
            x = ours.get(gv["key"])
            if x is not None and gv.get("sha256") and x.sha256 != gv["sha256"]:
                bytes_differ.append(gv["key"])
        gs = recorded.gate[ident]
        if v.best is not None and gs.get("distance") is not None:
            dd = abs(v.best.distance - float(gs["distance"]))
            max_dd = max(max_dd, dd)
            reproduced += dd <= 1e-3 and v.deciding_view == gs.get("deciding_view")
            if dd > 1e-3 and len(ident_rows) < 50:
                ident_rows.append({"identity": ident, "gate_distance": gs["distance"], "distance": round(v.best.distance, 4),
                                   "gate_deciding_view": gs.get("deciding_view"), "deciding_view": v.deciding_view})

    lookup = None
    if kind == "images":
        def lookup(key: str) -> np.ndarray | None:
            try:
                return load_image(where[key]) if key in where else None
            except ImageError:
                return None
    else:
        def lookup(key: str) -> np.ndarray | None:
            return fetch_images(input_path, {key}).get(key)
    rep.image_lookup = lookup
    sec = rep.section()
    disagree = agree["disagree"] + len(bytes_differ) + len(recorded.missing)
    sec.data["input"] = {"path": str(input_path), "mode": kind, "files": len(paths), "problems": input_problems}
    sec.data["leakcheck"] = {
        "mode": mode,
        "ran": run_mode,
        "settings_from": source,
        "leaks": {"accepted_shards": leaks_accepted, "quarantine_shards": leaks_quarantine},
        "per_image_audit_findings": findings if mode == "image" else None,
        "agreement": {
            "comparable": comparable,
            "why_not": why_not,
            "compared": sum(v for k, v in agree.items() if k != "not_compared") if comparable else 0,
            **{k: agree.get(k, 0) for k in ("agree", "redacted", "disagree", "differs_per_image_audit", "not_compared")},
            "gate_vs_leakcheck": {g: dict(c) for g, c in sorted(table.items())},
            "disagreements": examples,
            "identities_reproduced": reproduced,
            "identities_redacted_by_gate": redacted_ids,
            "identity_distance_max_difference": round(max_dd, 6),
            "identities_with_other_distance": ident_rows,
            "views_whose_bytes_differ": bytes_differ[:50],
            "views_missing": recorded.missing[:50],
        },
    }
    md = [sec.markdown, "", "### Leak check: what ran and whether it agrees with the gate", "", _agreement_md(sec.data["leakcheck"])]
    report_dir.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps(sec.data, indent=2, default=_json_default))
    report_file.with_suffix(".md").write_text(f"# {sec.title}\n\n" + "\n".join(md))
    for rel, blob in sec.files.items():
        out = report_dir / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)

    v = sec.data["verdicts"]
    pairs = sec.data["memorisation"]["identity_pairs_same_face"]
    a = sec.data["leakcheck"]["agreement"]
    agreement = (f"agrees with the gate on {a['agree']} of {a['compared']} images"
                 + (f" ({a['redacted']} redacted by the gate)" if a["redacted"] else "")
                 + (f", DISAGREES on {disagree}" if disagree else "")) if comparable else f"not compared with the gate ({why_not})"
    say(
        f"leakcheck: {rep.n} images ({run_mode.split(' (')[0]}), leaked {v['leaked']} (flagged, dataset unchanged), "
        f"clean {v['clean']}, no face {v['no_face'] + v['faceless_quarantined']}, no descriptor {v['no_descriptor']}; "
        f"{agreement}; synthetic identity pairs that are one face: {len(pairs)}"
        + (" (memorisation check, not a real-person leak: see the report)" if pairs else "")
        + f"; report {report_file}"
    )
    if v["leaked"] and (leaks_accepted or leaks_quarantine):
        return EXIT_LEAK
    if fail_on_duplicates and pairs:
        return EXIT_LEAK
    if comparable and disagree and mode != "image":
        return EXIT_DISAGREE
    return EXIT_CLEAN


def _row(key: str, rec: dict[str, Any], doc: dict[str, Any], gate: str, ours: str) -> dict[str, Any]:
    def dist(r: dict[str, Any]) -> Any:
        lv = _pv(r, "leakage")
        return (lv or {}).get("scores", {}).get("distance")

    return {"key": key, "identity": rec.get("identity"), "gate": gate, "leakcheck": ours,
            "gate_distance": dist(doc), "leakcheck_distance": dist(rec)}


def _agreement_md(lc: dict[str, Any]) -> str:
    a = lc["agreement"]
    L = [f"Mode: {lc['ran']}. Detector settings and thresholds: {lc['settings_from']}. "
         f"Leaks flagged: {lc['leaks']['accepted_shards']} in accepted shards, {lc['leaks']['quarantine_shards']} in quarantine shards."]
    if not a["comparable"]:
        L.append(f"Not compared with the gate's verdicts: {a['why_not']}.")
    else:
        L.append(f"Agreement with the gate: {a['agree']} of {a['compared']} images agree; {a['redacted']} were quarantined "
                 f"by the gate with their pixels redacted (nothing left to match); {a['disagree']} disagree"
                 + (f"; {a['differs_per_image_audit']} differ because this per-image audit judges images the gate judged by identity"
                    if a["differs_per_image_audit"] else "") + ".")
        if a["identities_reproduced"]:
            L.append(f"{a['identities_reproduced']} identity verdicts reproduced from the gate's recorded views "
                     f"({a['identities_redacted_by_gate']} identities quarantined and redacted by the gate); largest "
                     f"difference in the deciding distance {a['identity_distance_max_difference']}; views whose bytes differ "
                     f"from what the gate judged: {len(a['views_whose_bytes_differ'])}; missing views: {len(a['views_missing'])}.")
        if a["gate_vs_leakcheck"]:
            cats = sorted({k for c in a["gate_vs_leakcheck"].values() for k in c})
            L += ["", "| gate \\ leakcheck | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
            for g, c in a["gate_vs_leakcheck"].items():
                L.append(f"| {g} | " + " | ".join(str(c.get(k, 0)) for k in cats) + " |")
        for d in a["disagreements"][:20]:
            L.append(f"- `{d['key']}` ({d['identity']}): gate {d['gate']} (d={d['gate_distance']}), leakcheck {d['leakcheck']} "
                     f"(d={d['leakcheck_distance']})")
    if lc.get("per_image_audit_findings"):
        L.append(f"Per-image audit findings: {len(lc['per_image_audit_findings'])} images within the threshold of a gallery "
                 "face although their identity's verdict was not a leak:")
        for d in lc["per_image_audit_findings"][:20]:
            L.append(f"- `{d['key']}` ({d['identity']}): d={d['leakcheck_distance']} (gate: {d['gate']}, d={d['gate_distance']})")
    return "\n".join(L)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def leakcheck_main(argv: list[str] | None = None) -> int:
    """A self-contained argparse front end (the project CLI wraps :func:`leakcheck` the same way)."""
    import argparse

    ap = argparse.ArgumentParser(prog="dmsfactory leakcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="shard directory or image directory")
    ap.add_argument("--gallery", action="append", default=[], required=True, help="real gallery directory (repeatable)")
    ap.add_argument("--report", default=None, help="report directory (default INPUT/leakcheck; a .json path also works)")
    ap.add_argument("--threshold", type=float, default=None, help="same-person distance threshold (default: the dataset's, else 0.6)")
    ap.add_argument("--mode", choices=MODES, default="auto", help="auto: the gate's mode; image: per-image audit")
    ap.add_argument("--fail-on-duplicates", action="store_true", help="exit 1 also when two synthetic identities are one face")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return EXIT_BAD_INPUT if e.code else EXIT_CLEAN
    return leakcheck(a.input, a.gallery, a.report, a.threshold, fail_on_duplicates=a.fail_on_duplicates, mode=a.mode)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(leakcheck_main())
