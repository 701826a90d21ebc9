"""What the CLI says about a spec before a run, and about a run or a training job after it.

One vocabulary everywhere (CLI, card, docs/spec.md):

* **render**: one planned, generated face (``identities.count x images_per_identity``); ``--limit N``
  plans N renders;
* **image**: one written picture, in a shard or in quarantine: a render, or one of its augmented views;
* **clip**: one planned driver-state sequence (``identities.count x clips.clips_per_identity``);
* **frame**: one picture of a clip (``clips.fps x clips.duration_s`` per clip).

Everything here is read from what the stages wrote (manifest, progress records, quarantine shards,
``verify_report.json``, ``privacy_report.json``), so a summary never disagrees with the card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from dmsfactory.datasets.card import quarantine_by_reason
from dmsfactory.datasets.shards import PROGRESS_DIR, iter_tar_docs
from dmsfactory.plan import images_per_render, renders_per_shard


def _n(x: int) -> str:
    return f"{x:,}"


def _plural(n: int, word: str) -> str:
    return f"{_n(n)} {word}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s"
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# ---------------------------------------------------------------- before a run
def spec_lines(spec: Any, per_split: dict[str, int]) -> list[str]:
    """What a spec makes, in renders / images / clips / frames (``validate``)."""
    ids = spec.identities
    per = images_per_render(spec)
    renders = spec.total_samples
    a = spec.augment
    if a.enabled and a.views_per_image:
        how = (f"each written with {_plural(a.views_per_image, 'augmented view')}" if a.keep_originals
               else f"each written as {_plural(a.views_per_image, 'augmented view')} (no original)")
        images = f"{how}: up to {_plural(renders * per, 'image')}"
    else:
        images = f"one image each: {_plural(renders, 'image')}"
    lines = [f"renders:  {_n(renders)} planned ({_n(ids.count)} identities x {ids.images_per_identity}), {images}"]
    c = spec.clips
    if c is not None:
        n_clips = ids.count * c.clips_per_identity
        lines.append(f"clips:    {_n(n_clips)} planned ({_n(ids.count)} identities x {c.clips_per_identity}), "
                     f"{_n(c.n_frames)} frames each ({c.duration_s:g} s at {c.fps:g} fps): {_plural(n_clips * c.n_frames, 'frame')}")
    lines.append("splits:   identities " + ", ".join(f"{s} {per_split.get(s, 0)}" for s in ("train", "val", "test"))
                 + " (identity-disjoint)")
    shard = f"shards:   up to {_plural(spec.shards.size, 'image')} each ({_plural(renders_per_shard(spec), 'render')} per batch)"
    if c is not None:
        shard += f"; {_plural(c.clips_per_shard, 'clip')} per clip shard"
    lines.append(shard)
    return lines


# ---------------------------------------------------------------- progress (resume, interrupt)
def finished_names(out_dir: str | Path, spec_hash: str, jobs: Iterable[tuple[str, list[str]]], subdir: str = "") -> set[str]:
    """Names of ``jobs`` (name, planned keys) whose progress record says finished for this spec.

    Reads only the small progress records (no sha256 of the shards: the run checks those itself), so
    it is cheap enough for a Ctrl-C handler and for the line a resumed run prints first."""
    done = set()
    base = Path(out_dir) / subdir / PROGRESS_DIR
    for name, keys in jobs:
        p = base / f"{name}.json"
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("spec_hash") == spec_hash and rec.get("planned_keys") == list(keys):
            done.add(name)
    return done


# ---------------------------------------------------------------- after a run
def _records(out: Path, subdir: str = "") -> list[tuple[dict[str, Any], float]]:
    base = out / subdir / PROGRESS_DIR
    recs = []
    for p in sorted(base.glob("*.json")):
        try:
            recs.append((json.loads(p.read_text()), p.stat().st_mtime))
        except (OSError, ValueError):
            continue
    return recs


def _read_json(p: Path, since: float | None = None) -> dict[str, Any] | None:
    """``p``'s JSON; None when missing, unreadable or (with ``since``) written before that time."""
    try:
        if since is not None and p.stat().st_mtime < since:
            return None  # a report of an earlier run whose stage did not run this time
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def run_summary(out_dir: str | Path, started: float, ended: float) -> dict[str, Any]:
    """Figures of a finished run in ``out_dir`` (local), for :func:`run_summary_lines`.

    ``started``/``ended``: wall-clock times (``time.time()``) of the command; a shard whose progress
    record is older than ``started`` was kept from an earlier run."""
    out = Path(out_dir)
    m = _read_json(out / "manifest.json") or {}
    c = m.get("counts", {})
    recs = _records(out)
    made = [r for r, t in recs if t >= started]
    clip_recs = _records(out, "clips")
    clip_made = [r for r, t in clip_recs if t >= started]
    def qdocs():  # streamed: a large quarantine is never held
        for q in m.get("quarantine", []):
            p = out / q["path"]
            if p.is_file():
                for d, _ in iter_tar_docs(p):
                    yield d

    spec = m.get("spec", {})
    ids = spec.get("identities", {})
    data: dict[str, Any] = {
        "seconds": round(ended - started, 2),
        "renders": c.get("planned", 0),
        "renders_in_spec": ids.get("count", 0) * ids.get("images_per_identity", 0) if ids else None,
        "images": {k: c.get(k, 0) for k in ("train", "val", "test", "quarantined")},
        "shards": {"total": len(recs), "kept": len(recs) - len(made), "made": len(made)},
        "images_made": sum(r["counts"]["accepted"] + r["counts"]["quarantined"] for r in made),
        "quarantine": quarantine_by_reason(qdocs()),
    }
    if m.get("clips"):
        cc = m["clips"]["counts"]
        data["clips"] = {**cc, "shards": {"total": len(clip_recs), "kept": len(clip_recs) - len(clip_made),
                                          "made": len(clip_made)},
                         "frames_made": sum(r["counts"].get("frames", 0) for r in clip_made)}
    v = _read_json(out / "verify_report.json", since=started)
    if v and v.get("by_check"):
        data["verify"] = {"checked": v.get("samples_verified"), "images": v.get("images"),
                          "mode": v.get("mode", "all"),
                          "agreement": {k: x.get("agreement") for k, x in v["by_check"].items()},
                          "half_width": {k: x.get("half_width") for k, x in v["by_check"].items()}}
    p = _read_json(out / "privacy_report.json", since=started)
    if p is not None:
        galleries = [g.get("path") for g in p.get("galleries", [])]
        lm = p.get("leakage_mode") or {}
        data["privacy"] = {"checked": bool(p.get("leakage_checked", bool(galleries))), "galleries": galleries,
                           "leaks": len(p.get("leaked") or []), "verdicts": p.get("verdicts", {}),
                           "leaked_identities": len(p.get("leaked_identities") or []),
                           "identities_judged": lm.get("identities_judged", 0),
                           "identity_views": lm.get("identity_views"),
                           "by_mode": lm.get("samples_by_mode", {}), "action": p.get("action", "quarantined")}
    return data


