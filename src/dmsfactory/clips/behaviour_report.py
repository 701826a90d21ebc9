"""Behaviour statistics of clips against the published reference figures, as tables and one figure.

Used by ``benchmarks/clips_behaviour.py`` (clips simulated at label level) and by the dataset card's
clip section (:func:`card_parts`, over the clips written to the shards). Input: clip documents as
stored in the shards (``params`` + ``labels.temporal``) or ``{"params": plan, "labels": {"temporal": tl}}``.

Per group (scenario x KSS) it reports: complete blinks (duration onset to reopened, closing, closed,
reopening, half-amplitude duration, P80 closed time; the share of blinks >= 0.5 s, of blinks whose
closing is shorter than their reopening, of long blinks > 0.15 s at half amplitude), blink rate per
clip, PERCLOS P80 per clip (whole clip; and over 60-s windows for clips of at least 60 s), yawn durations and phases, durations of natural glances
(not Euro NCAP protocol glances) per zone group, and microsleep counts. :func:`checks` compares the alert and KSS groups with
:data:`dmsfactory.clips.drivers.REFERENCE`.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from dmsfactory.clips.drivers import REFERENCE, ZONE_GROUP

__all__ = ["behaviour_stats", "checks", "figure_png", "card_parts"]


def _pct(v: list[float], q: float) -> float | None:
    return float(np.percentile(v, q)) if v else None


def _r(x: Any, nd: int = 4) -> Any:
    return round(float(x), nd) if isinstance(x, (float, np.floating)) else x


def _summ(v: list[float]) -> dict[str, Any]:
    return {"n": len(v), "median": _r(_pct(v, 50)), "p5": _r(_pct(v, 5)), "p25": _r(_pct(v, 25)),
            "p75": _r(_pct(v, 75)), "p85": _r(_pct(v, 85)), "p95": _r(_pct(v, 95)),
            "mean": _r(float(np.mean(v))) if v else None}


def _doc_parts(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    p = doc.get("params", doc)
    tl = (doc.get("labels") or {}).get("temporal") or doc.get("temporal") or {}
    return p, tl


def _collect(docs: Iterable[dict[str, Any]], key) -> dict[Any, dict[str, list]]:
    groups: dict[Any, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for doc in docs:
        p, tl = _doc_parts(doc)
        g = groups[key(p)]
        g["clips"].append(1)
        g["kss"].append(int(p.get("kss", 0)))
        sm = tl.get("summary", {})
        for b in tl.get("blinks", []):
            if b.get("kind") != "blink" or not b.get("complete"):
                continue
            g["duration_s"].append(b["duration_s"])
            g["closing_s"].append(b["closing_s"])
            g["closed_s"].append(b["closed_s"])
            g["reopening_s"].append(b["opening_s"])
            g["p80_closed_s"].append(b.get("p80_closed_s") or 0.0)
            if b.get("half_amplitude_s") is not None:
                g["half_amplitude_s"].append(b["half_amplitude_s"])
        if sm:
            g["rate_per_min"].append(sm.get("blink_rate_per_min", 0.0))
            g["perclos"].append(sm.get("perclos_p80", 0.0))
            if sm.get("duration_s", 0.0) >= 60.0 - 1e-6:  # the PERCLOS window: only full-minute clips compare
                g["perclos_60s"].append(sm.get("perclos_p80", 0.0))
            g["clip_s"].append(sm.get("duration_s", 0.0))
            g["microsleeps"].append(sm.get("event_counts", {}).get("microsleep", 0))
        for ev in p.get("events", []):
            if ev.get("type") == "yawn" and "opening_s" in ev:
                g["yawn_s"].append(ev["end_s"] - ev["start_s"])
                g["yawn_opening_s"].append(ev["opening_s"])
                g["yawn_peak_s"].append(ev["peak_s"])
                g["yawn_closing_s"].append(ev["closing_s"])
            elif ev.get("type") == "glance" and ev.get("natural") and ev.get("zone") in ZONE_GROUP:
                g["glance_" + ZONE_GROUP[ev["zone"]]].append(ev["end_s"] - ev["start_s"])
    return groups


def _group_stats(g: dict[str, list], thr: float) -> dict[str, Any]:
    d = g["duration_s"]
    out: dict[str, Any] = {"clips": len(g["clips"]), "blinks": len(d)}
    for k in ("duration_s", "closing_s", "closed_s", "reopening_s", "half_amplitude_s", "p80_closed_s",
              "rate_per_min", "perclos", "perclos_60s", "yawn_s", "yawn_opening_s", "yawn_peak_s", "yawn_closing_s",
              "glance_mirror", "glance_in_vehicle", "glance_outside"):
        if g.get(k):
            out[k] = _summ(list(map(float, g[k])))
    if d:
        out["share_0_5_s_or_longer"] = _r(float(np.mean(np.asarray(d) >= 0.5 - 1e-9)))
        out["share_closing_shorter"] = _r(float(np.mean(np.asarray(g["closing_s"]) < np.asarray(g["reopening_s"]))))
    if g.get("half_amplitude_s"):
        out["share_long_blink_half_amplitude"] = _r(float(np.mean(np.asarray(g["half_amplitude_s"]) > 0.15)))
    if g.get("perclos_60s"):
        out["share_perclos_60s_over_threshold"] = _r(float(np.mean(np.asarray(g["perclos_60s"]) > thr)))
    if g.get("microsleeps"):
        mins = sum(g["clip_s"]) / 60.0
        out["microsleeps_per_min"] = _r(sum(g["microsleeps"]) / mins) if mins else None
    if g.get("yawn_s"):
        out["share_yawn_opening_longer"] = _r(float(np.mean(np.asarray(g["yawn_opening_s"]) > np.asarray(g["yawn_closing_s"]))))
    return out


def behaviour_stats(docs: list[dict[str, Any]], perclos_threshold: float | None = None) -> dict[str, Any]:
    """Statistics per scenario, per KSS, and over all alert (KSS <= 5) clips.

    ``perclos_threshold``: the drowsy PERCLOS threshold (default: the one the clips were labelled with,
    else 0.15)."""
    docs = list(docs)
    if perclos_threshold is None:
        ps = [(_doc_parts(d)[1].get("summary", {}).get("params") or {}).get("perclos_drowsy") for d in docs]
        perclos_threshold = next((float(p) for p in ps if p is not None), REFERENCE["perclos_drowsy_threshold"])
    thr = float(perclos_threshold)
    by_scen = {str(k): _group_stats(v, thr) for k, v in
               sorted(_collect(docs, lambda p: p.get("scenario")).items(), key=lambda kv: str(kv[0]))}
    by_kss = {int(k): _group_stats(v, thr) for k, v in sorted(_collect(docs, lambda p: int(p.get("kss", 0))).items())}
    alert = _group_stats(next(iter(_collect([d for d in docs if int(_doc_parts(d)[0].get("kss", 0)) <= 5],
                                            lambda p: "alert").values()), defaultdict(list)), thr)
    everything = _group_stats(next(iter(_collect(docs, lambda p: "all").values()), defaultdict(list)), thr)
    return {"by_scenario": by_scen, "by_kss": by_kss, "alert_kss_le_5": alert, "all": everything,
            "perclos_threshold": thr, "reference": REFERENCE}


def checks(stats: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the measured value and pass/fail (None: not measurable here)."""
    ref = REFERENCE
    a = stats["alert_kss_le_5"]
    out: dict[str, Any] = {}

    def put(name: str, value: Any, ok: bool | None) -> None:
        out[name] = {"value": value, "pass": ok}

    med = (a.get("duration_s") or {}).get("median")
    lo, hi = ref["alert_blink_duration_median_s"]
    put("alert_median_blink_duration_s", med, None if med is None else lo <= med <= hi)
    sh = a.get("share_0_5_s_or_longer")
    put("alert_share_blinks_0_5_s_or_longer", sh, None if sh is None else sh < ref["alert_long_blink_share_max"])
    sc = a.get("share_closing_shorter")
    put("alert_share_closing_shorter_than_reopening", sc, None if sc is None else sc >= ref["closing_shorter_share_min"])
    rate = (a.get("rate_per_min") or {}).get("median")
    lo, hi = ref["blink_rate_per_min"]
    put("alert_median_blink_rate_per_min", rate, None if rate is None else lo <= rate <= hi)
    by = stats["by_kss"]
    meds = [(k, (by[k].get("duration_s") or {}).get("mean")) for k in range(5, 10) if k in by]
    vals = [m for _, m in meds if m is not None]
    mono = len(vals) == 5 and all(b > a_ for a_, b in zip(vals, vals[1:]))
    put("mean_blink_duration_rises_kss_5_to_9", {str(k): m for k, m in meds}, mono if len(vals) == 5 else None)
    k9 = by.get(9, {}).get("perclos_60s")  # clips of at least 60 s (the PERCLOS window)
    put("kss9_60s_median_perclos", k9.get("median") if k9 else None,
        None if not k9 else k9["median"] > stats.get("perclos_threshold", ref["perclos_drowsy_threshold"]))
    put("kss9_60s_share_clips_over_perclos_threshold", by.get(9, {}).get("share_perclos_60s_over_threshold"), None)
    return out


