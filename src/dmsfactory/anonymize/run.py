"""``dmsfactory anonymize`` / ``dmsfactory recover``: media in, anonymised media + labels + encrypted
recovery records + report out (docs/anonymize.md).

Output layout (``--format shards``, the default)::

    DIR/anon-<unit>-<part>.tar    <key>.png (anonymised frame, lossless) + <key>.json (labels)
    DIR/recovery/<unit>.rec       encrypted original face regions (with --key)
    DIR/manifest.json             shards (split "anon"), sources, config, report summary
    DIR/anonymize_report.json     T/AI 110.2 figures, label re-check, no-face frames, problems
    DIR/anonymize_report.md
    DIR/.progress/<unit>.json     written last: the unit is finished (resume skips it)

``--format media``: ``DIR/<relative path>.png`` + ``.json`` per image; ``DIR/<relative path>`` video
(same frame count and rate; lossy codec of the container, FFV1 with ``--lossless``) +
``.labels.jsonl`` (one line per frame). A unit is a group of ``shard_size`` images (shards), one
image (media) or one video.

Recovery is bit-exact: the anonymised frame differs from the original only inside the recorded
regions, and images are written as PNG. A lossy video codec changes every pixel, so with a key and a
lossy video the records hold whole original frames (larger; ``--lossless`` keeps them small).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from dmsfactory.anonymize.config import AnonymizeConfig
from dmsfactory.anonymize.core import Anonymizer, FrameResult
from dmsfactory.anonymize.keys import RecordWriter, load_key, seal
from dmsfactory.anonymize.media import (Source, VideoWriter, encode_png, iter_video, list_sources,
                                        output_video_path, read_image, safe_name, video_info, InputError)
from dmsfactory.anonymize.mesh import FaceMesh
from dmsfactory.anonymize.metrics import IdentityMeter, fmt_db, frame_metrics
from dmsfactory.datasets.shards import sha256_file, write_json_atomic, write_tar
from dmsfactory.errors import UserError
from dmsfactory.sample import FaceSample

REPORT_VERSION = 1
STAGE = "anonymize.recheck"


class OutputError(UserError, ValueError):
    """``--out`` cannot be used as asked (the message says why)."""


@dataclass
class Unit:
    name: str
    sources: list[Source]

    @property
    def kind(self) -> str:
        return self.sources[0].kind


@dataclass
class Options:
    fmt: str = "shards"
    key_path: Path | None = None
    lossless: bool = False
    shard_size: int = 200
    metrics_every: int = 1
    identity_metrics: bool = False
    overwrite: bool = False
    avoid_sources: bool = True


def plan_units(sources: list[Source], fmt: str, shard_size: int) -> list[Unit]:
    units: list[Unit] = []
    imgs = [s for s in sources if s.kind == "image"]
    if fmt == "shards":
        for i in range(0, len(imgs), shard_size):
            units.append(Unit(f"i{i // shard_size:06d}", imgs[i: i + shard_size]))
    else:
        units += [Unit(f"i-{safe_name(s.rel)}", [s]) for s in imgs]
    vids = [s for s in sources if s.kind == "video"]
    units += [Unit(f"v{k:06d}" if fmt == "shards" else f"v-{safe_name(s.rel)}", [s]) for k, s in enumerate(vids)]
    return units


def _config_hash(cfg: AnonymizeConfig, opts: Options, sources: list[Source], keyed: bool = True) -> str:
    """What the output bytes depend on (``keyed=False``: the anonymised frames and labels; with it, also
    whether recovery records exist, which decides whether a finished unit can be reused)."""
    blob = {"config": cfg.model_dump(mode="json"), "fmt": opts.fmt, "lossless": opts.lossless,
            "shard_size": opts.shard_size, "sources": [(s.kind, s.rel, s.path.stat().st_size) for s in sources]}
    if keyed:
        blob["keyed"] = opts.key_path is not None
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- frames
def frame_doc(key: str, index: int, src: Source, frame_index: int, t: float, fps: float | None,
              res: FrameResult, cfg_hash: str) -> dict[str, Any]:
    faces = [f.to_json() for f in res.faces]
    prim = res.faces[0] if res.faces else None
    s = FaceSample(key=key, index=index, split="anon", identity=prim.identity["id"] if prim else None,
                   params={"source": {"path": src.rel, "kind": src.kind, "frame_index": frame_index, "time_s": round(t, 6),
                                      "fps": fps},
                           "anonymize": {"config_hash": cfg_hash[:16], "no_face": res.no_face, "faces": faces,
                                         "notes": res.notes}})
    s.labels = {"no_face": res.no_face, "faces": len(res.faces)}
    if prim is not None:
        s.labels.update(prim.labels)
        # synthetic: false when the face was pixelated instead (fitting failed, or dlib still matched it)
        s.labels["identity"] = {"id": prim.identity["id"], "synthetic": prim.identity.get("method") != "fallback_pixelate",
                                "track": prim.track, "identity_removed": prim.identity.get("identity_removed")}
        if len(prim.landmarks):
            s.landmarks = np.asarray(prim.landmarks, np.float32)
        s.bbox = prim.bbox
    for f in res.faces:
        ch = f.recheck
        if not ch.get("face"):
            s.add_verdict(STAGE, "face", "disagree", ch.get("reason") or ch.get("fallback") or "no face on the anonymised frame",
                          track=f.track)
            continue
        s.add_verdict(STAGE, "face", "agree", "face detected on the anonymised frame", track=f.track)
        for side in ("left", "right"):
            e = ch["eyes"][side]
            s.add_verdict(STAGE, "eyes", "agree" if e["agree"] else "disagree", "", side=side, track=f.track, **e)
        s.add_verdict(STAGE, "mouth", "agree" if ch["mouth"]["agree"] else "disagree", "", track=f.track, **ch["mouth"])
        hp = ch["head_pose"]
        s.add_verdict(STAGE, "head_pose", "agree" if hp.get("agree") else "disagree", hp.get("reason", ""), track=f.track,
                      **{k: v for k, v in hp.items() if k != "reason"})
    return s.to_json()


def frame_row(key: str, src: Source, frame_index: int, res: FrameResult, metrics: dict | None) -> dict[str, Any]:
    """The compact per-frame line the report is built from (kept in the progress record)."""
    faces = []
    for f in res.faces:
        ch = f.recheck
        faces.append({
            "track": f.track, "method": f.identity.get("method", "synthetic"), "face": bool(ch.get("face")),
            "eyes": {s: ch["eyes"][s]["agree"] for s in ("left", "right")} if ch.get("face") else None,
            "eyes_closed_source": {s: ch["eyes"][s]["source_closed"] for s in ("left", "right")} if ch.get("face") else None,
            "mouth": ch["mouth"]["agree"] if ch.get("face") else None,
            "yawn": (ch["mouth"]["source_yawn"] == ch["mouth"]["output_yawn"]) if ch.get("face") else None,
            "pose_err": ch["head_pose"].get("max_error_deg") if ch.get("face") else None,
            "pose_agree": ch["head_pose"].get("agree") if ch.get("face") else None,
            "iterations": f.iterations, "identity": f.identity.get("id"),
            "identity_removed": f.identity.get("identity_removed"),
        })
    return {"key": key, "source": src.rel, "frame": frame_index, "no_face": res.no_face, "faces": faces,
            "seconds": round(res.seconds, 5), "metrics": metrics, "notes": res.notes}


# ---------------------------------------------------------------------------------------- the run
class Run:
    def __init__(self, inp: str | Path, out: str | Path, config: AnonymizeConfig, opts: Options,
                 progress: Callable[[int], None] | None = None):
        self.inp, self.out = Path(inp), Path(out)
        self.cfg, self.opts = config, opts
        self.progress = progress or (lambda n: None)
        self.sources = list_sources(inp)
        if opts.fmt not in ("shards", "media"):
            raise OutputError(f"--format: must be shards or media (got {opts.fmt!r})")
        if opts.shard_size < 1:
            raise OutputError(f"--shard-size: must be >= 1 (got {opts.shard_size})")
        self.key = load_key(opts.key_path) if opts.key_path else None
        self.units = plan_units(self.sources, opts.fmt, opts.shard_size)
        self.cfg_hash = _config_hash(config, opts, self.sources)
        self.content_hash = _config_hash(config, opts, self.sources, keyed=False)
        self.anon = Anonymizer(config)
        self.idm = IdentityMeter() if opts.identity_metrics else None
        self.problems: list[dict[str, str]] = []
        self.identity_rows: list[dict[str, Any]] = []

    def _check_out(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        m = self.out / "manifest.json"
        if m.is_file() and not self.opts.overwrite:
            try:
                old = json.loads(m.read_text()).get("anonymize", {}).get("config_hash")
            except (OSError, ValueError):
                old = None
            if old and old != self.cfg_hash:
                raise OutputError(f"{self.out}: holds an anonymisation made with other inputs or settings; "
                                  "use another --out or --overwrite")
        if self.opts.overwrite:
            for p in list(self.out.glob("anon-*.tar")) + [self.out / "recovery", self.out / ".progress"]:
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()

    def _done(self, unit: Unit) -> dict | None:
        p = self.out / ".progress" / f"{unit.name}.json"
        if not p.is_file():
            return None
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if rec.get("config_hash") != self.cfg_hash:
            return None
        for f in rec.get("files", []):
            q = self.out / f["path"]
            if not q.is_file() or sha256_file(q) != f["sha256"]:
                return None
        return rec

    def run(self) -> dict[str, Any]:
        self._check_out()
        rows: list[dict] = []
        shards: list[dict] = []
        t_run = time.perf_counter()
        try:
            self.anon.setup()
            if (self.opts.avoid_sources and self.cfg.mode == "replace" and self.cfg.backend == "procedural"
                    and self.cfg.identity_candidates > 1):
                self.anon.avoid(self._describe_sources())
            for unit in self.units:
                rec = self._done(unit)
                if rec is None:
                    rec = self._unit(unit)
                    write_json_atomic(self.out / ".progress" / f"{unit.name}.json", rec)
                else:
                    self.progress(len(rec["rows"]))
                rows += rec["rows"]
                shards += rec.get("shards", [])
                self.problems += rec.get("problems", [])
        finally:
            self.anon.close()
        report = self._report(rows, time.perf_counter() - t_run)
        write_json_atomic(self.out / "anonymize_report.json", report, indent=2)
        (self.out / "anonymize_report.md").write_text(report_markdown(report))
        manifest = {"kind": "dmsfactory-anonymized", "shards": shards, "format": self.opts.fmt,
                    "anonymize": {"config_hash": self.cfg_hash, "config": self.cfg.model_dump(mode="json"),
                                  "keyed": self.key is not None},
                    "sources": [{"path": s.rel, "kind": s.kind} for s in self.sources],
                    "counts": {"train": 0, "val": 0, "test": 0, "anon": sum(x["count"] for x in shards), "quarantined": 0}}
        write_json_atomic(self.out / "manifest.json", manifest, indent=2)
        return report

    def _describe_sources(self) -> list[np.ndarray]:
        """Pass 1: dlib descriptors of the real faces in the input (images: every face; videos: one
        frame per second), so that identity guidance keeps every synthetic face away from all the
        people in the input, not only from the face it replaces. Held in memory only."""
        out: list[np.ndarray] = []
        with FaceMesh(False, self.cfg.max_faces, self.cfg.min_confidence) as fm:
            for src in self.sources:
                if src.kind == "image":
                    try:
                        frames = [read_image(src)]
                    except InputError:
                        continue
                else:
                    step = max(1, int(round(video_info(src.path).fps)))
                    frames = [img for i, _, img in iter_video(src.path) if i % step == 0]
                for img in frames:
                    for lm, _ in fm.landmarks(img):
                        out.append(self.anon.describe(img, lm))
        return out

    # -------------------------------------------------------------- one unit
    def _frames(self, unit: Unit) -> Iterator[tuple[Source, int, float, float | None, np.ndarray | None]]:
        for src in unit.sources:
            if src.kind == "image":
                try:
                    img = read_image(src)
                except InputError as e:
                    self._unit_problems.append({"source": src.rel, "problem": str(e)})
                    continue
                yield src, 0, 0.0, None, img
            else:
                info = video_info(src.path)
                for i, t, img in iter_video(src.path):
                    yield src, i, t, info.fps, img

    def _unit(self, unit: Unit) -> dict[str, Any]:
        opts = self.opts
        self._unit_problems: list[dict[str, str]] = []
        video = unit.kind == "video"
        self.anon.reset(video=video)
        files: list[dict] = []
        shards: list[dict] = []
        rows: list[dict] = []
        recw = RecordWriter(self.out / "recovery" / f"{unit.name}.rec") if self.key is not None else None
        part: list[dict] = []
        parts = 0
        vw: VideoWriter | None = None
        jsonl: list[str] = []
        lossy_video = video and opts.fmt == "media" and not opts.lossless

        def flush() -> None:
            nonlocal part, parts
            if not part:
                return
            name = f"anon-{unit.name}-{parts:03d}.tar"
            info = write_tar(self.out / name, part, 1 << 31, "lower --shard-size")
            shards.append({"path": name, "split": "anon", "count": info["count"], "sha256": info["sha256"]})
            files.append({"path": name, "sha256": info["sha256"]})
            part, parts = [], parts + 1

        try:
            for n, (src, fi, t, fps, img) in enumerate(self._frames(unit)):
                key = f"{unit.name}-{safe_name(src.rel)}-{fi:06d}" if opts.fmt == "shards" else f"{safe_name(src.rel)}-{fi:06d}"
                res = self.anon.process(img, src.rel, t)
                met = None
                if opts.metrics_every and (n % opts.metrics_every == 0):
                    met = frame_metrics(img, res.image, res.regions)
                    met = {k: (fmt_db(v) if k.startswith("psnr") else v) for k, v in met.items()}
                if self.idm is not None:
                    self._identity(key, img, res)
                if recw is not None:
                    regions = [(0, 0, img.shape[1], img.shape[0])] if lossy_video else res.regions
                    blobs = [f.keys for f in res.faces if f.keys]
                    recw.write(seal(self.key, key, img, res.image, regions, {"full_frame": lossy_video, "source": src.rel,
                                                                             "frame_index": fi,
                                                                             "diffusion_keys": len(blobs)}, blobs))
                doc = frame_doc(key, len(rows), src, fi, t, fps, res, self.content_hash)
                rows.append(frame_row(key, src, fi, res, met))
                if opts.fmt == "shards":
                    part.append({"__key__": key, "png": encode_png(res.image),
                                 "json": json.dumps(doc, sort_keys=True).encode()})
                    if len(part) >= opts.shard_size:
                        flush()
                elif src.kind == "image":
                    p = self.out / src.rel
                    p = p.with_suffix(".png") if p.suffix.lower() != ".png" else p
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(encode_png(res.image))
                    j = p.with_suffix(".json")
                    j.write_text(json.dumps(doc, sort_keys=True))
                    files += [{"path": p.relative_to(self.out).as_posix(), "sha256": sha256_file(p)},
                              {"path": j.relative_to(self.out).as_posix(), "sha256": sha256_file(j)}]
                else:
                    if vw is None:
                        vw = VideoWriter(output_video_path(src.rel, self.out, opts.lossless), fps or 25.0,
                                         (img.shape[1], img.shape[0]), opts.lossless)
                    vw.write(res.image)
                    jsonl.append(json.dumps(doc, sort_keys=True))
                self.progress(1)
            if opts.fmt == "shards":
                flush()
            if vw is not None:
                vp = vw.commit()
                vw = None
                j = vp.with_name(Path(unit.sources[0].rel).name + ".labels.jsonl")
                j.write_text("\n".join(jsonl) + "\n")
                files += [{"path": vp.relative_to(self.out).as_posix(), "sha256": sha256_file(vp)},
                          {"path": j.relative_to(self.out).as_posix(), "sha256": sha256_file(j)}]
            if recw is not None:
                rp = recw.commit()
                recw = None
                files.append({"path": rp.relative_to(self.out).as_posix(), "sha256": sha256_file(rp)})
        except BaseException:
            if recw is not None:
                recw.abort()
            if vw is not None:
                vw.abort()
            raise
        return {"unit": unit.name, "config_hash": self.cfg_hash, "rows": rows, "files": files, "shards": shards,
                "problems": self._unit_problems}

    def _identity(self, key: str, img: np.ndarray, res: FrameResult) -> None:
        for f in res.faces:
            if not f.recheck.get("face") or f.output is None:
                continue
            src_lm = self._last_src_landmarks(res, f)
            out_lm = self.anon.last_output_landmarks.get(f.track)
            if src_lm is None or out_lm is None:
                continue
            d = self.idm.add(key, img, src_lm, res.image, out_lm)
            self.identity_rows.append({"key": key, "track": f.track, "distance": round(d, 4)})

    def _last_src_landmarks(self, res: FrameResult, f) -> np.ndarray | None:
        return self.anon.last_source_landmarks.get(f.track)

    # -------------------------------------------------------------- report
    def _report(self, rows: list[dict], wall: float) -> dict[str, Any]:
        return build_report(rows, self.cfg, self.opts, self.problems, self.idm, self.identity_rows, wall,
                            self.key is not None)


def _rate(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 4) if xs else None


def build_report(rows: list[dict], cfg: AnonymizeConfig, opts: Options, problems: list, idm, identity_rows,
                 wall: float, keyed: bool) -> dict[str, Any]:
    faces = [f for r in rows for f in r["faces"]]
    synth = [f for f in faces if f["method"] != "fallback_pixelate"]
    seen = [f for f in synth if f["face"]]
    eyes = [f["eyes"][s] for f in seen for s in ("left", "right")]
    mets = [r["metrics"] for r in rows if r.get("metrics")]
    secs = [r["seconds"] for r in rows]
    psnr_out = [m["psnr_outside_face"] for m in mets if m.get("psnr_outside_face") is not None]
    pe = [f["pose_err"] for f in seen if f["pose_err"] is not None]

    def db_summary(xs):
        if not xs:
            return None
        fin = [x for x in xs if x != "inf"]
        return {"min": "inf" if not fin else round(min(fin), 3), "identical_frames": sum(1 for x in xs if x == "inf"),
                "frames": len(xs)}

    rep: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "options": {"format": opts.fmt, "keyed": keyed, "lossless_video": opts.lossless, "metrics_every": opts.metrics_every,
                    "identity_metrics": opts.identity_metrics},
        "frames": len(rows),
        "frames_with_face": sum(1 for r in rows if not r["no_face"]),
        "no_face_frames": {"count": sum(1 for r in rows if r["no_face"]),
                           "keys": [r["key"] for r in rows if r["no_face"]][:1000],
                           "note": "passed through unchanged (no face found by MediaPipe)"},
        "faces": len(faces),
        "faces_synthetic": len(synth),
        "faces_by_method": {m: sum(1 for f in faces if f["method"] == m) for m in sorted({f["method"] for f in faces})},
        "faces_fallback_pixelated": len(faces) - len(synth),
        # guided new tracks: dlib still matched the refined synthetic face to the original (pixelated or kept)
        "faces_still_recognisable": sum(1 for f in faces if f.get("identity_removed") is False),
        "recheck": {
            "face_detected_on_output": _rate([f["face"] for f in synth]),
            "eye_state_agreement": _rate(eyes),
            "mouth_state_agreement": _rate([f["mouth"] for f in seen]),
            "yawn_agreement": _rate([f["yawn"] for f in seen]),
            "head_pose_within_tolerance": _rate([f["pose_agree"] for f in seen]),
            "head_pose_max_error_deg": None if not pe else {"median": round(float(np.median(pe)), 3), "p95": round(float(np.percentile(pe, 95)), 3),
                                                            "max": round(float(np.max(pe)), 3)},
            "all_labels_agree": _rate([bool(f["pose_agree"] and f["mouth"] and all(f["eyes"].values())) for f in seen]),
            "tolerance_deg": cfg.pose_tolerance_deg,
            "note": "agreement of the same MediaPipe measurement on the original and the anonymised frame; "
                    "rates over faces seen on the output",
        },
        "image_quality": {
            "frames_measured": len(mets),
            "ssim_frame_mean": _rate([m["ssim"] for m in mets]),
            "ssim_frame_min": round(min(m["ssim"] for m in mets), 4) if mets else None,
            "ssim_outside_face_mean": _rate([m["ssim_outside_face"] for m in mets]),
            "psnr_outside_face_db": db_summary(psnr_out),
            "psnr_frame_mean_db": _rate([m["psnr"] for m in mets if m["psnr"] != "inf"]),
            "face_area_fraction_mean": _rate([m["face_area_fraction"] for m in mets]),
            "ssim_method": "luminance SSIM, Gaussian window sigma 1.5 (Wang et al. 2004)",
        },
        "speed": {
            "frames_per_second": round(len(secs) / sum(secs), 3) if secs and sum(secs) > 0 else None,
            "seconds_per_frame_median": round(float(np.median(secs)), 4) if secs else None,
            "wall_seconds": round(wall, 2),
            "note": "anonymisation only (fit, render, blend, re-check); metrics and file writing excluded",
        },
        "recovery": {"keyed": keyed, "records": sum(1 for _ in rows) if keyed else 0,
                     "how": "dmsfactory recover DIR --key KEYFILE (bit-exact; checked against each frame's sha256)"},
        "identity": None,
        "problems": problems,
    }
    if idm is not None:
        rep["identity"] = idm.summary() | {"per_face": identity_rows[:2000]}
    return rep


def report_markdown(r: dict[str, Any]) -> str:
    q, c, sp = r["image_quality"], r["recheck"], r["speed"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f} %"

    lines = ["# Anonymisation report", "",
             f"{r['frames']} frames, {r['frames_with_face']} with a face, {r['no_face_frames']['count']} without "
             f"(passed through unchanged); {r['faces']} faces ({r['faces_synthetic']} synthetic, "
             f"{r['faces_fallback_pixelated']} pixelated after a failure, {r['faces_still_recognisable']} of them or "
             f"kept because dlib still matched the synthetic face to the original). Mode {r['config']['mode']}, "
             f"backend {r['config']['backend']}.", "",
             "| figure | value |", "|---|---|",
             f"| face still detected (MediaPipe) | {pct(c['face_detected_on_output'])} |",
             f"| eye state agreement (EAR < {r['config']['ear_closed']}) | {pct(c['eye_state_agreement'])} |",
             f"| mouth open agreement (MAR > {r['config']['mar_open']}) | {pct(c['mouth_state_agreement'])} |",
             f"| yawn agreement (MAR >= {r['config']['yawn_mar']}) | {pct(c['yawn_agreement'])} |",
             f"| head pose within {c['tolerance_deg']} deg | {pct(c['head_pose_within_tolerance'])} |",
             f"| SSIM, whole frame (mean / min) | {q['ssim_frame_mean']} / {q['ssim_frame_min']} |",
             f"| SSIM outside the face | {q['ssim_outside_face_mean']} |",
             f"| PSNR outside the face | {q['psnr_outside_face_db']} |",
             f"| frames/s (anonymisation only) | {sp['frames_per_second']} |",
             f"| recovery records | {r['recovery']['records']} |"]
    idn = r.get("identity")
    if idn and idn.get("faces"):
        lines += [f"| dlib distance to the original > {idn['threshold']} | {pct(idn['share_above_threshold'])} "
                  f"(median {idn['distance_to_original']['median']:.3f}) |",
                  f"| anonymised faces found in the gallery of originals | {idn['gallery']['anonymised_found']} of {idn['faces']} |",
                  f"| KID x1000 ({idn['kid']['feature_space']}) | {idn['kid']['kid_x1000']} |"]
    if r["problems"]:
        lines += ["", "Problems:"] + [f"- {p['source']}: {p['problem']}" for p in r["problems"][:50]]
    return "\n".join(lines) + "\n"


def anonymize_path(inp: str | Path, out: str | Path, config: AnonymizeConfig | None = None,
                   progress: Callable[[int], None] | None = None, **opts: Any) -> dict[str, Any]:
    """Python entry point of ``dmsfactory anonymize``; returns the report."""
    o = Options(**opts)
    if o.key_path is not None:
        o.key_path = Path(o.key_path)
    return Run(inp, out, config or AnonymizeConfig(), o, progress).run()


def total_frames(inp: str | Path) -> int:
    n = 0
    for s in list_sources(inp):
        n += 1 if s.kind == "image" else max(0, video_info(s.path).frame_count_header)
    return n


__all__ = ["anonymize_path", "Run", "Options", "build_report", "report_markdown", "total_frames"]