def run_summary_lines(d: dict[str, Any]) -> list[str]:
    """The short summary ``dmsfactory run`` prints last (before the paths)."""
    im = d["images"]
    written = sum(im.values())
    made = d["images_made"] + d.get("clips", {}).get("frames_made", 0)
    rate = made / d["seconds"] if d["seconds"] > 0 else 0.0
    unit = "images+frames/s" if "clips" in d else "images/s"
    preview = (f" (a preview of {_n(d['renders_in_spec'])})" if d.get("renders_in_spec") and d["renders"] < d["renders_in_spec"] else "")
    lines = [
        f"done in {_duration(d['seconds'])}: {_plural(d['renders'], 'render')}{preview} -> {_plural(written, 'image')} "
        f"(train {_n(im['train'])}, val {_n(im['val'])}, test {_n(im['test'])}, quarantined {_n(im['quarantined'])}); "
        f"{rate:.2f} {unit} made now",
    ]
    s = d["shards"]
    lines.append(f"shards:      {_n(s['total'])}" + (f" ({_n(s['kept'])} kept from an earlier run, {_n(s['made'])} made now)"
                                                     if s["kept"] else " (all made now)"))
    if "clips" in d:
        cl = d["clips"]
        lines.append(f"clips:       {_plural(cl['clips'], 'clip')} ({_plural(cl['frames'], 'frame')}), quarantined "
                     f"{_n(cl['quarantined'])}; {_plural(cl['shards']['total'], 'clip shard')}"
                     + (f" ({_n(cl['shards']['kept'])} kept from an earlier run)" if cl["shards"]["kept"] else ""))
    if d["quarantine"]:
        lines.append("quarantined: " + ", ".join(f"{g['check']} {_n(g['images'])}" for g in d["quarantine"])
                     + " (reasons: card, 'Quarantine reasons')")
    p = d.get("privacy")
    if p is not None:
        if not p["checked"]:
            lines.append("leaks:       not checked (no real gallery in privacy.galleries)")
        else:
            how = ""
            if p.get("by_mode", {}).get("identity"):
                n_id = p["leaked_identities"]
                how = (f" ({_n(n_id)} {'identity' if n_id == 1 else 'identities'} of {_n(p['identities_judged'])}, "
                       f"each judged on its worst of {p['identity_views']} views)")
            lines.append(f"leaks:       {_n(p['leaks'])} image{'' if p['leaks'] == 1 else 's'} within the same-person "
                         f"threshold of {', '.join(map(str, p['galleries']))}{how} (privacy_report.json)")
    v = d.get("verify")
    if v is not None:
        if v.get("mode") == "audit":
            hw = v.get("half_width") or {}
            parts = [f"{k} {x:.0%}" + (f" +-{hw[k]:.0%}" if hw.get(k) is not None else "")
                     for k, x in v["agreement"].items() if x is not None]
            if parts:
                lines.append(f"labels:      audit of {_n(v['checked'] or 0)} of {_n(v.get('images') or 0)} images "
                             "(stratified, 95% interval): pixel checks agree " + ", ".join(parts))
        else:
            parts = [f"{k} {x:.0%}" for k, x in v["agreement"].items() if x is not None]
            if parts:
                lines.append("labels:      pixel checks agree " + ", ".join(parts)
                             + (f" ({_plural(v['checked'], 'image')} checked)" if v.get("checked") else ""))
    return lines