def figure_png(stats: dict[str, Any], title: str = "") -> bytes:
    """One figure (4 panels): blink duration by KSS, phases, PERCLOS by KSS, yawn and glance durations."""
    import matplotlib  # heavy: matplotlib (plots only)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib (plots only)

    by = stats["by_kss"]
    ks = [k for k in sorted(by) if by[k].get("duration_s")]
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.6))
    # 1: blink duration by KSS (median, IQR, p5-p95) with the alert reference band
    for k in ks:
        d = by[k]["duration_s"]
        ax[0].plot([k, k], [d["p5"], d["p95"]], color="0.6")
        ax[0].plot([k, k], [d["p25"], d["p75"]], color="C0", lw=6)
        ax[0].plot(k, d["median"], "ko", ms=4)
    lo, hi = REFERENCE["alert_blink_duration_median_s"]
    ax[0].axhspan(lo, hi, color="g", alpha=0.15, label="alert median target")
    ax[0].axhline(0.5, color="r", ls=":", lw=1, label="0.5 s")
    ax[0].set(xlabel="KSS", ylabel="blink duration (s)", title="blink duration (p5-p95, IQR, median)")
    ax[0].legend(fontsize=7)
    # 2: phases by KSS
    for key, c in (("closing_s", "C1"), ("closed_s", "C2"), ("reopening_s", "C3")):
        ys = [(k, by[k][key]["median"]) for k in ks if by[k].get(key)]
        if ys:
            ax[1].plot([k for k, _ in ys], [y for _, y in ys], "o-", color=c, label=key.replace("_s", ""))
    ax[1].axhspan(*REFERENCE["closing_s"], color="C1", alpha=0.12)
    ax[1].axhspan(*REFERENCE["reopening_s"], color="C3", alpha=0.12)
    ax[1].set(xlabel="KSS", ylabel="s", title="blink phases (median; bands: alert reference)")
    ax[1].legend(fontsize=7)
    # 3: PERCLOS by KSS
    for k in sorted(by):
        p = by[k].get("perclos")
        if p:
            ax[2].plot([k, k], [p["p5"], p["p95"]], color="0.6")
            ax[2].plot(k, p["median"], "ko", ms=4)
    thr = stats.get("perclos_threshold", REFERENCE["perclos_drowsy_threshold"])
    ax[2].axhline(thr, color="r", ls="--", lw=1, label=f"drowsy threshold {thr:g}")
    ax[2].axhline(REFERENCE["perclos_alert"], color="g", ls=":", lw=1, label="published alert ~0.06")
    ax[2].set(xlabel="KSS", ylabel="PERCLOS P80 (clip)", title="PERCLOS (median, p5-p95)")
    ax[2].legend(fontsize=7)
    # 4: yawn and glance durations (all clips)
    al = stats["all"]
    labels, data = [], []
    for key, name in (("yawn_s", "yawn"), ("glance_mirror", "mirror"), ("glance_in_vehicle", "in-vehicle"),
                      ("glance_outside", "outside")):
        s = al.get(key)
        if s:
            labels.append(f"{name}\nn={s['n']}")
            data.append(s)
    for i, s in enumerate(data):
        ax[3].plot([i, i], [s["p5"], s["p95"]], color="0.6")
        ax[3].plot([i, i], [s["p25"], s["p75"]], color="C0", lw=6)
        ax[3].plot(i, s["median"], "ko", ms=4)
        ax[3].plot(i, s["p85"], "r_", ms=10)
    ax[3].axhspan(*REFERENCE["yawn_duration_s"], color="C4", alpha=0.15, label="yawn 6-6.5 s")
    ax[3].axhline(REFERENCE["in_vehicle_glance_p85_s"], color="r", ls=":", lw=1, label="in-vehicle p85 1.3 s")
    ax[3].set_xticks(range(len(labels)), labels, fontsize=7)
    ax[3].set(ylabel="s", title="yawn / glance durations (red: p85)")
    ax[3].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def markdown(stats: dict[str, Any]) -> str:
    """A table per KSS and the alert targets (for the card and the docs)."""
    rows = ["| KSS | clips | blinks | blink duration median (p95) s | closing / closed / reopening median s | "
            "blinks >= 0.5 s | closing < reopening | rate /min median | PERCLOS median (p95) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for k, g in sorted(stats["by_kss"].items()):
        d = g.get("duration_s") or {}
        ph = "/".join(_fmt((g.get(x) or {}).get("median")) for x in ("closing_s", "closed_s", "reopening_s"))
        pc = g.get("perclos") or {}
        rows.append(f"| {k} | {g['clips']} | {g['blinks']} | {_fmt(d.get('median'))} ({_fmt(d.get('p95'))}) | {ph} | "
                    f"{_fmt(g.get('share_0_5_s_or_longer'))} | {_fmt(g.get('share_closing_shorter'))} | "
                    f"{_fmt((g.get('rate_per_min') or {}).get('median'))} | {_fmt(pc.get('median'))} ({_fmt(pc.get('p95'))}) |")
    return "\n".join(rows)


def card_parts(clip_docs: list[dict[str, Any]], png_path: str = "card/clip_behaviour.png") -> tuple[str, dict[str, bytes], dict[str, Any]]:
    """(markdown, files, data) for the dataset card's clip section: behaviour against the reference figures."""
    docs = [d for d in clip_docs if (d.get("labels") or {}).get("temporal")]
    if not docs:
        return "", {}, {}
    st = behaviour_stats(docs)
    ck = checks(st)
    md = ["", "", "### Behaviour against published measurements", "",
          "Blink kinematics, PERCLOS, yawn and glance durations of these clips (complete blinks only; "
          "reference figures and their sources: docs/clips.md, dmsfactory.clips.drivers).", "",
          markdown(st), "", "| target | value | met |", "|---|---|---|"]
    for name, c in ck.items():
        v = c["value"]
        vs = ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) if isinstance(v, dict) else _fmt(v)
        md.append(f"| {name} | {vs} | {'-' if c['pass'] is None else ('yes' if c['pass'] else 'no')} |")
    md += ["", f"![clip behaviour]({png_path})"]
    files = {png_path: figure_png(st, "clips of this dataset")}
    return "\n".join(md), files, {"stats": st, "checks": ck}