# ---------------------------------------------------------------- after training
def _rate(x: Any) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{x:.3f}"


def train_summary_lines(summary: dict[str, Any]) -> list[str]:
    """ε, δ and accuracy with the majority-class rate beside it (``dmsfactory train``)."""
    import math

    p = summary.get("privacy", {})
    eps, delta = p.get("epsilon"), p.get("delta")
    eps_s = "-" if eps is None else ("inf (no DP)" if isinstance(eps, float) and math.isinf(eps) else f"{eps:.4g}")
    delta_s = "-" if delta is None else f"{delta:.3g}"
    extra = f", accountant {p['accountant']}" if p.get("accountant") else ""
    lines = [f"privacy:  {summary.get('method')}: epsilon {eps_s}, delta {delta_s}{extra}; "
             f"{_n(summary.get('private_train', 0))} private records, {_n(summary.get('synthetic_train', 0))} synthetic images"]
    for name, m in summary.get("metrics", {}).items():
        acc, base = m.get("class_acc"), (m.get("majority_baseline") or {}).get("class")
        if acc is None:
            continue
        note = ""
        if base is not None and acc <= base + 1e-6:
            note = " - no better than always predicting the most common class"
        lines.append(f"accuracy: {name} (n={m.get('n')}): class {_rate(acc)}, majority-class rate {_rate(base)}, "
                     f"balanced {_rate(m.get('class_balanced_acc'))}{note}")
    return lines
